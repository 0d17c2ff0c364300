// Package breaker enforces a cluster's circuit breakers, Envoy's default
// priority: caps on the connections, pending requests, requests, retries
// and connection pools the cluster may have outstanding at once. Failing
// fast at a cap pushes back on callers while the upstream is slow, instead
// of queueing without bound behind it.
//
// Each cap is a counter and a limit. Try claims one unit with a
// compare-and-swap loop, so a refused Try never moves the count and the
// count never passes the limit; Done gives it back with one atomic add.
// Neither takes a lock or allocates.
package breaker

import (
	"math"
	"sync"
	"sync/atomic"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/stats"
)

// Envoy's defaults, for limits a config leaves at zero (config.Load fills
// the same values, so this only matters for configs built by hand).
const (
	defaultMaxConnections     = 1024
	defaultMaxPendingRequests = 1024
	defaultMaxRequests        = 1024
	defaultMaxRetries         = 3
	// Envoy's max_connection_pools is unlimited unless configured.
	unlimited = math.MaxInt64
)

// Breakers are one cluster's circuit breakers. The cluster builds them
// with its config and keeps them for its lifetime; every method is safe for
// concurrent use. A nil *Breakers has no limits: every Try succeeds.
//
// Every Try that returns true must be followed by exactly one matching
// Done, on any goroutine; a Try that returns false must not be.
type Breakers struct {
	cs  *stats.Cluster // its request stats count the overflows
	max [nLimits]int64 // the limits, by kind (cxOpen, …)
	// live holds the counters, made on first use: each on a cache line of
	// its own, 400 bytes that a cluster that never serves does without.
	live atomic.Pointer[counters]
}

// counters are the breakers' counts. max_requests is claimed by every
// call, and holders (the downstream connections holding requests of the
// cluster, see Share) by calls of connections that held none: they share
// a cache line of their own. The other limits are claimed per connection,
// per queued request or per retry, far less often, and share the next two.
type counters struct {
	rq      limit
	holders atomic.Int64
	_       [64 - limitSize - 8]byte
	cx      limit
	pending limit
	retry   limit
	pools   limit
}

// limitSize is the size of a limit.
const limitSize = 32

// New builds the breakers from the cluster's circuit_breakers config. cs's
// circuit_breakers.*_open gauges and request stats count the breakers'
// state and overflows, both made on first use: the gauges when a limit is
// first reached, or when the cluster takes its first request, so that an
// idle cluster has none (Envoy's idle clusters hold theirs). cs may be nil
// to count nothing. A zero limit
// takes Envoy's default; a negative one refuses everything.
func New(cfg config.CircuitBreakers, cs *stats.Cluster) *Breakers {
	b := &Breakers{cs: cs}
	for kind, l := range []struct{ v, def int }{
		cxOpen:        {cfg.MaxConnections, defaultMaxConnections},
		rqPendingOpen: {cfg.MaxPendingRequests, defaultMaxPendingRequests},
		rqOpen:        {cfg.MaxRequests, defaultMaxRequests},
		rqRetryOpen:   {cfg.MaxRetries, defaultMaxRetries},
		cxPoolOpen:    {cfg.MaxConnectionPools, unlimited},
	} {
		switch v := l.v; {
		case v == 0:
			b.max[kind] = int64(l.def)
		case v < 0:
			b.max[kind] = 0
		default:
			b.max[kind] = int64(v)
		}
		if b.max[kind] == 0 {
			b.counts() // refuses everything from the start: its gauge says so now
		}
	}
	return b
}

// counts returns the counters, made on first use.
func (b *Breakers) counts() *counters {
	if c := b.live.Load(); c != nil {
		return c
	}
	return b.makeCounts()
}

