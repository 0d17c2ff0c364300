// Package cluster keeps a cluster's hosts, discovers them (static or
// strict_dns) and publishes the balancer snapshot the request path picks from.
//
// Membership changes are serialized under the cluster's mutex; each change
// builds a new picker from the eligible hosts and publishes it through an
// atomic pointer. Pick only loads that pointer: no lock, no map lookup.
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/accesslog"
	"github.com/sightline-proxy/sightline/internal/logfield"
	"github.com/sightline-proxy/sightline/internal/tick"
	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/balancer/policies"
	"github.com/sightline-proxy/sightline/proxy/balancer/zoneaware"
	"github.com/sightline-proxy/sightline/proxy/breaker"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/health"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/outlier"
	"github.com/sightline-proxy/sightline/stats"
)

// Protocol is the upstream protocol of a cluster.
type Protocol uint8

const (
	// HTTP2 speaks HTTP/2 (h2c, or h2 over TLS) to every host.
	HTTP2 Protocol = iota
	// HTTP1 speaks HTTP/1.1.
	HTTP1
	// Auto follows the downstream request's protocol.
	Auto
)

// ParseProtocol maps the config word to a Protocol.
func ParseProtocol(s string) (Protocol, error) {
	switch s {
	case "", "http2":
		return HTTP2, nil
	case "http1":
		return HTTP1, nil
	case "auto":
		return Auto, nil
	}
	return 0, fmt.Errorf("unknown protocol %q", s)
}

// UpstreamFactory makes the connection pool of a host, the first time a
// request needs it.
type UpstreamFactory func(c *Cluster, h *host.Host) host.Upstream

// Resolver looks up the addresses of a name, as net.Resolver does.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Cluster is a named set of upstream hosts with their balancer.
type Cluster struct {
	Name     string
	Config   config.Cluster
	Protocol Protocol

	// Stats are the cluster's stats; never nil (a no-op set when the
	// cluster was built without a stats store).
	Stats *stats.Cluster

	build       balancer.Builder
	localZone   string
	localShares map[string]float64
	newUpstream func(*host.Host) host.Upstream // nil: hosts have no pool
	// upstreamIdle says a pool has no connection (Options.UpstreamIdle).
	upstreamIdle func(host.Upstream) bool
	resolver     Resolver
	// baseLog is the logger the cluster's own (log) adds its name to.
	baseLog zerolog.Logger

	// Breakers are the cluster's circuit breakers; the request paths take
	// and return their counts.
	Breakers *breaker.Breakers

	hc *health.Checker   // nil: no active health checking
	od *outlier.Detector // nil: no outlier detection

	snap atomic.Pointer[snapshot]

	// used is set, and traffic closed, by the first Pick: until then the
	// health checker runs at no_traffic_interval, as Envoy's does for a
	// cluster that has never been used. traffic is nil without health
	// checking.
	used    atomic.Bool
	traffic chan struct{}

	// local is the zone_aware.local_cluster once LinkLocal found it
	// (guarded by mu): the proxy fleet, whose healthy hosts per zone are
	// the zone-aware routing's local shares. localSig is signalled (never
	// blocking) when the local cluster's health changed; a goroutine
	// started by Start then rebuilds the picker. localDone is closed when
	// that goroutine ends; nil when none runs.
	local     *Cluster
	localSig  chan struct{}
	localDone chan struct{}

	// watchers are the clusters whose zone-aware routing reads this one's
	// health, signalled on every change of it.
	watchMu  sync.Mutex
	watchers map[*Cluster]struct{}

	mu    sync.Mutex
	hosts hostIndex // by address; owned by the cluster
	// sorted holds the hosts ordered by address (compareAddr) as of the
	// last membership change, and added those made since: resortLocked
	// merges them, so that a change of a few hosts of 100,000 costs no
	// sort of them all. A published sorted slice is never modified.
	sorted []*host.Host
	added  []*host.Host
	origin map[string]string // strict_dns: address → the configured name it resolved from; nil until one
	// gone holds hosts discovery no longer lists that still pass their
	// health checks: health has primacy over discovery (Envoy's eventually
	// consistent discovery), so they stay until a check fails. nil until
	// one.
	gone map[string]bool
	// retiring are hosts that left, whose pools close after hostGrace.
	retiring map[*host.Host]*time.Timer

	closeOnce sync.Once
	stop      context.CancelFunc
	done      chan struct{} // closed when strict_dns discovery ended; nil for other types

	// sweep is the state of ReleaseIdlePools; nil while no host has a
	// pool it watches. closed is set by Close. Both guarded by mu.
	sweep  *poolSweep
	closed bool
}

