package h2

import (
	"fmt"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sightline-proxy/sightline/proxy/breaker"
	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/grpcproto"
	"github.com/sightline-proxy/sightline/proxy/router"
	"github.com/sightline-proxy/sightline/proxy/upstream"
	"github.com/sightline-proxy/sightline/tracing"
)

// Header names the proxy reads or writes (lower case: HTTP/2 field names).
const (
	headerResponseFlags       = "x-sightline-response-flags"
	headerUpstreamServiceTime = "x-sightline-upstream-service-time"
)

// proxy routes a new request and sends it upstream. It runs on the
// downstream reader with sc.hb and sc.fields holding the request; it never
// blocks (a connection still being dialled queues the stream).
func (sc *serverConn) proxy(cl *call) {
	hb := &sc.hb
	fields := sc.fields
	cl.grpc = grpcproto.IsGRPC(hb.ctype)
	cl.head = hb.method == "HEAD"
	cl.fullPath = hb.path
	if sc.srv.obs != nil {
		sc.observeStart(cl)
	}
	rp, ok, held := router.Admit(sc.srv.overload, sc.srv.stats)
	if !ok {
		cl.localError(rp)
		return
	}
	cl.shedHeld = held
	if hb.method == "CONNECT" {
		cl.localError(router.Reply{Status: 501, GRPC: grpcUnimplemented, Message: "CONNECT is not supported"})
		return
	}
	authority := hb.authority
	if authority == "" {
		authority = hb.host
	}
	path := routePath(hb.path)
	cl.path = path
	sc.view.fields = fields
	rc := &cl.rc
	rc.GRPC, rc.Path = cl.grpc, path
	req := router.Request{Authority: authority, Path: path, Headers: &sc.view, GRPC: cl.grpc, Trust: sc.srv.trust,
		Method: hb.method, RemoteAddr: sc.remoteAddr}
	if rp, ok := router.Decide(sc.srv.routes.Load(), &req, &rc.Plan); !ok {
		router.CountReply(sc.srv.stats, rp)
		cl.localError(rp)
		return
	}
	if gc := router.NewGlobalCheck(&req, &rc.Plan); gc != nil {
		sc.proxyGated(cl, gc, authority)
		return
	}
	cls := rc.Cluster
	timeout := rc.Timeout
	if rc.IdleTimeout > 0 {
		sc.watchIdle(cl, rc.IdleTimeout)
	}
	cl.deadline = rc.Deadline(time.Now())
	sh := sc.share(cls.Breakers)
	if !sh.Try() {
		cl.localError(router.ReplyOverflow)
		return
	}
	cl.share = sh
	if !rc.TryRequest() {
		cl.localError(router.ReplyOverflow)
		return
	}
	hst := rc.Pick()
	if hst == nil {
		cl.localError(router.ReplyNoHealthyUpstream)
		return
	}
	rc.Begin(hst)
	u, _ := hst.Upstream().(*Upstream)
	if u == nil {
		cl.localError(router.ReplyConnectFailure)
		return
	}
	// The body is kept for retries (the bridge's too) and the mirror.
	cl.keep = rc.Retry.On != 0 || rc.Mirror != nil
	// The deadline is armed before the request leaves: once it has, the
	// call may end on another goroutine at any moment.
	if timeout > 0 {
		cl.arm(timeout)
	}
	// auto follows the downstream protocol, which is HTTP/2 here.
	if cls.Protocol == cluster.HTTP1 {
		if u.HTTP == nil {
			cl.localError(router.ReplyConnectFailure)
			return
		}
		sc.buildRequest(cl, u.H2.scheme, authority)
		cl.startAttempt()
		if cl.keep && hb.endStream {
			cl.keepBody(nil, true)
		}
		cl.sent = time.Now()
		startBridge(cl, u.HTTP, hb.endStream)
	} else {
		sc.buildRequest(cl, u.H2.scheme, authority)
		cl.startAttempt()
		if cl.keep && hb.endStream {
			cl.keepBody(nil, true)
		}
		cl.pool = u.H2
		h := &cl.up
		h.hdrs, h.hdrsPending, h.endPending = cl.reqFields, true, hb.endStream
		cl.halves.Add(1)
		cl.refs.Add(1)
		cl.sent = time.Now()
		cl.armPerTry()
		if r := cl.pool.dispatch(h); r != dispatched {
			cl.halves.Add(-1)
			cl.refs.Add(-1)
			if r == pendingOverflow {
				cl.localError(router.ReplyOverflow)
			} else {
				cl.localError(router.ReplyConnectFailure)
			}
			return
		}
	}
}

