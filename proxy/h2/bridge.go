package h2

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sightline-proxy/sightline/proxy/grpcproto"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/router"
	"github.com/sightline-proxy/sightline/proxy/upstream"
)

// bridgeWindow bounds the response bytes an HTTP/1.1 bridge has queued
// downstream and not yet written, as the stream window bounds an HTTP/2
// upstream's.
const bridgeWindow = 256 << 10

// bridge carries one call from an HTTP/2 client to an http1 cluster
// through the net/http pool's RoundTripH1. net/http's client blocks, so
// the bridge runs one goroutine per call: HTTP/1.1 upstreams are the slow
// path. The request body is fed from the downstream reader, and its
// stream window is credited as RoundTrip reads it; response bytes wait for
// the downstream writer to take them before more are read (bridgeWindow).
type bridge struct {
	cl   *call
	ctx  context.Context
	stop context.CancelFunc

	mu         sync.Mutex
	head, tail *dbuf
	ended      bool // the request body is complete
	closed     bool
	inFlight   int64 // response bytes queued downstream
	wake       chan struct{}
	room       chan struct{}
}

// startBridge starts the call's bridge goroutine. It holds a reference
// and counts as the call's upstream half until it returns.
func startBridge(cl *call, pool *upstream.Pool, reqEnded bool) {
	b := &bridge{cl: cl, wake: make(chan struct{}, 1), room: make(chan struct{}, 1), ended: reqEnded}
	b.ctx, b.stop = context.WithCancel(context.Background())
	cl.br = b
	cl.halves.Add(1)
	cl.refs.Add(1)
	req := b.request(pool)
	go b.run(pool, req)
}

// request builds the HTTP/1.1 request from the upstream fields.
func (b *bridge) request(pool *upstream.Pool) *http.Request {
	cl := b.cl
	req := &http.Request{
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: make(http.Header, len(cl.reqFields)),
		URL:    &url.URL{Host: cl.rc.Host.Address},
	}
	for _, f := range cl.reqFields {
		switch f.Name {
		case ":method":
			req.Method = f.Value
		case ":scheme":
			req.URL.Scheme = f.Value
		case ":authority":
			req.Host = f.Value
		case ":path":
			if u, err := url.ParseRequestURI(f.Value); err == nil {
				req.URL.Path, req.URL.RawPath, req.URL.RawQuery = u.Path, u.RawPath, u.RawQuery
			} else {
				req.URL.Opaque = f.Value
			}
		default:
			k := http.CanonicalHeaderKey(f.Name)
			req.Header[k] = append(req.Header[k], f.Value)
		}
	}
	switch {
	case b.ended:
		req.Body = http.NoBody
	case cl.down.contentLen >= 0:
		req.Body, req.ContentLength = b, cl.down.contentLen
	default:
		req.Body, req.ContentLength = b, -1
	}
	return req.WithContext(b.ctx)
}

