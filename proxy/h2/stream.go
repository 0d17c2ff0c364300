package h2

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sightline-proxy/sightline/proxy/breaker"
	"github.com/sightline-proxy/sightline/proxy/grpcproto"
	"github.com/sightline-proxy/sightline/proxy/overload"
	"github.com/sightline-proxy/sightline/proxy/router"
	"github.com/sightline-proxy/sightline/stats"
	"github.com/sightline-proxy/sightline/tracing"
)

// half is one side of a proxied call: the stream on one connection (RFC
// 9113 §5.1), with its own half-closed state and flow-control windows.
// The output queue holds what is to be written to the half's peer: for the
// downstream half the response, for the upstream half the request.
type half struct {
	call *call
	peer *half
	// cn is the connection the half is on: nil before the half is bound,
	// &transit while it moves. A downstream half never moves.
	cn atomic.Pointer[conn]
	id uint32

	// Guarded by the mutex of the half's connection.
	hdrs            []hpack.HeaderField
	trailers        []hpack.HeaderField
	interim         []hpack.HeaderField // an informational response (proxy.go onInterim)
	interimPending  bool
	hdrsPending     bool
	trailersPending bool
	endPending      bool // END_STREAM after what is queued
	head, tail      *dbuf
	queued          int
	sendWin         int64
	inFlight        int32 // frames of the half in the writer's current batch
	attached        bool  // bound to its connection (waiting or active)
	active          bool  // holds a stream slot: may be written
	listed          uint8
	next            *half
	nextDetached    *half
	sendDone        bool // END_STREAM or RST_STREAM taken by the writer
	recvDone        bool // END_STREAM or RST_STREAM received
	rstDone         bool // a RST_STREAM went either way: never send another
	peerReset       bool // the peer reset the stream
	reset           bool // ended early by resetLocked: output dropped
	wroteHeaders    bool
	wroteData       bool
	moving          bool // detached to be re-dispatched with its queue
	// draining: the response is complete and the client is still
	// sending; its bytes are checked and dropped for a while (see
	// serverConn.sentEndLocked). Downstream halves only.
	draining     bool
	drainSince   time.Time
	drainedBytes int64
	// failFlag, failMsg and failCode, when failFlag is set, tell the
	// downstream half why the upstream half failed; afterDetach does it
	// once no lock is held.
	failFlag flag
	failMsg  string
	failCode http2.ErrCode

	// Receive flow control (RFC 9113 §6.9). inWin is what the peer may
	// still send; inUnsent is credit owed to it. The reader debits, the
	// writer of the other connection credits as it writes the bytes on.
	inWin    atomic.Int32
	inUnsent atomic.Int32
	// win is the size the receive window has grown to (see
	// initialStreamWindow): set as the stream opens, grown by credit.
	win atomic.Int32
	// promisedTo is, for an upstream half with a stream open, its
	// client's connection, whose promised holds this stream's inWin:
	// what the upstream may still send for that client. Guarded by the
	// mutex of the half's connection, as every change of inWin is.
	promisedTo *conn

	// Owned by the reader of the half's connection.
	recvLen    int64
	contentLen int64 // -1: no content-length
	gotHeaders bool  // upstream half: the final response headers arrived

	// pending: the upstream half waits for a connection or a stream slot
	// and holds a max_pending_requests slot. Set by dispatch before the
	// half is bound, cleared under the connection's lock.
	pending bool
}

// addInWin adds n to the half's receive window, and to what its client's
// connection has been promised (promisedTo). The half's connection's mutex
// is held.
func (h *half) addInWin(n int32) int32 {
	if p := h.promisedTo; p != nil {
		p.promised.Add(int64(n))
	}
	return h.inWin.Add(n)
}

// donePending gives back the max_pending_requests slot the half holds.
func (h *half) donePending() {
	if h.pending {
		h.pending = false
		h.call.breakers().DonePending()
	}
}

