// Package outlier ejects the hosts of a cluster that keep failing, as
// Envoy's consecutive_5xx outlier detection does, and returns them to
// service after an ejection time that grows while they keep failing.
//
// The request path calls Report once per finished request: one or two
// atomic operations on the host's own counters (host.OutlierState), no lock,
// no map lookup, no allocation. Only the report that reaches the threshold
// takes the detector's lock, to weigh the ejection against
// max_ejection_percent. A goroutine started by Start sweeps every interval:
// it returns hosts whose ejection time has passed and lets the hosts that
// stayed in service work their ejection multiplier back down. A passing
// active health check returns an ejected host at once
// (successful_active_health_check_uneject_host, Envoy's default).
package outlier

import (
	"context"
	"runtime/debug"
	"sync"
	"time"

	"github.com/sightline-proxy/sightline/accesslog"
	"github.com/sightline-proxy/sightline/internal/logfield"
	"github.com/sightline-proxy/sightline/internal/tick"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/stats"
)

// Envoy's defaults, for fields a config leaves at zero (config.Load fills
// the same values, so this only matters for callers that build a config by
// hand).
const (
	defaultConsecutive5xx   = 5
	defaultInterval         = 10 * time.Second
	defaultBaseEjectionTime = 30 * time.Second
)

// maxEjectionTime caps how long one ejection lasts, whatever the
// multiplier: Envoy's default max_ejection_time. Without a cap a host that
// failed a few dozen times in a row would be out for hours after it
// recovered. A base_ejection_time above it is the cap instead.
const maxEjectionTime = 300 * time.Second

// epoch is the zero of the clock ejection times are stored on. A time.Time
// from time.Now carries a monotonic reading, so differences from epoch
// are immune to wall-clock steps.
var epoch = time.Now()

// Options are a Detector's collaborators.
type Options struct {
	// Cluster names the cluster in log lines.
	Cluster string
	// Stats are the cluster's outlier detection stats; nil counts nothing.
	Stats *stats.OutlierDetection
	// OnChange is called after a host is ejected or returned to service,
	// on the goroutine that did it (a request's, or the sweep's), with no
	// lock of the detector held, so that the cluster can rebuild its
	// balancer. It may be called concurrently with itself. Nil: nothing
	// is called.
	OnChange func()
	// Log gets one line per ejection and per return; the detector adds
	// the component and cluster fields itself.
	Log zerolog.Logger
	// Now is the clock; nil means time.Now. Tests inject a fake one.
	Now func() time.Time
	// Events, when set, gets one event per ejection and per return
	// (outlier_detection.event_log_path).
	Events EventLog
}

// EventLog receives ejections and returns: *accesslog.OutlierLog.
type EventLog interface {
	Log(*accesslog.OutlierEvent)
}