// snapshot is one immutable generation of the cluster's membership.
type snapshot struct {
	hosts  []*host.Host // every host, sorted by address
	picker balancer.Picker
	panic  bool // too few healthy hosts: balancing over all of them
	// told: the panic was logged. A cluster whose hosts wait for their
	// first health check (as every one does while the proxy starts) is in
	// panic for want of knowledge, not of healthy hosts: that panic is
	// logged only if it outlasts the first checks, and its end only if
	// it was.
	told bool
	zone zoneaware.State
	// healthy are the healthy hosts (hosts itself while all are), whose
	// number per zone, against that of all hosts, a cluster naming this
	// one its local cluster reads.
	healthy []*host.Host
}

// Options are the cluster's collaborators.
type Options struct {
	NewUpstream UpstreamFactory
	// UpstreamIdle reports whether a pool NewUpstream made has no
	// connection, open or opening: ReleaseIdlePools drops such pools.
	// nil: pools are kept as long as their host.
	UpstreamIdle func(host.Upstream) bool
	Resolver     Resolver       // nil: net.DefaultResolver
	Stats        *stats.Cluster // nil: no stats
	Log          zerolog.Logger
	// LocalZone is this proxy's zone (node.zone), for zone-aware routing.
	LocalZone string
	// LocalShares is the share of traffic each zone originates (see
	// zoneaware.Options), until LinkLocal gives the cluster its local
	// cluster, whose healthy hosts then decide; nil: every zone of the
	// cluster an equal share.
	LocalShares map[string]float64
	// TLS is the cluster's upstream TLS config, for health checks; nil:
	// plaintext.
	TLS *tls.Config
	// HealthEvents receives health_check state changes; nil: none. The
	// cluster does not close it.
	HealthEvents *accesslog.HealthLog
	// OutlierEvents receives ejections and returns; nil: none.
	OutlierEvents *accesslog.OutlierLog
}

// New builds a cluster from its config. It does no I/O: static hosts are
// published at once; strict_dns hosts appear after Start resolves them.
func New(cfg config.Cluster, opts Options) (*Cluster, error) {
	build, ok := policies.Builder(cfg.LBPolicy)
	if !ok {
		return nil, fmt.Errorf("cluster %s: unknown lb_policy %q", cfg.Name, cfg.LBPolicy)
	}
	proto, err := ParseProtocol(cfg.Protocol)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", cfg.Name, err)
	}
	c := &Cluster{
		Name:         cfg.Name,
		Config:       cfg,
		Protocol:     proto,
		Stats:        opts.Stats,
		build:        build,
		localZone:    opts.LocalZone,
		localShares:  opts.LocalShares,
		resolver:     opts.Resolver,
		upstreamIdle: opts.UpstreamIdle,
		baseLog:      opts.Log,
	}
	if cfg.HealthCheck != nil {
		c.traffic = make(chan struct{})
	}
	if cfg.ZoneAware.Enabled && cfg.ZoneAware.LocalCluster != "" {
		c.localSig = make(chan struct{}, 1)
	}
	if nu := opts.NewUpstream; nu != nil {
		c.newUpstream = func(h *host.Host) host.Upstream { return nu(c, h) }
	}
	if c.resolver == nil {
		c.resolver = net.DefaultResolver
	}
	if c.Stats == nil {
		c.Stats = stats.Nop().Cluster(cfg.Name)
	}
	c.Breakers = breaker.New(cfg.CircuitBreakers, c.Stats)
	if od := cfg.OutlierDetection; od != nil {
		c.od = outlier.New(*od, outlier.Options{Cluster: cfg.Name, Stats: c.Stats.OutlierDetection(), OnChange: c.Refresh, Log: opts.Log, // it names the cluster itself
			Events: outlierEvents(opts.OutlierEvents)})
	}
	if hcfg := cfg.HealthCheck; hcfg != nil {
		ho := health.Options{
			Cluster: cfg.Name, Config: *hcfg, Protocol: cfg.Protocol, TLS: opts.TLS,
			Stats: c.Stats.HealthCheck(), Events: opts.HealthEvents,
			OnChange: c.onHealthChange, Traffic: c.traffic, Log: opts.Log, // it names the cluster itself
		}
		if c.od != nil {
			// A passing check may end an outlier ejection early
			// (successful_active_health_check_uneject_host).
			ho.OnPass = c.od.HealthCheckPassed
		}
		c.hc, err = health.New(ho)
		if err != nil {
			return nil, err
		}
	}
	if cfg.Type != "strict_dns" {
		c.setMembership(staticEndpoints(cfg.Endpoints))
	} else {
		c.publishLocked()
	}
	return c, nil
}

