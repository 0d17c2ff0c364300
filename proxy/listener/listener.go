// Package listener serves one configured downstream socket. It accepts
// connections itself and sends each to the engine that speaks its
// protocol: HTTP/2 (prior-knowledge h2c, or TLS whose ALPN chose h2) to the
// frame-level engine of package h2, HTTP/1.1 to net/http. One plaintext
// port serves both; the first bytes tell them apart.
package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/internal/yield"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/h2"
	"github.com/sightline-proxy/sightline/proxy/overload"
	"github.com/sightline-proxy/sightline/proxy/sock"
	"github.com/sightline-proxy/sightline/stats"
)

// Stats are the connection stats a listener keeps.
//
// Of the HTTP ones, as Envoy's HTTP connection manager counts them: every
// connection handed to a codec is in downstream_cx_total and _active, and
// in the _http1_ or _http2_ pair of its protocol (TLS connections by ALPN,
// plaintext ones by their first bytes); downstream_cx_rx_bytes_total and
// _tx_bytes_total are its socket bytes (see countConn).
// downstream_cx_protocol_error is counted by the HTTP/2 engine only:
// net/http answers a malformed HTTP/1.1 request (400, 431, 501) by itself,
// on the connection, and tells its caller nothing; seeing it would take
// wrapping the *tls.Conn net/http type-asserts (hiding Request.TLS from
// the handler) or guessing from socket writes made outside a handler,
// which TLS close_notify alerts make too.
type Stats struct {
	Listener *stats.Listener // listener.<address>.downstream_cx_*
	HTTP     *stats.HTTP     // http.<stat_prefix>.downstream_cx_*
}

// Options are what a listener shares with the rest of the proxy; the
// zero value is a listener on its own.
type Options struct {
	// Certificate returns the certificate of a listener with tls, on each
	// handshake's goroutine; it must not block. The server hands the one
	// of its certificate manager, which swaps in new key pairs when their
	// files change. Nil: New loads the configured key pair once.
	Certificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Conns caps the listener's own connections (limits.max_connections);
	// nil: no cap. A connection past it is closed at once and counted in
	// downstream_cx_overflow.
	Conns *ConnLimit
	// Global caps the connections of all listeners together
	// (server.max_connections); nil: no cap. A connection past it is
	// closed at once and counted in downstream_global_cx_overflow.
	Global *ConnLimit
	// Overload is the process's overload manager: while its
	// stop_accepting_connections action is on, a new connection is closed
	// at once and counted in downstream_cx_overload_reject; nil: none.
	Overload *overload.Manager
}

// Listener is one running downstream socket.
type Listener struct {
	Name string
	cfg  config.Listener
	st   Stats
	log  zerolog.Logger
	opts Options

	h1      *http.Server // HTTP/1.1, fed through h1ln
	h1ln    *connQueue
	h2      *h2.Server
	tls     *tls.Config
	allowH1 bool
	allowH2 bool
	bytes   *byteMeter // downstream_cx_rx_bytes_total, _tx_bytes_total
	// greet: new connections go to the HTTP/2 server's lobby first
	// (h2.Server.Greet): a cleartext listener that serves HTTP/2.
	greet bool

	ln net.Listener
	// raw accepts from ln's socket with accept4, connections that join
	// Go's poller on first use (package sock); nil: ln.Accept, on
	// platforms without it and for listeners that are no TCP socket's.
	raw        *sock.Listener
	addr       atomic.Value // the bound address, once Start bound it; read by the admin at any time
	closing    atomic.Bool
	released   bool           // the socket went to another listener (Release)
	acceptDone chan struct{}  // closed when the accept loop returns
	accepted   sync.WaitGroup // the accept loop and the h1 server
	conns      sync.WaitGroup // connections being sniffed or served by h2
	// handing counts the connections accepted and not yet handed to the
	// HTTP/1.1 or HTTP/2 server (sniffing, TLS handshake): Shutdown
	// waits for them before it shuts the servers down, so that a
	// connection accepted just before the socket closed is served.
	handing sync.WaitGroup
	// h1Open counts the HTTP/1.1 connections handed to net/http and not
	// closed, for Shutdown's wait; counted before the hand-over, since
	// net/http reports a new connection only after it took it.
	h1Open atomic.Int64
}

