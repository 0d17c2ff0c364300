package h2

import (
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/retry"
)

// maxRetryBody bounds the request body kept for retries and mirroring, as
// Envoy's per-request buffer limit does: a larger request is still
// proxied, but neither retried nor mirrored.
const maxRetryBody = 64 << 10

// Why an attempt was abandoned for a retry (call.retryWhy).
const (
	retryResponse   = 1 + iota // a retriable response (status in retryStatus)
	retryPerTry                // the per-try timeout fired
	retryConnection            // connect failure or reset: the half's failFlag
)

// keepBody copies request bytes for a retry or a mirror. It runs on the
// downstream reader. Once the request is whole, a mirrored one is copied
// to its cluster, fire and forget.
func (cl *call) keepBody(p []byte, end bool) {
	cl.rmu.Lock()
	if !cl.bodyTooBig {
		if len(cl.body)+len(p) > maxRetryBody {
			cl.bodyTooBig, cl.body = true, nil
		} else {
			cl.body = append(cl.body, p...)
		}
	}
	var m *mirrorRequest
	if end {
		if cl.mirror != nil && !cl.bodyTooBig {
			m = cl.newMirrorRequest()
		}
		cl.bodyDone = true
	}
	waiting := cl.waitBody && (cl.bodyDone || cl.bodyTooBig)
	if waiting {
		cl.waitBody = false
	}
	tooBig := cl.bodyTooBig
	cl.rmu.Unlock()
	if m != nil {
		go m.send(cl.breq)
	}
	if waiting {
		if tooBig {
			cl.abandonRetry()
		} else {
			cl.scheduleRetry()
		}
	}
}

// canRetry decides whether an attempt that ended as o is retried, taking a
// max_retries circuit-breaker slot when it is. A retriable outcome with no
// retry left marks the call URX.
func (cl *call) canRetry(o retry.Outcome) bool {
	if cl.pol.On == 0 || cl.br != nil || !cl.pol.Retriable(o) {
		return false
	}
	if cl.tries > cl.pol.NumRetries {
		cl.addFlag(flagUpstreamRetryLimit)
		return false
	}
	if !cl.deadline.IsZero() && !time.Now().Before(cl.deadline) {
		return false
	}
	cl.rmu.Lock()
	tooBig := cl.bodyTooBig
	cl.rmu.Unlock()
	if tooBig {
		return false
	}
	if !cl.cls.Breakers.TryRetry() {
		return false
	}
	return true
}

// retryResponseLocked is called by the upstream reader, holding the
// upstream connection's lock, with a response's status and, for a
// trailers-only response, its grpc-status (-1 if none). When the response
// is to be retried, the upstream stream is reset and true is returned:
// the response is never forwarded, and afterDetach starts the retry.
func (cl *call) retryResponseLocked(cc *clientConn, h *half, status string, fields []hpack.HeaderField, end bool) bool {
	if cl.pol.On == 0 {
		return false
	}
	code := statusCode(status)
	gs := -1
	if cl.grpc && end {
		if v, ok := getFold(fields, "grpc-status"); ok {
			gs = statusCode(v)
		}
	}
	o := retry.Outcome{HTTPStatus: code, GRPCStatus: gs}
	if !cl.canRetry(o) {
		return false
	}
	cl.retryStatus, cl.retryGRPC = code, gs
	cl.retryWhy.Store(retryResponse)
	if end {
		// The stream is closed both ways once the request is sent: no
		// RST_STREAM may go on it then (RFC 9113 §5.1).
		h.recvDone = true
	}
	cc.resetLocked(h, http2.ErrCodeCancel, true)
	return true
}

