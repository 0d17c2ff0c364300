// Package host defines an upstream host as the data path sees it: an address,
// a zone, a weight, and the live counters balancers read.
//
// A Host outlives any one balancer snapshot: every picker generation points at
// the same Host values, so active-request counts and health survive a change
// of membership.
package host

import (
	"sync/atomic"

	"github.com/sightline-proxy/sightline/stats"
)

// Health flags, as /clusters prints them.
const (
	// FailedActiveHC is set while active health checking says the host is down.
	FailedActiveHC uint32 = 1 << iota
	// FailedOutlierCheck is set while outlier detection has ejected the host.
	FailedOutlierCheck
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

	// Active is the number of requests in flight to the host.
	Active atomic.Int64
	// RqTotal counts requests sent to the host.
	RqTotal atomic.Uint64
	// RqError counts requests that failed (5xx, gRPC error, connect failure).
	RqError atomic.Uint64
	// Latency is the histogram of the host's request durations.
	Latency Latency
	Outlier OutlierState // outlier detection's counters, owned by package outlier

	health atomic.Uint32

	// Upstream is the host's connection pool, set by the cluster that owns
	// the host before the host is published to any balancer.
	Upstream Upstream

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

// Healthy reports whether no health flag is set.
func (h *Host) Healthy() bool { return h.health.Load() == 0 }

// Flags returns the health flags.
func (h *Host) Flags() uint32 { return h.health.Load() }

// SetFlag sets or clears one health flag and reports whether it changed.
func (h *Host) SetFlag(flag uint32, on bool) bool {
	for {
		old := h.health.Load()
		nw := old &^ flag
		if on {
			nw = old | flag
		}
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
	return s
}