// New prepares a listener; Start binds it. It does no I/O beyond reading
// the TLS key pair when opts gives no Certificate. h1 serves HTTP/1.1
// requests, h2srv HTTP/2 connections.
func New(cfg config.Listener, h1 http.Handler, h2srv *h2.Server, st Stats, lg zerolog.Logger, opts Options) (*Listener, error) {
	if st.HTTP == nil {
		st.HTTP = stats.Nop().HTTP("")
	}
	if st.Listener == nil {
		st.Listener = stats.Nop().Listener("")
	}
	l := &Listener{Name: cfg.Name, cfg: cfg, st: st, h2: h2srv, opts: opts, log: lg.With().Str("listener", cfg.Name).Logger()}
	l.bytes = newByteMeter(st.HTTP)
	for _, p := range cfg.Protocols {
		switch p {
		case "http1":
			l.allowH1 = true
		case "h2c", "h2":
			l.allowH2 = true
		}
	}
	l.greet = cfg.TLS == nil && l.allowH2
	lim := cfg.Limits
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	l.h1 = &http.Server{
		Handler:           capRequests(h1, lim.MaxRequestsPerConnection),
		Protocols:         protos,
		ReadHeaderTimeout: lim.HeaderReadTimeout.D(),
		IdleTimeout:       lim.IdleTimeout.D(),
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		ErrorLog:          log.New(zerologWriter{l.log}, "", 0),
		ConnState:         l.countH1,
	}
	if lim.MaxRequestsPerConnection > 0 {
		l.h1.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, connCounterKey{}, new(atomic.Int64))
		}
	}
	if cfg.TLS != nil {
		getCert := opts.Certificate
		if getCert == nil {
			var cert tls.Certificate
			var err error
			if cfg.TLS.CertPEM != "" {
				cert, err = tls.X509KeyPair([]byte(cfg.TLS.CertPEM), []byte(cfg.TLS.KeyPEM))
			} else {
				cert, err = tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
			}
			if err != nil {
				return nil, fmt.Errorf("listener %s: loading TLS key pair: %w", cfg.Name, err)
			}
			getCert = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }
		}
		var alpn []string
		if l.allowH2 {
			alpn = append(alpn, "h2")
		}
		if l.allowH1 {
			alpn = append(alpn, "http/1.1")
		}
		// Each handshake asks for the certificate, so that a new key pair
		// serves the next connection and established ones keep theirs.
		l.tls = &tls.Config{GetCertificate: getCert, NextProtos: alpn, MinVersion: tls.VersionTLS12}
	}
	return l, nil
}

// listenConfig binds listeners without TCP keep-alive on the connections
// they accept, as Envoy, nginx and HAProxy leave it off: an idle HTTP/2
// client is found out by the idle timeout and PINGs, and the four
// setsockopt calls Go's default makes per accepted connection were a
// tenth of what a flood of idle connections cost.
var listenConfig = net.ListenConfig{KeepAlive: -1}

// Start binds the socket and serves in the background.
func (l *Listener) Start() error {
	ln, err := Listen(l.cfg.Address)
	if err != nil {
		return fmt.Errorf("listener %s: %w", l.cfg.Name, err)
	}
	l.StartOn(ln)
	return nil
}

// Listen binds a listener's socket at addr as Start does, for a caller
// that passes it to StartOn. (A socket inherited from the process an
// upgrade replaced was bound by that process; Go enables TCP keep-alive
// on the connections accepted from it, which costs a few system calls a
// connection and changes nothing else.)
func Listen(addr string) (net.Listener, error) {
	return listenConfig.Listen(context.Background(), "tcp", addr)
}

// Socket returns the socket the listener accepts on, nil before it
// starts: an upgrade passes it to the new process.
func (l *Listener) Socket() net.Listener { return l.ln }

