package h2

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sightline-proxy/sightline/proxy/upstream"
)

// bridgeWindow bounds the response bytes an HTTP/1.1 bridge has queued
// downstream and not yet written, as the stream window bounds an HTTP/2
// upstream's.
const bridgeWindow = initialStreamWindow

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

// run sends the request and streams the response back.
func (b *bridge) run(pool *upstream.Pool, req *http.Request) {
	cl := b.cl
	defer func() {
		b.stop()
		b.Close()
		cl.halfDone(&cl.up)
	}()
	resp, err := pool.RoundTripH1(req)
	if err != nil {
		if errors.Is(err, upstream.ErrConnect) {
			cl.upstreamReset(http2.ErrCodeRefusedStream, flagUpstreamConnectFailure, msgConnectFailure)
		} else {
			cl.upstreamReset(http2.ErrCodeInternal, flagUpstreamRemoteReset, msgRemoteReset)
		}
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
			cl.txBytes.Add(int64(n))
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
			cl.upstreamReset(http2.ErrCodeInternal, flagUpstreamRemoteReset, msgRemoteReset)
			return
		}
	}
	if len(resp.Trailer) > 0 {
		cl.onResponseTrailers(responseFields(resp.Trailer))
		return
	}
	cl.onResponseData(nil, true)
}

// responseFields turns an HTTP/1.1 header map into HTTP/2 fields, without
// hop-by-hop headers and those the upstream named in Connection (RFC 9110
// §7.6.1).
func responseFields(h http.Header) []hpack.HeaderField {
	conn := h.Values("Connection")
	fields := make([]hpack.HeaderField, 0, len(h))
	for k, vs := range h {
		name := strings.ToLower(k)
		if connectionSpecific(name) || hopByHop(name) || name == "te" || namedIn(conn, name) {
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
			putBuf(d)
		}
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
			b.cl.down.credit(int32(n))
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
	freeChain(b.head)
	b.head, b.tail = nil, nil
	b.mu.Unlock()
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
