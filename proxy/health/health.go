// Package health actively health checks the hosts of a cluster, as Envoy's
// health checkers do: one checker goroutine per host sends a gRPC
// (grpc.health.v1.Health/Check), HTTP (GET path) or TCP (connect) check
// every interval plus jitter, and moves the host's FailedActiveHC flag after
// healthy_threshold passes or unhealthy_threshold failures in a row; a host
// that answers that it is down (an HTTP status neither expected nor
// retriable, such as 503, or a gRPC NOT_SERVING) is ejected at once, as
// Envoy ejects on a non-retriable ACTIVE failure. Until the cluster has
// had a request routed to it, checks run at the slower
// no_traffic_interval (no_traffic_healthy_interval after a passing check
// of a healthy host), as Envoy's do.
//
// A Checker only sets flags and reports changes; the cluster that owns the
// hosts decides what a change means (it rebuilds its balancer from
// OnChange). The package keeps the cluster's health_check stats
// (cluster.<name>.health_check.attempt, .success, .failure,
// .network_failure and the .healthy gauge) and writes the Envoy-shaped event log (event_log_path) on every
// change of a host's health.
//
// A cluster builds one Checker with New, calls Set with its hosts whenever
// its membership changes (before publishing the new balancer, so that a new
// host is never picked before its first check), rebuilds its balancer from
// OnChange, and calls Close when it is closed. The server calls WaitFirst
// once at startup, before it opens listeners, so that it serves with health
// already known.
package health

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/accesslog"
	"github.com/sightline-proxy/sightline/internal/logfield"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/stats"
)

// Options configure a Checker.
type Options struct {
	// Cluster is the cluster's name: the event log's cluster_name, and the
	// :authority (Host header) of HTTP and gRPC checks, as Envoy sends by
	// default, so that a backend serving several names answers for this
	// one. gRPC over TLS is the exception: grpc-go sends the TLS server
	// name (TLS.ServerName, else the host's IP) as :authority.
	Cluster string
	// Config is the cluster's health_check, defaults applied (config.Load
	// leaves it so). Exactly one of GRPC, HTTP and TCP must be set.
	Config config.HealthCheck
	// Protocol is the cluster's protocol word: "http1", or "http2" and
	// "auto" (and empty), which make HTTP checks HTTP/2: h2c with prior
	// knowledge in plaintext, h2 over TLS. gRPC checks are always HTTP/2 and
	// TCP checks have no protocol.
	Protocol string
	// TLS, when set, makes HTTP and gRPC checks use TLS with this config, as
	// the cluster's upstream connections do. When it names no ServerName,
	// each host's IP is verified. nil: plaintext.
	TLS *tls.Config
	// Stats are the cluster's health check stats. nil: no stats. An
	// attempt is counted as a check starts, as Envoy does, so a check that
	// Set or Close abandons is an attempt with neither success nor
	// failure.
	Stats *stats.HealthCheck
	// Events is the cluster's health check event log. nil: no event log.
	// The Checker writes to it and never closes it.
	Events *accesslog.HealthLog
	// OnChange, when set, is called after a host's FailedActiveHC flag
	// changed, and after its first check whatever the result (which
	// clears PendingActiveHC), with the host's health. It is called on
	// the host's checker goroutine with no lock held, so it may take the
	// cluster's lock to rebuild the balancer; it should not block for
	// long, since the host's next check waits for it. Calls for one host
	// come in order; calls for different hosts may come concurrently. A
	// call may arrive for a host that Set has just removed.
	OnChange func(h *host.Host, healthy bool)
	// OnPass, when set, is called after every passing check (after
	// OnChange when the pass also changed the host's health), on the
	// host's checker goroutine with no lock held, like OnChange. The
	// cluster uses it to end an outlier ejection early
	// (successful_active_health_check_uneject_host).
	OnPass func(h *host.Host)
	// Traffic is closed by the cluster when it routes its first request.
	// Until then hosts are checked every no_traffic_interval; from then
	// on every interval, the first such check one interval after the
	// host's last. nil: the cluster is taken to have traffic from the
	// start, and interval always applies.
	Traffic <-chan struct{}
	// Log receives state changes (Info and Warn) and every failed check
	// (Debug).
	Log zerolog.Logger
}

