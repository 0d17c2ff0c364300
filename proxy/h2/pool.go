package h2

import (
	"crypto/tls"
	"errors"
	"math"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/internal/logfield"
	"github.com/sightline-proxy/sightline/proxy/breaker"
	"github.com/sightline-proxy/sightline/proxy/upstream"
	"github.com/sightline-proxy/sightline/stats"
)

// Pool defaults.
const (
	defaultConnectTimeout = time.Second
	// maxClientStreamID retires a connection before its stream IDs run
	// out (2^31-1, RFC 9113 §5.1.1), at 75% as grpc-go does, so that the
	// last streams never race the limit.
	maxClientStreamID = (1<<31 - 1) / 4 * 3
	// upstreamHeaderList is the SETTINGS_MAX_HEADER_LIST_SIZE we advertise
	// to upstreams: response header lists larger than this are refused.
	upstreamHeaderList = 64 << 10
	// drainTimeout bounds how long a closed pool's connections wait for
	// their streams.
	drainTimeout = time.Minute
	// maxAttempts bounds how often one call is re-dispatched after
	// REFUSED_STREAM or GOAWAY before it fails.
	maxAttempts = 3
	// defaultSendPingTimeout and defaultPingTimeout are the keepalive the
	// net/http pool has too: a PING after 30s without reading a frame,
	// and the connection closed when its ACK has not come 15s later.
	defaultSendPingTimeout = 30 * time.Second
	defaultPingTimeout     = 15 * time.Second
	// holdOffBase and holdOffMax bound how long a pool waits before it
	// connects again to a host whose connection it closed for breaking
	// HTTP/2 (holdOff).
	holdOffBase = 100 * time.Millisecond
	holdOffMax  = 10 * time.Second
)

// PoolOptions configure a Pool.
type PoolOptions struct {
	// ConnectTimeout bounds the TCP connect, the TLS handshake and the wait
	// for the peer's SETTINGS. 0 means 1s.
	ConnectTimeout time.Duration
	// TLS, when set, makes connections TLS with ALPN "h2"; ServerName
	// defaults to the address's host.
	TLS *tls.Config
	// MaxConns caps the pool's connections; 0 means no cap. At the cap,
	// streams wait for a slot on an existing connection.
	MaxConns int
	// SendPingTimeout is how long a connection may go without reading
	// anything from the peer before it sends a PING; 0 means 30s, a
	// negative value sends none. PingTimeout is how long the PING may
	// wait for its ACK; 0 means 15s. A connection whose PING goes
	// unanswered is closed (upstream_cx_destroy_local), and its streams
	// fail as a connection termination, which a retry policy with "reset"
	// retries.
	SendPingTimeout, PingTimeout time.Duration
	// MaxConcurrentStreams caps the streams of one connection below the
	// peer's SETTINGS_MAX_CONCURRENT_STREAMS (Envoy's
	// http2_protocol_options.max_concurrent_streams); 0 leaves the
	// peer's value. When every connection is at its cap the pool dials
	// another, within MaxConns and the max_connections breaker.
	MaxConcurrentStreams uint32
	// MaxRequestsPerConn retires a connection once it has carried this
	// many streams (Envoy's max_requests_per_connection, counted in
	// upstream_cx_max_requests); it closes when they finish. 0: no cap.
	MaxRequestsPerConn uint32
	// IdleTimeout closes a connection that has had no stream for this
	// long (Envoy's idle_timeout); 0: never.
	IdleTimeout time.Duration
	// Stats is the cluster's: the pool counts its connections in
	// upstream_cx_*, as Envoy does (every connection attempt in
	// upstream_cx_total and upstream_cx_http2_total, every failed one once
	// in upstream_cx_connect_fail, every end in upstream_cx_destroy and
	// its _local or _remote), and requests queued for a connection or a
	// stream slot in upstream_rq_pending_total and _active. The families
	// are made when first counted in, so an idle host's pool makes none.
	// nil counts nothing.
	Stats *stats.Cluster
	// Breakers are the cluster's circuit breakers, for max_connections
	// (shared by the pools of every host of the cluster) and
	// max_connection_pools (the pool claims one while it holds a
	// connection); nil: no limit.
	Breakers *breaker.Breakers
	// Log receives connection-level events at debug level.
	Log zerolog.Logger
}