// share returns the connection's share of the max_requests of the cluster
// whose breakers are b (see breaker.Share). Reader-owned: the map is read
// and written on the connection's reader only.
func (sc *serverConn) share(b *breaker.Breakers) *breaker.Share {
	if b == nil {
		return nil
	}
	sh := sc.shares[b]
	if sh == nil {
		if sc.shares == nil {
			sc.shares = make(map[*breaker.Breakers]*breaker.Share)
		}
		sh = b.NewShare()
		sc.shares[b] = sh
	}
	return sh
}

// fieldView lets the router read a request's decoded fields without a
// header map. Field names are lower case on the wire (RFC 9113 §8.2.1).
// The connection keeps one and passes a pointer, which fits in an
// interface without allocating, as a slice would not.
type fieldView struct{ fields []hpack.HeaderField }

// Get implements route.Headers: the value of the field named lower, the
// values of a repeated field joined with ",".
func (v *fieldView) Get(_, lower string) (string, bool) {
	val, n := "", 0
	for i := range v.fields {
		f := &v.fields[i]
		if f.Name != lower {
			continue
		}
		if n == 0 {
			val = f.Value
		} else {
			val += "," + f.Value
		}
		n++
	}
	return val, n > 0
}

// buildRequest writes the upstream request's fields into cl.reqFields:
// the pseudo-headers, then the client's fields without hop-by-hop ones and
// (unless the listener trusts them) x-sightline-* overrides, then
// x-forwarded-for with the client's address appended and x-forwarded-proto
// when absent, as forward.go's outbound does. te: trailers passes (the
// decoder refused any other te).
func (sc *serverConn) buildRequest(cl *call, scheme, authority string) {
	hb := &sc.hb
	f := append(cl.reqFields[:0],
		hpack.HeaderField{Name: ":method", Value: hb.method},
		hpack.HeaderField{Name: ":scheme", Value: scheme})
	if authority != "" {
		f = append(f, hpack.HeaderField{Name: ":authority", Value: authority})
	}
	f = append(f, hpack.HeaderField{Name: ":path", Value: hb.path})
	xff, nxff := "", 0
	hasProto := false
	owned := sc.srv.obs != nil
	for _, fld := range sc.fields {
		switch {
		case fld.Name == "x-forwarded-for":
			if nxff == 0 {
				xff = fld.Value
			} else {
				xff += ", " + fld.Value
			}
			nxff++
			continue
		case fld.Name == "host" || router.DropRequestHeader(fld.Name, sc.srv.trust, owned):
			continue
		case fld.Name == "x-forwarded-proto":
			hasProto = true
		}
		if sensitive(fld.Name) {
			fld.Sensitive = true
		}
		f = append(f, fld)
	}
	if xff = router.ForwardedFor(xff, sc.remoteIP); xff != "" {
		f = append(f, hpack.HeaderField{Name: "x-forwarded-for", Value: xff})
		cl.xff = xff
	}
	if cl.requestID != "" {
		f = append(f, cl.requestIDField())
	}
	if !hasProto {
		f = append(f, hpack.HeaderField{Name: "x-forwarded-proto", Value: sc.srv.proto})
	}
	cl.reqFields = f
	if cl.grpc {
		cl.setAttemptTimeout()
	}
}

// setAttemptTimeout writes into cl.reqFields the grpc-timeout of the
// attempt about to be sent: what the router says it has left
// (router.Call.AttemptTimeout), replacing the client's value, or the
// client's as it came when the attempt has no bound. It runs before each
// attempt, on the goroutine that sends it, while no writer holds the
// fields. Only calls with a bound pay for formatting the value.
func (cl *call) setAttemptTimeout() {
	d, ok := cl.rc.AttemptTimeout(cl.deadline, time.Now())
	if !ok {
		return
	}
	v := router.FormatGRPCTimeout(d)
	for i := range cl.reqFields {
		if cl.reqFields[i].Name == "grpc-timeout" {
			cl.reqFields[i].Value = v
			return
		}
	}
	cl.reqFields = append(cl.reqFields, hpack.HeaderField{Name: "grpc-timeout", Value: v})
}