// StartOn serves on a socket that is already bound: one that Release took
// from the listener this one replaces in a reload, so that connections
// waiting in the socket's backlog are served, not refused.
func (l *Listener) StartOn(ln net.Listener) {
	l.ln = ln
	if raw, err := sock.Listen(ln); err == nil {
		l.raw = raw
	}
	l.addr.Store(ln.Addr().String())
	l.h1ln = newConnQueue(ln.Addr())
	l.bytes.start()
	l.accepted.Add(2)
	go func() {
		defer l.accepted.Done()
		if err := l.h1.Serve(l.h1ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.log.Error().Err(err).Msg("HTTP/1.1 server stopped")
		}
	}()
	l.acceptDone = make(chan struct{})
	go func() {
		defer l.accepted.Done()
		defer close(l.acceptDone)
		l.acceptLoop()
	}()
	l.log.Info().Str("address", ln.Addr().String()).Strs("protocols", l.cfg.Protocols).Msg("listening")
}

// Release stops accepting and hands the socket, still bound and with its
// backlog, to the caller: the listener that replaces this one in a reload
// (StartOn). Shutdown then drains this listener's connections without
// closing the socket.
func (l *Listener) Release() net.Listener {
	ln := l.ln
	if ln == nil || l.released {
		return nil
	}
	l.closing.Store(true)
	if l.raw != nil {
		_ = l.raw.Close() // wakes the accept loop; the socket stays bound through ln
		<-l.acceptDone
		l.released = true
		return ln
	}
	d, ok := ln.(interface{ SetDeadline(time.Time) error })
	if !ok {
		return nil
	}
	_ = d.SetDeadline(time.Now()) // wakes the accept loop, which sees closing
	<-l.acceptDone
	_ = d.SetDeadline(time.Time{})
	l.released = true
	return ln
}

// waitH1 waits until no HTTP/1.1 connection is open, or ctx ends. It
// polls, as net/http's Shutdown does: from 1ms, doubling up to 100ms.
func (l *Listener) waitH1(ctx context.Context) {
	wait := time.Millisecond
	t := time.NewTimer(wait)
	defer t.Stop()
	for l.h1Open.Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wait = min(2*wait, 100*time.Millisecond)
		t.Reset(wait)
	}
}

// acceptLoop accepts until the socket closes, backing off on temporary
// errors (out of file descriptors) as net/http does.
func (l *Listener) acceptLoop() {
	var delay time.Duration
	y := yield.New()
	defer y.Close()
	for n := 1; ; n++ {
		if n%acceptBatch == 0 {
			y.Yield() // a turn is over: see acceptBatch
		}
		c, err := l.accept()
		if err != nil {
			if l.closing.Load() {
				return
			}
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			l.log.Warn().Err(err).Dur("retry_in", delay).Msg("accept failed")
			time.Sleep(delay)
			continue
		}
		delay = 0
		if !l.admit(c) {
			continue
		}
		l.conns.Add(1)
		l.handing.Add(1)
		cc := l.wrap(c)
		if l.greet {
			l.h2.Greet(cc, arrivals{l})
			continue
		}
		go l.serve(cc, nil)
	}
}

// accept takes the next connection from the socket.
func (l *Listener) accept() (net.Conn, error) {
	if l.raw != nil {
		return l.raw.Accept()
	}
	return l.ln.Accept()
}

// acceptBatch is how many connections the accept loop takes in a turn
// before it gives way to the network (package yield). Under a storm of
// new connections the accept loop never waits in Accept, and the Go
// scheduler polls the network only when nothing else is runnable (or
// every 10 ms): the clients already connected waited behind every
// connection in the backlog, with the process on one P 400 of them. A
// sleep between turns did not do it: a goroutine whose sleep has ended
// runs next, before the network is polled. After each turn the loop
// now waits for the poller's next pass, and the connections it took and
// the clients the network readied run first; with nothing else to run
// that pass is at once. HAProxy's tune.maxaccept is the same idea. Each
// connection's turn (accept4, and the lobby's read, write and epoll_ctl)
// takes 30 to 60 µs on loopback, so 8 make a turn of a few hundred µs;
// 32 made one of up to 2 ms, which a victim client's calls waited for.
const acceptBatch = 8

