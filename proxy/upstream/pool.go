// Package upstream owns the HTTP/1.1 connections to one upstream host and
// sends requests over them, on a net/http Transport's keep-alive pool.
// (Every HTTP/2 upstream call goes through the frame engine's pools,
// proxy/h2.)
//
// The pool counts its connections in the cluster's upstream_cx_* stats as
// Envoy does, through the dial function it gives the Transport: every
// connection attempt, its connect failure or connect time, and its end,
// closed by the proxy (local) or by the peer (remote); and claims the
// cluster's max_connections and max_connection_pools breakers.
package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sightline-proxy/sightline/proxy/breaker"
	"github.com/sightline-proxy/sightline/stats"
)

// defaultConnectTimeout is the connect timeout of Options that leave it
// at zero, the HTTP/2 engine pool's.
const defaultConnectTimeout = time.Second

// Options configure a pool.
type Options struct {
	// ConnectTimeout bounds a connect: TCP and the TLS handshake. 0 means
	// 1s.
	ConnectTimeout time.Duration
	// TLS, when set, makes connections TLS with ALPN http/1.1.
	TLS *tls.Config
	// Stats is the cluster's: the pool counts its connections in its
	// upstream_cx_* stats, made when first counted in; nil counts nothing.
	Stats *stats.Cluster
	// Breakers are the cluster's circuit breakers, for max_connections
	// and max_connection_pools (see poolClaim). nil: no limit.
	Breakers *breaker.Breakers
	// IdleTimeout closes a kept-alive connection unused this long
	// (idle_timeout); 0: never.
	IdleTimeout time.Duration
}

// ErrConnect wraps a failure to open a connection: nothing was sent, so the
// request is safe to retry and the response flag is UF.
var ErrConnect = errors.New("upstream connect error")

// ErrOverflow is wrapped, with ErrConnect, in the error of a request whose
// pool had no connection free and could not open one because the
// cluster's max_connection_pools or max_connections breaker was open. No
// connection was attempted; a caller that tells overflows apart answers
// it with UO, one that does not sees a connect failure.
var ErrOverflow = errors.New("circuit breaker open")

// upstreamDialer dials every pool's connections: a Dialer holds only its
// settings, and every pool's are the same.
var upstreamDialer = net.Dialer{KeepAlive: 30 * time.Second}

// Pool is the connection pool of one host. It is safe for concurrent use.
type Pool struct {
	addr    string
	cs      *stats.Cluster // may be nil: see cx
	timeout time.Duration
	tls     *tls.Config
	idle    time.Duration
	claim   poolClaim
	// h1 is made by the first HTTP/1.1 request: every host of an http2
	// or auto cluster has a pool, and most never carry HTTP/1.1 (a
	// Transport is some 600 bytes, 6 MB for 10,000 hosts).
	h1   atomic.Pointer[http.Transport]
	h1mu sync.Mutex
}

// New returns a pool for addr ("ip:port"). It does no I/O.
func New(addr string, opts Options) *Pool {
	p := &Pool{addr: addr, cs: opts.Stats, timeout: opts.ConnectTimeout, tls: opts.TLS, idle: opts.IdleTimeout}
	if p.timeout <= 0 {
		p.timeout = defaultConnectTimeout
	}
	p.claim.b = opts.Breakers
	return p
}

// transport returns the pool's Transport, made on first use.
func (p *Pool) transport() *http.Transport {
	if t := p.h1.Load(); t != nil {
		return t
	}
	p.h1mu.Lock()
	defer p.h1mu.Unlock()
	if t := p.h1.Load(); t != nil {
		return t
	}
	h1proto := new(http.Protocols)
	h1proto.SetHTTP1(true)
	t := &http.Transport{
		Protocols:           h1proto,
		DisableCompression:  true, // forward bytes as they are; never add Accept-Encoding
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     p.idle,
	}
	// The pool dials, and for TLS handshakes, itself, so that a failed
	// handshake is a connect failure and connect_ms includes it.
	if p.tls != nil {
		t.DialTLSContext = p.dialFunc(tlsFor(p.tls, p.addr, "http/1.1"))
	} else {
		t.DialContext = p.dialFunc(nil)
	}
	p.h1.Store(t)
	return t
}

// Idle reports whether the pool has no connection, open or being opened.
func (p *Pool) Idle() bool {
	p.claim.mu.Lock()
	defer p.claim.mu.Unlock()
	return p.claim.n == 0
}

// tlsFor is the pool's TLS config for one protocol: ALPN offers only it,
// and the server name defaults to the address's host, as net/http does.
func tlsFor(base *tls.Config, addr, proto string) *tls.Config {
	c := base.Clone()
	c.NextProtos = []string{proto}
	if c.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			c.ServerName = host
		}
	}
	c.ClientSessionCache = NewSessionCache()
	return c
}

// NewSessionCache is the TLS session cache of one host's pool: new
// connections to the host resume its session (TLS 1.3 tickets), skipping
// the certificate exchange and its signatures, as Envoy's upstream
// connections do. One per host, not per cluster: crypto/tls keys sessions
// by server name, which the hosts of a cluster share (its sni), and a
// ticket is good only at the host that issued it.
func NewSessionCache() tls.ClientSessionCache { return tls.NewLRUClientSessionCache(4) }

// RoundTripH1 sends req over HTTP/1.1 on a kept-alive connection.
func (p *Pool) RoundTripH1(req *http.Request) (*http.Response, error) {
	resp, err := p.transport().RoundTrip(req)
	switch {
	case err == nil, errors.Is(err, ErrConnect):
	case isDialError(err):
		err = fmt.Errorf("%w: %w", ErrConnect, err)
	}
	return resp, err
}