// headersTooLarge answers a request whose header list passed
// SETTINGS_MAX_HEADER_LIST_SIZE: 431, or RESOURCE_EXHAUSTED for gRPC
// (RFC 6585 §5, RFC 9113 §10.5.1).
func (sc *serverConn) headersTooLarge(cl *call) {
	cl.grpc = grpcproto.IsGRPC(sc.hb.ctype)
	cl.localError(router.Reply{Status: 431, GRPC: grpcResourceExhausted, Message: "request header fields too large"})
}

// forwardData sends request bytes on upstream (or drops them when there is
// no upstream stream any more). It reports whether they queued behind
// bytes the upstream has not taken yet.
func (cl *call) forwardData(d *dbuf, end bool) (behind bool) {
	if cl.grpc && d != nil {
		if n := cl.reqCounter.Feed(d.bytes()); n > 0 {
			cl.reqMsgs.Add(int64(n))
		}
	}
	if g := cl.gate; g != nil && g.hold(cl, d, end) {
		return false // the rate limit check is still running
	}
	if cl.keep {
		var p []byte
		if d != nil {
			p = d.bytes()
		}
		cl.keepBody(p, end)
	}
	if b := cl.br; b != nil {
		b.feed(d, end)
		return false
	}
	c := cl.up.lock()
	if c == nil {
		putBuf(d)
		return false
	}
	behind = cl.up.head != nil
	if !c.enqueueDataLocked(&cl.up, d, end) {
		if cl.keep && d != nil {
			// Kept for the next attempt: the client may send more now.
			defer cl.down.credit(int32(d.len()), 0)
		}
		putBuf(d)
	}
	c.unlock()
	return behind
}

// forwardTrailers sends request trailers upstream, ending the request.
func (cl *call) forwardTrailers(fields []hpack.HeaderField) {
	t := cl.reqTrailers[:0]
	for _, f := range fields {
		if !router.HopByHop(f.Name) {
			t = append(t, f)
		}
	}
	cl.reqTrailers = t
	if g := cl.gate; g != nil && g.holdTrailers() {
		return // the rate limit check is still running
	}
	if cl.keep {
		cl.hadTrailers = true
		cl.keepBody(nil, true)
	}
	if b := cl.br; b != nil {
		b.feed(nil, true) // HTTP/1.1 upstreams get the body; trailers are dropped
		return
	}
	c := cl.up.lock()
	if c == nil {
		return
	}
	h := &cl.up
	if h.attached && !h.sendDone && !h.endPending {
		h.trailers, h.trailersPending, h.endPending = t, true, true
		c.scheduleLocked(h)
	}
	c.unlock()
}

// localError answers the client with a reply the proxy made itself,
// gRPC-shaped for gRPC clients (the router's table says what), unless a
// response has begun. A reply that ends an attempt in flight records why.
func (cl *call) localError(rp router.Reply) {
	if !rp.Direct {
		cl.failed.Store(true)
	}
	if cl.upStatus.Load() == 0 {
		cl.endedBy.CompareAndSwap(0, endedFor(rp.Flag))
	}
	if cl.grpc && !rp.Direct {
		cl.grpcStatus.Store(int32(rp.GRPC))
	}
	c := cl.down.lock()
	// Under the lock: a rate limit check may answer on its own
	// goroutine while a timer answers on another.
	if rp.RateLimit.Set {
		cl.rc.Plan.RateLimit = rp.RateLimit
	}
	if rp.Headers != nil {
		cl.rc.Plan.ResponseHeaders = *rp.Headers
	}
	if !cl.respStarted && !cl.respEnded && cl.down.attached {
		switch {
		case rp.Direct:
			cl.localReplyLocked(c, rp.Status, rp.Message, 0)
		case cl.grpc:
			cl.grpcErrorLocked(c, rp.GRPC, rp.Text(true, cl.path), rp.Flag)
		default:
			cl.localReplyLocked(c, rp.Status, rp.Message+"\n", rp.Flag)
		}
	}
	c.unlock()
}