// makeCounts makes the counters on first use, from a shared chunk.
func (b *Breakers) makeCounts() *counters {
	chunk.Lock()
	defer chunk.Unlock()
	if c := b.live.Load(); c != nil {
		return c
	}
	if len(chunk.free) == 0 {
		chunk.free = make([]counters, countsPerChunk)
	}
	c := &chunk.free[0]
	chunk.free = chunk.free[1:]
	c.cx.init(b.max[cxOpen], openGauge[cxGauge]{b.cs})
	c.pending.init(b.max[rqPendingOpen], openGauge[pendingGauge]{b.cs})
	c.rq.init(b.max[rqOpen], openGauge[rqGauge]{b.cs})
	c.retry.init(b.max[rqRetryOpen], openGauge[retryGauge]{b.cs})
	c.pools.init(b.max[cxPoolOpen], openGauge[poolsGauge]{b.cs})
	b.live.Store(c)
	return c
}

// chunk hands out counters countsPerChunk at a time. Counters live as
// long as their cluster, but its first call makes them, amid that call's
// garbage. Made one by one, the counters of 10,000 clusters that each
// served one call in a burst sat scattered over the spans the burst's
// short-lived objects had filled: with the open gauges each boxed, a
// minute after the burst the heap had 42.5 MiB of spans in use, against
// 38.1 from chunks (bench/README.md, Scale).
//
// A chunk stays allocated while any of its counters is reachable: the
// slot of a cluster a reload removed stays unused until the chunk's other
// clusters go too; at worst, a chunk is held for each live cluster that
// served.
var chunk struct {
	sync.Mutex
	free []counters
}

// countsPerChunk counters make 3 KiB, one of the allocator's size
// classes.
const countsPerChunk = 16

// The limits, by kind: indexes of Breakers.max.
const (
	cxOpen uint8 = iota
	rqPendingOpen
	rqOpen
	rqRetryOpen
	cxPoolOpen
	nLimits
)

// openGauge is one of a cluster's circuit_breakers.*_open gauges, found
// when it is first set; K says which. A struct of one pointer, it goes
// into a limit's gauge without an allocation: as a struct of a pointer
// and a kind it took five a cluster, made by its first call and kept for
// good.
type openGauge[K openKind] struct{ cs *stats.Cluster }

func (g openGauge[K]) Set(v int64) {
	if g.cs == nil {
		return
	}
	st := g.cs.CircuitBreakers()
	var k K
	switch any(k).(type) {
	case cxGauge:
		st.CxOpen.Set(v)
	case pendingGauge:
		st.RqPendingOpen.Set(v)
	case rqGauge:
		st.RqOpen.Set(v)
	case retryGauge:
		st.RqRetryOpen.Set(v)
	case poolsGauge:
		st.CxPoolOpen.Set(v)
	}
}

// openKind says which gauge an openGauge is.
type openKind interface {
	cxGauge | pendingGauge | rqGauge | retryGauge | poolsGauge
}

type (
	cxGauge      struct{}
	pendingGauge struct{}
	rqGauge      struct{}
	retryGauge   struct{}
	poolsGauge   struct{}
)

// TryRequest claims one of max_requests for a request about to be sent
// upstream; the forwarder calls it once per attempt, before picking a host,
// and DoneRequest when the attempt ends. When the breaker is open it
// counts upstream_rq_pending_overflow, as Envoy does for this breaker, and
// the request is answered 503 with the UO response flag.
func (b *Breakers) TryRequest() bool {
	if b == nil || b.counts().rq.try() {
		return true
	}
	b.cs.Upstream().RqPendingOverflow.Inc(1)
	return false
}

// DoneRequest gives back what a successful TryRequest claimed.
func (b *Breakers) DoneRequest() {
	if b != nil {
		b.counts().rq.done()
	}
}

// TryPending claims one of max_pending_requests for a request that must
// wait for a connection (or a free stream on one); the connection pool
// calls it when it queues the request, and DonePending when the request
// leaves the queue, with a stream or without. When the breaker is open it
// counts upstream_rq_pending_overflow.
func (b *Breakers) TryPending() bool {
	if b == nil || b.counts().pending.try() {
		return true
	}
	b.cs.Upstream().RqPendingOverflow.Inc(1)
	return false
}