// credit returns n bytes of receive window to h's peer once they have been
// written on the other connection: only then does a WINDOW_UPDATE go out,
// so a slow receiver on the far side back-pressures the sender and the
// proxy never buffers more than the window per stream (RFC 9113 §5.2).
// Credit is batched to a quarter of the window. room is what the far side
// can still take at once (the send window left there after the write that
// freed these bytes, less what is queued for it; for an upstream stream,
// less what the client's other streams' upstreams may still send too):
// the window grows only by as much as room, so that a far side that
// stopped taking bytes (an upstream that does not read, a client whose
// connection window is spent) does not make the proxy hold more for it.
func (h *half) credit(n int32, room int64) {
	if b := h.call.br; b != nil && h == &h.call.up {
		b.credited(n)
		return
	}
	if s := h.call.rtp; s != nil && h == &h.call.down {
		s.credited(n)
		return
	}
	win := h.win.Load()
	if h.inUnsent.Add(n) < win/4 {
		return
	}
	v := h.inUnsent.Swap(0)
	if v <= 0 {
		return
	}
	c := h.lock()
	if c == nil {
		return
	}
	if h.attached && !h.recvDone && h.id != 0 {
		// The far side took a quarter of the window: the stream may
		// grow by what the far side can take at once, unless the
		// process already holds much in flight. An upstream stream's
		// first growth takes it to HTTP/2's default window (16 KiB to
		// 65,535 bytes) at once when the client has room for that,
		// which a client on a new connection with the default windows
		// has once the first 16 KiB are written: the small start is
		// for clients that read nothing, not a ramp for those that
		// read. Otherwise the window doubles.
		if win < maxStreamWindow && bufMem.Load() < growLimit.Load() {
			if p := h.promisedTo; p != nil {
				// The client's room is shared by its other
				// streams: what their upstreams may still send
				// will take it too.
				room -= p.promised.Load() - int64(h.inWin.Load())
			}
			grow := min(max(win, defaultWindow-win), maxStreamWindow-win)
			if room < int64(grow) {
				grow = min(win, maxStreamWindow-win)
			}
			if room >= int64(grow) {
				h.win.Store(win + grow)
				v += grow
			}
		}
		h.addInWin(v)
		c.queueCtrlLocked(ctrlFrame{kind: ctrlWindowUpdate, id: h.id, val: uint32(v)})
	}
	c.unlock()
}

// growLimit is the buffer memory above which no stream window grows: a
// quarter of the overload manager's budget (SetBufferBudget).
var growLimit atomic.Int64

func init() { growLimit.Store(overload.DefaultMaxBufferedBytes / 4) }

// afterDetach runs once h has left its connection, with no lock held.
func (h *half) afterDetach() {
	cl := h.call
	if h.moving {
		cl.redispatch()
		return
	}
	if h == &cl.up && cl.rc.Retry.On != 0 && cl.retryAfterDetach(h) {
		return // the half goes out again, to another host
	}
	if h.failFlag != 0 {
		cl.upstreamReset(h.failCode, h.failFlag, h.failMsg)
	}
	cl.halfDone(h)
}

// redispatch sends the upstream half, detached from a connection that did
// not process it, to the pool again, with its queued request intact.
// While it moves, h.cn is &transit and nobody else touches its fields.
func (cl *call) redispatch() {
	h := &cl.up
	h.moving, h.listed = false, listNone
	h.id = 0
	h.sendDone, h.recvDone, h.rstDone, h.peerReset = false, false, false, false
	h.wroteHeaders, h.hdrsPending = false, true
	h.inUnsent.Store(0)
	h.recvLen, h.contentLen, h.gotHeaders = 0, -1, false
	switch cl.pool.dispatch(h) {
	case dispatched:
		return
	case pendingOverflow:
		h.cn.Store(nil)
		freeChain(h.head)
		h.head, h.tail, h.queued = nil, nil, 0
		cl.upstreamReset(http2.ErrCodeRefusedStream, flagUpstreamOverflow, router.ReplyOverflow.Message)
		cl.halfDone(h)
		return
	}
	h.cn.Store(nil)
	freeChain(h.head)
	h.head, h.tail, h.queued = nil, nil, 0
	cl.upstreamReset(http2.ErrCodeRefusedStream, flagUpstreamConnectFailure, router.ReplyConnectFailure.Message)
	cl.halfDone(h)
}

