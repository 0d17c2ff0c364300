package h2

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http2"

	"github.com/sightline-proxy/sightline/internal/shrink"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/observe"
	"github.com/sightline-proxy/sightline/proxy/overload"
	"github.com/sightline-proxy/sightline/proxy/route"

	"github.com/sightline-proxy/sightline/stats"
)

// Defaults for ServerOptions.Limits fields left at zero. They match
// config's defaults, for callers (tests) that build limits by hand.
const (
	defaultMaxConcurrentStreams = 1024
	defaultMaxHeaderBytes       = 64 << 10
	defaultHeaderReadTimeout    = 10 * time.Second
)

// ServerOptions configure a Server. They are read once by NewServer.
type ServerOptions struct {
	// Routes is the listener's route table. Required.
	Routes *route.Table
	// TrustRequestHeaders honours x-sightline-* override headers from
	// clients; when false they are stripped before the request goes
	// upstream.
	TrustRequestHeaders bool
	// TLS says whether the listener terminates TLS (x-forwarded-proto).
	TLS bool
	// Limits are the listener's limits: MaxConcurrentStreams (advertised
	// SETTINGS_MAX_CONCURRENT_STREAMS), MaxHeaderBytes (advertised
	// SETTINGS_MAX_HEADER_LIST_SIZE), IdleTimeout (graceful GOAWAY after
	// this long without streams; 0: never), HeaderReadTimeout (for the
	// preface and for a header block split over CONTINUATIONs) and
	// MaxRequestsPerConnection (graceful GOAWAY after that many streams;
	// 0: no cap).
	Limits config.Limits
	// Log receives connection-level events at debug level.
	Log zerolog.Logger
	// Stats are the listener's request stats (http.<stat_prefix>.*);
	// nil keeps none.
	Stats *stats.HTTP
	// Observer decides request IDs and makes spans and access-log
	// entries; nil: none, and x-request-id passes through untouched.
	Observer *observe.Observer
	// Overload is the process's overload manager, whose
	// stop_accepting_requests action the server honours; nil: none.
	Overload *overload.Manager
}

// Server serves HTTP/2 connections of one listener and proxies their
// streams. It is safe for concurrent use.
//
// The listener calls ServeConn on its own goroutine per accepted
// connection (that goroutine becomes the connection's reader); the server
// starts one writer goroutine per connection and none per stream.
// Shutdown may be called from any goroutine.
type Server struct {
	routes        atomic.Pointer[route.Table]
	trust         bool
	proto         string // x-forwarded-proto value
	mcs           uint32
	maxHeaderList uint32
	idleTimeout   time.Duration
	headerTimeout time.Duration
	maxRequests   int
	log           zerolog.Logger
	stats         *stats.HTTP
	obs           *observe.Observer
	overload      *overload.Manager

	mu        sync.Mutex
	conns     map[*serverConn]struct{}
	connsPeak int // shrink.Map's
	shutdown  bool
	lobby     lobby // connections greeted, waiting for a request (lobby.go)
}

// Arrivals is what a listener does with the connections it hands to
// Server.Greet, told on whichever goroutine decides. Each connection gets
// Sniff; or Opened and, once it has closed, Closed; or Dropped.
type Arrivals interface {
	// Sniff serves nc as the listener serves a connection it reads
	// itself, on a goroutine of its own: its first bytes were no client
	// preface, or stopped short of one. pc, when not nil, wraps nc and
	// reads them first.
	Sniff(nc net.Conn, pc *PeekConn)
	// Opened counts nc as an HTTP/2 connection the server has taken.
	Opened(nc net.Conn)
	// Closed says a connection Opened counted has closed.
	Closed(nc net.Conn)
	// Dropped closes nc, which the server gives up unserved (its client
	// sent nothing before the header timeout, or hung up): its bytes do
	// not count.
	Dropped(nc net.Conn)
}

// NewServer returns a Server. It does no I/O.
func NewServer(opts ServerOptions) *Server {
	lim := opts.Limits
	s := &Server{
		trust:         opts.TrustRequestHeaders,
		proto:         "http",
		mcs:           defaultMaxConcurrentStreams,
		maxHeaderList: defaultMaxHeaderBytes,
		idleTimeout:   lim.IdleTimeout.D(),
		headerTimeout: lim.HeaderReadTimeout.D(),
		maxRequests:   lim.MaxRequestsPerConnection,
		log:           opts.Log,
		stats:         opts.Stats,
		obs:           opts.Observer,
		overload:      opts.Overload,
		conns:         make(map[*serverConn]struct{}),
	}
	s.routes.Store(opts.Routes)
	if opts.TLS {
		s.proto = "https"
	}
	if s.stats == nil {
		s.stats = stats.Nop().HTTP("")
	}
	if lim.MaxConcurrentStreams > 0 {
		s.mcs = uint32(lim.MaxConcurrentStreams)
	}
	if lim.MaxHeaderBytes > 0 {
		s.maxHeaderList = uint32(lim.MaxHeaderBytes)
	}
	if s.headerTimeout <= 0 {
		s.headerTimeout = defaultHeaderReadTimeout
	}
	return s
}

