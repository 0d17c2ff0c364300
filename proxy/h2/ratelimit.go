package h2

import (
	"context"
	"sync"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/ratelimit"
	"github.com/sightline-proxy/sightline/proxy/router"
)

// gate holds a request's body while its global rate limit check runs on
// a goroutine of its own: the downstream reader never waits for the rate
// limit service. What the client sends meanwhile is kept, uncredited, so
// the stream's flow-control window bounds it; once the service allows the
// request, the held bytes go upstream first and the gate opens; once it
// refuses, they are dropped and credited back.
type gate struct {
	mu         sync.Mutex
	open       bool // the request went upstream: forward as usual
	closed     bool // refused or abandoned: drop what comes
	head, tail *dbuf
	ended      bool // the request ended (END_STREAM or trailers)
	trailers   bool // request trailers came (cl.reqTrailers)
}

// hold keeps d and end while the gate is shut; false once it is open,
// when the caller forwards them as usual. It runs on the downstream
// reader.
func (g *gate) hold(cl *call, d *dbuf, end bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.open:
		return false
	case g.closed:
		if d != nil {
			cl.down.credit(int32(d.len()), maxStreamWindow)
			putBuf(d)
		}
		return true
	}
	if d != nil && d.len() > 0 {
		d.next = nil
		if g.tail == nil {
			g.head = d
		} else {
			g.tail.next = d
		}
		g.tail = d
	} else if d != nil {
		putBuf(d)
	}
	g.ended = g.ended || end
	return true
}

// holdTrailers notes request trailers (already in cl.reqTrailers) while
// the gate is shut; false once it is open.
func (g *gate) holdTrailers() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open {
		return false
	}
	g.trailers, g.ended = true, true
	return true
}

// closeLocked drops what the gate holds, giving the client its window
// back.
func (g *gate) closeLocked(cl *call) {
	g.closed = true
	for d := g.head; d != nil; {
		next := d.next
		cl.down.credit(int32(d.len()), maxStreamWindow)
		putBuf(d)
		d = next
	}
	g.head, g.tail = nil, nil
}

// proxyGated sends a request whose route asks the global rate limit
// service: on the reader it does what needs the request's headers or the
// reader's state (the stream idle watch, the deadline and the route
// timeout, which also bound the wait, the connection's share of
// max_requests, the upstream request's fields), counts the upstream half
// so that the call cannot finish under the check, and starts the check.
func (sc *serverConn) proxyGated(cl *call, gc *router.GlobalCheck, authority string) {
	hb := &sc.hb
	rc := &cl.rc
	if rc.IdleTimeout > 0 {
		sc.watchIdle(cl, rc.IdleTimeout)
	}
	cl.deadline = rc.Deadline(time.Now())
	sh := sc.share(rc.Cluster.Breakers)
	if !sh.Try() {
		cl.localError(router.ReplyOverflow)
		return
	}
	cl.share = sh
	if rc.Timeout > 0 {
		cl.arm(rc.Timeout)
	}
	// :scheme is the upstream's, set once the host is picked.
	sc.buildRequest(cl, "http", authority)
	g := &gate{ended: hb.endStream}
	cl.gate = g
	cl.halves.Add(1) // the upstream half, from now on
	cl.refs.Add(2)   // the upstream half's and the check's
	go cl.checkGlobal(gc, g)
}

// checkGlobal asks the rate limit service, then answers the client or
// sends the request upstream with what the gate held. It runs on its own
// goroutine.
func (cl *call) checkGlobal(gc *router.GlobalCheck, g *gate) {
	defer cl.release()
	res := gc.Run(context.Background())
	rc := &cl.rc
	c := cl.down.lock()
	gone := cl.respEnded || !cl.down.attached
	if !gone {
		res.Apply(&rc.Plan)
	}
	c.unlock()
	if gone || res.Refused {
		g.mu.Lock()
		g.closeLocked(cl)
		g.mu.Unlock()
		if !gone {
			cl.localError(res.Reply)
		}
		cl.halfDone(&cl.up)
		return
	}

	// The gate stays locked until the request is upstream with what it
	// held: the reader's next DATA waits, then follows it. It opens only
	// then; a refusal below closes it, so later DATA is credited back.
	g.mu.Lock()
	defer g.mu.Unlock()
	cl.keep = rc.Retry.On != 0 || rc.Mirror != nil
	if !rc.TryRequest() {
		g.closeLocked(cl)
		cl.localError(router.ReplyOverflow)
		cl.halfDone(&cl.up)
		return
	}
	hst := rc.Pick()
	var u *Upstream
	if hst != nil {
		u, _ = hst.Upstream().(*Upstream)
	}
	if hst == nil || u == nil || rc.Cluster.Protocol == cluster.HTTP1 && u.HTTP == nil {
		g.closeLocked(cl)
		if hst == nil {
			cl.localError(router.ReplyNoHealthyUpstream)
		} else {
			rc.Begin(hst)
			cl.localError(router.ReplyConnectFailure)
		}
		cl.halfDone(&cl.up)
		return
	}
	rc.Begin(hst)
	cl.reqFields[1] = hpack.HeaderField{Name: ":scheme", Value: u.H2.scheme}
	cl.startAttempt()
	if cl.keep {
		for d := g.head; d != nil; d = d.next {
			cl.keepBody(d.bytes(), false)
		}
		if g.trailers {
			cl.hadTrailers = true
		}
		if g.ended {
			cl.keepBody(nil, true)
		}
	}
	held, ended := g.head, g.ended
	g.head, g.tail = nil, nil
	g.open = true
	if rc.Cluster.Protocol == cluster.HTTP1 {
		cl.sent = time.Now()
		startBridge(cl, u.HTTP, ended && held == nil)
		cl.halfDone(&cl.up) // the bridge counts its own half
		b := cl.br
		for d := held; d != nil; {
			next := d.next
			d.next = nil
			b.feed(d, false)
			d = next
		}
		if ended && held != nil {
			b.feed(nil, true)
		}
		return
	}
	h := &cl.up
	h.hdrs, h.hdrsPending = cl.reqFields, true
	for d := held; d != nil; d = d.next {
		h.tail = d
		h.queued += d.len()
	}
	h.head = held
	if g.trailers {
		h.trailers, h.trailersPending = cl.reqTrailers, true
	}
	h.endPending = ended
	cl.pool = u.H2
	cl.sent = time.Now()
	cl.armPerTry()
	if r := cl.pool.dispatch(h); r != dispatched {
		h.cn.Store(nil)
		freeChain(h.head)
		h.head, h.tail, h.queued = nil, nil, 0
		if r == pendingOverflow {
			cl.localError(router.ReplyOverflow)
		} else {
			cl.localError(router.ReplyConnectFailure)
		}
		cl.halfDone(h)
	}
}

// appendResponseHeaders adds the headers the rate limit service asked
// for.
func appendResponseHeaders(fields []hpack.HeaderField, list []ratelimit.Entry) []hpack.HeaderField {
	for _, e := range list {
		fields = append(fields, hpack.HeaderField{Name: lowerASCII(e.Key), Value: e.Value})
	}
	return fields
}

// lowerASCII lower-cases an HTTP/2 field name, allocating only when it
// has upper-case letters.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