// DonePending gives back what a successful TryPending claimed.
func (b *Breakers) DonePending() {
	if b != nil {
		b.counts().pending.done()
	}
}

// TryRetry claims one of max_retries before a retry is sent; the
// forwarder calls it when the retry policy says to retry, and DoneRetry
// when that retry attempt ends. When the breaker is open it counts
// upstream_rq_retry_overflow and the previous attempt's response is final.
func (b *Breakers) TryRetry() bool {
	if b == nil || b.counts().retry.try() {
		return true
	}
	b.cs.Upstream().RqRetryOverflow.Inc(1)
	return false
}

// DoneRetry gives back what a successful TryRetry claimed.
func (b *Breakers) DoneRetry() {
	if b != nil {
		b.counts().retry.done()
	}
}

// TryConnection claims one of max_connections before the connection pool
// dials; the pool calls DoneConnection when the connection closes, or when
// the dial fails. A refusal counts nothing yet: the stats catalog has no
// upstream_cx_overflow.
func (b *Breakers) TryConnection() bool {
	return b == nil || b.counts().cx.try()
}

// ForceConnection counts a connection past max_connections. Envoy lets a
// host the balancer picked open its first connection even when the breaker
// is open, so that one busy host cannot starve the others; the pool calls
// this instead of TryConnection in that case, and DoneConnection as usual.
func (b *Breakers) ForceConnection() {
	if b != nil {
		b.counts().cx.force()
	}
}

// DoneConnection gives back what TryConnection or ForceConnection claimed.
func (b *Breakers) DoneConnection() {
	if b != nil {
		b.counts().cx.done()
	}
}

// TryConnectionPool claims one of max_connection_pools for a host's
// connection pool that is about to open its first connection; the pool
// calls DoneConnectionPool when its last connection closes (or its first
// dial fails). A pool refused here does not dial: the request that needed
// the connection fails at once, without a connection attempt, and the
// caller answers it as an overflow where it can (the HTTP/2 engine answers
// UO). A refusal counts nothing: the stats catalog has no
// upstream_cx_pool_overflow.
func (b *Breakers) TryConnectionPool() bool {
	return b == nil || b.counts().pools.try()
}

// DoneConnectionPool gives back what TryConnectionPool claimed.
func (b *Breakers) DoneConnectionPool() {
	if b != nil {
		b.counts().pools.done()
	}
}

// minShare is the least share of max_requests a connection is refused at:
// a connection holding fewer requests is light, and the last eighth of
// max_requests is kept for light connections.
const minShare = 8

// minShareBudget is the least max_requests that shares apply to.
const minShareBudget = 8 * minShare

// Share is one downstream connection's part of a cluster's max_requests.
// Envoy's breaker is first come, first served: a client holding streams
// open on a few connections can take every request slot of a cluster and
// fail everyone else's calls. Here, under pressure, a heavy connection is
// refused first, so that its excess overflows on it (503, flag UO,
// upstream_rq_connection_share_overflow) and the others' calls still find
// slots:
//
//   - once the cluster's requests pass half of max_requests, a connection
//     holding its fair share, max_requests divided by the connections
//     holding requests plus one (for the next to come), is refused;
//   - once they pass seven eighths, a connection holding minShare or more
//     is refused: the rest is kept for light connections, which is what
//     most clients are.
//
// Under half, nothing changes, and neither does a budget under
// minShareBudget: a small max_requests is a cap the operator means for
// every client together, counted exactly as Envoy counts it. Calls on
// HTTP/1.1 connections, one at a time, need no share.
//
// A Share is used by one connection: Try on its reader, Done on any
// goroutine.
type Share struct {
	b *Breakers
	c *counters
	n atomic.Int64
}

// NewShare returns a connection's share of b's max_requests; nil for a
// nil b.
func (b *Breakers) NewShare() *Share {
	if b == nil {
		return nil
	}
	return &Share{b: b, c: b.counts()}
}