// call is one proxied request: the downstream half and the upstream half
// it is mapped to, with what routing decided. Calls are pooled and
// reference counted: each attached half, an armed timer and an HTTP/1
// bridge goroutine hold a reference, and the call is reused only when the
// last one is released.
type call struct {
	down, up half

	sc *serverConn
	// rc is the call as the router sees it: plan, breaker slots,
	// attempts. The downstream reader fills it in proxy; whoever starts
	// or ends an attempt (a reader, a timer) updates it, one at a time.
	rc router.Call
	// gate holds the request body while a global rate limit check runs
	// (proxyGated); nil for the requests of routes without one. Set on
	// the reader before the check starts.
	gate *gate
	// shedHeld: the call counts against the overload manager's
	// concurrency budget until it finishes (router.Admit).
	shedHeld bool
	// share is the downstream connection's share of the cluster's
	// max_requests the call holds until it finishes; nil: none.
	share *breaker.Share
	pool  *Pool
	br    *bridge
	// rtp, when set, stands for the downstream side: the call is a
	// RoundTrip of a net/http caller (roundtrip.go), with no server
	// connection, no stats and no policy of its own.
	rtp  *rtStream
	grpc bool
	head bool // a HEAD request: its response has no body
	sent time.Time

	timer    *time.Timer
	armed    atomic.Bool
	deadline time.Time // zero: none; set before the call goes upstream
	attempts int       // moves of a refused stream to another connection

	// Retries and mirroring (retry.go, mirror.go).
	keep        bool   // the request body is kept (for a retry or the mirror)
	fullPath    string // :path, query included
	retryWhy    atomic.Uint32
	retryStatus int
	retryGRPC   int
	tryGen      atomic.Uint32
	tryTimer    *time.Timer
	// Guarded by rmu: the kept request body.
	rmu         sync.Mutex
	body        []byte
	bodyDone    bool
	bodyTooBig  bool
	hadTrailers bool
	waitBody    bool // a retry waits for the rest of the request

	// Field lists. reqFields and reqTrailers are written by the
	// downstream reader before they are queued on the upstream half;
	// respFields and respTrailers by the upstream reader before they are
	// queued on the downstream half. The writer that encodes them only
	// reads, after taking them from the queue under the lock.
	reqFields    []hpack.HeaderField
	reqTrailers  []hpack.HeaderField
	respFields   []hpack.HeaderField
	respTrailers []hpack.HeaderField

	// What the stats are told when the call ends: the status the client
	// got, and how the upstream request ended (see cluster.Outcome). The
	// readers of both connections and the deadline timer set them, and a
	// reader may still be finishing a frame of the call when finish runs,
	// so they are atomics; a value set after finish is not counted.
	start      time.Time
	path       string
	downStatus atomic.Int32
	upStatus   atomic.Int32
	grpcStatus atomic.Int32 // -1: none seen
	endedBy    atomic.Uint32
	// gRPC messages each way: each counter is fed by one reader, the
	// totals read by finish.
	reqCounter, respCounter grpcproto.MessageCounter
	reqMsgs, respMsgs       atomic.Int64
	rxReset                 atomic.Bool // the upstream reset after its response began
	txReset                 atomic.Bool // the proxy reset the open upstream stream

	failed atomic.Bool
	halves atomic.Int32
	refs   atomic.Int32

	// What the access log and spans are told (see observe). The fields are
	// set by the downstream reader in proxy before the call goes upstream;
	// the atomics by whichever goroutine learns them.
	method    string
	authority string
	userAgent string
	xff       string // as sent upstream
	requestID string
	traceID   string
	ctx       context.Context
	srvSpan   tracing.Span
	cliSpan   tracing.Span
	flags     atomic.Uint32 // response flags (flag)
	rxBytes   atomic.Int64  // request body bytes from the client
	sentBytes atomic.Int64  // response body bytes written to the client
	upTime    atomic.Int64  // ns from sending upstream to the response headers; 0: none

	// Guarded by the downstream connection's mutex.
	respStarted bool // response HEADERS queued downstream
	respEnded   bool // the response is complete or reset downstream

	// The stream idle timeout (idle.go): idleTimeout is set once by the
	// downstream reader, activity bumped by every frame of the call;
	// idleMark and idleSince are the sweep's, under the downstream
	// connection's mutex.
	idleTimeout atomic.Int64
	activity    atomic.Uint32
	idleMark    uint32
	idleSince   time.Time
}

var callPool = sync.Pool{New: func() any {
	cl := new(call)
	cl.init()
	return cl
}}

func (cl *call) init() {
	cl.down.call, cl.up.call = cl, cl
	cl.down.peer, cl.up.peer = &cl.up, &cl.down
	cl.down.contentLen, cl.up.contentLen = -1, -1
}

// maxPooledFields bounds the field lists a pooled call keeps, so that one
// huge request does not pin memory in the pool.
const maxPooledFields = 64