// grpcErrorLocked queues a trailers-only gRPC response: HTTP 200 and
// grpc-status in the only HEADERS frame, which is what gRPC clients
// expect of a proxy's own errors.
func (cl *call) grpcErrorLocked(c *conn, code int, msg string, f flag) {
	cl.downStatus.Store(200)
	cl.addFlag(f)
	fields := make([]hpack.HeaderField, 0, 6)
	fields = append(fields,
		hpack.HeaderField{Name: ":status", Value: "200"},
		hpack.HeaderField{Name: "content-type", Value: "application/grpc"},
		hpack.HeaderField{Name: "grpc-status", Value: itoa(int64(code))})
	if msg != "" {
		fields = append(fields, hpack.HeaderField{Name: "grpc-message", Value: grpcproto.EncodeMessage(msg)})
	}
	if f != 0 {
		fields = append(fields, hpack.HeaderField{Name: headerResponseFlags, Value: f.String()})
	}
	fields = appendRateLimit(fields, &cl.rc.Plan.RateLimit)
	fields = appendResponseHeaders(fields, cl.rc.Plan.ResponseHeaders)
	fields = cl.appendRequestID(fields)
	h := &cl.down
	h.hdrs, h.hdrsPending, h.endPending = fields, true, true
	cl.respStarted, cl.respEnded = true, true
	c.scheduleLocked(h)
}

// localReplyLocked queues a plain-text response.
func (cl *call) localReplyLocked(c *conn, status int, body string, f flag) {
	cl.downStatus.Store(int32(status))
	cl.addFlag(f)
	fields := make([]hpack.HeaderField, 0, 5)
	fields = append(fields,
		hpack.HeaderField{Name: ":status", Value: itoa(int64(status))},
		hpack.HeaderField{Name: "content-type", Value: "text/plain; charset=utf-8"},
		hpack.HeaderField{Name: "content-length", Value: itoa(int64(len(body)))})
	if f != 0 {
		fields = append(fields, hpack.HeaderField{Name: headerResponseFlags, Value: f.String()})
	}
	fields = appendRateLimit(fields, &cl.rc.Plan.RateLimit)
	fields = appendResponseHeaders(fields, cl.rc.Plan.ResponseHeaders)
	fields = cl.appendRequestID(fields)
	h := &cl.down
	h.hdrs, h.hdrsPending = fields, true
	cl.respStarted, cl.respEnded = true, true
	if cl.head {
		h.endPending = true
		c.scheduleLocked(h)
		return
	}
	d := getBuf(len(body))
	d.end = copy(d.b, body)
	d.local = true
	if !c.enqueueDataLocked(h, d, true) {
		putBuf(d)
	}
}

// appendRateLimit adds the x-ratelimit-* headers a rate limit asked for,
// when it did.
func appendRateLimit(fields []hpack.HeaderField, rl *router.RateLimitHeaders) []hpack.HeaderField {
	if !rl.Set {
		return fields
	}
	limit, remaining, reset := rl.Values()
	return append(fields,
		hpack.HeaderField{Name: router.LowerRateLimitLimit, Value: limit},
		hpack.HeaderField{Name: router.LowerRateLimitRemaining, Value: remaining},
		hpack.HeaderField{Name: router.LowerRateLimitReset, Value: reset})
}

// appendRequestID adds x-request-id to a response the proxy makes itself,
// when the listener sets it in responses.
func (cl *call) appendRequestID(fields []hpack.HeaderField) []hpack.HeaderField {
	if cl.requestID != "" && cl.sc.srv.obs.SetInResponse() {
		fields = append(fields, cl.requestIDField())
	}
	return fields
}

