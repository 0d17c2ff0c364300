package h2

import (
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sightline-proxy/sightline/proxy/grpcproto"
	"github.com/sightline-proxy/sightline/proxy/router"
)

// The stream idle timeout (Envoy's stream_idle_timeout, a route's
// idle_timeout) ends a call with no activity either way for that long: no
// frame from the client or the upstream, and no DATA written to either.
// Frames bump the call's activity counter (one atomic add); nothing is
// re-armed per frame. A sweep per connection, every quarter of the
// shortest idle timeout of its calls, notes each call's counter and ends
// the calls whose counter has not moved for their timeout, so a call ends
// between its timeout and a quarter more after its last activity.

// minIdleSweep bounds how often a connection sweeps.
const minIdleSweep = 5 * time.Millisecond

// touch notes activity on the call.
func (cl *call) touch() { cl.activity.Add(1) }

// watchIdle puts a call with an idle timeout under the connection's
// sweep. It runs on the downstream reader.
func (sc *serverConn) watchIdle(cl *call, d time.Duration) {
	cl.idleTimeout.Store(int64(d))
	every := max(d/4, minIdleSweep)
	if cur := time.Duration(sc.sweepEvery.Load()); cur != 0 && cur <= every {
		return // the sweep runs, often enough
	}
	sc.mu.Lock()
	if cur := time.Duration(sc.sweepEvery.Load()); cur == 0 || every < cur {
		sc.sweepEvery.Store(int64(every))
		if sc.sweepTimer == nil {
			sc.sweepTimer = time.AfterFunc(every, sc.sweepIdle)
		} else {
			sc.sweepTimer.Reset(every)
		}
	}
	sc.mu.Unlock()
}

// sweepIdle runs on a timer goroutine: it ends the calls idle for their
// timeout and re-arms while calls remain.
func (sc *serverConn) sweepIdle() {
	now := time.Now()
	var idle []*call
	sc.mu.Lock()
	if sc.failed {
		sc.mu.Unlock()
		return
	}
	var every time.Duration
	for _, h := range sc.streams {
		cl := h.call
		d := time.Duration(cl.idleTimeout.Load())
		if d <= 0 || cl.respEnded {
			continue
		}
		if e := max(d/4, minIdleSweep); every == 0 || e < every {
			every = e
		}
		a := cl.activity.Load()
		switch {
		case cl.idleSince.IsZero() || a != cl.idleMark:
			cl.idleMark, cl.idleSince = a, now
		case now.Sub(cl.idleSince) >= d:
			cl.refs.Add(1)
			idle = append(idle, cl)
		}
	}
	sc.sweepEvery.Store(int64(every))
	if every > 0 {
		sc.sweepTimer.Reset(every)
	}
	sc.mu.Unlock()
	for _, cl := range idle {
		cl.idleExpired()
		cl.release()
	}
}

// idleExpired ends a call whose stream idle timeout passed: before any
// response the client gets 504 (408 while it was still sending; gRPC:
// DEADLINE_EXCEEDED), after it its stream is reset (gRPC: trailers), and
// the upstream stream is cancelled; flag SI, counted in
// downstream_rq_idle_timeout.
func (cl *call) idleExpired() {
	cl.failed.Store(true)
	cl.endedBy.CompareAndSwap(0, endedIdle)
	c := cl.down.lock()
	if c == nil || cl.respEnded || !cl.down.attached {
		if c != nil {
			c.unlock()
		}
		return
	}
	cl.sc.srv.stats.DownstreamRqIdleTimeout.Inc(1)
	rp := router.ReplyStreamIdle(cl.down.recvDone)
	switch {
	case !cl.respStarted && cl.grpc:
		cl.grpcStatus.Store(int32(rp.GRPC))
		cl.grpcErrorLocked(c, rp.GRPC, rp.Message, rp.Flag)
	case !cl.respStarted:
		cl.localReplyLocked(c, rp.Status, rp.Message+"\n", rp.Flag)
	case cl.grpc:
		cl.addFlag(rp.Flag)
		cl.grpcStatus.Store(int32(rp.GRPC))
		h := &cl.down
		h.trailers = append(h.trailers[:0],
			hpack.HeaderField{Name: "grpc-status", Value: itoa(int64(rp.GRPC))},
			hpack.HeaderField{Name: "grpc-message", Value: grpcproto.EncodeMessage(rp.Message)},
			hpack.HeaderField{Name: headerResponseFlags, Value: rp.Flag.String()})
		h.trailersPending, h.endPending = true, true
		cl.respEnded = true
		c.scheduleLocked(h)
	default:
		cl.addFlag(rp.Flag)
		cl.respEnded = true
		cl.sc.srv.stats.DownstreamRqTxReset.Inc(1)
		c.resetLocked(&cl.down, http2.ErrCodeCancel, true)
	}
	c.unlock()
	cl.cancelUpstream(http2.ErrCodeCancel)
}
