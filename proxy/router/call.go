package router

import (
	"time"

	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/flags"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/retry"
	"github.com/sightline-proxy/sightline/stats"
)

// End says how an attempt, or the call, ended.
type End uint8

// The ways an attempt or a call ends.
const (
	// EndResponse: the upstream answered (Outcome.Status is set), or the
	// call ended before any attempt with a Reply.
	EndResponse End = iota
	// EndConnectFailure: no connection to the host could be made.
	EndConnectFailure
	// EndReset: the upstream reset the stream or lost the connection
	// before its response headers.
	EndReset
	// EndOverflow: a circuit breaker refused the request (UO).
	EndOverflow
	// EndNoHealthy: the cluster had no host to pick (UH).
	EndNoHealthy
	// EndPerTryTimeout: the attempt ran out its per_try_timeout.
	EndPerTryTimeout
	// EndTimeout: the call's deadline passed (route timeout or
	// grpc-timeout).
	EndTimeout
	// EndCancelled: the client went away (DC).
	EndCancelled
)

// Outcome is how an attempt, or the whole call, ended.
type Outcome struct {
	// Status is the upstream's response status; 0 when it sent none.
	Status int
	// GRPCStatus is the grpc-status the client got (from the upstream's
	// headers or trailers, or the proxy's own); -1 when none.
	GRPCStatus int
	End        End
	// Elapsed runs from sending the attempt to its end.
	Elapsed time.Duration
	// RxReset: the upstream reset the stream after its response began.
	RxReset bool
	// TxReset: the proxy reset the upstream stream (the client went
	// away, the deadline passed) while it was open.
	TxReset bool
}

// code is the status charged to the cluster for o: the upstream's own,
// or what the proxy answered in its place (Envoy charges 503 for every
// way of getting no response and 504 for timeouts); 0 when nothing is
// charged (the client went away first).
func (o *Outcome) code() int {
	if o.Status > 0 {
		return o.Status
	}
	switch o.End {
	case EndConnectFailure, EndReset, EndOverflow, EndNoHealthy:
		return 503
	case EndPerTryTimeout, EndTimeout:
		return 504
	}
	return 0
}

// retryOutcome is o as the retry policy judges it.
func (o *Outcome) retryOutcome(refused bool) retry.Outcome {
	r := retry.Outcome{HTTPStatus: o.Status, GRPCStatus: o.GRPCStatus}
	switch o.End {
	case EndConnectFailure:
		r.ConnectFailure = true
	case EndReset:
		r.Reset, r.RefusedStream = true, refused
	case EndPerTryTimeout:
		r.PerTryTimeout = true
	}
	return r
}

// Call is one downstream call as its cluster sees it: the plan, the
// breaker slots it holds and its attempts. Each codec keeps one per call
// (by value: its methods allocate nothing) and calls, in order:
// TryRequest, Pick and Begin for the first attempt; ShouldRetry and, when it
// says so, Retried, Pick and Begin for each retry; Finish once at the end.
// The calls for one call must be serialized; they may come from
// different goroutines.
type Call struct {
	Plan
	GRPC bool
	// Path is the request path without the query (for gRPC,
	// /package.Service/Method).
	Path string
	// Host is the host of the current (or last) attempt; nil before the
	// first pick.
	Host *host.Host
	// Tries counts the attempts begun.
	Tries int
	// Flags are the response flags the router decided (URX, UO) in Run;
	// a codec that calls ShouldRetry itself gets them from it.
	Flags flags.Flags
	// RequestMessages and ResponseMessages are the gRPC messages the
	// client sent and got (grpcproto.MessageCounter), set by the codec
	// before Finish; counted once per call, however many attempts.
	RequestMessages, ResponseMessages int64
	// Trace is the call's trace id when it is sampled, set by the codec
	// before Finish: the latency histograms keep it as an exemplar.
	Trace stats.TraceID

	open      bool // Begin not yet matched by an end
	rqSlot    bool // a max_requests slot is held
	retrySlot bool // a max_retries slot is held by the current attempt
	tried     []*host.Host
	triedBuf  [4]*host.Host
}