// run sends the request and streams the response back. An attempt that
// fails before anything was forwarded is retried as the router decides,
// as on HTTP/2 upstreams.
func (b *bridge) run(pool *upstream.Pool, req *http.Request) {
	cl := b.cl
	defer func() {
		b.stop()
		b.Close()
		cl.halfDone(&cl.up)
	}()
	var (
		resp   *http.Response
		tries  int
		perTry bool
	)
	try := func(hst *host.Host) router.Outcome {
		if tries > 0 {
			// A retry: the kept request, to the host the router picked.
			u, _ := hst.Upstream().(*Upstream)
			if u == nil || u.HTTP == nil {
				return router.Outcome{GRPCStatus: -1, End: router.EndConnectFailure}
			}
			cl.startAttempt()
			cl.sent = time.Now()
			pool, req = u.HTTP, b.retryRequest(u.HTTP)
		}
		tries++
		var err error
		resp, err, perTry = b.roundTrip(pool, req)
		o := router.Outcome{GRPCStatus: -1, Elapsed: time.Since(cl.sent)}
		switch {
		case err == nil:
			o.Status = resp.StatusCode
			if cl.grpc {
				o.GRPCStatus = grpcproto.StatusOf(resp.Header) // trailers-only
			}
		case !perTry && b.ctx.Err() != nil:
			// The deadline or the client ended the call: answered.
			o.End = router.EndCancelled
		default:
			o.End = router.Classify(err, b.ctx, false, perTry)
		}
		return o
	}
	replayable := func() bool {
		cl.rmu.Lock()
		defer cl.rmu.Unlock()
		return cl.keep && !cl.bodyTooBig
	}
	o, rp, between := cl.rc.Run(b.ctx, cl.deadline, replayable, cl.rc.Host, try, b.settle(&resp))
	cl.addFlag(cl.rc.Flags)
	switch {
	case o.End == router.EndCancelled, between && rp == router.ReplyTimeout:
		return // answered: by whoever cancelled, by the deadline timer, or by settle
	case between && rp.Flag == 0:
		return
	case o.End == router.EndPerTryTimeout:
		cl.endedBy.CompareAndSwap(0, endedPerTryTimeout)
		cl.expire()
		return
	case between || o.End != router.EndResponse:
		if !between {
			rp = router.ReplyFor(o.End)
		}
		code := http2.ErrCodeInternal
		if o.End != router.EndReset {
			code = http2.ErrCodeRefusedStream // nothing reached the upstream
		}
		cl.upstreamReset(code, rp.Flag, rp.Message)
		return
	}
	defer resp.Body.Close()
	fields := responseFields(resp.Header)
	noBody := cl.head || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified
	cl.onResponseHeaders(strconv.Itoa(resp.StatusCode), noBody, fields)
	if noBody {
		return
	}
	for {
		d := getBuf(maxFrameSize)
		n, err := resp.Body.Read(d.b)
		if n > 0 {
			d.end = n
			if b.waitRoom(n) != nil || !cl.onResponseData(d, false) {
				return
			}
		} else {
			putBuf(d)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			cl.upstreamReset(http2.ErrCodeInternal, flagUpstreamRemoteReset, router.ReplyRemoteReset.Message)
			return
		}
	}
	if len(resp.Trailer) > 0 {
		cl.onResponseTrailers(responseFields(resp.Trailer))
		return
	}
	cl.onResponseData(nil, true)
}

// roundTrip sends one attempt. A per-try timeout bounds the wait for the
// response headers; perTry says it ended the attempt.
func (b *bridge) roundTrip(pool *upstream.Pool, req *http.Request) (resp *http.Response, err error, perTry bool) {
	d := b.cl.rc.Retry.PerTryTimeout
	if d <= 0 {
		resp, err = pool.RoundTripH1(req)
		return resp, err, false
	}
	ctx, cancel := context.WithCancel(b.ctx)
	var fired atomic.Bool
	t := time.AfterFunc(d, func() { fired.Store(true); cancel() })
	resp, err = pool.RoundTripH1(req.WithContext(ctx))
	if !t.Stop() && fired.Load() {
		if err == nil {
			resp.Body.Close()
		}
		return nil, context.DeadlineExceeded, true
	}
	// The attempt's context lives while the response streams; it ends
	// with the bridge's.
	context.AfterFunc(b.ctx, cancel)
	return resp, err, false
}

// settle readies the retry of an attempt: its response is dropped, its
// span ended, and the whole request kept (the client may still be
// sending it; the transport may have stopped reading it). false: the
// retry cannot go, the request grew past what is kept (the client is
// answered) or the call ended.
func (b *bridge) settle(resp **http.Response) router.Settle {
	return func(o *router.Outcome) bool {
		cl := b.cl
		if r := *resp; r != nil {
			r.Body.Close()
			*resp = nil
		}
		cl.endAttemptSpan(o, router.ReplyFor(o.End).Flag)
		for {
			cl.rmu.Lock()
			done, big := cl.bodyDone, cl.bodyTooBig
			cl.rmu.Unlock()
			if big {
				cl.upstreamReset(http2.ErrCodeCancel, flagUpstreamRemoteReset, router.ReplyRemoteReset.Message)
				return false
			}
			if done {
				break
			}
			select {
			case <-b.wake:
			case <-b.ctx.Done():
				return false
			}
		}
		b.mu.Lock()
		b.ended = true // the client's further bytes are kept, not queued
		b.mu.Unlock()
		return true
	}
}

