package health

import "github.com/sightline-proxy/sightline/accesslog"

// result is the outcome of one check: a pass, or a failure of one of
// Envoy's failure types (accesslog.FailureActive, FailureNetwork,
// FailureNetworkTimeout).
type result struct {
	pass    bool
	failure string // empty on a pass
	// retriable marks an ACTIVE failure that counts toward
	// unhealthy_threshold instead of ejecting at once: an HTTP status
	// listed in retriable_statuses (Envoy's retriable failure).
	retriable bool
}

// immediate reports whether r ejects a healthy host at once, whatever
// unhealthy_threshold says: the host answered, and answered that it is
// not healthy (an HTTP status neither expected nor retriable, a gRPC
// NOT_SERVING), as Envoy's non-retriable ACTIVE failures do. A connection
// that failed or timed out may be the network's fault, and counts.
func (r result) immediate() bool { return r.failure == accesslog.FailureActive && !r.retriable }

// transition is what one result did to a host: whether its health flipped,
// and which event, if any, goes to the event log.
type transition struct {
	// changed is true when the host's health flipped; healthy is its
	// health after the result either way.
	changed bool
	healthy bool
	// event is the event log line to write; zero for none.
	event       accesslog.HealthEventType
	failureType string
	firstCheck  bool
	// immediate is true on an ejection that did not wait for
	// unhealthy_threshold, the host having answered that it is down.
	immediate bool
}

// state is one host's active health state, as Envoy's
// ActiveHealthCheckSession keeps it. It is a value with no I/O and no
// locking so that every rule of the state machine is tested by a table; the
// Checker owns one per host and serializes access to it.
//
// The rules:
//   - a new host is unhealthy until its first check passes; that one pass
//     makes it healthy at once, whatever healthy_threshold says, so that a
//     proxy starting up does not wait thresholds × interval before serving;
//   - a failed first check is logged (health_check_failure_event, first_check
//     true) and leaves the host unhealthy;
//   - a healthy host is ejected after unhealthy_threshold consecutive
//     failures, an unhealthy host added back after healthy_threshold
//     consecutive passes; a result of the other kind resets the count;
//   - but a host that answers that it is unhealthy (result.immediate: an
//     HTTP status neither expected nor retriable, such as 503, or a gRPC
//     NOT_SERVING) is ejected at once, whatever unhealthy_threshold says,
//     as Envoy does: the host said so itself, there is nothing to wait
//     for.
//
// Only those changes (and the failed first check) make events: a host that
// stays down for an hour writes one line, not one per check.
type state struct {
	healthyThreshold   int
	unhealthyThreshold int

	healthy bool
	checked bool // a result has been observed
	passes  int  // consecutive passes while unhealthy
	fails   int  // consecutive failures while healthy
}

// newState returns the state of a host just added: unhealthy, unchecked.
// Thresholds below 1 are taken as 1.
func newState(healthyThreshold, unhealthyThreshold int) state {
	return state{healthyThreshold: max(healthyThreshold, 1), unhealthyThreshold: max(unhealthyThreshold, 1)}
}

// observe applies one result and returns what it did.
func (s *state) observe(r result) transition {
	first := !s.checked
	s.checked = true
	if r.pass {
		s.fails = 0
		if s.healthy {
			return transition{healthy: true}
		}
		s.passes++
		if !first && s.passes < s.healthyThreshold {
			return transition{}
		}
		s.healthy, s.passes = true, 0
		return transition{changed: true, healthy: true, event: accesslog.AddHealthy, firstCheck: first}
	}
	s.passes = 0
	if !s.healthy {
		if first {
			return transition{event: accesslog.HealthCheckFailure, failureType: r.failure, firstCheck: true}
		}
		return transition{}
	}
	s.fails++
	if s.fails < s.unhealthyThreshold && !r.immediate() {
		return transition{healthy: true}
	}
	tr := transition{changed: true, event: accesslog.EjectUnhealthy, failureType: r.failure}
	tr.immediate = s.fails < s.unhealthyThreshold
	s.healthy, s.fails = false, 0
	return tr
}