func staticEndpoints(eps []config.Endpoint) []endpoint {
	out := make([]endpoint, 0, len(eps))
	for _, ep := range eps {
		out = append(out, endpoint{addr: ep.Address, zone: ep.Zone, weight: ep.Weight})
	}
	return out
}

// SetEndpoints makes eps the hosts of a static cluster whose other
// settings stay as they are, as an EDS update does in Envoy: a host whose
// address, zone and weight stay keeps its pool, counters, health and
// outlier state; the others are added (health-checked before they take
// traffic, when the cluster checks health) or removed. A reload that
// changes only a static cluster's endpoints calls it instead of building
// the cluster again, so that its cost is that of the change.
func (c *Cluster) SetEndpoints(eps []config.Endpoint) {
	c.mu.Lock()
	c.Config.Endpoints = eps // read by strict_dns clusters only
	c.mu.Unlock()
	c.setMembership(staticEndpoints(eps))
}

// Start begins discovery. For strict_dns clusters it resolves once before
// returning (so the first requests find hosts) and then every
// dns_refresh_rate until Close.
func (c *Cluster) Start(ctx context.Context) {
	if c.od == nil && c.localSig == nil && c.Config.Type != "strict_dns" {
		return // nothing runs in the background
	}
	ctx, c.stop = context.WithCancel(ctx)
	if c.od != nil {
		c.od.Start(ctx)
	}
	if c.localSig != nil {
		c.localDone = make(chan struct{})
		go func() {
			defer close(c.localDone)
			for {
				select {
				case <-ctx.Done():
					return
				case <-c.localSig:
					c.Refresh()
				}
			}
		}()
	}
	if c.Config.Type != "strict_dns" {
		return
	}
	c.done = make(chan struct{})
	c.resolve(ctx)
	go func() {
		defer close(c.done)
		every := c.Config.DNSRefreshRate.D()
		if every <= 0 {
			every = 5 * time.Second
		}
		t := tick.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				c.resolve(ctx)
			}
		}
	}()
}

// resolve looks up every endpoint name; a failed lookup keeps the hosts that
// name had, so a DNS outage never empties a cluster.
func (c *Cluster) resolve(ctx context.Context) {
	var eps []endpoint
	for _, ep := range c.Config.Endpoints {
		name, port, err := net.SplitHostPort(ep.Address)
		if err != nil {
			continue // validated at load time
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err := c.resolver.LookupIPAddr(lctx, name)
		cancel()
		if err != nil || len(addrs) == 0 {
			if err == nil {
				err = errors.New("no addresses")
			}
			c.log().Warn().Err(err).Str("name", name).Msg("dns lookup failed; keeping the last good hosts")
			eps = append(eps, c.lastGood(ep)...)
			continue
		}
		for _, a := range addrs {
			eps = append(eps, endpoint{addr: net.JoinHostPort(a.IP.String(), port), zone: ep.Zone, weight: ep.Weight, from: ep.Address})
		}
	}
	c.setMembership(eps)
}

// lastGood returns the hosts currently known for a strict_dns endpoint.
func (c *Cluster) lastGood(ep config.Endpoint) []endpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []endpoint
	for h := range c.hosts.all() {
		if c.origin[h.Address] == ep.Address {
			out = append(out, endpoint{addr: h.Address, zone: h.Zone, weight: h.Weight, from: ep.Address})
		}
	}
	return out
}

