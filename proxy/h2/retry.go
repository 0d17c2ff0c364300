package h2

import (
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sightline-proxy/sightline/proxy/router"
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
// to its cluster, fire and forget, if the mirror cluster's max_requests
// has room (router.TryMirror): the slot is claimed before anything is
// copied or a goroutine started, so a refused copy costs a counter.
func (cl *call) keepBody(p []byte, end bool) {
	cl.rmu.Lock()
	if !cl.bodyTooBig {
		if len(cl.body)+len(p) > maxRetryBody {
			cl.bodyTooBig, cl.body = true, nil
		} else {
			cl.body = append(cl.body, p...)
		}
	}
	var m *router.Mirror
	if end {
		if cl.rc.Mirror != nil && !cl.bodyTooBig && !cl.bodyDone && router.TryMirror(cl.rc.Mirror, cl.grpc, cl.path) {
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
		go m.Send()
	}
	if waiting {
		if tooBig {
			cl.abandonRetry()
		} else {
			cl.scheduleRetry()
		}
	}
}

// canRetry asks the router whether an attempt that ended as o is retried
// (it takes the max_retries slot when it is), and records the flag it
// gives when it is not (URX, UO). The bridge retries only before it has
// forwarded anything; the engine keeps the body within maxRetryBody.
func (cl *call) canRetry(o *router.Outcome, refused bool) bool {
	if cl.rc.Retry.On == 0 {
		return false
	}
	cl.rmu.Lock()
	replayable := cl.keep && !cl.bodyTooBig
	cl.rmu.Unlock()
	ok, f := cl.rc.ShouldRetry(o, refused, replayable, cl.deadline)
	if f != 0 {
		cl.addFlag(f)
	}
	return ok
}

// retryResponseLocked is called by the upstream reader, holding the
// upstream connection's lock, with a response's status and, for a
// trailers-only response, its grpc-status (-1 if none). When the response
// is to be retried, the upstream stream is reset and true is returned:
// the response is never forwarded, and afterDetach starts the retry.
func (cl *call) retryResponseLocked(cc *clientConn, h *half, status string, fields []hpack.HeaderField, end bool) bool {
	if cl.rc.Retry.On == 0 {
		return false
	}
	code := statusCode(status)
	gs := -1
	if cl.grpc && end {
		if v, ok := getFold(fields, "grpc-status"); ok {
			gs = statusCode(v)
		}
	}
	o := router.Outcome{Status: code, GRPCStatus: gs, Elapsed: time.Since(cl.sent)}
	if !cl.canRetry(&o, false) {
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
// the attempt is to be retried it settles the attempt, schedules the
// retry and returns true; the half then stays counted in the call.
func (cl *call) retryAfterDetach(h *half) bool {
	why := cl.retryWhy.Swap(0)
	o := router.Outcome{GRPCStatus: -1, Elapsed: time.Since(cl.sent)}
	switch {
	case why == retryResponse:
		o.Status, o.GRPCStatus = cl.retryStatus, cl.retryGRPC
	case why == retryPerTry:
		o.End = router.EndPerTryTimeout
	case h.failFlag != 0 && cl.upStatus.Load() != 0:
		// The response has begun: its bytes are the client's already,
		// and no retry may follow them.
		return false
	case h.failFlag != 0:
		o.End = router.EndReset
		if h.failFlag == flagUpstreamConnectFailure {
			o.End = router.EndConnectFailure
		}
		if !cl.canRetry(&o, h.failCode == http2.ErrCodeRefusedStream) {
			return false
		}
	default:
		return false
	}
	cl.endAttempt(&o, h.failFlag)
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
	if d := cl.rc.BackoffWait(cl.deadline); d > 0 {
		time.AfterFunc(d, cl.startRetry)
	} else {
		go cl.startRetry()
	}
}

// abandonRetry gives up a retry that can no longer be sent (the request
// grew past what is kept): the client gets UNAVAILABLE or 503.
func (cl *call) abandonRetry() {
	cl.upstreamReset(http2.ErrCodeCancel, flagUpstreamRemoteReset, router.ReplyRemoteReset.Message)
	cl.halfDone(&cl.up)
}

// endAttempt settles a failed attempt that is being retried: the router
// counts it (host, outlier detection, retried code) and its span ends.
func (cl *call) endAttempt(o *router.Outcome, f flag) {
	cl.rc.Retried(o)
	cl.endAttemptSpan(o, f)
}

// endAttemptSpan ends the CLIENT span of an attempt that is retried.
func (cl *call) endAttemptSpan(o *router.Outcome, f flag) {
	var err error
	switch o.End {
	case router.EndConnectFailure:
		err = endedErrors[endedConnectFailure-1]
	case router.EndReset:
		err = endedErrors[endedReset-1]
	case router.EndPerTryTimeout:
		err = endedErrors[endedTimeout-1]
	}
	cl.endClientSpan(o.Status, o.GRPCStatus, f, err)
}

// startRetry sends the kept request to another host, after the back-off.
func (cl *call) startRetry() {
	defer cl.release()
	h := &cl.up
	c := cl.down.lock()
	gone := cl.respEnded || !cl.down.attached
	c.unlock()
	if gone || !cl.deadline.IsZero() && !time.Now().Before(cl.deadline) {
		// Answered (the deadline) or gone while we waited: no host is
		// picked or charged for it.
		cl.halfDone(h)
		return
	}
	// Take the half off its old connection: from now on lock() waits
	// until it is bound again.
	if old := h.lock(); old != nil {
		h.cn.Store(&transit)
		old.mu.Unlock()
	}
	hst := cl.rc.Pick()
	var u *Upstream
	if hst != nil {
		u, _ = hst.Upstream().(*Upstream)
	}
	if u == nil {
		h.cn.Store(nil)
		cl.upstreamReset(http2.ErrCodeRefusedStream, flagNoHealthyUpstream, router.ReplyNoHealthyUpstream.Message)
		cl.halfDone(h)
		return
	}
	cl.rc.Begin(hst)
	cl.upStatus.Store(0)
	cl.grpcStatus.Store(-1)
	cl.endedBy.Store(0)
	cl.upTime.Store(0)
	cl.startAttempt()

	h.id, h.listed, h.next, h.nextDetached = 0, listNone, nil, nil
	h.attached, h.active, h.moving, h.inFlight = false, false, false, 0
	h.sendDone, h.recvDone, h.rstDone, h.peerReset, h.reset = false, false, false, false, false
	h.wroteHeaders, h.wroteData = false, false
	h.inUnsent.Store(0)
	h.recvLen, h.contentLen, h.gotHeaders = 0, -1, false
	if cl.grpc {
		cl.setAttemptTimeout() // the time this attempt has
	}
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
			cl.upstreamReset(http2.ErrCodeRefusedStream, flagUpstreamOverflow, router.ReplyOverflow.Message)
		} else {
			cl.upstreamReset(http2.ErrCodeRefusedStream, flagUpstreamConnectFailure, router.ReplyConnectFailure.Message)
		}
		cl.halfDone(h)
		return
	}
}

// armPerTry starts the per-try timeout of the attempt just dispatched.
func (cl *call) armPerTry() {
	d := cl.rc.Retry.PerTryTimeout
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
	o := router.Outcome{GRPCStatus: -1, End: router.EndPerTryTimeout}
	if cl.canRetry(&o, false) {
		cl.retryWhy.Store(retryPerTry)
		cl.txReset.Store(false)
		c.resetLocked(h, http2.ErrCodeCancel, true)
		c.unlock()
		return
	}
	c.unlock()
	cl.endedBy.CompareAndSwap(0, endedPerTryTimeout)
	cl.expire()
}