// Reset readies c for a new call, keeping nothing of the last one.
func (c *Call) Reset() {
	*c = Call{}
}

// TryRequest claims the cluster's max_requests slot for the call; false
// means the breaker is open and the call is answered ReplyOverflow.
func (c *Call) TryRequest() bool {
	if !c.Cluster.Breakers.TryRequest() {
		return false
	}
	c.rqSlot = true
	return true
}

// Pick chooses the host of the next attempt: for a retry, one the call
// has not tried when the cluster has one (Envoy's previous_hosts
// predicate). nil means no healthy host: ReplyNoHealthyUpstream.
func (c *Call) Pick() *host.Host {
	if c.Tries == 0 {
		return c.Cluster.Pick(&c.Balance)
	}
	return c.Cluster.PickRetry(&c.Balance, c.tried)
}

// Begin counts an attempt sent to h.
func (c *Call) Begin(h *host.Host) {
	c.Host = h
	c.Tries++
	c.open = true
	c.Cluster.Begin(h)
}

// ShouldRetry decides whether the attempt that ended as o is tried again. A
// retry needs a retriable outcome under the policy, a request the codec
// can replay, a retry left (else URX, counted in
// upstream_rq_retry_limit_exceeded), time before the deadline, and a
// max_retries slot (else UO). The attempt's own retry slot is given back
// before the next is taken, so a call never holds two. refused is an
// upstream REFUSED_STREAM. When ShouldRetry returns true the codec calls
// Retried; otherwise o stands and the returned flag (0, URX or UO) is
// the call's.
func (c *Call) ShouldRetry(o *Outcome, refused, replayable bool, deadline time.Time) (bool, flags.Flags) {
	pol := &c.Plan.Retry
	if pol.On == 0 || !pol.Retriable(o.retryOutcome(refused)) {
		return false, 0
	}
	if !replayable {
		return false, 0
	}
	up := c.Cluster.Stats.Upstream()
	if c.Tries > pol.NumRetries {
		up.RqRetryLimitExceeded.Inc(1)
		return false, flags.UpstreamRetryLimit
	}
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		return false, 0
	}
	c.releaseRetry()
	if !c.Cluster.Breakers.TryRetry() {
		return false, flags.UpstreamOverflow
	}
	c.retrySlot = true
	return true, 0
}

// Retried settles the attempt ShouldRetry chose to retry: the host's counters
// and outlier detection; a response in retry.upstream_rq_<code>, a
// per-try timeout in upstream_rq_per_try_timeout, a reset in
// upstream_rq_rx_reset; and upstream_rq_retry for the retry to come. The
// host is remembered so the retry avoids it.
func (c *Call) Retried(o *Outcome) {
	c.endAttempt(o)
	up := c.Cluster.Stats.Upstream()
	if o.Status > 0 {
		up.Retried.RqCompleted(o.Status)
	}
	c.countEnd(o)
	if c.tried == nil {
		c.tried = c.triedBuf[:0]
	}
	c.tried = append(c.tried, c.Host)
	up.RqRetry.Inc(1)
}

// BackoffWait is how long to wait before the retry ShouldRetry allowed, cut to
// the time left before the deadline.
func (c *Call) BackoffWait(deadline time.Time) time.Duration {
	d := c.Plan.Retry.Backoff(c.Tries, nil)
	if !deadline.IsZero() {
		if left := time.Until(deadline); left < d {
			d = max(left, 0)
		}
	}
	return d
}