// retryAfterDetach runs when the upstream half has left its connection. If
// the attempt is to be retried it schedules the retry and returns true;
// the half then stays counted in the call.
func (cl *call) retryAfterDetach(h *half) bool {
	why := cl.retryWhy.Swap(0)
	var o retry.Outcome
	var attempt cluster.Outcome
	switch {
	case why == retryResponse:
		attempt = cluster.Outcome{Status: cl.retryStatus, GRPCStatus: cl.retryGRPC}
	case why == retryPerTry:
		cl.cls.Stats.Upstream().RqPerTryTimeout.Inc(1)
		attempt = cluster.Outcome{Status: 504, GRPCStatus: grpcDeadlineExceeded, Timeout: true}
	case h.failFlag != 0:
		o.ConnectFailure = h.failFlag == flagUpstreamConnectFailure
		o.Reset = !o.ConnectFailure
		o.RefusedStream = h.failCode == http2.ErrCodeRefusedStream
		if !cl.canRetry(o) {
			return false
		}
		attempt = cluster.Outcome{Status: 503, GRPCStatus: grpcUnavailable, ConnectFailure: o.ConnectFailure, Reset: o.Reset}
	default:
		return false
	}
	cl.endAttempt(&attempt, h.failFlag)
	up := cl.cls.Stats.Upstream()
	up.RqRetry.Inc(1)
	h.failFlag, h.failMsg, h.failCode = 0, "", 0
	cl.rmu.Lock()
	switch {
	case cl.bodyTooBig:
		cl.rmu.Unlock()
		cl.abandonRetry()
	case !cl.bodyDone:
		// The client is still sending: the retry goes once the whole
		// request is kept (keepBody).
		cl.waitBody = true
		cl.rmu.Unlock()
	default:
		cl.rmu.Unlock()
		cl.scheduleRetry()
	}
	return true
}

// scheduleRetry starts the next attempt after the back-off.
func (cl *call) scheduleRetry() {
	cl.refs.Add(1)
	if d := cl.pol.Backoff(cl.tries, nil); d > 0 {
		time.AfterFunc(d, cl.startRetry)
	} else {
		go cl.startRetry()
	}
}

// abandonRetry gives up a retry that can no longer be sent (the request
// grew past what is kept): the client gets UNAVAILABLE or 503.
func (cl *call) abandonRetry() {
	cl.cls.Breakers.DoneRetry()
	cl.upstreamReset(http2.ErrCodeCancel, flagUpstreamRemoteReset, msgRemoteReset)
	cl.halfDone(&cl.up)
}

// endAttempt settles a failed attempt that is being retried: the host's
// and cluster's stats, the outlier detector, the attempt's span, and the
// retry breaker slot it held.
func (cl *call) endAttempt(o *cluster.Outcome, f flag) {
	o.GRPC, o.Path = cl.grpc, cl.path
	if o.GRPCStatus == 0 && !cl.grpc {
		o.GRPCStatus = -1
	}
	o.Elapsed = time.Since(cl.sent)
	cl.cls.End(cl.hst, o)
	cl.attemptOpen = false
	var err error
	switch {
	case o.ConnectFailure:
		err = endedErrors[endedConnectFailure-1]
	case o.Reset:
		err = endedErrors[endedReset-1]
	case o.Timeout:
		err = endedErrors[endedTimeout-1]
	}
	cl.endClientSpan(o.Status, o.GRPCStatus, f, err)
	if cl.tries > 1 {
		cl.cls.Breakers.DoneRetry() // this attempt was a retry
	}
}