// Pool is the frame-level HTTP/2 connection pool of one upstream host. A
// stream goes to the first connection with a free slot under the peer's
// SETTINGS_MAX_CONCURRENT_STREAMS; a connection is dialled only when every
// one is full. It is safe for concurrent use; dispatch takes no pool-wide
// lock unless it must dial.
type Pool struct {
	addr        string
	scheme      string
	opts        PoolOptions
	tls         *tls.Config
	maxStreamID uint32
	log         zerolog.Logger
	cs          *stats.Cluster // may be nil: see cx and rq

	// conns are the connections taking new streams (connecting ones
	// included); the slice is replaced, never modified.
	conns atomic.Pointer[[]*clientConn]

	mu     sync.Mutex // serializes dials and changes to conns and all
	all    map[*clientConn]struct{}
	closed bool
	// open: the pool holds a max_connection_pools claim, from its first
	// connection until its last one is forgotten.
	open bool
	// strikes counts the host's connections closed for breaking HTTP/2
	// in a row (holdOff); holdUntil is when the pool may connect again.
	strikes   uint8
	holdUntil time.Time
}

// NewPool returns a pool for addr ("host:port"). It does no I/O.
func NewPool(addr string, opts PoolOptions) *Pool {
	p := &Pool{addr: addr, scheme: "http", opts: opts, maxStreamID: maxClientStreamID,
		all: make(map[*clientConn]struct{}), log: logfield.With(opts.Log, "upstream", addr)}
	if p.opts.ConnectTimeout <= 0 {
		p.opts.ConnectTimeout = defaultConnectTimeout
	}
	if p.opts.SendPingTimeout == 0 {
		p.opts.SendPingTimeout = defaultSendPingTimeout
	}
	if p.opts.PingTimeout <= 0 {
		p.opts.PingTimeout = defaultPingTimeout
	}
	p.cs = opts.Stats
	if opts.TLS != nil {
		p.scheme = "https"
		p.tls = opts.TLS.Clone()
		p.tls.NextProtos = []string{"h2"}
		if p.tls.ServerName == "" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				p.tls.ServerName = host
			}
		}
		p.tls.ClientSessionCache = upstream.NewSessionCache()
	}
	empty := []*clientConn{}
	p.conns.Store(&empty)
	return p
}

// dispatch binds an upstream half to a connection: one with a free slot,
// else one still connecting (its limit is not known yet), else a new one.
// It never blocks on I/O. A half that has to wait for a slot or a
// connection is a pending request: past the cluster's
// max_pending_requests it is refused (overflow). Past max_connections no
// connection is dialled while one exists: the half waits on it. A pool
// without connections claims one of the cluster's max_connection_pools
// before it dials; refused, it dials nothing and the half is refused as
// an overflow (UO), which Envoy would count in upstream_cx_pool_overflow,
// a stat Sightline does not have.
func (p *Pool) dispatch(h *half) dispatchResult {
	for _, cc := range *p.conns.Load() {
		if cc.bind(h, false) {
			return dispatched
		}
	}
	if b := h.call.breakers(); b != nil && !h.pending {
		if !b.TryPending() {
			return pendingOverflow
		}
		h.pending = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		h.donePending()
		return poolClosed
	}
	conns := *p.conns.Load()
	for _, cc := range conns {
		if cc.bind(h, true) {
			return dispatched
		}
	}
	if p.opts.MaxConns > 0 && len(conns) >= p.opts.MaxConns {
		for _, cc := range conns {
			if cc.bindWaiting(h) {
				return dispatched
			}
		}
	}
	if !p.holdUntil.IsZero() && time.Now().Before(p.holdUntil) {
		p.cx().CxBackoff.Inc(1)
		h.donePending()
		return poolHeldOff
	}
	b := p.opts.Breakers
	if !p.open {
		if !b.TryConnectionPool() {
			h.donePending()
			return pendingOverflow
		}
		p.open = true
	}
	if b != nil && !b.TryConnection() {
		for _, cc := range conns {
			if cc.bindWaiting(h) {
				return dispatched
			}
		}
		// A host's first connection is always allowed, as in Envoy:
		// otherwise a picked host could never be reached.
		b.ForceConnection()
	}
	cc := newClientConn(p)
	cc.counted = b != nil
	p.all[cc] = struct{}{}
	next := append(slices.Clone(conns), cc)
	p.conns.Store(&next)
	cc.bind(h, true)
	go cc.run()
	return dispatched
}

// streamCap is the most streams a connection carries before the peer's
// SETTINGS say less: MaxConcurrentStreams, or no cap.
func (p *Pool) streamCap() uint32 {
	if n := p.opts.MaxConcurrentStreams; n > 0 {
		return n
	}
	return math.MaxUint32
}

// waitCap is the most streams that may wait on a connection still
// connecting: what it will carry at most (MaxConcurrentStreams,
// MaxRequestsPerConn), 0 when that is not known before the peer's
// SETTINGS.
func (p *Pool) waitCap() int {
	n := p.opts.MaxConcurrentStreams
	if r := p.opts.MaxRequestsPerConn; r > 0 && (n == 0 || r < n) {
		n = r
	}
	return int(n)
}