// retryRequest is the request of a retry to pool's host: the upstream
// fields as built for the first attempt, with the kept body.
func (b *bridge) retryRequest(pool *upstream.Pool) *http.Request {
	cl := b.cl
	req := b.request(pool)
	cl.rmu.Lock()
	body := cl.body
	cl.rmu.Unlock()
	req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	if len(body) == 0 {
		req.Body = http.NoBody
	}
	return req
}

// responseFields turns an HTTP/1.1 header map into HTTP/2 fields, without
// hop-by-hop headers and those the upstream named in Connection (RFC 9110
// §7.6.1).
func responseFields(h http.Header) []hpack.HeaderField {
	conn := h.Values("Connection")
	fields := make([]hpack.HeaderField, 0, len(h))
	for k, vs := range h {
		name := strings.ToLower(k)
		if connectionSpecific(name) || router.HopByHop(name) || name == "te" || namedIn(conn, name) {
			continue
		}
		for _, v := range vs {
			fields = append(fields, hpack.HeaderField{Name: name, Value: v, Sensitive: sensitive(name)})
		}
	}
	return fields
}

func namedIn(conn []string, name string) bool {
	for _, v := range conn {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), name) {
				return true
			}
		}
	}
	return false
}

// feed queues request bytes from the downstream reader.
func (b *bridge) feed(d *dbuf, end bool) {
	b.mu.Lock()
	if b.closed || b.ended {
		b.mu.Unlock()
		if d != nil {
			// Dropped, but the client's window is given back so that
			// it can finish sending (a retry waits for the whole body).
			b.cl.down.credit(int32(d.len()), maxStreamWindow)
			putBuf(d)
		}
		signal(b.wake)
		return
	}
	if d != nil && d.len() > 0 {
		if b.tail == nil {
			b.head = d
		} else {
			b.tail.next = d
		}
		b.tail = d
	} else if d != nil {
		putBuf(d)
	}
	b.ended = b.ended || end
	b.mu.Unlock()
	signal(b.wake)
}

// Read gives RoundTrip the request body, crediting the client's stream
// window for what it takes.
func (b *bridge) Read(p []byte) (int, error) {
	for {
		b.mu.Lock()
		if d := b.head; d != nil {
			n := copy(p, d.bytes())
			d.off += n
			if d.len() == 0 {
				b.head = d.next
				if b.head == nil {
					b.tail = nil
				}
				putBuf(d)
			}
			b.mu.Unlock()
			b.cl.down.credit(int32(n), maxStreamWindow)
			return n, nil
		}
		ended, closed := b.ended, b.closed
		b.mu.Unlock()
		switch {
		case closed:
			return 0, context.Canceled
		case ended:
			return 0, io.EOF
		}
		select {
		case <-b.wake:
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		}
	}
}

// Close drops what is left of the request body.
func (b *bridge) Close() error {
	b.mu.Lock()
	b.closed = true
	n := 0
	for d := b.head; d != nil; d = d.next {
		n += d.len()
	}
	freeChain(b.head)
	b.head, b.tail = nil, nil
	b.mu.Unlock()
	if n > 0 {
		b.cl.down.credit(int32(n), maxStreamWindow) // the client may finish sending
	}
	signal(b.wake)
	return nil
}

// waitRoom waits until the downstream has taken enough of the response.
func (b *bridge) waitRoom(n int) error {
	for {
		b.mu.Lock()
		if b.inFlight == 0 || b.inFlight+int64(n) <= bridgeWindow {
			b.inFlight += int64(n)
			b.mu.Unlock()
			return nil
		}
		b.mu.Unlock()
		select {
		case <-b.room:
		case <-b.ctx.Done():
			return b.ctx.Err()
		}
	}
}

// credited runs on the downstream writer as response bytes are written.
func (b *bridge) credited(n int32) {
	b.mu.Lock()
	b.inFlight -= int64(n)
	b.mu.Unlock()
	signal(b.room)
}

// cancel aborts the upstream request (client gone, deadline).
func (b *bridge) cancel() { b.stop() }

// signal wakes a goroutine waiting on a one-slot channel, without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
