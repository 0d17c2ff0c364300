// Package upstream owns the connections to one upstream host and sends
// requests over them.
//
// HTTP/2 pools hold connections made with http.Transport.NewClientConn, so
// the pool, not the Transport, decides when to open another: a request goes
// to the first connection with a free stream slot (the peer's advertised
// SETTINGS_MAX_CONCURRENT_STREAMS, as the ClientConn tracks it), and a new
// connection is dialled only when every one is full. HTTP/1.1 pools use a
// Transport's own keep-alive pool.
//
// Both count their connections in the cluster's upstream_cx_* stats as
// Envoy does, through the dial function they give the Transport: every
// connection attempt, its connect failure or connect time, and its end,
// closed by the proxy (local) or by the peer (remote).
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

	"github.com/sightline-proxy/sightline/proxy/breaker"
	"github.com/sightline-proxy/sightline/stats"
)

// Defaults for Options left at zero: those of the HTTP/2 engine's pool.
const (
	defaultConnectTimeout  = time.Second
	defaultSendPingTimeout = 30 * time.Second
	defaultPingTimeout     = 15 * time.Second
)

// Options configure a pool.
type Options struct {
	// ConnectTimeout bounds a connect: TCP, the TLS handshake and, for
	// HTTP/2, the wait for the peer's first frame (its SETTINGS). 0 means
	// 1s.
	ConnectTimeout time.Duration
	// TLS, when set, makes connections TLS with ALPN h2 / http/1.1.
	TLS *tls.Config
	// SendPingTimeout is how long an HTTP/2 connection may go without
	// reading a frame before it sends a PING; 0 means 30s, negative none.
	// PingTimeout is how long the PING waits for its ACK before the
	// connection is closed; 0 means 15s.
	SendPingTimeout, PingTimeout time.Duration
	// ConnStats counts the pool's connections in the cluster's
	// upstream_cx_* stats; nil counts nothing.
	ConnStats *stats.Connections
	// Breakers are the cluster's circuit breakers, for
	// max_connection_pools: the pool's HTTP/1.1 and HTTP/2 sides are two
	// pools, as Envoy's per-protocol pools are, and each claims one while
	// it holds a connection. nil: no limit.
	Breakers *breaker.Breakers
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

// Pool is the connection pool of one host. It is safe for concurrent use.
type Pool struct {
	addr    string
	scheme  string
	opts    Options
	cx      *stats.Connections // never nil
	timeout time.Duration
	dialer  net.Dialer

	h2    *http.Transport // only for NewClientConn
	h1    *http.Transport
	conns atomic.Pointer[[]*http.ClientConn]
	// gen counts connections published in conns, so that a caller that
	// found no slot can tell whether a dial finished since it looked.
	gen atomic.Uint64

	h1open, h2open poolClaim

	// mu guards changes to conns, dialing and closed. No I/O and no
	// ClientConn method runs under it: ClientConn methods may call the
	// state hook, which takes it.
	mu      sync.Mutex
	dialing *h2Dial // the HTTP/2 dial in progress, or nil
	closed  bool
}

// New returns a pool for addr ("ip:port"). It does no I/O.
func New(addr string, opts Options) *Pool {
	p := &Pool{addr: addr, scheme: "http", opts: opts, cx: opts.ConnStats, timeout: opts.ConnectTimeout}
	if p.cx == nil {
		p.cx = &stats.Connections{} // nil handles count nothing
	}
	if p.timeout <= 0 {
		p.timeout = defaultConnectTimeout
	}
	p.dialer = net.Dialer{KeepAlive: 30 * time.Second}
	p.h1open.b, p.h2open.b = opts.Breakers, opts.Breakers
	h2proto := new(http.Protocols)
	if opts.TLS != nil {
		p.scheme = "https"
		h2proto.SetHTTP2(true)
	} else {
		h2proto.SetUnencryptedHTTP2(true)
	}
	sendPing, pingTimeout := opts.SendPingTimeout, opts.PingTimeout
	switch {
	case sendPing == 0:
		sendPing = defaultSendPingTimeout
	case sendPing < 0:
		sendPing = 0 // net/http: no PINGs
	}
	if pingTimeout <= 0 {
		pingTimeout = defaultPingTimeout
	}
	p.h2 = &http.Transport{
		Protocols:          h2proto,
		DisableCompression: true, // forward bytes as they are; never add Accept-Encoding
		HTTP2: &http.HTTP2Config{
			MaxReceiveBufferPerConnection: 4 << 20,
			MaxReceiveBufferPerStream:     1 << 20,
			SendPingTimeout:               sendPing,
			PingTimeout:                   pingTimeout,
		},
	}
	h1proto := new(http.Protocols)
	h1proto.SetHTTP1(true)
	p.h1 = &http.Transport{
		Protocols:           h1proto,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
	}
	// The pool dials, and for TLS handshakes, itself, so that a failed
	// handshake is a connect failure and connect_ms includes it.
	if opts.TLS != nil {
		p.h2.DialTLSContext = p.dialFunc(&p.h2open, true, tlsFor(opts.TLS, addr, "h2"))
		p.h1.DialTLSContext = p.dialFunc(&p.h1open, false, tlsFor(opts.TLS, addr, "http/1.1"))
	} else {
		p.h2.DialContext = p.dialFunc(&p.h2open, true, nil)
		p.h1.DialContext = p.dialFunc(&p.h1open, false, nil)
	}
	empty := []*http.ClientConn{}
	p.conns.Store(&empty)
	return p
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
	return c
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
	switch {
	case err == nil, errors.Is(err, ErrConnect):
	case isDialError(err):
		err = fmt.Errorf("%w: %w", ErrConnect, err)
	}
	return resp, err
}

// h2Dial is one HTTP/2 dial that callers finding no free slot wait for.
type h2Dial struct {
	done    chan struct{}
	err     error        // set before done is closed
	waiting atomic.Int32 // callers that waited for it (tests read it)
}

// reserve returns a connection with a stream slot reserved for the caller.
// When every connection is full it waits for a new one: one dial at a
// time, outside the pool's lock, shared by every caller that needs it, so
// a failed dial is one connect failure however many requests waited.
func (p *Pool) reserve(ctx context.Context) (*http.ClientConn, error) {
	for {
		gen := p.gen.Load()
		if cc := p.tryReserve(); cc != nil {
			return cc, nil
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, fmt.Errorf("%w: pool for %s is closed", ErrConnect, p.addr)
		}
		if p.gen.Load() != gen {
			p.mu.Unlock()
			continue // a connection came up since we looked
		}
		d := p.dialing
		if d == nil {
			d = &h2Dial{done: make(chan struct{})}
			p.dialing = d
			go p.dialH2(d)
		}
		p.mu.Unlock()
		d.waiting.Add(1)
		select {
		case <-d.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: waiting for a connection to %s: %w", ErrConnect, p.addr, context.Cause(ctx))
		}
		if d.err != nil {
			return nil, d.err
		}
	}
}

// dialH2 opens one HTTP/2 connection, waits for the peer's SETTINGS and
// publishes it. It does not depend on any caller's context: the callers
// waiting for it may give up, the dial goes on (bounded by the connect
// timeout) for the next ones, as Envoy's pools do.
func (p *Pool) dialH2(d *h2Dial) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	hold := new(dialHold)
	cc, err := p.h2.NewClientConn(context.WithValue(ctx, dialHoldKey{}, hold), p.scheme, p.addr)
	if err == nil {
		if err = awaitPeerSettings(ctx, cc, hold.conn); err != nil {
			cc.Close()
		}
	}
	p.mu.Lock()
	p.dialing = nil
	if err == nil && p.closed {
		err = errors.New("pool closed while dialling")
	}
	if err == nil {
		next := append(slices.Clone(*p.conns.Load()), cc)
		p.conns.Store(&next)
		p.gen.Add(1)
	}
	p.mu.Unlock()
	switch {
	case err == nil:
		// A connection that died since it was published is dropped by
		// the hook right away.
		cc.SetStateHook(p.onStateChange)
	case errors.Is(err, ErrConnect):
		d.err = err
	default:
		if cc != nil {
			cc.Close()
		}
		d.err = fmt.Errorf("%w: dialing %s: %w", ErrConnect, p.addr, err)
	}
	close(d.done)
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
	cur := *p.conns.Load()
	i := slices.Index(cur, cc)
	if i >= 0 {
		next := slices.Delete(slices.Clone(cur), i, i+1)
		p.conns.Store(&next)
	}
	p.mu.Unlock()
	if i >= 0 {
		cc.Close()
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

// isTimeout reports whether err is a deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// initialStreamLimit is what net/http's client assumes of a peer's
// SETTINGS_MAX_CONCURRENT_STREAMS until the peer's SETTINGS arrive.
const initialStreamLimit = 100

// dialHold carries the counted connection of an HTTP/2 dial from the dial
// function, which the Transport calls inside NewClientConn, back to
// dialH2.
type dialHold struct{ conn *countedConn }

type dialHoldKey struct{}

// awaitPeerSettings waits until the new connection has applied the peer's
// SETTINGS, so that its stream limit is the peer's and not a guess: the
// pool must not pile streams onto a connection the peer will refuse. It
// waits for the first bytes from the peer (a server's first bytes are its
// SETTINGS frame, RFC 9113 §3.4), which the connect deadline bounds, then
// briefly for the reader to apply them; a peer that advertises exactly the
// initial limit costs at most that brief wait. It fails when the peer
// closed the connection or sent nothing in time (h2c). Over TLS the
// connection counts as ready once the handshake is done (see dialFunc),
// and only the brief wait remains.
func awaitPeerSettings(ctx context.Context, cc *http.ClientConn, c *countedConn) error {
	if c == nil {
		return errors.New("no connection was dialled")
	}
	select {
	case <-c.first:
	case <-ctx.Done():
		c.timeout()
		return fmt.Errorf("waiting for the peer's SETTINGS: %w", ctx.Err())
	}
	if err := c.firstError(); err != nil {
		return fmt.Errorf("waiting for the peer's SETTINGS: %w", err)
	}
	deadline := time.Now().Add(2 * time.Millisecond)
	for cc.Available() == initialStreamLimit && time.Now().Before(deadline) {
		time.Sleep(20 * time.Microsecond)
	}
	return nil
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

// dialFunc returns the dial function of one of the pool's Transports. It
// claims max_connection_pools for the pool's first connection, counts the
// attempt (upstream_cx_total, _http1_total or _http2_total, _active),
// connects within the connect timeout, with tlsConf does the TLS handshake
// too, and returns a connection that counts its own end. A connection
// that fails here is counted as a connect failure at once.
//
// An HTTP/1.1 connection, and a TLS one, is ready once connected and
// handshaken; an h2c one once the peer's first bytes arrive, which dialH2
// waits for: until then the connect deadline stays on the socket.
func (p *Pool) dialFunc(claim *poolClaim, http2 bool, tlsConf *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if err := claim.acquire(); err != nil {
			return nil, fmt.Errorf("%w: %w: no connection to %s", ErrConnect, err, addr)
		}
		start := time.Now()
		cx := p.cx
		cx.Opened(http2)
		deadline := start.Add(p.timeout)
		dctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		nc, err := p.dialer.DialContext(dctx, network, addr)
		if err != nil {
			// Refused or reset: the peer. A deadline or a caller that
			// went away: the proxy.
			local := isTimeout(err) || errors.Is(err, context.Canceled)
			p.cx.Ended(stats.ConnEnd{ConnectFail: true, Timeout: isTimeout(err), Local: local}, start)
			claim.release()
			return nil, fmt.Errorf("%w: dialing %s: %w", ErrConnect, addr, err)
		}
		c := &countedConn{Conn: nc, p: p, claim: claim, start: start}
		_ = nc.SetDeadline(deadline)
		var conn net.Conn = c
		if tlsConf != nil {
			tc := tls.Client(c, tlsConf)
			err := tc.Handshake()
			if err == nil && http2 && tc.ConnectionState().NegotiatedProtocol != "h2" {
				err = fmt.Errorf("ALPN chose %q, not h2", tc.ConnectionState().NegotiatedProtocol)
				c.abandon()
			}
			if err != nil {
				tc.Close()
				return nil, fmt.Errorf("%w: TLS handshake with %s: %w", ErrConnect, addr, err)
			}
			conn = tc
		}
		if http2 {
			c.first = make(chan struct{})
			if tlsConf != nil {
				// Bytes may have come with the handshake's last
				// flight and sit in the TLS layer's buffer, where no
				// read of ours sees them: the handshake is the signal.
				c.signalFirst(nil)
			}
			if hold, _ := ctx.Value(dialHoldKey{}).(*dialHold); hold != nil {
				hold.conn = c
			}
		} else {
			c.becomeReady()
		}
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
	claim *poolClaim
	start time.Time
	// first, for HTTP/2, is closed when the first bytes arrive or the
	// first read fails.
	first chan struct{}

	mu        sync.Mutex
	ready     bool  // connected, handshaken and, for HTTP/2, the peer spoke
	timedOut  bool  // connect_timeout passed before it was ready
	remote    bool  // the peer closed it or it broke, before any Close
	local     bool  // the proxy gave up on it although the peer answered
	closing   bool  // Close was called
	closed    bool  // …and counted the end
	firstDone bool  // first is closed
	firstErr  error // the read error that closed first, if any
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
	c.p.cx.CxConnectMs.RecordDuration(time.Since(c.start))
}

// timeout marks a connection the connect timeout ended before it was
// ready; the caller closes it.
func (c *countedConn) timeout() {
	c.mu.Lock()
	if !c.ready {
		c.timedOut = true
	}
	c.mu.Unlock()
}

// abandon marks a connection the proxy refuses although the peer
// answered; the caller closes it.
func (c *countedConn) abandon() {
	c.mu.Lock()
	c.local = true
	c.mu.Unlock()
}

func (c *countedConn) firstError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.firstErr
}

func (c *countedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && c.first != nil {
		c.signalFirst(nil)
	}
	if err != nil {
		c.failed(err)
		if c.first != nil {
			c.signalFirst(err)
		}
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

// signalFirst closes first once: the HTTP/2 peer spoke (err nil), and the
// connection is ready, or the read failed.
func (c *countedConn) signalFirst(err error) {
	c.mu.Lock()
	if c.firstDone {
		c.mu.Unlock()
		return
	}
	c.firstDone, c.firstErr = true, err
	close(c.first)
	c.mu.Unlock()
	if err == nil {
		c.becomeReady()
	}
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
		Local:       c.timedOut || c.local || !c.remote,
	}
	first := c.first != nil && !c.firstDone
	if first {
		c.firstDone, c.firstErr = true, net.ErrClosed
		close(c.first)
	}
	c.mu.Unlock()
	c.p.cx.Ended(e, c.start)
	c.claim.release()
	return err
}

// CloseWrite half-closes the socket, for net/http's HTTP/1.1 client.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