// Checker health checks a set of hosts. Its methods are safe for concurrent
// use.
type Checker struct {
	cluster            string
	kind               string // accesslog.CheckerGRPC, CheckerHTTP or CheckerTCP
	interval           time.Duration
	jitter             time.Duration
	timeout            time.Duration
	healthyThreshold   int
	unhealthyThreshold int
	// noTraffic and noTrafficHealthy are the intervals while traffic is
	// still open; zero noTraffic means interval.
	noTraffic        time.Duration
	noTrafficHealthy time.Duration
	traffic          <-chan struct{}
	newProber        func(addr string) (prober, error)
	stats            *stats.HealthCheck
	events           *accesslog.HealthLog
	onChange         func(h *host.Host, healthy bool)
	onPass           func(h *host.Host)
	log              zerolog.Logger

	// now, randN and after are the clock (of event timestamps and of the
	// waits between checks), the source of jitter and the timer; tests
	// replace them before the first Set.
	now   func() time.Time
	randN func(n int64) int64
	after func(d time.Duration) <-chan time.Time

	mu       sync.Mutex
	sessions map[*host.Host]*session
	closed   bool
	wg       sync.WaitGroup // one per running session goroutine
}

// session is the checking of one host by one Checker.
type session struct {
	h      *host.Host
	addr   string // the event log's host.address and host.port
	port   int
	cancel context.CancelFunc

	firstOnce sync.Once
	first     chan struct{} // closed once the first check is done, or the session ended

	// Guarded by Checker.mu.
	state   state
	stopped bool // removed or closed: results are dropped
}

// firstDone marks the first check done.
func (s *session) firstDone() { s.firstOnce.Do(func() { close(s.first) }) }