type endpoint struct {
	addr   string
	zone   string
	weight uint32
	from   string // the configured name a resolved address came from
}

// setMembership makes eps the cluster's hosts, keeping the Host values (and
// so their counters and connection pools) of addresses already known.
func (c *Cluster) setMembership(eps []endpoint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := make(map[string]bool, len(eps))
	changed := false
	for _, ep := range eps {
		if seen[ep.addr] {
			continue
		}
		seen[ep.addr] = true
		w := ep.weight
		if w == 0 {
			w = 1
		}
		if h, ok := c.hosts.get(ep.addr); ok && h.Zone == ep.zone && h.Weight == w {
			continue
		} else if ok {
			c.retireHostLocked(h) // same address, new zone or weight: a new Host
		}
		h := &host.Host{Address: ep.addr, Zone: ep.zone, Weight: w, ZoneStats: c.Stats.Zone(ep.zone), NewUpstream: c.newUpstream}
		if ep.from != "" {
			if c.origin == nil {
				c.origin = map[string]string{}
			}
			c.origin[ep.addr] = ep.from
		}
		c.hosts.set(h)
		c.added = append(c.added, h)
		changed = true
	}
	for h := range c.hosts.all() {
		addr := h.Address
		switch {
		case seen[addr]:
			delete(c.gone, addr)
		case c.hc != nil && h.Flags()&host.FailedActiveHC == 0:
			// Still passing its checks: kept until one fails.
			if !c.gone[addr] {
				if c.gone == nil {
					c.gone = map[string]bool{}
				}
				c.gone[addr] = true
				c.log().Info().Str("host", addr).Msg("host left discovery but passes its health checks: kept until a check fails")
			}
		default:
			c.removeLocked(h)
			changed = true
		}
	}
	if changed || c.snap.Load() == nil {
		c.log().Debug().Int("hosts", c.hosts.len()).Msg("membership changed")
		c.membersChangedLocked()
	}
}

// removeLocked drops a host from the cluster and closes its pool.
func (c *Cluster) removeLocked(h *host.Host) {
	c.retireHostLocked(h)
	c.hosts.del(h.Address)
	delete(c.origin, h.Address)
	delete(c.gone, h.Address)
}

// membersChangedLocked tells the health checker and the outlier detector
// the new membership and publishes a new picker.
func (c *Cluster) membersChangedLocked() {
	c.resortLocked()
	if c.hc != nil {
		c.hc.Set(c.sorted)
	}
	if c.od != nil {
		c.od.Set(c.sorted)
	}
	c.publishLocked()
}

// resortLocked brings sorted up to date with hosts: the hosts it held
// that are still members keep their order, and those added since are
// sorted and merged in.
func (c *Cluster) resortLocked() {
	var added []*host.Host
	for _, h := range c.added {
		if cur, _ := c.hosts.get(h.Address); cur == h {
			added = append(added, h)
		}
	}
	c.added = nil
	slices.SortFunc(added, byAddr)
	out := make([]*host.Host, 0, c.hosts.len())
	i := 0
	for _, h := range c.sorted {
		if cur, _ := c.hosts.get(h.Address); cur != h {
			continue // removed, or replaced by a new Host
		}
		for i < len(added) && byAddr(added[i], h) < 0 {
			out = append(out, added[i])
			i++
		}
		out = append(out, h)
	}
	c.sorted = append(out, added[i:]...)
}

func byAddr(a, b *host.Host) int { return compareAddr(a.Address, b.Address) }