// startRetry sends the kept request to another host, after the back-off.
func (cl *call) startRetry() {
	defer cl.release()
	h := &cl.up
	c := cl.down.lock()
	gone := cl.respEnded || !cl.down.attached
	c.unlock()
	if gone || !cl.deadline.IsZero() && !time.Now().Before(cl.deadline) {
		// Answered (the deadline) or gone while we waited.
		cl.cls.Breakers.DoneRetry()
		cl.halfDone(h)
		return
	}
	// Take the half off its old connection: from now on lock() waits
	// until it is bound again.
	if old := h.lock(); old != nil {
		h.cn.Store(&transit)
		old.mu.Unlock()
	}
	prev := cl.hst
	hst := cl.pickOther(prev)
	var u *Upstream
	if hst != nil {
		u, _ = hst.Upstream.(*Upstream)
	}
	if u == nil {
		h.cn.Store(nil)
		cl.cls.Breakers.DoneRetry()
		cl.upstreamReset(http2.ErrCodeRefusedStream, flagNoHealthyUpstream, msgNoHealthyUpstream)
		cl.halfDone(h)
		return
	}
	cl.hst = hst
	cl.cls.Begin(hst)
	cl.attemptOpen = true
	cl.tries++
	cl.upStatus.Store(0)
	cl.grpcStatus.Store(-1)
	cl.endedBy.Store(0)
	cl.upTime.Store(0)
	cl.txBytes.Store(0)
	cl.startAttempt()

	h.id, h.listed, h.next, h.nextDetached = 0, listNone, nil, nil
	h.attached, h.active, h.moving, h.inFlight = false, false, false, 0
	h.sendDone, h.recvDone, h.rstDone, h.peerReset, h.reset = false, false, false, false, false
	h.wroteHeaders, h.wroteData = false, false
	h.inUnsent.Store(0)
	h.recvLen, h.contentLen, h.gotHeaders = 0, -1, false
	h.hdrs, h.hdrsPending = cl.reqFields, true
	h.head, h.tail, h.queued = nil, nil, 0
	cl.rmu.Lock()
	for b := cl.body; len(b) > 0; {
		d := getBuf(min(len(b), maxFrameSize))
		d.end = copy(d.b, b)
		d.local = true // already credited to the client when first sent
		b = b[d.end:]
		if h.tail == nil {
			h.head = d
		} else {
			h.tail.next = d
		}
		h.tail = d
		h.queued += d.end
	}
	cl.rmu.Unlock()
	if cl.hadTrailers {
		h.trailers, h.trailersPending = cl.reqTrailers, true
	}
	h.endPending = true
	cl.pool = u.H2
	cl.sent = time.Now()
	cl.armPerTry() // before dispatch: the attempt may end at once
	if r := cl.pool.dispatch(h); r != dispatched {
		h.cn.Store(nil)
		freeChain(h.head)
		h.head, h.tail, h.queued = nil, nil, 0
		if r == pendingOverflow {
			cl.upstreamReset(http2.ErrCodeRefusedStream, flagUpstreamOverflow, msgOverflow)
		} else {
			cl.upstreamReset(http2.ErrCodeRefusedStream, flagUpstreamConnectFailure, msgConnectFailure)
		}
		cl.halfDone(h)
		return
	}
}

// pickOther picks the host of a retry: one the call has not tried when
// the cluster has one.
func (cl *call) pickOther(prev *host.Host) *host.Host {
	if cl.ntried < len(cl.tried) {
		cl.tried[cl.ntried] = prev
		cl.ntried++
	}
	return cl.cls.PickRetry(&cl.breq, cl.tried[:cl.ntried])
}

// armPerTry starts the per-try timeout of the attempt just dispatched.
func (cl *call) armPerTry() {
	d := cl.pol.PerTryTimeout
	if d <= 0 || cl.br != nil {
		return
	}
	if t := cl.tryTimer; t != nil && t.Stop() {
		cl.release() // the previous attempt's
	}
	gen := cl.tryGen.Add(1)
	cl.refs.Add(1)
	cl.tryTimer = time.AfterFunc(d, func() { cl.onPerTryTimeout(gen) })
}

// onPerTryTimeout abandons an attempt that got no response headers within
// per_try_timeout: retried when the policy allows (every condition that
// covers timeouts does), otherwise the call times out as a whole (UT).
func (cl *call) onPerTryTimeout(gen uint32) {
	defer cl.release()
	if cl.tryGen.Load() != gen || cl.halves.Load() == 0 {
		return
	}
	h := &cl.up
	c := h.lock()
	if c == nil {
		return
	}
	if !h.attached || h.gotHeaders || cl.tryGen.Load() != gen {
		c.unlock()
		return
	}
	if cl.canRetry(retry.Outcome{PerTryTimeout: true}) {
		cl.retryWhy.Store(retryPerTry)
		c.resetLocked(h, http2.ErrCodeCancel, true)
		c.unlock()
		return
	}
	c.unlock()
	cl.cls.Stats.Upstream().RqPerTryTimeout.Inc(1)
	cl.expire()
}