// onResponseHeaders forwards the upstream's response headers (on the
// upstream reader): :status, the fields without hop-by-hop ones, and
// x-sightline-upstream-service-time.
func (cl *call) onResponseHeaders(status string, end bool, fields []hpack.HeaderField) {
	if r := cl.rtp; r != nil {
		r.onHeaders(status, end, fields)
		return
	}
	f := append(cl.respFields[:0], hpack.HeaderField{Name: ":status", Value: status})
	grpcStatus := ""
	setID := cl.requestID != "" && cl.sc.srv.obs.SetInResponse()
	for _, fld := range fields {
		if router.HopByHop(fld.Name) || setID && fld.Name == tracing.RequestIDHeader {
			continue
		}
		if fld.Name == "grpc-status" {
			grpcStatus = fld.Value
		}
		if sensitive(fld.Name) {
			fld.Sensitive = true
		}
		f = append(f, fld)
	}
	upTime := time.Since(cl.sent)
	cl.upTime.Store(int64(max(upTime, 1)))
	f = append(f, hpack.HeaderField{Name: headerUpstreamServiceTime, Value: itoa(upTime.Milliseconds())})
	f = appendRateLimit(f, &cl.rc.Plan.RateLimit)
	f = appendResponseHeaders(f, cl.rc.Plan.ResponseHeaders)
	if setID {
		f = append(f, cl.requestIDField())
	}
	cl.respFields = f
	code := statusCode(status)
	if status[0] == '5' || cl.grpc && end && grpcFailed(grpcStatus) {
		cl.failed.Store(true)
	}
	c := cl.down.lock()
	h := &cl.down
	if code >= 200 {
		// Informational (1xx) headers are not the response.
		cl.upStatus.Store(int32(code))
		cl.downStatus.Store(int32(code))
		if cl.grpc && grpcStatus != "" {
			cl.grpcStatus.Store(int32(statusCode(grpcStatus)))
		}
	}
	if !cl.respEnded && h.attached {
		h.hdrs, h.hdrsPending = f, true
		cl.respStarted = true
		if end {
			h.endPending, cl.respEnded = true, true
		}
		c.scheduleLocked(h)
	}
	c.unlock()
}

// onInterim forwards an informational response (103 Early Hints, 102)
// ahead of the response: its own HEADERS frame, without END_STREAM (RFC
// 9113 §8.1), written before the response's headers. 100 Continue is not
// forwarded: it answers the upstream's own expectation, as Envoy keeps it.
// Of interim responses not yet written, the last is kept. It runs on the
// upstream reader.
func (cl *call) onInterim(status string, fields []hpack.HeaderField) {
	if cl.rtp != nil {
		return // net/http callers learn of 1xx responses otherwise
	}
	// Its own slice: the final response's fields are built in
	// cl.respFields while the writer may still be encoding these.
	f := make([]hpack.HeaderField, 0, len(fields)+1)
	f = append(f, hpack.HeaderField{Name: ":status", Value: status})
	for _, fld := range fields {
		if !router.HopByHop(fld.Name) {
			f = append(f, fld)
		}
	}
	c := cl.down.lock()
	if h := &cl.down; !cl.respStarted && !cl.respEnded && h.attached {
		h.interim, h.interimPending = f, true
		c.scheduleLocked(h)
	}
	c.unlock()
}

// onResponseData forwards response bytes (d may be nil) downstream. It
// reports false when the client no longer takes them.
func (cl *call) onResponseData(d *dbuf, end bool) bool {
	if r := cl.rtp; r != nil {
		return r.onData(d, end)
	}
	if cl.grpc && d != nil {
		if n := cl.respCounter.Feed(d.bytes()); n > 0 {
			cl.respMsgs.Add(int64(n))
		}
	}
	c := cl.down.lock()
	if cl.respEnded || !c.enqueueDataLocked(&cl.down, d, end) {
		c.unlock()
		if d != nil {
			putBuf(d)
		}
		return false
	}
	if end {
		cl.respEnded = true
	}
	c.unlock()
	return true
}