// New builds a Checker from o. It does no I/O and starts nothing: checking
// starts with the first Set.
func New(o Options) (*Checker, error) {
	hc := o.Config
	c := &Checker{
		cluster:            o.Cluster,
		interval:           hc.Interval.D(),
		jitter:             hc.IntervalJitter.D(),
		timeout:            hc.Timeout.D(),
		healthyThreshold:   hc.HealthyThreshold,
		unhealthyThreshold: hc.UnhealthyThreshold,
		noTraffic:          hc.NoTrafficInterval.D(),
		noTrafficHealthy:   hc.NoTrafficHealthyInterval.D(),
		traffic:            o.Traffic,
		stats:              o.Stats,
		events:             o.Events,
		onChange:           o.OnChange,
		onPass:             o.OnPass,
		now:                time.Now,
		randN:              rand.Int64N,
		after:              time.After,
		sessions:           map[*host.Host]*session{},
	}
	var errs []error
	if c.interval <= 0 {
		errs = append(errs, fmt.Errorf("interval must be greater than 0, got %s", c.interval))
	}
	if c.jitter < 0 {
		errs = append(errs, fmt.Errorf("interval_jitter must not be negative, got %s", c.jitter))
	}
	if c.timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout must be greater than 0, got %s", c.timeout))
	}
	if c.noTraffic < 0 {
		errs = append(errs, fmt.Errorf("no_traffic_interval must not be negative, got %s", c.noTraffic))
	}
	if c.noTrafficHealthy < 0 {
		errs = append(errs, fmt.Errorf("no_traffic_healthy_interval must not be negative, got %s", c.noTrafficHealthy))
	}
	if c.noTraffic == 0 {
		c.noTraffic = c.interval // a config built by hand: no slower pace
	}
	if c.noTrafficHealthy == 0 {
		c.noTrafficHealthy = c.noTraffic // Envoy's default
	}
	if c.healthyThreshold < 1 {
		errs = append(errs, fmt.Errorf("healthy_threshold must be at least 1, got %d", c.healthyThreshold))
	}
	if c.unhealthyThreshold < 1 {
		errs = append(errs, fmt.Errorf("unhealthy_threshold must be at least 1, got %d", c.unhealthyThreshold))
	}
	switch o.Protocol {
	case "", "http2", "http1", "auto":
	default:
		errs = append(errs, fmt.Errorf("unknown protocol %q", o.Protocol))
	}
	switch n := countSet(hc.GRPC != nil, hc.HTTP != nil, hc.TCP != nil); {
	case n != 1:
		errs = append(errs, fmt.Errorf("exactly one of grpc, http and tcp must be set, got %d", n))
	case hc.GRPC != nil:
		c.kind = accesslog.CheckerGRPC
		service, authority, interval, timeout := hc.GRPC.ServiceName, o.Cluster, c.interval, c.timeout
		c.newProber = func(addr string) (prober, error) {
			return newGRPCProber(addr, authority, service, o.TLS, interval, timeout)
		}
	case hc.HTTP != nil:
		c.kind = accesslog.CheckerHTTP
		expected, retriable := hc.HTTP.ExpectedStatuses, hc.HTTP.RetriableStatuses
		if len(expected) == 0 {
			expected = []int{200}
		}
		for _, s := range expected {
			if s < 100 || s > 599 {
				errs = append(errs, fmt.Errorf("http.expected_statuses: %d is not a status code from 100 to 599", s))
			}
		}
		for _, s := range retriable {
			if s < 100 || s > 599 {
				errs = append(errs, fmt.Errorf("http.retriable_statuses: %d is not a status code from 100 to 599", s))
			}
		}
		path := hc.HTTP.Path
		if path == "" || path[0] != '/' {
			errs = append(errs, fmt.Errorf("http.path must start with /, got %q", path))
		}
		authority, proto := o.Cluster, o.Protocol
		c.newProber = func(addr string) (prober, error) {
			return newHTTPProber(addr, authority, path, proto, expected, retriable, o.TLS), nil
		}
	default:
		c.kind = accesslog.CheckerTCP
		c.newProber = func(addr string) (prober, error) { return &tcpProber{addr: addr}, nil }
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("health check of cluster %s: %w", o.Cluster, err)
	}
	if c.stats == nil {
		c.stats = &stats.HealthCheck{} // nil handles count nothing
	}
	c.log = logfield.With(logfield.With(o.Log, "cluster", o.Cluster), "health_checker", c.kind)
	return c, nil
}

func countSet(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// Set makes hosts the checked set. A host not checked yet gets the
// FailedActiveHC and PendingActiveHC flags before Set returns, and its
// first check starts at once; a checked host no longer listed stops being
// checked (its check in flight, if any, is abandoned and its result
// dropped). Hosts are told apart by pointer, so the same *host.Host across
// DNS refreshes keeps its state.
//
// Set does not call OnChange for the flags it sets: the caller is changing
// membership and rebuilds its balancer anyway, after Set returns, so that a
// new host is never published as healthy before its first check. Set never
// blocks on a check, so the caller may hold its own lock. After Close, Set
// does nothing.
func (c *Checker) Set(hosts []*host.Host) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	keep := make(map[*host.Host]bool, len(hosts))
	for _, h := range hosts {
		keep[h] = true
		if _, ok := c.sessions[h]; ok {
			continue
		}
		h.SetFlags(0, host.FailedActiveHC|host.PendingActiveHC)
		s := c.newSession(h)
		ctx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		c.sessions[h] = s
		c.wg.Add(1)
		go c.run(ctx, s)
	}
	for h, s := range c.sessions {
		if !keep[h] {
			c.stopLocked(s)
			delete(c.sessions, h)
		}
	}
}