// Try claims one more request for the connection, or reports false, and
// counts it, when the connection is over its share.
func (s *Share) Try() bool {
	if s == nil {
		return true
	}
	c := s.c
	if held := s.n.Load(); held >= minShare && c.rq.max >= minShareBudget {
		used, limit := c.rq.n.Load(), c.rq.max
		if used*8 >= limit*7 || used*2 >= limit && held >= limit/(c.holders.Load()+1) {
			s.b.cs.Upstream().RqShareOverflow.Inc(1)
			return false
		}
	}
	if s.n.Add(1) == 1 {
		c.holders.Add(1)
	}
	return true
}

// Done gives back what Try claimed.
func (s *Share) Done() {
	if s != nil && s.n.Add(-1) == 0 {
		s.c.holders.Add(-1)
	}
}

// Usage is one breaker's state at one moment.
type Usage struct {
	Active int64 // claimed now
	Max    int64 // the limit
}

// Remaining is how many more Try calls would succeed now; Envoy's
// remaining_* gauges.
func (u Usage) Remaining() int64 { return max(u.Max-u.Active, 0) }

// Open reports whether the breaker refuses new claims.
func (u Usage) Open() bool { return u.Active >= u.Max }

// Snapshot is every breaker's Usage, for the admin pages.
type Snapshot struct {
	Connections     Usage
	PendingRequests Usage
	Requests        Usage
	Retries         Usage
	ConnectionPools Usage
}

// Snapshot reads every breaker. The reads are not one atomic view:
// each is exact, but they may be from slightly different moments. A nil
// *Breakers returns a zero Snapshot.
func (b *Breakers) Snapshot() Snapshot {
	if b == nil {
		return Snapshot{}
	}
	c := b.live.Load()
	if c == nil {
		// Never used: nothing claimed.
		u := func(kind uint8) Usage { return Usage{Max: b.max[kind]} }
		return Snapshot{u(cxOpen), u(rqPendingOpen), u(rqOpen), u(rqRetryOpen), u(cxPoolOpen)}
	}
	return Snapshot{
		Connections:     c.cx.usage(),
		PendingRequests: c.pending.usage(),
		Requests:        c.rq.usage(),
		Retries:         c.retry.usage(),
		ConnectionPools: c.pools.usage(),
	}
}

// limit is one breaker (limitSize bytes).
type limit struct {
	n    atomic.Int64
	max  int64
	open gauge
}

// gauge is what a limit needs of its open gauge: a *stats.Gauge, or in
// tests one that lets them stage the race publish must win.
type gauge interface{ Set(v int64) }

func (l *limit) init(max int64, open gauge) {
	l.max, l.open = max, open
	if l.max == 0 {
		l.open.Set(1) // refuses everything from the start
	}
}

func (l *limit) try() bool {
	for {
		n := l.n.Load()
		if n >= l.max {
			return false
		}
		if l.n.CompareAndSwap(n, n+1) {
			if n+1 == l.max {
				l.publish()
			}
			return true
		}
	}
}

func (l *limit) force() {
	if l.n.Add(1) == l.max {
		l.publish()
	}
}

func (l *limit) done() {
	if l.n.Add(-1) == l.max-1 {
		l.publish()
	}
}

// publish sets the open gauge after the count crossed the limit, one way
// or the other. Calls race with each other, so each one, after writing,
// reads the count again and writes again if the answer changed: whichever
// call writes last has then seen a count whose answer it wrote, and any
// later crossing publishes after it. So once calls stop, the gauge is
// exact. Only crossings publish, which keeps the cost off requests that
// find the breaker nowhere near its limit.
func (l *limit) publish() {
	for {
		open := l.n.Load() >= l.max
		l.open.Set(b2i(open))
		if (l.n.Load() >= l.max) == open {
			return
		}
	}
}

func (l *limit) usage() Usage { return Usage{Active: l.n.Load(), Max: l.max} }

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
