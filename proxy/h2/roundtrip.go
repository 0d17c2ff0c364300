package h2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sightline-proxy/sightline/proxy/router"
	"github.com/sightline-proxy/sightline/proxy/upstream"
)

// RoundTrip sends one request built on net/http's types to the host:
// HTTP/1.1 on the host's net/http pool when http1 is set; otherwise
// HTTP/2 on the frame engine's pool, the one every HTTP/2 upstream call
// shares (with its breakers, keepalive PINGs and connection stats). The
// HTTP/1.1 handler and the mirror use it; it implements
// router.RoundTripper.
func (u *Upstream) RoundTrip(req *http.Request, http1 bool) (*http.Response, error) {
	if http1 {
		if u.HTTP == nil {
			return nil, fmt.Errorf("%w: %s has no HTTP/1.1 pool", upstream.ErrConnect, req.URL.Host)
		}
		return u.HTTP.RoundTripH1(req)
	}
	return u.H2.RoundTrip(req)
}

// rtWindow bounds the request body bytes a RoundTrip has queued upstream
// and not yet written, as a client's stream window bounds a proxied
// call's.
const rtWindow = 256 << 10

// ErrUpstreamReset is the error of a RoundTrip whose stream the upstream
// reset, or whose connection was lost, before the response was whole.
var ErrUpstreamReset = errors.New("upstream reset")

// RoundTrip sends req as one stream on the pool and returns the response
// once its headers arrive; the body streams as the upstream sends it.
// Closing the body, or cancelling req's context, resets the stream if it
// is still open. A failure to connect wraps upstream.ErrConnect.
//
// The call runs on the engine like a proxied one, its downstream half
// replaced by an rtStream: request body bytes are read from req.Body as
// the upstream's window takes them, and response bytes wait in the
// stream until the body's reader takes them, which credits the upstream.
func (p *Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	cl := callPool.Get().(*call)
	s := &rtStream{cl: cl, headers: make(chan struct{}), wake: make(chan struct{}, 1), room: make(chan struct{}, 1)}
	cl.rtp = s
	cl.halves.Store(1) // the response body's reader
	cl.refs.Store(1)
	cl.head = req.Method == http.MethodHead
	cl.reqFields = requestFields(cl.reqFields[:0], req, p.scheme)
	body := req.Body
	if body == http.NoBody {
		body = nil
	}
	h := &cl.up
	h.hdrs, h.hdrsPending, h.endPending = cl.reqFields, true, body == nil
	cl.halves.Add(1)
	cl.refs.Add(1)
	cl.pool = p
	switch r := p.dispatch(h); r {
	case dispatched:
	case pendingOverflow:
		cl.halves.Add(-1)
		cl.refs.Add(-1)
		s.done()
		return nil, fmt.Errorf("%w: %w: %s: max_pending_requests or max_connection_pools reached", upstream.ErrConnect, upstream.ErrOverflow, p.addr)
	default:
		cl.halves.Add(-1)
		cl.refs.Add(-1)
		s.done()
		if r == poolHeldOff {
			return nil, fmt.Errorf("%w: %s broke HTTP/2 on a connection just closed: no new one yet", upstream.ErrConnect, p.addr)
		}
		return nil, fmt.Errorf("%w: pool for %s is closed", upstream.ErrConnect, p.addr)
	}
	ctx := req.Context()
	stop := context.AfterFunc(ctx, func() { s.abort(ctx.Err()) })
	if body != nil {
		cl.refs.Add(1) // sendBody's
		go s.sendBody(body)
	}
	select {
	case <-s.headers:
	case <-ctx.Done():
		s.abort(ctx.Err())
		<-s.headers
	}
	s.mu.Lock()
	resp, err := s.resp, s.err
	s.mu.Unlock()
	if resp == nil {
		// Failed before the response headers. Once they have come, a
		// failure belongs to the body: its reader gets the error.
		stop()
		s.done()
		return nil, err
	}
	resp.Request = req
	resp.Body = &rtBody{s: s, stop: stop}
	return resp, nil
}