// onHealthChange runs when active health checking changed a host's state:
// a host that discovery dropped leaves once it fails; otherwise the
// picker is rebuilt.
func (c *Cluster) onHealthChange(h *host.Host, healthy bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, _ := c.hosts.get(h.Address); cur != h {
		return // removed meanwhile
	}
	if !healthy && c.gone[h.Address] {
		c.log().Info().Str("host", h.Address).Msg("host left discovery and failed its health check: removed")
		c.removeLocked(h)
		c.membersChangedLocked()
		return
	}
	c.publishLocked()
}

// WaitHealthChecked returns once every host has had its first health check
// (at once without health checking) or ctx ends, so that the proxy starts
// serving with health known.
func (c *Cluster) WaitHealthChecked(ctx context.Context) error {
	if c.hc == nil {
		return nil
	}
	return c.hc.WaitFirst(ctx)
}

// hostGrace is how long the pool of a host that left the cluster stays
// open: a request that picked the host from the snapshot before it left
// still finds its pool. Streams in flight on it finish whatever the grace.
const hostGrace = 2 * time.Second

// retireHostLocked closes h's pool after hostGrace, or when the cluster
// closes if that comes first.
func (c *Cluster) retireHostLocked(h *host.Host) {
	if c.retiring == nil {
		c.retiring = map[*host.Host]*time.Timer{}
	}
	c.retiring[h] = time.AfterFunc(hostGrace, func() {
		c.mu.Lock()
		delete(c.retiring, h)
		c.mu.Unlock()
		_ = h.CloseUpstream()
	})
}

// Refresh rebuilds the picker after a host's health changed.
func (c *Cluster) Refresh() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.publishLocked()
}

// publishLocked builds a new picker from the healthy hosts and publishes it.
// Below panic_threshold percent healthy, all hosts are used, as Envoy does:
// sending to a possibly unhealthy host beats failing every request. With
// zone_aware on and no panic, the picker is Envoy's zone-aware routing over
// the healthy hosts; each change of its state is logged, since why traffic
// does or does not stay in the zone is otherwise hard to see.
func (c *Cluster) publishLocked() {
	all := c.sorted
	healthy := all // no copy while every host is healthy
	for i, h := range all {
		if !h.Healthy() {
			healthy = slices.Clone(all[:i])
			for _, h := range all[i+1:] {
				if h.Healthy() {
					healthy = append(healthy, h)
				}
			}
			break
		}
	}
	c.Stats.SetMembership(int64(len(all)), int64(len(healthy)))
	s := &snapshot{hosts: all}
	threshold := 50.0
	if c.Config.PanicThreshold != nil {
		threshold = *c.Config.PanicThreshold
	}
	switch {
	case len(all) > 0 && float64(len(healthy))*100 < threshold*float64(len(all)):
		s.panic = true
		s.picker = panicPicker{Picker: c.build(all), cs: c.Stats}
		s.zone = zoneaware.State{Reason: fmt.Sprintf("panic (%d of %d hosts healthy, below %g%%)", len(healthy), len(all), threshold)}
	case c.Config.ZoneAware.Enabled:
		shares, localPanic := c.localShares, false
		var localAll map[string]float64
		if c.local != nil {
			// Envoy's: the local cluster's healthy hosts per zone, and
			// its panic judged by this cluster's threshold.
			ls := c.local.snap.Load()
			shares, localAll = zoneCounts(ls.healthy), zoneCounts(ls.hosts)
			n := len(ls.hosts)
			localPanic = n == 0 && threshold > 0 || float64(len(ls.healthy))*100 < threshold*float64(n)
		}
		s.picker, s.zone = zoneaware.New(c.build, healthy, zoneaware.Options{
			LocalZone:      c.localZone,
			MinClusterSize: c.Config.ZoneAware.MinClusterSize,
			LocalShares:    shares,
			LocalAll:       localAll,
			LocalPanic:     localPanic,
			All:            all,
			Stats:          c.Stats.LoadBalancer(),
		})
	default:
		s.picker = c.build(healthy)
		s.zone = zoneaware.State{Reason: "zone_aware not enabled"}
	}
	prev := c.snap.Load()
	switch {
	case s.panic && prev != nil && prev.told:
		s.told = true
	case s.panic && !anyPending(all):
		s.told = true
		c.log().Warn().Int("hosts", len(all)).Int("healthy", len(healthy)).Float64("panic_threshold", threshold).Msg("too few healthy hosts: balancing over all of them (panic)")
	case !s.panic && prev != nil && prev.told:
		c.log().Info().Int("hosts", len(all)).Int("healthy", len(healthy)).Msg("enough healthy hosts again: panic over")
	}
	if c.Config.ZoneAware.Enabled && (prev == nil || !prev.zone.Equal(s.zone)) {
		c.log().Info().Str("zone_routing", s.zone.String()).Int("hosts", len(all)).Int("healthy", len(healthy)).Msg("zone routing state")
	}
	s.healthy = healthy
	c.snap.Store(s)
	if c.watched() && (prev == nil || len(prev.healthy) != len(healthy) ||
		!maps.Equal(zoneCounts(prev.hosts), zoneCounts(all)) || !maps.Equal(zoneCounts(prev.healthy), zoneCounts(healthy))) {
		c.notifyWatchers()
	}
}