// newCall returns a call for a new downstream stream, holding one
// reference for the downstream half.
func newCall(sc *serverConn) *call {
	cl := callPool.Get().(*call)
	cl.sc = sc
	cl.halves.Store(1)
	cl.refs.Store(1)
	cl.start = time.Now()
	cl.grpcStatus.Store(-1)
	st := sc.srv.stats
	st.DownstreamRqTotal.Inc(1)
	st.DownstreamRqHTTP2Total.Inc(1)
	st.DownstreamRqActive.Inc()
	return cl
}

// recycle clears the call and puts it back in the pool. Nothing may
// reference it any more.
func (cl *call) recycle() {
	keep := func(f []hpack.HeaderField) []hpack.HeaderField {
		if cap(f) > maxPooledFields {
			return nil
		}
		clear(f[:cap(f)])
		return f[:0]
	}
	reqF, reqT := keep(cl.reqFields), keep(cl.reqTrailers)
	respF, respT := keep(cl.respFields), keep(cl.respTrailers)
	timer := cl.timer
	body := cl.body[:0]
	if cap(body) > 4<<10 {
		body = nil
	}
	*cl = call{}
	cl.init()
	cl.reqFields, cl.reqTrailers, cl.respFields, cl.respTrailers = reqF, reqT, respF, respT
	cl.timer = timer
	cl.body = body
	callPool.Put(cl)
}

// release drops one reference.
func (cl *call) release() {
	if cl.refs.Add(-1) == 0 {
		cl.recycle()
	}
}

// halfDone runs when one half has left its connection for good.
func (cl *call) halfDone(h *half) {
	if h == &cl.down {
		// The client is gone or has its whole response: nothing more
		// may happen upstream (RFC 9113 §8.1; the checklist's downstream
		// cancel → upstream RST_STREAM(CANCEL)).
		cl.cancelUpstream(http2.ErrCodeCancel)
	}
	if cl.halves.Add(-1) == 0 {
		cl.finish()
	}
	cl.release()
}

// finish runs once both halves are done: it stops the timers and runs the
// one finish step: the router charges the call to its cluster, the
// listener counts it, and the span and access-log entry are written.
func (cl *call) finish() {
	if cl.armed.Load() && cl.timer.Stop() {
		cl.release()
	}
	if t := cl.tryTimer; t != nil && t.Stop() {
		cl.release()
	}
	cl.share.Done()
	if cl.shedHeld {
		cl.sc.srv.overload.Release()
	}
	if cl.rtp != nil {
		return // the caller counts a RoundTrip
	}
	st := cl.sc.srv.stats
	sent := int(cl.downStatus.Load())
	o := router.Outcome{
		Status:     int(cl.upStatus.Load()),
		GRPCStatus: int(cl.grpcStatus.Load()),
		End:        endOf(cl.endedBy.Load()),
		Elapsed:    time.Since(cl.sent),
		RxReset:    cl.rxReset.Load(),
		TxReset:    cl.txReset.Load(),
	}
	if !cl.grpc {
		o.GRPCStatus = -1
	}
	dc := flag(cl.flags.Load()).Has(flagDownstreamConnTerm) || sent == 0
	if dc {
		cl.addFlag(flagDownstreamConnTerm)
		o.End = router.EndCancelled
		st.DownstreamRqRxReset.Inc(1)
	} else {
		st.DownstreamRqCompleted.Inc(1)
		st.RqCompleted(sent)
	}
	st.DownstreamRqActive.Dec()
	elapsed := time.Since(cl.start)
	cl.rc.Trace = stats.TraceID(cl.srvSpan.Sampled())
	st.DownstreamRqTime.RecordTraced(elapsed, cl.rc.Trace)
	if obs := cl.sc.srv.obs; obs != nil {
		cl.observeEnd(obs, sent, elapsed) // before Finish: it ends the open attempt's span
	}
	cl.rc.RequestMessages, cl.rc.ResponseMessages = cl.reqMsgs.Load(), cl.respMsgs.Load()
	cl.rc.Finish(&o)
}

// breakers are the circuit breakers of the call's cluster, or nil.
func (cl *call) breakers() *breaker.Breakers {
	if cl.rc.Cluster == nil {
		return nil
	}
	return cl.rc.Cluster.Breakers
}

// addFlag records a response flag for the access log and the span.
func (cl *call) addFlag(f flag) { cl.flags.Or(uint32(f)) }

// Why an upstream request ended without a response (call.endedBy).
const (
	endedConnectFailure = 1 + iota
	endedReset
	endedTimeout
	endedPerTryTimeout
	endedOverflow
	endedNoHealthy
	endedIdle // the stream idle timeout: the proxy gave up on the call
)

