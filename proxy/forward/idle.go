package forward

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sightline-proxy/sightline/proxy/flags"
	"github.com/sightline-proxy/sightline/proxy/grpcproto"
	"github.com/sightline-proxy/sightline/proxy/router"
)

// idleWatch is the stream idle timeout of one request (the route's
// idle_timeout, or the listener's stream_idle_timeout): request body reads,
// the response headers and response body writes are activity, one atomic
// add each. A timer looks once per timeout: if nothing happened since it
// last looked, it cancels the request's context, which ends the upstream
// request and the copy; otherwise it waits another timeout. A request
// ends between one and two timeouts after its last activity.
type idleWatch struct {
	d        time.Duration
	activity atomic.Uint32
	seen     uint32 // the timer's
	t        *time.Timer
	cancel   context.CancelFunc
	rc       *http.ResponseController
	fired    atomic.Bool
	reqDone  atomic.Bool // the request body was read to its end
}

// start watches the request whose context cancel cancels, on the
// connection rc controls.
func (w *idleWatch) start(d time.Duration, cancel context.CancelFunc, rc *http.ResponseController) {
	w.d, w.cancel, w.rc = d, cancel, rc
	w.t = time.AfterFunc(d, w.check)
}

// stop ends the watch.
func (w *idleWatch) stop() {
	if w.t != nil {
		w.t.Stop()
	}
}

// touch notes activity; a nil watch notes nothing.
func (w *idleWatch) touch() {
	if w != nil {
		w.activity.Add(1)
	}
}

func (w *idleWatch) check() {
	if a := w.activity.Load(); a != w.seen {
		w.seen = a
		w.t.Reset(w.d)
		return
	}
	w.fired.Store(true)
	if !w.reqDone.Load() {
		// net/http's client cannot stop writing a request body it is
		// blocked reading: ending the read of the client's connection
		// unblocks it. The connection then closes after the 408.
		_ = w.rc.SetReadDeadline(time.Now())
	}
	w.cancel()
}

// idleReply answers a request whose idle timeout passed before its
// response began: 504, or 408 while the client was still sending (gRPC:
// DEADLINE_EXCEEDED), flag SI, counted in downstream_rq_idle_timeout. The
// upstream request was cancelled: the cluster counts it so.
func (h *Handler) idleReply(w http.ResponseWriter, r *http.Request, rec *record) int {
	h.Stats.DownstreamRqIdleTimeout.Inc(1)
	rec.outcome.End, rec.outcome.TxReset = router.EndCancelled, true
	done := rec.idle.reqDone.Load()
	if !done {
		w.Header().Set("Connection", "close") // its request cannot be read to the end
	}
	return h.reply(w, r, rec, router.ReplyStreamIdle(done))
}

// idleMidResponse ends a response cut by the idle timeout: gRPC clients
// get DEADLINE_EXCEEDED in the trailers, others a cut connection, after
// the response headers (which wait in net/http's buffer for the first
// body bytes until then).
func (h *Handler) idleMidResponse(w http.ResponseWriter, rc *http.ResponseController, rec *record, grpc bool) {
	h.Stats.DownstreamRqIdleTimeout.Inc(1)
	rec.flags |= flags.StreamIdleTimeout
	rec.outcome.End, rec.outcome.TxReset = router.EndCancelled, true
	if grpc {
		rec.grpcStatus = grpcproto.DeadlineExceeded
		rec.outcome.GRPCStatus = grpcproto.DeadlineExceeded
		setGRPCTrailerStatus(w, grpcproto.DeadlineExceeded, "stream timeout", flags.StreamIdleTimeout.String())
		return
	}
	h.Stats.DownstreamRqTxReset.Inc(1)
	_ = rc.Flush()
	panic(http.ErrAbortHandler)
}