// Finish ends the call, once: it settles the open attempt, gives back the
// breaker slots, and charges the outcome to the cluster as Envoy counts
// it: the final response (or the 503/504 the proxy answered in the
// upstream's place) in upstream_rq_<code>, <N>xx and upstream_rq_completed,
// its zone pair and its gRPC method, with upstream_rq_time only when the
// upstream answered. A call the client abandoned is charged no code: it
// counts in upstream_rq_cancelled. A call with no cluster (no route)
// charges nothing.
func (c *Call) Finish(o *Outcome) {
	cl := c.Cluster
	if cl == nil {
		return
	}
	if c.open {
		c.endAttempt(o)
	}
	c.releaseRetry()
	if c.rqSlot {
		c.rqSlot = false
		cl.Breakers.DoneRequest()
	}
	up := cl.Stats.Upstream()
	c.countEnd(o)
	if o.End == EndCancelled {
		up.RqCancelled.Inc(1)
	}
	if o.End == EndNoHealthy {
		up.CxNoneHealthy.Inc(1)
	}
	var m *stats.GRPCMethod // looked up once per call
	if c.GRPC {
		m = cl.Stats.GRPC(c.Path)
		if c.RequestMessages != 0 {
			m.RequestMessages.Inc(c.RequestMessages)
		}
		if c.ResponseMessages != 0 {
			m.ResponseMessages.Inc(c.ResponseMessages)
		}
	}
	code := o.code()
	if code == 0 {
		return
	}
	up.RqCompleted(code)
	up.RqFinished.Inc(1)
	responded := o.Status > 0
	if responded {
		up.RqTime.RecordTraced(o.Elapsed, c.Trace)
	}
	if h := c.Host; h != nil {
		zu := h.ZoneStats.Upstream()
		zu.RqCompleted(code)
		if responded {
			zu.RqTime.RecordTraced(o.Elapsed, c.Trace)
		}
	}
	if m != nil {
		status := o.GRPCStatus
		if status < 0 {
			status = HTTPToGRPC(code)
		}
		m.Completed(status)
		if responded {
			m.RqTime.RecordTraced(o.Elapsed, c.Trace)
		}
	}
	if c.Tries > 1 && responded && o.End != EndCancelled && !c.Plan.Retry.Retriable(o.retryOutcome(false)) {
		up.RqRetrySuccess.Inc(1)
	}
}

// countEnd counts how an attempt ended without a response: timeouts and
// resets, each way.
func (c *Call) countEnd(o *Outcome) {
	up := c.Cluster.Stats.Upstream()
	switch o.End {
	case EndPerTryTimeout:
		up.RqPerTryTimeout.Inc(1)
	case EndTimeout:
		up.RqTimeout.Inc(1)
	case EndReset:
		up.RqRxReset.Inc(1)
	}
	if o.RxReset {
		up.RqRxReset.Inc(1)
	}
	if o.TxReset {
		up.RqTxReset.Inc(1)
	}
}

// endAttempt settles the open attempt on its host.
func (c *Call) endAttempt(o *Outcome) {
	c.open = false
	c.Cluster.EndAttempt(c.Host, &cluster.Attempt{
		Status:         o.Status,
		GRPCStatus:     o.GRPCStatus,
		Elapsed:        o.Elapsed,
		ConnectFailure: o.End == EndConnectFailure,
		Reset:          o.End == EndReset || o.RxReset,
		Timeout:        o.End == EndTimeout || o.End == EndPerTryTimeout,
		Cancelled:      o.End == EndCancelled,
	})
}

func (c *Call) releaseRetry() {
	if c.retrySlot {
		c.retrySlot = false
		c.Cluster.Breakers.DoneRetry()
	}
}

// Open reports whether an attempt is begun and not yet settled.
func (c *Call) Open() bool { return c.open }

// HTTPToGRPC maps an HTTP status to the gRPC status a client sees when a
// response carries none (gRPC's doc/http-grpc-status-mapping.md).
func HTTPToGRPC(status int) int {
	switch status {
	case 200:
		return 2 // UNKNOWN: a 200 without grpc-status is a broken response
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}