func (c *Checker) newSession(h *host.Host) *session {
	s := &session{h: h, addr: h.Address, first: make(chan struct{}), state: newState(c.healthyThreshold, c.unhealthyThreshold)}
	if a, p, err := net.SplitHostPort(h.Address); err == nil {
		s.addr = a
		s.port, _ = strconv.Atoi(p)
	}
	return s
}

// stopLocked ends s: its goroutine exits at its next step, and a host it
// counted healthy is no longer counted.
func (c *Checker) stopLocked(s *session) {
	s.stopped = true
	s.cancel()
	if s.state.healthy {
		c.stats.Healthy.Dec()
	}
}

// WaitFirst returns once every host of the current set has had its first
// check (or stopped being checked), so that a proxy starting up can serve
// with health already known instead of with every host flagged down.
// Call it after the first Set and before the listeners open; it returns
// ctx's error, wrapped, when ctx ends first, and the caller may then serve
// anyway: hosts not checked yet stay flagged and the balancer's panic
// threshold decides. Hosts added by a later Set are not waited for. Like
// Close, it must not be called while holding a lock that OnChange takes.
func (c *Checker) WaitFirst(ctx context.Context) error {
	c.mu.Lock()
	waits := make([]chan struct{}, 0, len(c.sessions))
	for _, s := range c.sessions {
		waits = append(waits, s.first)
	}
	c.mu.Unlock()
	for _, ch := range waits {
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the first health checks of cluster %s: %w", c.cluster, ctx.Err())
		}
	}
	return nil
}

// Close stops every check and waits for the checker goroutines to exit and
// their connections to close; checks in flight are abandoned, so it returns
// promptly. Host flags are left as they are. Close is idempotent. Do not
// call it while holding a lock that OnChange takes.
func (c *Checker) Close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		for h, s := range c.sessions {
			c.stopLocked(s)
			delete(c.sessions, h)
		}
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// run checks one host until its session is stopped: the first check at
// once, then one every interval plus jitter (no_traffic_interval while the
// cluster has had no traffic). A check never overlaps the next, and a slow
// host delays only its own checks.
func (c *Checker) run(ctx context.Context, s *session) {
	defer c.wg.Done()
	defer s.firstDone()
	var p prober
	defer func() {
		if p != nil {
			p.close()
		}
	}()
	for {
		var r result
		p, r = c.check(ctx, s, p)
		if ctx.Err() != nil {
			return // removed or closed mid-check: the result means nothing
		}
		tr := c.apply(s, r)
		s.firstDone()
		if !c.wait(ctx, r.pass && tr.healthy) {
			return
		}
	}
}

// wait waits until the next check of a host is due, and reports false
// when the session ended first. healthy says the check just done passed
// and found the host healthy (Envoy's Healthy result with no change
// pending), which picks no_traffic_healthy_interval over
// no_traffic_interval while the cluster has had no traffic.
//
// Envoy picks the interval as it arms the timer, so the first request to
// an idle cluster waits out the no-traffic interval already running,
// a minute by default, before checks speed up. Here the first request
// cuts that wait short: the next check comes one interval after the
// last, as if the cluster had had traffic all along.
func (c *Checker) wait(ctx context.Context, healthy bool) bool {
	var traffic <-chan struct{}
	d := c.interval
	if c.traffic != nil {
		select {
		case <-c.traffic:
		default:
			traffic = c.traffic
			d = c.noTraffic
			if healthy {
				d = c.noTrafficHealthy
			}
		}
	}
	checked := c.now()
	select {
	case <-ctx.Done():
		return false
	case <-c.after(c.delay(d)):
		return true
	case <-traffic:
	}
	rest := c.delay(c.interval) - c.now().Sub(checked)
	if rest <= 0 {
		return ctx.Err() == nil
	}
	select {
	case <-ctx.Done():
		return false
	case <-c.after(rest):
		return true
	}
}