// admit counts a new connection against the listener's cap, then the
// process's, as Envoy checks them; a connection past either is closed at
// once (the client sees its connection accepted, then closed, as Envoy
// does it) and counted in the listener's downstream_cx_overflow or
// downstream_global_cx_overflow. An admitted connection holds its place
// under both caps until it is closed (see serve).
func (l *Listener) admit(c net.Conn) bool {
	if l.opts.Overload.Active(overload.StopConnections) {
		l.st.Listener.DownstreamCxOverloadReject.Inc(1)
		c.Close()
		return false
	}
	if !l.opts.Conns.acquire() {
		l.st.Listener.DownstreamCxOverflow.Inc(1)
		c.Close()
		return false
	}
	if !l.opts.Global.acquire() {
		l.opts.Conns.release()
		l.st.Listener.DownstreamGlobalCxOverflow.Inc(1)
		c.Close()
		return false
	}
	return true
}

// wrap counts an admitted connection's bytes; closing it gives its place
// under the connection limits back.
func (l *Listener) wrap(raw net.Conn) *countConn {
	cc := l.bytes.wrap(raw)
	cc.onClose = func() {
		l.opts.Conns.release()
		l.opts.Global.release()
	}
	return cc
}

// serve finds out what a new connection speaks and hands it over; pc,
// when not nil, is cc with its first bytes read. The goroutine becomes
// the HTTP/2 connection's reader, until the connection parks; the
// connection holds its place in l.conns until it closes.
func (l *Listener) serve(cc *countConn, pc *h2.PeekConn) {
	if !l.handOver(cc, pc) {
		l.conns.Done()
	}
}

// handOver does serve's work; it reports whether the HTTP/2 engine took
// the connection (it then calls l.conns.Done itself, once closed).
func (l *Listener) handOver(cc *countConn, pc *h2.PeekConn) bool {
	handed := sync.OnceFunc(l.handing.Done)
	defer handed()
	var c net.Conn = cc
	reject := func() {
		cc.discard()
		c.Close()
	}
	timeout := l.cfg.Limits.HeaderReadTimeout.D()
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	c.SetDeadline(time.Now().Add(timeout))
	h2conn := false
	if l.tls != nil {
		tc := h2.TLSServer(c, l.tls)
		if err := tc.Handshake(); err != nil {
			l.log.Debug().Err(err).Str("remote", c.RemoteAddr().String()).Msg("TLS handshake failed")
			reject()
			return false
		}
		c = tc
		h2conn = tc.ConnectionState().NegotiatedProtocol == "h2"
	} else {
		if pc == nil {
			pc = h2.NewPeekConn(c)
		}
		proto, err := pc.Sniff()
		switch {
		case err != nil:
			reject()
			return false
		case proto == h2.ProtoH2 && l.allowH2:
			h2conn = true
		case proto == h2.ProtoHTTP1 && l.allowH1:
		default:
			// Neither, or a protocol this listener does not serve: close
			// rather than answer in a language the client may not read.
			reject()
			return false
		}
		c = pc
	}
	c.SetDeadline(time.Time{})
	l.bytes.track(cc)
	if !h2conn {
		// countH1 counts it once net/http takes it.
		l.h1Open.Add(1)
		if !l.h1ln.push(c) {
			l.h1Open.Add(-1)
			reject()
		}
		return false
	}
	l.openH2()
	// handed once the engine counts the connection: a Shutdown from then
	// on drains it with GOAWAY (ServeCounted reads it until it parks).
	l.h2.ServeCounted(c, handed, l.closeH2)
	return true
}

// openH2 counts a new HTTP/2 connection; closeH2 counts it closed and
// gives its place in l.conns back.
func (l *Listener) openH2() {
	l.countOpen()
	l.st.HTTP.DownstreamCxHTTP2Total.Inc(1)
	l.st.HTTP.DownstreamCxHTTP2Active.Inc()
}

func (l *Listener) closeH2() {
	l.st.HTTP.DownstreamCxHTTP2Active.Dec()
	l.countClose()
	l.conns.Done()
}

// arrivals is what the listener does with the connections it hands to
// its HTTP/2 server's lobby (h2.Arrivals); their counts are as handOver's.
type arrivals struct{ l *Listener }

func (a arrivals) Sniff(nc net.Conn, pc *h2.PeekConn) { go a.l.serve(nc.(*countConn), pc) }

func (a arrivals) Opened(nc net.Conn) {
	a.l.bytes.track(nc.(*countConn))
	a.l.openH2()
	a.l.handing.Done()
}

func (a arrivals) Closed(net.Conn) { a.l.closeH2() }

