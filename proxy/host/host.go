// Package host defines an upstream host as the data path sees it: an address,
// a zone, a weight, and the live counters balancers read.
//
// A Host outlives any one balancer snapshot: every picker generation points at
// the same Host values, so active-request counts and health survive a change
// of membership.
package host

import (
	"sync"
	"sync/atomic"

	"github.com/sightline-proxy/sightline/stats"
)

// Health flags, as /clusters prints them.
const (
	// FailedActiveHC is set while active health checking says the host is down.
	FailedActiveHC uint32 = 1 << iota
	// FailedOutlierCheck is set while outlier detection has ejected the host.
	FailedOutlierCheck
	// PendingActiveHC is set, with FailedActiveHC, from a host's addition
	// to active health checking until its first check has a result
	// (Envoy's PENDING_ACTIVE_HC): unhealthy because nothing is known yet,
	// not because a check failed.
	PendingActiveHC
)

// Host is one upstream endpoint of a cluster. Its counters are updated with
// atomics on the request path and read by balancers and the admin server.
type Host struct {
	// Address is "ip:port" (or "name:port" before resolution).
	Address string
	// Zone is the host's zone; empty when unknown.
	Zone string
	// Weight is at least 1.
	Weight uint32
	// sampledTotal and sampledError are the low 32 bits of RqTotal and
	// RqError at the status page sampler's last TakeCounts: its baseline,
	// kept here, in padding the struct has anyway, rather than in a map
	// entry per host that ever served.
	sampledTotal uint32

	// Active is the number of requests in flight to the host.
	Active atomic.Int64
	// RqTotal counts requests sent to the host.
	RqTotal atomic.Uint64
	// RqError counts requests that failed (5xx, gRPC error, connect failure).
	RqError atomic.Uint64
	// Latency is the histogram of the host's request durations.
	Latency Latency
	Outlier OutlierState // outlier detection's counters, owned by package outlier

	health       atomic.Uint32
	sampledError uint32

	// NewUpstream makes the host's connection pool, on the first call of
	// Upstream: a host that is never picked costs no pool. The cluster
	// that owns the host sets it (one function for all its hosts) before
	// the host is published to any balancer; nil: the host has no pool.
	NewUpstream func(*Host) Upstream

	up     atomic.Pointer[Upstream]
	upMu   sync.Mutex // serializes making and closing the pool
	closed bool       // CloseUpstream was called (guarded by upMu)

	// ZoneStats are the stats of requests from this proxy's zone to the
	// host's zone (cluster.<c>.zone.<from>.<to>.*), shared by the hosts of
	// one zone. Never nil once the host is published.
	ZoneStats *stats.ZonePair
}

// Upstream is what the forwarder needs of a host's connection pool. It is an
// interface so that the host package stays a leaf that every balancer can
// import.
type Upstream interface {
	// Close releases the pool's connections once their streams finish.
	Close() error
}

// Upstream returns the host's connection pool, made on first use; nil
// when the host has no NewUpstream. After CloseUpstream it returns a
// closed pool, whose requests fail as on any closed pool.
func (h *Host) Upstream() Upstream {
	if u := h.up.Load(); u != nil {
		return *u
	}
	return h.makeUpstream()
}

func (h *Host) makeUpstream() Upstream {
	h.upMu.Lock()
	defer h.upMu.Unlock()
	if u := h.up.Load(); u != nil {
		return *u
	}
	if h.NewUpstream == nil {
		return nil
	}
	u := h.NewUpstream(h)
	if h.closed {
		_ = u.Close()
	}
	h.up.Store(&u)
	return u
}

// MadeUpstream returns the host's pool if it was made, else nil; it never
// makes one.
func (h *Host) MadeUpstream() Upstream {
	if u := h.up.Load(); u != nil {
		return *u
	}
	return nil
}

// DropUpstream forgets u if it is the host's pool, so that the next
// Upstream makes a new one, and reports whether it was. It is for pools
// that have been idle a while (see cluster.ReleaseIdlePools), as Envoy
// deletes a connection pool once it is idle: a host that served a burst
// and went quiet gives its pool's memory back. The caller closes u, once
// a call that loaded it just before can no longer be starting on it.
func (h *Host) DropUpstream(u Upstream) bool {
	h.upMu.Lock()
	defer h.upMu.Unlock()
	if cur := h.up.Load(); h.closed || cur == nil || *cur != u {
		return false
	}
	h.up.Store(nil)
	return true
}

// CloseUpstream closes the host's pool if it was made (its streams finish
// first); a pool made after it is closed at once.
func (h *Host) CloseUpstream() error {
	h.upMu.Lock()
	defer h.upMu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	if u := h.up.Load(); u != nil {
		return (*u).Close()
	}
	return nil
}

// TakeLatency moves the latencies recorded since the last call into dst,
// and reports whether there were any (see Latency). Only one goroutine
// may call it: the admin server's status page sampler. It relies on every
// Record being made within an attempt, before Active counts it ended.
func (h *Host) TakeLatency(dst *[LatencyBuckets]uint64) bool {
	return h.Latency.take(dst, func() bool { return h.Active.Load() == 0 })
}

// TakeCounts returns the requests and the failed requests since its last
// call (or the host's creation). Only one goroutine may call it: the admin
// server's status page sampler. Fewer than 2^32 requests between two
// calls are counted exactly.
func (h *Host) TakeCounts() (total, errors uint32) {
	t, e := uint32(h.RqTotal.Load()), uint32(h.RqError.Load())
	total, errors = t-h.sampledTotal, e-h.sampledError
	h.sampledTotal, h.sampledError = t, e
	return total, errors
}

// Healthy reports whether no health flag is set.
func (h *Host) Healthy() bool { return h.health.Load() == 0 }

// Flags returns the health flags.
func (h *Host) Flags() uint32 { return h.health.Load() }

// SetFlag sets or clears one health flag and reports whether it changed.
func (h *Host) SetFlag(flag uint32, on bool) bool {
	if on {
		return h.SetFlags(0, flag)
	}
	return h.SetFlags(flag, 0)
}

// SetFlags clears the flags of off and sets those of on in one step, so
// that no reader sees one change without the other, and reports whether
// any flag changed.
func (h *Host) SetFlags(off, on uint32) bool {
	for {
		old := h.health.Load()
		nw := old&^off | on
		if nw == old {
			return false
		}
		if h.health.CompareAndSwap(old, nw) {
			return true
		}
	}
}

// FlagString renders the flags as Envoy's /clusters does ("healthy" when none).
func FlagString(flags uint32) string {
	if flags == 0 {
		return "healthy"
	}
	s := ""
	if flags&FailedActiveHC != 0 {
		s += "/failed_active_hc"
	}
	if flags&FailedOutlierCheck != 0 {
		s += "/failed_outlier_check"
	}
	if flags&PendingActiveHC != 0 {
		s += "/pending_active_hc"
	}
	return s
}