// requestFields turns req into the HTTP/2 request's fields.
func requestFields(f []hpack.HeaderField, req *http.Request, scheme string) []hpack.HeaderField {
	authority := req.Host
	if authority == "" {
		authority = req.URL.Host
	}
	f = append(f,
		hpack.HeaderField{Name: ":method", Value: req.Method},
		hpack.HeaderField{Name: ":scheme", Value: scheme},
		hpack.HeaderField{Name: ":authority", Value: authority},
		hpack.HeaderField{Name: ":path", Value: req.URL.RequestURI()})
	for k, vs := range req.Header {
		name := strings.ToLower(k)
		switch {
		case name == "host" || connectionSpecific(name) || router.HopByHop(name):
			continue
		case name == "te":
			if len(vs) > 0 && strings.EqualFold(vs[0], "trailers") {
				f = append(f, hpack.HeaderField{Name: "te", Value: "trailers"})
			}
			continue
		}
		for _, v := range vs {
			f = append(f, hpack.HeaderField{Name: name, Value: v, Sensitive: sensitive(name)})
		}
	}
	if req.ContentLength > 0 && req.Header.Get("Content-Length") == "" {
		f = append(f, hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(req.ContentLength, 10)})
	}
	return f
}

// rtStream is the downstream side of a RoundTrip call.
type rtStream struct {
	cl      *call
	headers chan struct{} // closed when the response headers or an error came

	mu         sync.Mutex
	resp       *http.Response
	err        error // set once: why the response ended early
	head, tail *dbuf // response bytes not yet read
	ended      bool  // the response is complete (or failed: err)
	closed     bool  // the body was closed or the call ended
	gotHeaders bool
	// trailers wait here until the body's reader reaches their end:
	// resp.Trailer is the handler's, which reads its announced keys
	// while the body streams, so the upstream reader never writes it.
	trailers []hpack.HeaderField
	wake     chan struct{}
	room     chan struct{}
	finished bool
	// inFlight is the request bytes queued upstream and not yet written;
	// atomic, since the writer credits it holding its connection's lock.
	inFlight atomic.Int64
}

// onHeaders delivers the response headers (upstream reader).
func (s *rtStream) onHeaders(status string, end bool, fields []hpack.HeaderField) {
	code := statusCode(status)
	if code < 200 {
		return // informational
	}
	resp := &http.Response{
		StatusCode: code, Status: status + " " + http.StatusText(code),
		Proto: "HTTP/2.0", ProtoMajor: 2, Header: make(http.Header, len(fields)), ContentLength: -1,
		Trailer: http.Header{},
	}
	for _, f := range fields {
		k := http.CanonicalHeaderKey(f.Name)
		resp.Header[k] = append(resp.Header[k], f.Value)
		if f.Name == "content-length" {
			if n, ok := parseContentLength(f.Value); ok {
				resp.ContentLength = n
			}
		}
	}
	s.mu.Lock()
	if s.gotHeaders || s.err != nil {
		s.mu.Unlock()
		return
	}
	s.resp, s.gotHeaders = resp, true
	if end {
		s.ended = true
	}
	s.mu.Unlock()
	close(s.headers)
}

// onData queues response bytes (upstream reader); false when nobody
// reads them any more.
func (s *rtStream) onData(d *dbuf, end bool) bool {
	s.mu.Lock()
	if s.closed || s.ended {
		s.mu.Unlock()
		if d != nil {
			putBuf(d)
		}
		return false
	}
	if d != nil && d.len() > 0 {
		d.next = nil
		if s.tail == nil {
			s.head = d
		} else {
			s.tail.next = d
		}
		s.tail = d
	} else if d != nil {
		putBuf(d)
	}
	s.ended = s.ended || end
	s.mu.Unlock()
	signal(s.wake)
	return true
}

// onTrailers ends the response with its trailers.
func (s *rtStream) onTrailers(fields []hpack.HeaderField) {
	s.mu.Lock()
	if s.resp != nil && !s.ended {
		s.trailers = append(s.trailers, fields...)
		s.ended = true
	}
	s.mu.Unlock()
	signal(s.wake)
}