// Close closes the pool's idle connections; those in use close once their
// requests end and they would go idle. It is idempotent.
func (p *Pool) Close() error {
	if t := p.h1.Load(); t != nil {
		t.CloseIdleConnections()
	}
	return nil
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// isTimeout reports whether err is a deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// poolClaim is a pool's claims on the cluster's connection breakers:
// max_connection_pools, taken as the pool dials while it has no
// connection and given back when its last connection closes; and one
// max_connections slot per connection. A host's first connection is
// always allowed past max_connections, as in Envoy, so that a host the
// balancer picked can be reached; past that a new connection is refused
// (ErrOverflow) rather than queued, since net/http's HTTP/1.1 pool has no
// queue of its own (the HTTP/2 engine's pools queue up to
// max_pending_requests).
type poolClaim struct {
	b  *breaker.Breakers
	mu sync.Mutex
	n  int // connections, dialling ones included
}

func (c *poolClaim) acquire() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == 0 && !c.b.TryConnectionPool() {
		return errPoolOverflow
	}
	if !c.b.TryConnection() {
		if c.n > 0 {
			return errCxOverflow
		}
		c.b.ForceConnection()
	}
	c.n++
	return nil
}

func (c *poolClaim) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.b.DoneConnection()
	if c.n--; c.n == 0 {
		c.b.DoneConnectionPool()
	}
}

var (
	errPoolOverflow = fmt.Errorf("%w: max_connection_pools reached", ErrOverflow)
	errCxOverflow   = fmt.Errorf("%w: max_connections reached", ErrOverflow)
)

// dialFunc returns the dial function of the pool's Transport. It claims
// the cluster's connection breakers, counts the attempt
// (upstream_cx_total, _http1_total, _active), connects within the connect
// timeout, with tlsConf does the TLS handshake too, and returns a
// connection that counts its own end. A connection that fails here is
// counted as a connect failure at once.
func (p *Pool) dialFunc(tlsConf *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if err := p.claim.acquire(); err != nil {
			return nil, fmt.Errorf("%w: %w: no connection to %s", ErrConnect, err, addr)
		}
		start := time.Now()
		p.cx().Opened(false)
		deadline := start.Add(p.timeout)
		dctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		nc, err := upstreamDialer.DialContext(dctx, network, addr)
		if err != nil {
			// Refused or reset: the peer. A deadline or a caller that
			// went away: the proxy.
			local := isTimeout(err) || errors.Is(err, context.Canceled)
			p.cx().Ended(stats.ConnEnd{ConnectFail: true, Timeout: isTimeout(err), Local: local}, start)
			p.claim.release()
			return nil, fmt.Errorf("%w: dialing %s: %w", ErrConnect, addr, err)
		}
		c := &countedConn{Conn: nc, p: p, start: start}
		_ = nc.SetDeadline(deadline)
		var conn net.Conn = c
		if tlsConf != nil {
			tc := tls.Client(c, tlsConf)
			if err := tc.Handshake(); err != nil { // bounded by the socket deadline
				tc.Close()
				return nil, fmt.Errorf("%w: TLS handshake with %s: %w", ErrConnect, addr, err)
			}
			conn = tc
		}
		c.becomeReady()
		return conn, nil
	}
}

// countedConn is one upstream connection of the pool, from its dial to
// its Close. Its end is counted once, at the first Close: closed by the
// proxy (local) unless a read or write had already failed because the
// peer closed the connection or it broke (remote).
type countedConn struct {
	net.Conn
	p     *Pool
	start time.Time

	mu       sync.Mutex
	ready    bool // connected and handshaken
	timedOut bool // connect_timeout passed before it was ready
	remote   bool // the peer closed it or it broke, before any Close
	closing  bool // Close was called
	closed   bool // …and counted the end
}

// becomeReady marks the connection up: upstream_cx_connect_ms is the time
// from the dial to here, and the connect deadline comes off the socket.
func (c *countedConn) becomeReady() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ready || c.closed {
		return
	}
	c.ready = true
	_ = c.Conn.SetDeadline(time.Time{})
	c.p.cx().CxConnectMs.RecordDuration(time.Since(c.start))
}

func (c *countedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.failed(err)
	}
	return n, err
}

func (c *countedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil {
		c.failed(err)
	}
	return n, err
}

// failed notes a read or write error: a deadline passing before the
// connection was ready is the connect timeout; any other error before
// the proxy closed the connection is the peer's doing, or a broken path.
func (c *countedConn) failed(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closing, errors.Is(err, net.ErrClosed):
	case isTimeout(err):
		if !c.ready {
			c.timedOut = true
		}
	default:
		c.remote = true
	}
}

func (c *countedConn) Close() error {
	c.mu.Lock()
	c.closing = true // what fails from now on fails because of this Close
	c.mu.Unlock()
	err := c.Conn.Close()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return err
	}
	c.closed = true
	e := stats.ConnEnd{
		ConnectFail: !c.ready,
		Timeout:     !c.ready && c.timedOut,
		Local:       c.timedOut || !c.remote,
	}
	c.mu.Unlock()
	c.p.cx().Ended(e, c.start)
	c.p.claim.release()
	return err
}

// CloseWrite half-closes the socket, for net/http's HTTP/1.1 client.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// cx returns the cluster's connection stats, made on first use.
func (p *Pool) cx() *stats.Connections { return p.cs.Connections() }