// anyPending reports whether a host waits for its first health check.
func anyPending(hosts []*host.Host) bool {
	for _, h := range hosts {
		if h.Flags()&host.PendingActiveHC != 0 {
			return true
		}
	}
	return false
}

// zoneCounts is the number of hosts per zone.
func zoneCounts(hosts []*host.Host) map[string]float64 {
	n := map[string]float64{}
	for _, h := range hosts {
		n[h.Zone]++
	}
	return n
}

// LinkLocal gives each zone-aware cluster of clusters (by name) the cluster
// its zone_aware.local_cluster names, so that its routing counts the
// proxies of the fleet that are healthy, zone by zone, as Envoy counts its
// local cluster's healthy hosts, and turns itself off while that cluster is
// in panic. Until linked, a cluster uses Options.LocalShares. The server
// calls it once a generation of clusters is built, before Start; calling
// it again with the same clusters changes nothing.
func LinkLocal(clusters map[string]*Cluster) {
	for _, c := range clusters {
		if c.localSig == nil {
			continue
		}
		if l := clusters[c.Config.ZoneAware.LocalCluster]; l != nil {
			c.setLocal(l)
		}
	}
}

// setLocal makes l c's local cluster and rebuilds c's picker from it.
func (c *Cluster) setLocal(l *Cluster) {
	c.mu.Lock()
	old := c.local
	c.local = l
	c.mu.Unlock()
	if old == l {
		return
	}
	if old != nil {
		old.unwatch(c)
	}
	l.watch(c)
	c.Refresh()
}

func (c *Cluster) watch(w *Cluster) {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	if c.watchers == nil {
		c.watchers = map[*Cluster]struct{}{}
	}
	c.watchers[w] = struct{}{}
}

// watched reports whether a cluster reads c's health.
func (c *Cluster) watched() bool {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	return len(c.watchers) > 0
}

func (c *Cluster) unwatch(w *Cluster) {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	delete(c.watchers, w)
}

// notifyWatchers tells the clusters that read c's health that it changed.
// It never blocks: a signal already pending covers this one.
func (c *Cluster) notifyWatchers() {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	for w := range c.watchers {
		select {
		case w.localSig <- struct{}{}:
		default:
		}
	}
}

// panicPicker counts lb_healthy_panic for every request balanced in panic.
// It finds the counter on each pick: the balancer stats are made on first
// use, so that a cluster in panic with no traffic has none.
type panicPicker struct {
	balancer.Picker
	cs *stats.Cluster
}

func (p panicPicker) Pick(r *balancer.Request) *host.Host {
	p.cs.LoadBalancer().HealthyPanic.Inc(1)
	return p.Picker.Pick(r)
}