// dispatchResult is what dispatch did with a half.
type dispatchResult uint8

const (
	dispatched      dispatchResult = iota
	poolClosed                     // the host left: the caller answers UF
	pendingOverflow                // max_pending_requests or max_connection_pools: the caller answers UO
	poolHeldOff                    // no new connection yet to a host that broke HTTP/2: the caller answers UF
)

// holdOff makes the pool wait before it connects again to its host, which
// broke HTTP/2 on a connection the pool closed for it at now (a flood of
// frames, a flow-control violation, a malformed frame): 100 ms, doubled
// for each such close up to 10 s, until one comes more than 10 s after
// the last wait ended. Meanwhile a call that needs a new connection fails
// at once as a connect failure (UF), counted in upstream_cx_backoff, and
// a retry policy may take it to another host; the host's open connections
// keep their streams. A host that floods each connection it is given
// would otherwise cost a connection, its set-up and its flood per call:
// 470 a second and 12 of 20 CPU-seconds under bench/abuse's upstream-rst.
// Envoy connects again at once; gRPC clients back off (1 s, growing to
// 120 s) after connections that fail.
func (p *Pool) holdOff(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.holdUntil) > holdOffMax {
		p.strikes = 0
	}
	wait := holdOffMax
	if p.strikes < 8 {
		wait = min(holdOffBase<<p.strikes, holdOffMax)
	}
	p.strikes = min(p.strikes+1, 8)
	p.holdUntil = now.Add(wait)
}

// retire stops new streams from going to cc.
func (p *Pool) retire(cc *clientConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := *p.conns.Load()
	if i := slices.Index(cur, cc); i >= 0 {
		next := slices.Delete(slices.Clone(cur), i, i+1)
		p.conns.Store(&next)
	}
}

// forget drops a closed connection; the pool's last one gives back its
// max_connection_pools claim.
func (p *Pool) forget(cc *clientConn) {
	p.retire(cc)
	p.mu.Lock()
	delete(p.all, cc)
	if len(p.all) == 0 && p.open {
		p.open = false
		p.opts.Breakers.DoneConnectionPool()
	}
	p.mu.Unlock()
}

// Close stops the pool: no new streams, and each connection closes once
// its streams finish (or after a minute). It is idempotent.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	empty := []*clientConn{}
	p.conns.Store(&empty)
	all := make([]*clientConn, 0, len(p.all))
	for cc := range p.all {
		all = append(all, cc)
	}
	p.mu.Unlock()
	for _, cc := range all {
		cc.drain()
	}
	return nil
}

// PoolStats are a pool's live numbers.
type PoolStats struct {
	// Conns are the open (or connecting) connections, Streams their
	// active streams; Parked counts the connections waiting for their
	// host without a goroutine (park.go).
	Conns, Streams, Parked int
	// BufferedBytes is request DATA held for the host, waiting for its
	// flow-control windows; bounded by the client stream window per stream.
	BufferedBytes int64
}

// Stats sums the pool's connections. It is meant for tests and the admin
// page.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := PoolStats{Conns: len(p.all)}
	for cc := range p.all {
		cc.park.mu.Lock()
		if cc.park.parked {
			st.Parked++
		}
		cc.park.mu.Unlock()
		cc.mu.Lock()
		st.Streams += cc.nActive
		st.BufferedBytes += cc.queued
		cc.mu.Unlock()
	}
	return st
}

// Upstream is one host's connection pools, what a cluster's upstream
// factory returns as host.Upstream: the frame-level HTTP/2 pool for every
// HTTP/2 upstream call, whoever makes it (RoundTrip serves net/http
// callers), and the net/http pool for HTTP/1.1 upstream calls (http1
// clusters, bridged from HTTP/2 clients; auto clusters for HTTP/1.1
// clients).
type Upstream struct {
	H2   *Pool
	HTTP *upstream.Pool
}

// NewUpstream returns the pools of the host at addr. http1 may be nil when
// no cluster protocol needs it. It does no I/O.
func NewUpstream(addr string, opts PoolOptions, http1 *upstream.Pool) *Upstream {
	return &Upstream{H2: NewPool(addr, opts), HTTP: http1}
}

// Close closes both pools; they drain their streams first. It implements
// host.Upstream and is idempotent.
func (u *Upstream) Close() error {
	err := u.H2.Close()
	if u.HTTP != nil {
		err = errors.Join(err, u.HTTP.Close())
	}
	return err
}

// cx returns the cluster's connection stats, made on first use.
func (p *Pool) cx() *stats.Connections { return p.cs.Connections() }

// rq returns the cluster's request stats, made on first use.
func (p *Pool) rq() *stats.Upstream { return p.cs.Upstream() }
