// Package upstream owns the connections to one upstream host and sends
// requests over them.
//
// HTTP/2 pools hold connections made with http.Transport.NewClientConn, so
// the pool, not the Transport, decides when to open another: a request goes
// to the first connection with a free stream slot (the peer's advertised
// SETTINGS_MAX_CONCURRENT_STREAMS, as the ClientConn tracks it), and a new
// connection is dialled only when every one is full. HTTP/1.1 pools use a
// Transport's own keep-alive pool.
package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a pool.
type Options struct {
	// ConnectTimeout bounds a TCP (and TLS) connect.
	ConnectTimeout time.Duration
	// TLS, when set, makes connections TLS with ALPN h2 / http/1.1.
	TLS *tls.Config
	// OnConnect and OnClose, when set, are called as connections open and
	// close, for the connection stats.
	OnConnect func()
	OnClose   func()
}

// ErrConnect wraps a failure to open a connection: nothing was sent, so the
// request is safe to retry and the response flag is UF.
var ErrConnect = errors.New("upstream connect error")

// Pool is the connection pool of one host. It is safe for concurrent use.
type Pool struct {
	addr   string
	scheme string
	opts   Options

	h2    *http.Transport // only for NewClientConn
	h1    *http.Transport
	conns atomic.Pointer[[]*http.ClientConn]

	mu     sync.Mutex // serializes dials and changes to conns
	closed bool
}

// New returns a pool for addr ("ip:port"). It does no I/O.
func New(addr string, opts Options) *Pool {
	p := &Pool{addr: addr, scheme: "http", opts: opts}
	if opts.TLS != nil {
		p.scheme = "https"
	}
	dialer := &net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second}
	h2proto := new(http.Protocols)
	if opts.TLS != nil {
		h2proto.SetHTTP2(true)
	} else {
		h2proto.SetUnencryptedHTTP2(true)
	}
	p.h2 = &http.Transport{
		DialContext:        signalFirstRead(dialer.DialContext),
		TLSClientConfig:    opts.TLS,
		Protocols:          h2proto,
		DisableCompression: true, // forward bytes as they are; never add Accept-Encoding
		HTTP2: &http.HTTP2Config{
			MaxReceiveBufferPerConnection: 4 << 20,
			MaxReceiveBufferPerStream:     1 << 20,
			SendPingTimeout:               30 * time.Second,
			PingTimeout:                   15 * time.Second,
		},
	}
	h1proto := new(http.Protocols)
	h1proto.SetHTTP1(true)
	p.h1 = &http.Transport{
		DialContext:         dialer.DialContext,
		TLSClientConfig:     opts.TLS,
		Protocols:           h1proto,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
	}
	empty := []*http.ClientConn{}
	p.conns.Store(&empty)
	return p
}

// RoundTripH2 sends req over HTTP/2. req.URL must already name this host.
// The response body streams; closing it (or cancelling req's context) ends
// the stream, resetting it upstream if it is still open.
func (p *Pool) RoundTripH2(req *http.Request) (*http.Response, error) {
	cc, err := p.reserve(req.Context())
	if err != nil {
		return nil, err
	}
	return cc.RoundTrip(req)
}

// RoundTripH1 sends req over HTTP/1.1 on a kept-alive connection.
func (p *Pool) RoundTripH1(req *http.Request) (*http.Response, error) {
	resp, err := p.h1.RoundTrip(req)
	if err != nil && isDialError(err) {
		return nil, fmt.Errorf("%w: %w", ErrConnect, err)
	}
	return resp, err
}