// compareAddr orders "ip:port" strings by IP then numeric port, so that
// 127.0.0.1:9 sorts before 127.0.0.1:10.
func compareAddr(a, b string) int {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || ha != hb {
		switch {
		case a < b:
			return -1
		case a > b:
			return 1
		}
		return 0
	}
	na, _ := strconv.Atoi(pa)
	nb, _ := strconv.Atoi(pb)
	return na - nb
}

// Pick chooses a host for one request, or nil when the cluster has none.
// It is safe for concurrent use and takes no lock. The first Pick marks
// the cluster as having traffic, which brings its health checks from
// no_traffic_interval to interval.
func (c *Cluster) Pick(r *balancer.Request) *host.Host {
	if !c.used.Load() {
		c.markUsed()
	}
	return c.snap.Load().picker.Pick(r)
}

// markUsed records the cluster's first request. From then on the
// cluster has its circuit_breakers.*_open gauges, at 0 until a limit is
// reached, as dashboards and alerts expect of a cluster in use; an idle
// cluster has none.
func (c *Cluster) markUsed() {
	if c.used.CompareAndSwap(false, true) {
		if c.traffic != nil {
			close(c.traffic)
		}
		c.Stats.CircuitBreakers()
	}
}

// PickRetry picks a host for a retry: one not in tried when the cluster
// has one, as Envoy's previous_hosts retry predicate does. The balancer
// is asked a few times; when it keeps choosing hosts that already failed
// (zone-aware routing into a zone that just went down, a consistent hash)
// the first healthy host not tried is taken, from a random start.
func (c *Cluster) PickRetry(r *balancer.Request, tried []*host.Host) *host.Host {
	var h *host.Host
	for range 3 {
		if h = c.Pick(r); h == nil || !slices.Contains(tried, h) {
			return h
		}
	}
	hosts := c.Hosts()
	if n := len(hosts); n > 0 {
		off := rand.IntN(n)
		for i := range n {
			if x := hosts[(off+i)%n]; x.Healthy() && !slices.Contains(tried, x) {
				return x
			}
		}
	}
	return h
}

// Hosts returns every host of the cluster, sorted by address.
func (c *Cluster) Hosts() []*host.Host { return c.snap.Load().hosts }

// Panic reports whether the cluster is balancing over all hosts because too
// few are healthy.
func (c *Cluster) Panic() bool { return c.snap.Load().panic }

// ZoneRouting says whether zone-aware routing is active and, if not, why.
func (c *Cluster) ZoneRouting() zoneaware.State { return c.snap.Load().zone }

// Close stops discovery, health checking and outlier detection and closes
// every host's connection pool; streams in flight finish first.
func (c *Cluster) Close() {
	c.closeOnce.Do(func() {
		if c.stop != nil {
			c.stop()
			if c.done != nil {
				<-c.done
			}
			if c.localDone != nil {
				<-c.localDone
			}
		}
		c.mu.Lock()
		local := c.local
		c.mu.Unlock()
		if local != nil {
			local.unwatch(c)
		}
		// Before taking the lock: a check's OnChange may be waiting for it.
		if c.hc != nil {
			c.hc.Close()
		}
		if c.od != nil {
			c.od.Close()
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		for h := range c.hosts.all() {
			_ = h.CloseUpstream()
			c.hosts.del(h.Address)
		}
		for h, t := range c.retiring {
			t.Stop()
			_ = h.CloseUpstream()
			delete(c.retiring, h)
		}
		if c.sweep != nil {
			for _, u := range c.sweep.dropped {
				_ = u.Close()
			}
		}
		c.sweep, c.closed = nil, true
	})
}

// log returns the cluster's logger. It is made at each use rather than
// kept: it costs a hundred bytes, and most of 10,000 clusters never log.
func (c *Cluster) log() *zerolog.Logger {
	l := logfield.With(c.baseLog, "cluster", c.Name)
	return &l
}

// outlierEvents keeps a nil log a nil interface: the detector tests its
// Events for nil.
func outlierEvents(l *accesslog.OutlierLog) outlier.EventLog {
	if l == nil {
		return nil
	}
	return l
}