// onResponseTrailers forwards the upstream's trailers, ending the response.
func (cl *call) onResponseTrailers(fields []hpack.HeaderField) {
	if r := cl.rtp; r != nil {
		r.onTrailers(fields)
		return
	}
	t := cl.respTrailers[:0]
	for _, f := range fields {
		if router.HopByHop(f.Name) {
			continue
		}
		if f.Name == "grpc-status" && cl.grpc {
			if grpcFailed(f.Value) {
				cl.failed.Store(true)
			}
			cl.grpcStatus.Store(int32(statusCode(f.Value)))
		}
		t = append(t, f)
	}
	cl.respTrailers = t
	c := cl.down.lock()
	h := &cl.down
	if !cl.respEnded && h.attached && !h.sendDone {
		h.trailers, h.trailersPending, h.endPending = t, true, true
		cl.respEnded = true
		c.scheduleLocked(h)
	}
	c.unlock()
}

// upstreamReset handles the upstream stream ending abnormally (reset,
// connection lost, connect failure): before response headers the client
// gets a local error (UNAVAILABLE for gRPC, 503 otherwise); after, its
// stream is reset with the same code.
//
// An upstream that resets with CANCEL once the call's deadline has passed
// is a gRPC server whose own deadline, from the grpc-timeout we passed
// on, fired first: the client gets DEADLINE_EXCEEDED, as if our timer had.
func (cl *call) upstreamReset(code http2.ErrCode, f flag, msg string) {
	if r := cl.rtp; r != nil {
		err := fmt.Errorf("%w: %s", ErrUpstreamReset, msg)
		switch f {
		case flagUpstreamOverflow:
			err = fmt.Errorf("%w: %w: %s", upstream.ErrConnect, upstream.ErrOverflow, msg)
		case flagUpstreamConnectFailure:
			err = fmt.Errorf("%w: %s", upstream.ErrConnect, msg)
		}
		r.fail(err)
		return
	}
	cl.failed.Store(true)
	cl.addFlag(f)
	c := cl.down.lock()
	expired := code == http2.ErrCodeCancel && !cl.deadline.IsZero() && !time.Now().Before(cl.deadline)
	if !expired {
		if cl.upStatus.Load() != 0 {
			cl.rxReset.Store(true) // the response had begun
		} else {
			cl.endedBy.CompareAndSwap(0, endedFor(f)) // the first cause stands
		}
		if cl.grpc && !cl.respStarted {
			cl.grpcStatus.Store(grpcUnavailable)
		}
	}
	switch {
	case cl.respEnded || !cl.down.attached:
	case expired:
		cl.timeoutLocked(c)
	case !cl.respStarted:
		if cl.grpc {
			cl.grpcErrorLocked(c, grpcUnavailable, msg, f)
		} else {
			cl.localReplyLocked(c, 503, msg+"\n", f)
		}
	case cl.grpc:
		// A gRPC client gets UNAVAILABLE in trailers, as from a direct
		// call whose server went away, rather than a stream reset it
		// would surface as INTERNAL.
		cl.grpcStatus.Store(grpcUnavailable)
		h := &cl.down
		h.trailers = append(h.trailers[:0],
			hpack.HeaderField{Name: "grpc-status", Value: itoa(grpcUnavailable)},
			hpack.HeaderField{Name: "grpc-message", Value: grpcproto.EncodeMessage(msg)},
			hpack.HeaderField{Name: headerResponseFlags, Value: f.String()})
		h.trailersPending, h.endPending = true, true
		cl.respEnded = true
		c.scheduleLocked(h)
	default:
		cl.respEnded = true
		cl.sc.srv.stats.DownstreamRqTxReset.Inc(1)
		c.resetLocked(&cl.down, midResponseReset(code), true)
	}
	c.unlock()
}

// midResponseReset is the code a client's stream is reset with when its
// upstream failed after the response began. NO_ERROR would read as a
// normal end to many clients although bytes were lost, and REFUSED_STREAM
// would tell them the request was not processed (RFC 9113 §8.7), which it
// was: both become INTERNAL_ERROR. Other codes pass as the upstream sent
// them.
func midResponseReset(code http2.ErrCode) http2.ErrCode {
	if code == http2.ErrCodeNo || code == http2.ErrCodeRefusedStream {
		return http2.ErrCodeInternal
	}
	return code
}

// statusCode parses a status of a few digits (":status", "grpc-status");
// anything else is 0.
func statusCode(s string) int {
	n := 0
	if len(s) == 0 || len(s) > 4 {
		return 0
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}