// settings are the server's SETTINGS, its half of the connection preface.
func (s *Server) settings() []http2.Setting {
	return []http2.Setting{
		{ID: http2.SettingMaxFrameSize, Val: maxFrameSize},
		{ID: http2.SettingMaxConcurrentStreams, Val: s.mcs},
		{ID: http2.SettingInitialWindowSize, Val: initialStreamWindow},
		{ID: http2.SettingMaxHeaderListSize, Val: s.maxHeaderList},
	}
}

// SetRoutes replaces the route table (a config reload); requests already
// routed keep theirs.
func (s *Server) SetRoutes(t *route.Table) { s.routes.Store(t) }

// ServeConn serves one connection until it closes. c has not had its
// client preface read: it is a TLS connection whose ALPN chose "h2", or a
// plaintext one (ideally a *PeekConn whose Sniff said ProtoH2). ServeConn
// blocks until the connection is closed.
func (s *Server) ServeConn(c net.Conn) {
	done := make(chan struct{})
	s.Serve(c, func() { close(done) })
	<-done
}

// Serve serves c as ServeConn does, on the calling goroutine, but returns
// as soon as the connection can do without it: when it parks, idle (see
// park.go), or ends. done runs once, when the connection has closed and
// left the server, on whichever goroutine ends it.
func (s *Server) Serve(c net.Conn, done func()) { s.ServeCounted(c, nil, done) }

// ServeCounted is Serve that calls counted, when not nil, once the
// server counts c among the connections a Shutdown drains (or, if it was
// shutting down already, once it closed c), before it reads c. A
// listener that holds its own shutdown until counted has run gives a
// connection it accepted just before closing its socket a GOAWAY after
// the server preface, which a client retries from, rather than a close
// before any byte.
func (s *Server) ServeCounted(c net.Conn, counted, done func()) {
	sc := newServerConn(s, c)
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		c.Close()
		if counted != nil {
			counted()
		}
		done()
		return
	}
	s.conns[sc] = struct{}{}
	shrink.Grew(s.conns, &s.connsPeak)
	s.mu.Unlock()
	if parker.enable() {
		sc.park.fd = socketFD(c)
	}
	sc.done = done
	addLive(sc)
	if counted != nil {
		counted()
	}
	sc.serve()
}

// ended is a connection's last step: it leaves the server.
func (sc *serverConn) ended() {
	removeLive(sc)
	s := sc.srv
	s.mu.Lock()
	delete(s.conns, sc)
	s.conns = shrink.Map(s.conns, &s.connsPeak)
	s.mu.Unlock()
	sc.done()
}

// Shutdown drains the server: every connection gets GOAWAY(2^31-1) and a
// PING, then GOAWAY with its real last stream ID once the PING is answered
// (RFC 9113 §6.8, as grpc-go and x/net do it), and closes when its streams
// are done. New connections are refused. When ctx ends first, the
// remaining connections are closed at once and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	s.mu.Unlock()
	s.lobbyShutdown()
	s.mu.Lock()
	for sc := range s.conns {
		sc.startShutdown()
	}
	s.mu.Unlock()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns) + s.lobbyLenLocked()
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close closes every connection at once, resetting their streams.
func (s *Server) Close() {
	s.mu.Lock()
	s.shutdown = true
	s.mu.Unlock()
	s.lobbyClose()
	s.mu.Lock()
	for sc := range s.conns {
		sc.closing()
		sc.nc.Close()
	}
	s.mu.Unlock()
}

// Stats are a server's live numbers.
type Stats struct {
	// Conns and Streams are the open connections and streams; Parked
	// counts the connections waiting for their clients without a
	// goroutine (park.go), those in the lobby (lobby.go) included.
	Conns, Streams, Parked int
	// BufferedBytes is the DATA the server holds for its clients, waiting
	// for their flow-control windows. Flow control bounds it by the
	// upstream stream window per stream.
	BufferedBytes int64
}

// Stats sums the numbers of every connection. It takes each connection's
// lock briefly; it is meant for tests and the admin page, not the request
// path.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Conns: len(s.conns) + s.lobbyLenLocked(), Parked: s.lobbyLenLocked()}
	for sc := range s.conns {
		sc.park.mu.Lock()
		if sc.park.parked {
			st.Parked++
		}
		sc.park.mu.Unlock()
	}
	for sc := range s.conns {
		sc.mu.Lock()
		st.Streams += sc.nActive
		st.BufferedBytes += sc.queued
		sc.mu.Unlock()
	}
	return st
}