// endedFor is how a call ends with the reply for response flag f; 0 for a
// reply that is not about the upstream (CONNECT, header list too large).
func endedFor(f flag) uint32 {
	switch f {
	case flagUpstreamConnectFailure:
		return endedConnectFailure
	case flagUpstreamOverflow:
		return endedOverflow
	case flagNoHealthyUpstream:
		return endedNoHealthy
	case flagUpstreamRequestTimeout:
		return endedTimeout
	case flagUpstreamRemoteReset, flagUpstreamConnectionTerm:
		return endedReset
	}
	return 0
}

// endOf maps call.endedBy to the router's End.
func endOf(why uint32) router.End {
	switch why {
	case endedConnectFailure:
		return router.EndConnectFailure
	case endedReset:
		return router.EndReset
	case endedTimeout:
		return router.EndTimeout
	case endedPerTryTimeout:
		return router.EndPerTryTimeout
	case endedOverflow:
		return router.EndOverflow
	case endedNoHealthy:
		return router.EndNoHealthy
	case endedIdle:
		return router.EndCancelled
	}
	return router.EndResponse
}

// arm starts the call's deadline. Called by the downstream reader before
// the call is dispatched upstream.
func (cl *call) arm(d time.Duration) {
	cl.refs.Add(1)
	if cl.timer == nil {
		cl.timer = time.AfterFunc(d, cl.onTimeout)
	} else {
		cl.timer.Reset(d)
	}
	cl.armed.Store(true) // after the timer is set: finish reads it once armed
}

// onTimeout runs on the timer's goroutine when the route timeout or
// grpc-timeout passes: the upstream stream is cancelled and the client gets
// DEADLINE_EXCEEDED (gRPC) or 504, or a reset when its response has begun
// and is not gRPC.
func (cl *call) onTimeout() {
	defer cl.release()
	if cl.halves.Load() == 0 {
		return
	}
	cl.expire()
}

// expire answers the call as timed out (UT) and cancels its upstream
// stream.
func (cl *call) expire() {
	cl.failed.Store(true)
	c := cl.down.lock()
	cl.timeoutLocked(c)
	c.unlock()
	cl.cancelUpstream(http2.ErrCodeCancel)
}

// timeoutLocked answers a call whose deadline passed, as forward.go does:
// DEADLINE_EXCEEDED (trailers-only, or in the trailers once the response
// has begun) for gRPC, 504 or a reset otherwise. c is the downstream
// connection, locked.
func (cl *call) timeoutLocked(c *conn) {
	const msg = "upstream request timeout"
	if cl.upStatus.Load() == 0 {
		cl.endedBy.CompareAndSwap(0, endedTimeout)
	}
	if cl.grpc {
		cl.grpcStatus.Store(grpcDeadlineExceeded)
	}
	cl.addFlag(flagUpstreamRequestTimeout)
	switch {
	case cl.respEnded || !cl.down.attached:
	case !cl.respStarted:
		if cl.grpc {
			cl.grpcErrorLocked(c, grpcDeadlineExceeded, msg, flagUpstreamRequestTimeout)
		} else {
			cl.localReplyLocked(c, 504, msg+"\n", flagUpstreamRequestTimeout)
		}
	case cl.grpc:
		h := &cl.down
		h.trailers = []hpack.HeaderField{
			{Name: "grpc-status", Value: itoa(grpcDeadlineExceeded)},
			{Name: "grpc-message", Value: msg},
			{Name: headerResponseFlags, Value: flagUpstreamRequestTimeout.String()},
		}
		h.trailersPending, h.endPending = true, true
		cl.respEnded = true
		c.scheduleLocked(h)
	default:
		// The response has begun and is not gRPC: the client's stream
		// is reset (downstream_rq_tx_reset).
		cl.respEnded = true
		cl.sc.srv.stats.DownstreamRqTxReset.Inc(1)
		c.resetLocked(&cl.down, http2.ErrCodeCancel, true)
	}
}

// cancelUpstream resets the upstream half with code, or unbinds it if it
// never reached the wire. It is a no-op once the half is done.
func (cl *call) cancelUpstream(code http2.ErrCode) {
	if b := cl.br; b != nil {
		b.cancel()
		return
	}
	c := cl.up.lock()
	if c == nil {
		return
	}
	if h := &cl.up; h.attached && h.id != 0 && !(h.sendDone && h.recvDone) {
		cl.txReset.Store(true)
	}
	c.resetLocked(&cl.up, code, true)
	c.unlock()
}