// Detector is one cluster's outlier detection. Its methods are safe for
// concurrent use; a nil *Detector is detection turned off: Report does
// nothing and the other methods are no-ops.
type Detector struct {
	threshold  uint32
	interval   time.Duration
	base       time.Duration
	maxEject   time.Duration
	maxPercent int
	// unejectOnPass is successful_active_health_check_uneject_host.
	unejectOnPass bool
	stats         *stats.OutlierDetection
	onChange      func()
	events        EventLog
	cluster       string
	log           zerolog.Logger
	now           func() time.Time

	// mu serializes ejections, returns and membership changes.
	mu      sync.Mutex
	members map[*host.Host]struct{}
	active  int // members ejected, as last set on the gauge
	closed  bool

	startOnce sync.Once
	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

// New builds a detector from the cluster's outlier_detection config. It
// starts nothing: Set gives it the cluster's hosts, Start its sweeps.
// Zero durations and a zero consecutive_5xx take Envoy's defaults.
func New(cfg config.OutlierDetection, opts Options) *Detector {
	d := &Detector{
		threshold:  uint32(max(cfg.Consecutive5xx, 0)),
		interval:   cfg.Interval.D(),
		base:       cfg.BaseEjectionTime.D(),
		maxPercent: min(max(cfg.MaxEjectionPercent, 0), 100),
		// Unset (a config built by hand) is Envoy's default, true.
		unejectOnPass: cfg.SuccessfulActiveHealthCheckUnejectHost == nil || *cfg.SuccessfulActiveHealthCheckUnejectHost,
		stats:         opts.Stats,
		onChange:      opts.OnChange,
		events:        opts.Events,
		cluster:       opts.Cluster,
		log:           logfield.With(logfield.With(opts.Log, "component", "outlier_detection"), "cluster", opts.Cluster),
		now:           opts.Now,
		members:       map[*host.Host]struct{}{},
		stop:          make(chan struct{}),
		done:          make(chan struct{}),
	}
	if d.threshold == 0 {
		d.threshold = defaultConsecutive5xx
	}
	if d.interval <= 0 {
		d.interval = defaultInterval
	}
	if d.base <= 0 {
		d.base = defaultBaseEjectionTime
	}
	d.maxEject = max(d.base, maxEjectionTime)
	if d.stats == nil {
		d.stats = &stats.OutlierDetection{} // nil handles count nothing
	}
	if d.now == nil {
		d.now = time.Now
	}
	return d
}

// Report records how a request to h ended. The forwarder calls it once per
// upstream attempt, when the attempt's outcome is known (Classify turns
// the outcome into r). It never blocks on the request path: below the
// threshold it is an atomic add or a load; the report that reaches
// consecutive_5xx may eject h and call OnChange before it returns.
func (d *Detector) Report(h *host.Host, r Result) {
	if d == nil || h == nil {
		return
	}
	n := &h.Outlier.Consecutive5xx
	if r == Success {
		// Load first: most requests succeed, and a store on every one
		// would bounce the host's cache line between cores for nothing.
		if n.Load() != 0 {
			n.Store(0)
		}
		return
	}
	// Exactly one report sees the count reach the threshold, however many
	// race for it.
	if n.Add(1) == d.threshold {
		d.consecutive5xx(h)
	}
}

// consecutive5xx handles h reaching the threshold. As in Envoy, the count
// starts over whether or not h is ejected, so a host the ejection limit
// spared needs another full run of failures to be considered again.
func (d *Detector) consecutive5xx(h *host.Host) {
	h.Outlier.Consecutive5xx.Store(0)
	if h.Flags()&host.FailedOutlierCheck != 0 {
		return // already out; a balancer in panic mode still sends to it
	}
	at := d.clock()
	d.mu.Lock()
	if d.closed || !d.ejectableLocked(h) {
		d.mu.Unlock()
		return
	}
	// The flag is the arbiter: during a reload two detectors may share h,
	// and only the one that sets it counts the ejection.
	if !h.SetFlag(host.FailedOutlierCheck, true) {
		d.mu.Unlock()
		return
	}
	s := &h.Outlier
	m := s.Multiplier.Load()
	if time.Duration(m)*d.base < d.maxEject {
		m++
		s.Multiplier.Store(m)
	}
	s.EjectedAt.Store(at)
	ejections := s.Ejections.Add(1)
	d.setActiveLocked(d.active + 1)
	d.stats.EjectionsEnforced.Inc(1)
	d.mu.Unlock()

	d.log.Warn().Str("address", h.Address).Uint32("consecutive_5xx", d.threshold).
		Dur("ejection_time", d.ejectionTime(m)).Uint64("ejections", ejections).
		Msg("host ejected")
	d.event(h, true, at, s.ReturnedAt.Load())
	if d.onChange != nil {
		d.onChange()
	}
}

// ejectableLocked reports whether h is one of the cluster's hosts and
// ejecting it keeps the ejected share within max_ejection_percent. As in
// Envoy, the first ejection is always allowed, whatever the percentage: with
// the default 10%, a cluster of fewer than ten hosts could otherwise never
// eject any.
func (d *Detector) ejectableLocked(h *host.Host) bool {
	if _, ok := d.members[h]; !ok {
		return false // removed from the cluster while its request was in flight
	}
	return d.active == 0 || (d.active+1)*100 <= d.maxPercent*len(d.members)
}

// HealthCheckPassed is told of every passing active health check of h; the
// cluster calls it from the health checker's OnPass, on the host's checker
// goroutine. With successful_active_health_check_uneject_host (Envoy's
// default) an ejected h returns to service at once: the check says it
// works again, and waiting out an ejection time that may have grown to
// minutes would only keep a good host idle. As in Envoy, the ejection
// multiplier is kept, so a host that fails again is ejected for longer.
// OnChange is called when h came back.
func (d *Detector) HealthCheckPassed(h *host.Host) {
	if d == nil || h == nil || !d.unejectOnPass || h.Flags()&host.FailedOutlierCheck == 0 {
		return
	}
	d.mu.Lock()
	if _, ok := d.members[h]; !ok || d.closed || !h.SetFlag(host.FailedOutlierCheck, false) {
		d.mu.Unlock()
		return
	}
	h.Outlier.Consecutive5xx.Store(0)
	d.setActiveLocked(d.active - 1)
	d.mu.Unlock()

	d.log.Info().Str("address", h.Address).Msg("host returned to service: it passed an active health check")
	d.returned(h, d.clock())
	if d.onChange != nil {
		d.onChange()
	}
}

// Set makes hosts the cluster's hosts. The cluster calls it on every
// membership change, before publishing the new balancer. Hosts already
// ejected (by an earlier detector, before a reload) are adopted: they count
// toward max_ejection_percent and return when their time is up. A host
// removed from the set keeps its state, but is no longer ejected or
// returned by this detector.
func (d *Detector) Set(hosts []*host.Host) {
	if d == nil {
		return
	}
	members := make(map[*host.Host]struct{}, len(hosts))
	active := 0
	for _, h := range hosts {
		if _, dup := members[h]; dup {
			continue
		}
		members[h] = struct{}{}
		if h.Flags()&host.FailedOutlierCheck != 0 {
			active++
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.members = members
	d.setActiveLocked(active)
}

// setActiveLocked records how many members are ejected. The gauge is only
// written when the number moves, so a cluster that never ejects leaves it
// untouched, and out of push sinks that skip unused stats.
func (d *Detector) setActiveLocked(n int) {
	if n != d.active {
		d.active = n
		d.stats.EjectionsActive.Set(int64(n))
	}
}

// Start begins the sweeps, one every interval, on a goroutine that ends when
// ctx is done or Close is called. Calls after the first, or after Close,
// do nothing.
func (d *Detector) Start(ctx context.Context) {
	if d == nil {
		return
	}
	d.startOnce.Do(func() { go d.run(ctx) })
}

func (d *Detector) run(ctx context.Context) {
	defer close(d.done)
	t := tick.NewTicker(d.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.stop:
			return
		case <-t.C:
			d.safeSweep()
		}
	}
}

// safeSweep sweeps, and logs rather than crashes the process when a sweep
// panics (OnChange is the cluster's code): a missed sweep only delays
// returns to the next one.
func (d *Detector) safeSweep() {
	defer func() {
		if p := recover(); p != nil {
			d.log.Error().Interface("panic", p).Bytes("stack", debug.Stack()).Msg("outlier sweep panicked")
		}
	}()
	d.sweep()
}

// sweep returns the members whose ejection time has passed and, as Envoy
// does, lowers the multiplier of every member that spent the whole last
// interval in service: a host that recovered for good is eventually ejected
// for base_ejection_time again, not for the long time its worst day earned.
func (d *Detector) sweep() {
	now := d.clock()
	var back []*host.Host
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	active := 0
	for h := range d.members {
		s := &h.Outlier
		if h.Flags()&host.FailedOutlierCheck == 0 {
			if m := s.Multiplier.Load(); m > 0 {
				s.Multiplier.Store(m - 1)
			}
			continue
		}
		if now-s.EjectedAt.Load() >= int64(d.ejectionTime(s.Multiplier.Load())) &&
			h.SetFlag(host.FailedOutlierCheck, false) {
			back = append(back, h)
			continue
		}
		active++
	}
	d.setActiveLocked(active)
	d.mu.Unlock()

	for _, h := range back {
		d.log.Info().Str("address", h.Address).Msg("host returned to service")
		d.returned(h, now)
	}
	if len(back) > 0 && d.onChange != nil {
		d.onChange()
	}
}

// ejectionTime is how long an ejection with multiplier m lasts.
func (d *Detector) ejectionTime(m uint32) time.Duration {
	return min(time.Duration(m)*d.base, d.maxEject)
}

// clock reads the detector's clock as nanoseconds since epoch.
func (d *Detector) clock() int64 { return int64(d.now().Sub(epoch)) }

// returned notes h's return at (the detector's clock) and logs it.
func (d *Detector) returned(h *host.Host, at int64) {
	last := h.Outlier.EjectedAt.Load()
	h.Outlier.ReturnedAt.Store(at)
	d.event(h, false, at, last)
}

// event writes an ejection or a return to the event log; last is the
// host's previous action on the detector's clock (0: none).
func (d *Detector) event(h *host.Host, eject bool, at, last int64) {
	if d.events == nil {
		return
	}
	secs := int64(-1)
	if last != 0 {
		secs = (at - last) / int64(time.Second)
	}
	d.events.Log(&accesslog.OutlierEvent{
		Eject: eject, Timestamp: epoch.Add(time.Duration(at)), ClusterName: d.cluster, Host: h.Address,
		SecsSinceLastAction: secs, NumEjections: h.Outlier.Ejections.Load(),
		// Sightline enforces every ejection it decides; a return is
		// no enforcement (Envoy writes false).
		Enforced: eject,
	})
}

// Close stops the sweeps and waits for the goroutine to exit. It is
// idempotent and safe whether or not Start ran. Ejected hosts stay ejected:
// the detector a reload builds adopts them in Set and returns them on time;
// a cluster rebuilt without outlier detection calls Uneject instead.
func (d *Detector) Close() {
	if d == nil {
		return
	}
	d.closeOnce.Do(func() {
		d.mu.Lock()
		d.closed = true
		d.mu.Unlock()
		close(d.stop)
		d.startOnce.Do(func() { close(d.done) }) // never started: nothing to wait for
		<-d.done
	})
}

// Uneject returns every host in hosts that outlier detection ejected and
// clears their outlier state, for a cluster whose new config turns outlier
// detection off: no detector is left to return them. It reports whether
// any host changed, so that the caller knows to rebuild its balancer.
func Uneject(hosts []*host.Host) bool {
	changed := false
	for _, h := range hosts {
		if h.SetFlag(host.FailedOutlierCheck, false) {
			changed = true
		}
		h.Outlier.Consecutive5xx.Store(0)
		h.Outlier.Multiplier.Store(0)
	}
	return changed
}