// delay is the wait before the next check: base (the interval that
// applies) plus a random jitter in [0, interval_jitter), so that the
// checks of many hosts (and of many proxies) spread out instead of
// arriving together.
func (c *Checker) delay(base time.Duration) time.Duration {
	d := base
	if c.jitter > 0 {
		d += time.Duration(c.randN(int64(c.jitter)))
	}
	return d
}

// check runs one check bounded by the timeout. p is the host's prober, nil
// until one is built; check returns it for the next check.
func (c *Checker) check(ctx context.Context, s *session, p prober) (prober, result) {
	c.stats.Attempt.Inc(1)
	var err error
	if p == nil {
		p, err = c.newProber(s.h.Address)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err == nil {
		err = p.probe(ctx)
	}
	if err == nil {
		return p, result{pass: true}
	}
	r := result{failure: classify(ctx, err), retriable: errors.Is(err, errRetriable)}
	if e := c.log.Debug(); e.Enabled() {
		e.Err(err).Str("host", s.h.Address).Str("failure_type", r.failure).Msg("health check failed")
	}
	return p, r
}

// apply feeds r to the host's state and carries out the transition: the
// host's flag and the healthy gauge under the lock, then the stats, the
// event log, OnChange and OnPass outside it. It returns the transition;
// a zero one when the session was stopped meanwhile.
func (c *Checker) apply(s *session, r result) transition {
	c.mu.Lock()
	if s.stopped {
		c.mu.Unlock()
		return transition{}
	}
	tr := s.state.observe(r)
	var off, on uint32
	if tr.firstCheck {
		off = host.PendingActiveHC
	}
	if tr.changed {
		if tr.healthy {
			off |= host.FailedActiveHC
		} else {
			on = host.FailedActiveHC
		}
	}
	s.h.SetFlags(off, on)
	if tr.changed {
		if tr.healthy {
			c.stats.Healthy.Inc()
		} else {
			c.stats.Healthy.Dec()
		}
	}
	c.mu.Unlock()

	if r.pass {
		c.stats.Success.Inc(1)
	} else {
		c.stats.Failure.Inc(1)
		if r.failure != accesslog.FailureActive {
			// A connect failure, reset or timeout: Envoy counts these
			// (NETWORK and NETWORK_TIMEOUT) in network_failure too.
			c.stats.NetworkFailure.Inc(1)
		}
	}
	if tr.event != 0 {
		c.logEvent(s, tr)
	}
	if (tr.changed || tr.firstCheck) && c.onChange != nil {
		c.onChange(s.h, tr.healthy)
	}
	if r.pass && c.onPass != nil {
		c.onPass(s.h)
	}
	return tr
}

// logEvent writes tr's event to the event log and the process log.
func (c *Checker) logEvent(s *session, tr transition) {
	if c.events != nil {
		c.events.Log(&accesslog.HealthEvent{
			CheckerType: c.kind,
			HostAddress: s.addr,
			HostPort:    s.port,
			ClusterName: c.cluster,
			Timestamp:   c.now(),
			Type:        tr.event,
			FailureType: tr.failureType,
			FirstCheck:  tr.firstCheck,
			Zone:        s.h.Zone,
		})
	}
	switch tr.event {
	case accesslog.AddHealthy:
		c.log.Info().Str("host", s.h.Address).Bool("first_check", tr.firstCheck).Msg("host healthy")
	case accesslog.EjectUnhealthy:
		if tr.immediate {
			c.log.Warn().Str("host", s.h.Address).Str("failure_type", tr.failureType).Bool("immediate", true).
				Msg("host answered that it is unhealthy: ejected at once, without waiting for unhealthy_threshold")
			break
		}
		c.log.Warn().Str("host", s.h.Address).Str("failure_type", tr.failureType).Msg("host unhealthy: ejected")
	case accesslog.HealthCheckFailure:
		c.log.Warn().Str("host", s.h.Address).Str("failure_type", tr.failureType).Bool("first_check", tr.firstCheck).
			Msg("host failed its first health check")
	}
}