// reserve returns a connection with a stream slot reserved for the caller.
func (p *Pool) reserve(ctx context.Context) (*http.ClientConn, error) {
	if cc := p.tryReserve(); cc != nil {
		return cc, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// Another request may have dialled while we waited.
	if cc := p.tryReserve(); cc != nil {
		return cc, nil
	}
	if p.closed {
		return nil, fmt.Errorf("%w: pool for %s is closed", ErrConnect, p.addr)
	}
	firstRead := make(chan struct{})
	cc, err := p.h2.NewClientConn(context.WithValue(ctx, firstReadKey{}, firstRead), p.scheme, p.addr)
	if err != nil {
		return nil, fmt.Errorf("%w: dialing %s: %w", ErrConnect, p.addr, err)
	}
	awaitPeerSettings(ctx, cc, firstRead)
	if p.opts.OnConnect != nil {
		p.opts.OnConnect()
	}
	cc.SetStateHook(p.onStateChange)
	if err := cc.Reserve(); err != nil {
		cc.Close()
		return nil, fmt.Errorf("%w: new connection to %s: %w", ErrConnect, p.addr, err)
	}
	next := append(slices.Clone(*p.conns.Load()), cc)
	p.conns.Store(&next)
	return cc, nil
}

// tryReserve reserves a slot on the first connection that has one. It takes
// no lock: the slice is immutable once published.
func (p *Pool) tryReserve() *http.ClientConn {
	for _, cc := range *p.conns.Load() {
		if cc.Reserve() == nil {
			return cc
		}
	}
	return nil
}

// onStateChange drops connections that can no longer be used (GOAWAY,
// errors, closed) from the pool; their open streams finish on their own.
func (p *Pool) onStateChange(cc *http.ClientConn) {
	if cc.Err() == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := *p.conns.Load()
	i := slices.Index(cur, cc)
	if i < 0 {
		return
	}
	next := slices.Delete(slices.Clone(cur), i, i+1)
	p.conns.Store(&next)
	cc.Close()
	if p.opts.OnClose != nil {
		p.opts.OnClose()
	}
}

// Conns returns the number of open HTTP/2 connections.
func (p *Pool) Conns() int { return len(*p.conns.Load()) }

// Close closes every connection once its requests finish and refuses new
// ones. It is idempotent.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	conns := *p.conns.Load()
	empty := []*http.ClientConn{}
	p.conns.Store(&empty)
	p.mu.Unlock()
	for _, cc := range conns {
		go closeWhenIdle(cc)
	}
	p.h1.CloseIdleConnections()
	return nil
}

// closeWhenIdle closes cc after its in-flight requests end, or after a
// minute at most so that a stuck stream cannot keep it forever.
func closeWhenIdle(cc *http.ClientConn) {
	deadline := time.Now().Add(time.Minute)
	for cc.InFlight() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cc.Close()
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// initialStreamLimit is what net/http's client assumes of a peer's
// SETTINGS_MAX_CONCURRENT_STREAMS until the peer's SETTINGS arrive.
const initialStreamLimit = 100

type firstReadKey struct{}

// signalFirstRead wraps a dialer so that the connection closes the channel
// found in the dial context when its first bytes arrive: a server's first
// bytes are its SETTINGS frame (RFC 9113 §3.4).
func signalFirstRead(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		ch, _ := ctx.Value(firstReadKey{}).(chan struct{})
		if ch == nil {
			return c, nil
		}
		return &firstReadConn{Conn: c, ch: ch}, nil
	}
}

type firstReadConn struct {
	net.Conn
	once sync.Once
	ch   chan struct{}
}

func (c *firstReadConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 || err != nil {
		c.once.Do(func() { close(c.ch) })
	}
	return n, err
}

// awaitPeerSettings waits until the new connection has applied the peer's
// SETTINGS, so that its stream limit is the peer's and not a guess: the
// pool must not pile streams onto a connection the peer will refuse. It
// waits for the first bytes from the peer, then briefly for the reader to
// apply them; a peer that advertises exactly the initial limit costs at
// most that brief wait.
func awaitPeerSettings(ctx context.Context, cc *http.ClientConn, firstRead <-chan struct{}) {
	select {
	case <-firstRead:
	case <-ctx.Done():
		return
	case <-time.After(time.Second):
		return
	}
	deadline := time.Now().Add(2 * time.Millisecond)
	for cc.Available() == initialStreamLimit && time.Now().Before(deadline) {
		time.Sleep(20 * time.Microsecond)
	}
}