func (a arrivals) Dropped(nc net.Conn) {
	cc := nc.(*countConn)
	cc.discard()
	cc.Close()
	a.l.handing.Done()
	a.l.conns.Done()
}

func (l *Listener) countOpen() {
	l.st.Listener.DownstreamCxTotal.Inc(1)
	l.st.Listener.DownstreamCxActive.Inc()
	l.st.HTTP.DownstreamCxTotal.Inc(1)
	l.st.HTTP.DownstreamCxActive.Inc()
}

func (l *Listener) countClose() {
	l.st.Listener.DownstreamCxActive.Dec()
	l.st.HTTP.DownstreamCxActive.Dec()
}

// countH1 keeps the connection stats of HTTP/1.1 connections: net/http
// reports each new once and closed (or hijacked) once.
func (l *Listener) countH1(_ net.Conn, cs http.ConnState) {
	switch cs {
	case http.StateNew:
		l.countOpen()
		l.st.HTTP.DownstreamCxHTTP1Total.Inc(1)
		l.st.HTTP.DownstreamCxHTTP1Active.Inc()
	case http.StateClosed, http.StateHijacked:
		l.h1Open.Add(-1)
		l.st.HTTP.DownstreamCxHTTP1Active.Dec()
		l.countClose()
	}
}

// Addr returns the bound address ("127.0.0.1:10000"), useful when the config
// asked for port 0.
func (l *Listener) Addr() string {
	if a, ok := l.addr.Load().(string); ok {
		return a
	}
	return l.cfg.Address
}

// Shutdown stops accepting, sends GOAWAY on every HTTP/2 connection, closes
// idle HTTP/1.1 connections, and waits for in-flight requests until ctx ends;
// then it closes what is left.
func (l *Listener) Shutdown(ctx context.Context) error {
	if l.ln == nil {
		return nil
	}
	l.closing.Store(true)
	if !l.released {
		if l.raw != nil {
			l.raw.Close()
		}
		l.ln.Close()
	}
	// HTTP/1.1 connections answer their next request with Connection:
	// close and then close; idle ones close now.
	l.h1.SetKeepAlivesEnabled(false)
	// A connection the accept loop took before the socket closed is
	// handed to its server before the servers shut down: it then gets
	// its first request answered (with Connection: close, or after a
	// GOAWAY), not a close before any byte. It matters most when the
	// socket lives on in another process (an upgrade) or listener (a
	// reload): the client's connect succeeded, so it expects an answer.
	<-l.acceptDone
	handed := make(chan struct{})
	go func() {
		l.handing.Wait()
		close(handed)
	}()
	select {
	case <-handed:
	case <-ctx.Done():
	}
	var wg sync.WaitGroup
	var err1, err2 error
	wg.Add(2)
	go func() {
		defer wg.Done()
		// net/http's Shutdown drops a request it reads once it has
		// started, so it comes last: once every connection has closed
		// after its last answer, or ctx ended.
		l.waitH1(ctx)
		if err1 = l.h1.Shutdown(ctx); err1 != nil {
			l.h1.Close()
		}
	}()
	go func() {
		defer wg.Done()
		err2 = l.h2.Shutdown(ctx)
	}()
	wg.Wait()
	l.accepted.Wait()
	l.conns.Wait()
	<-handed // at once: every connection counted in handing was in conns
	l.bytes.stopSweeping()
	return errors.Join(err1, err2)
}

type connCounterKey struct{}

// capRequests closes an HTTP/1.1 connection after max requests (0:
// never) with "Connection: close"; the HTTP/2 engine enforces the same cap
// with a graceful GOAWAY.
func capRequests(h http.Handler, max int) http.Handler {
	if max <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n, ok := r.Context().Value(connCounterKey{}).(*atomic.Int64); ok && n.Add(1) >= int64(max) {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// zerologWriter sends net/http's server log lines (TLS handshake errors and
// the like) to the listener's logger at debug level: they are about clients,
// not about the proxy.
type zerologWriter struct{ log zerolog.Logger }

func (z zerologWriter) Write(p []byte) (int, error) {
	if n := len(p); n > 0 && p[n-1] == '\n' {
		p = p[:n-1]
	}
	z.log.Debug().Msg(string(p))
	return len(p), nil
}