// fail ends the response early with err (a reset, a lost connection, a
// connect failure, a cancelled context).
func (s *rtStream) fail(err error) {
	s.mu.Lock()
	if s.err != nil || s.ended && s.head == nil && s.gotHeaders {
		s.mu.Unlock()
		return
	}
	s.err = err
	first := !s.gotHeaders
	s.gotHeaders = true
	s.mu.Unlock()
	if first {
		close(s.headers)
	}
	signal(s.wake)
	signal(s.room)
}

// abort cancels the call: the upstream stream is reset. It may run on
// the context's goroutine at any time: s.mu keeps done from releasing the
// call meanwhile.
func (s *rtStream) abort(err error) {
	s.fail(err)
	s.mu.Lock()
	if !s.finished {
		s.cl.cancelUpstream(http2.ErrCodeCancel)
	}
	s.mu.Unlock()
}

// credited runs on the upstream writer as request bytes are written.
func (s *rtStream) credited(n int32) {
	s.inFlight.Add(-int64(n))
	signal(s.room)
}

// sendBody copies the request body upstream, no more than rtWindow
// ahead of the upstream writer, and ends the request.
func (s *rtStream) sendBody(body io.ReadCloser) {
	cl := s.cl
	defer cl.release()
	defer body.Close()
	for {
		d := getBuf(maxFrameSize)
		n, err := body.Read(d.b)
		d.end = n
		end := err == io.EOF
		if err != nil && !end {
			putBuf(d)
			s.abort(fmt.Errorf("reading the request body: %w", err))
			return
		}
		if n == 0 {
			putBuf(d)
			d = nil
		}
		if d != nil && !s.waitRoom(n) {
			putBuf(d)
			return
		}
		if n == 0 && !end {
			continue
		}
		c := cl.up.lock()
		if c == nil {
			if d != nil {
				putBuf(d)
			}
			return
		}
		ok := c.enqueueDataLocked(&cl.up, d, end)
		c.unlock()
		if !ok {
			if d != nil {
				putBuf(d)
			}
			return
		}
		if end {
			return
		}
	}
}

// waitRoom waits until n more request bytes fit the window; false when
// the call has failed meanwhile.
func (s *rtStream) waitRoom(n int) bool {
	for {
		s.mu.Lock()
		stop := s.err != nil || s.closed
		s.mu.Unlock()
		if stop {
			return false
		}
		if in := s.inFlight.Load(); in == 0 || in+int64(n) <= rtWindow {
			s.inFlight.Add(int64(n))
			return true
		}
		<-s.room
	}
}

// done ends the downstream side: nothing more is read.
func (s *rtStream) done() {
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return
	}
	s.finished, s.closed = true, true
	freeChain(s.head)
	s.head, s.tail = nil, nil
	s.mu.Unlock()
	signal(s.room)
	s.cl.halfDone(&s.cl.down)
}

// rtBody is a RoundTrip response's body.
type rtBody struct {
	s    *rtStream
	stop func() bool
	once sync.Once
}

func (b *rtBody) Read(p []byte) (int, error) {
	s := b.s
	for {
		s.mu.Lock()
		if d := s.head; d != nil {
			n := copy(p, d.bytes())
			d.off += n
			if d.len() == 0 {
				s.head = d.next
				if s.head == nil {
					s.tail = nil
				}
				putBuf(d)
			}
			s.mu.Unlock()
			s.cl.up.credit(int32(n), maxStreamWindow)
			return n, nil
		}
		ended, err, closed := s.ended, s.err, s.closed
		tr := s.trailers
		if ended && err == nil && !closed {
			s.trailers = nil
		}
		s.mu.Unlock()
		switch {
		case err != nil:
			return 0, err
		case closed:
			return 0, errors.New("read on a closed body")
		case ended:
			// On the reader's goroutine, as net/http's client fills
			// resp.Trailer at the body's end.
			for _, f := range tr {
				k := http.CanonicalHeaderKey(f.Name)
				s.resp.Trailer[k] = append(s.resp.Trailer[k], f.Value)
			}
			return 0, io.EOF
		}
		<-s.wake
	}
}

// Close ends the call, resetting the upstream stream if it is still open.
func (b *rtBody) Close() error {
	b.once.Do(func() {
		b.stop()
		b.s.cl.cancelUpstream(http2.ErrCodeCancel)
		b.s.done()
	})
	return nil
}
