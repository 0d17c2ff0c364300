package breaker

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/stats"
)

// fixture is a Breakers with real stats to read back.
type fixture struct {
	b  *Breakers
	st *stats.CircuitBreakers
	up *stats.Upstream
}

func newFixture(t testing.TB, cfg config.CircuitBreakers) *fixture {
	t.Helper()
	s, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := s.Cluster("c")
	f := &fixture{st: c.CircuitBreakers(), up: c.Upstream()}
	f.b = New(cfg, c)
	return f
}

// kind is one of the four breakers, seen through its methods and stats.
type kind struct {
	name     string
	try      func(*Breakers) bool
	done     func(*Breakers)
	usage    func(Snapshot) Usage
	gauge    func(*stats.CircuitBreakers) *stats.Gauge
	overflow func(*stats.Upstream) *stats.Counter // nil: none counted
}

var kinds = []kind{
	{
		name: "requests", try: (*Breakers).TryRequest, done: (*Breakers).DoneRequest,
		usage:    func(s Snapshot) Usage { return s.Requests },
		gauge:    func(st *stats.CircuitBreakers) *stats.Gauge { return st.RqOpen },
		overflow: func(up *stats.Upstream) *stats.Counter { return up.RqPendingOverflow },
	},
	{
		name: "pending", try: (*Breakers).TryPending, done: (*Breakers).DonePending,
		usage:    func(s Snapshot) Usage { return s.PendingRequests },
		gauge:    func(st *stats.CircuitBreakers) *stats.Gauge { return st.RqPendingOpen },
		overflow: func(up *stats.Upstream) *stats.Counter { return up.RqPendingOverflow },
	},
	{
		name: "retries", try: (*Breakers).TryRetry, done: (*Breakers).DoneRetry,
		usage:    func(s Snapshot) Usage { return s.Retries },
		gauge:    func(st *stats.CircuitBreakers) *stats.Gauge { return st.RqRetryOpen },
		overflow: func(up *stats.Upstream) *stats.Counter { return up.RqRetryOverflow },
	},
	{
		name: "connections", try: (*Breakers).TryConnection, done: (*Breakers).DoneConnection,
		usage: func(s Snapshot) Usage { return s.Connections },
		gauge: func(st *stats.CircuitBreakers) *stats.Gauge { return st.CxOpen },
	},
	{
		name: "connection pools", try: (*Breakers).TryConnectionPool, done: (*Breakers).DoneConnectionPool,
		usage: func(s Snapshot) Usage { return s.ConnectionPools },
		gauge: func(st *stats.CircuitBreakers) *stats.Gauge { return st.CxPoolOpen },
	},
}

// limits sets every breaker to n.
func limits(n int) config.CircuitBreakers {
	return config.CircuitBreakers{MaxConnections: n, MaxPendingRequests: n, MaxRequests: n, MaxRetries: n, MaxConnectionPools: n}
}

func (f *fixture) overflows() int64 {
	return f.up.RqPendingOverflow.Value() + f.up.RqRetryOverflow.Value()
}

func TestTryAtLimit(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			f := newFixture(t, limits(3))
			gauge := k.gauge(f.st)
			for i := range 3 {
				if !k.try(f.b) {
					t.Fatalf("try %d refused below the limit", i+1)
				}
				if i < 2 && gauge.Value() != 0 {
					t.Fatalf("open = %d at %d of 3, want 0", gauge.Value(), i+1)
				}
			}
			if gauge.Value() != 1 {
				t.Errorf("open = %d at the limit, want 1", gauge.Value())
			}
			if u := k.usage(f.b.Snapshot()); u != (Usage{Active: 3, Max: 3}) || u.Remaining() != 0 || !u.Open() {
				t.Errorf("usage = %+v (remaining %d, open %t), want 3 of 3, 0 remaining, open", u, u.Remaining(), u.Open())
			}

			for range 2 {
				if k.try(f.b) {
					t.Fatal("try past the limit succeeded")
				}
			}
			if got := k.usage(f.b.Snapshot()).Active; got != 3 {
				t.Errorf("a refused try moved the count to %d", got)
			}
			wantOverflow := int64(0)
			if k.overflow != nil {
				wantOverflow = 2
				if got := k.overflow(f.up).Value(); got != 2 {
					t.Errorf("overflow counter = %d, want 2", got)
				}
			}
			if got := f.overflows(); got != wantOverflow {
				t.Errorf("overflow counters total %d, want %d: a refusal counted in the wrong place", got, wantOverflow)
			}

			k.done(f.b)
			if gauge.Value() != 0 {
				t.Errorf("open = %d below the limit, want 0", gauge.Value())
			}
			if u := k.usage(f.b.Snapshot()); u.Remaining() != 1 || u.Open() {
				t.Errorf("usage = %+v, want 1 remaining, closed", u)
			}
			if !k.try(f.b) {
				t.Error("try refused after a done")
			}
			for _, other := range kinds {
				if other.name != k.name && other.gauge(f.st).Value() != 0 {
					t.Errorf("the %s breaker opened too", other.name)
				}
			}
		})
	}
}

func TestLimitsFromConfig(t *testing.T) {
	tests := []struct {
		name string
		give config.CircuitBreakers
		want Snapshot
	}{
		{
			name: "as configured",
			give: config.CircuitBreakers{MaxConnections: 1, MaxPendingRequests: 2, MaxRequests: 3, MaxRetries: 4, MaxConnectionPools: 5},
			want: Snapshot{Connections: Usage{Max: 1}, PendingRequests: Usage{Max: 2}, Requests: Usage{Max: 3}, Retries: Usage{Max: 4}, ConnectionPools: Usage{Max: 5}},
		},
		{
			name: "zero takes Envoy's defaults: max_connection_pools unlimited",
			want: Snapshot{Connections: Usage{Max: 1024}, PendingRequests: Usage{Max: 1024}, Requests: Usage{Max: 1024}, Retries: Usage{Max: 3}, ConnectionPools: Usage{Max: math.MaxInt64}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := New(tt.give, nil).Snapshot(); got != tt.want {
				t.Errorf("Snapshot() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNegativeLimitRefusesAll(t *testing.T) {
	f := newFixture(t, limits(-1))
	for _, k := range kinds {
		if k.try(f.b) {
			t.Errorf("%s: try succeeded with a negative limit", k.name)
		}
		if k.gauge(f.st).Value() != 1 {
			t.Errorf("%s: open = 0 with a limit of nothing", k.name)
		}
	}
}

func TestNilBreakers(t *testing.T) {
	var b *Breakers
	for _, k := range kinds {
		for range 5 {
			if !k.try(b) {
				t.Errorf("%s: a nil Breakers refused", k.name)
			}
		}
		k.done(b)
	}
	b.ForceConnection()
	if got := b.Snapshot(); got != (Snapshot{}) {
		t.Errorf("Snapshot() = %+v, want zero", got)
	}
}

func TestNilStats(t *testing.T) {
	b := New(limits(1), nil)
	for _, k := range kinds {
		if !k.try(b) || k.try(b) {
			t.Errorf("%s: want one success then a refusal", k.name)
		}
		k.done(b)
	}
}

func TestForceConnection(t *testing.T) {
	f := newFixture(t, limits(2))
	f.b.ForceConnection()
	f.b.ForceConnection()
	if f.st.CxOpen.Value() != 1 {
		t.Error("forced connections reached the limit but cx_open = 0")
	}
	f.b.ForceConnection()
	if f.b.TryConnection() {
		t.Error("try succeeded past the limit")
	}
	if got := f.b.Snapshot().Connections; got.Active != 3 || got.Remaining() != 0 {
		t.Errorf("connections = %+v, want 3 active, 0 remaining", got)
	}
	f.b.DoneConnection()
	if f.st.CxOpen.Value() != 1 {
		t.Error("cx_open = 0 while still at the limit")
	}
	f.b.DoneConnection()
	if f.st.CxOpen.Value() != 0 {
		t.Error("cx_open = 1 below the limit")
	}
}

// TestConcurrentChurn hammers every breaker from many goroutines and checks
// that the count never passes the limit and that, once the churn settles,
// the count and the open gauge are exact, both below the limit and at it.
func TestConcurrentChurn(t *testing.T) {
	const (
		limit      = 4
		goroutines = 16
		rounds     = 20
		churn      = 200
	)
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			f := newFixture(t, limits(limit))
			gauge := k.gauge(f.st)
			var inFlight, peak atomic.Int64
			for round := range rounds {
				// Churn: claim and give back as fast as possible.
				var wg sync.WaitGroup
				for range goroutines {
					wg.Go(func() {
						for range churn {
							if !k.try(f.b) {
								continue
							}
							raise(&peak, inFlight.Add(1))
							inFlight.Add(-1)
							k.done(f.b)
						}
					})
				}
				wg.Wait()
				if got := k.usage(f.b.Snapshot()).Active; got != 0 {
					t.Fatalf("round %d: count = %d after every claim was given back", round, got)
				}
				if got := gauge.Value(); got != 0 {
					t.Fatalf("round %d: open = %d with nothing claimed", round, got)
				}

				// Churn again, and have every goroutine end with one try it
				// holds on to: the count settles at the limit (there are
				// more goroutines than units) right after a storm of
				// crossings both ways.
				var won atomic.Int64
				for range goroutines {
					wg.Go(func() {
						for range churn / 4 {
							if k.try(f.b) {
								k.done(f.b)
							}
						}
						if k.try(f.b) {
							won.Add(1)
						}
					})
				}
				wg.Wait()
				if got := k.usage(f.b.Snapshot()).Active; got != won.Load() {
					t.Fatalf("round %d: count = %d, %d claims held", round, got, won.Load())
				}
				if got := won.Load(); got != limit {
					t.Fatalf("round %d: %d claims held at the end, want %d", round, got, limit)
				}
				if got := gauge.Value(); got != 1 {
					t.Fatalf("round %d: open = %d at the limit", round, got)
				}
				// Give back concurrently, churning the last unit.
				for range limit {
					wg.Go(func() {
						k.done(f.b)
						if k.try(f.b) {
							k.done(f.b)
						}
					})
				}
				wg.Wait()
				if got := gauge.Value(); got != 0 {
					t.Fatalf("round %d: open = %d after everything was given back", round, got)
				}
			}
			if p := peak.Load(); p > limit {
				t.Errorf("%d claims held at once, limit %d", p, limit)
			}
		})
	}
}

// raise sets *p to n when n is larger.
func raise(p *atomic.Int64, n int64) {
	for {
		old := p.Load()
		if n <= old || p.CompareAndSwap(old, n) {
			return
		}
	}
}

func TestTryDoneAllocs(t *testing.T) {
	f := newFixture(t, limits(1))
	for _, k := range kinds {
		if n := testing.AllocsPerRun(1000, func() {
			k.try(f.b)
			k.try(f.b) // refused: counts an overflow
			k.done(f.b)
		}); n != 0 {
			t.Errorf("%s: try/done allocates %v times", k.name, n)
		}
	}
}

func BenchmarkTryDone(b *testing.B) {
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			f := newFixture(b, limits(1<<30))
			b.ReportAllocs()
			for b.Loop() {
				if k.try(f.b) {
					k.done(f.b)
				}
			}
		})
	}
	b.Run("requests_refused", func(b *testing.B) {
		f := newFixture(b, limits(1))
		f.b.TryRequest()
		b.ReportAllocs()
		for b.Loop() {
			f.b.TryRequest()
		}
	})
	b.Run("requests_parallel", func(b *testing.B) {
		f := newFixture(b, limits(1<<30))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if f.b.TryRequest() {
					f.b.DoneRequest()
				}
			}
		})
	})
}

// stallingGauge holds its first Set until release is closed, then records
// it: a publish that read the count, was preempted, and writes late.
type stallingGauge struct {
	mu      sync.Mutex
	v       int64
	calls   int
	stalled chan struct{} // closed when the first Set is waiting
	release chan struct{}
}

func (g *stallingGauge) Set(v int64) {
	g.mu.Lock()
	g.calls++
	first := g.calls == 1
	g.mu.Unlock()
	if first {
		close(g.stalled)
		<-g.release
	}
	g.mu.Lock()
	g.v = v
	g.mu.Unlock()
}

func (g *stallingGauge) value() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.v
}

// TestPublishLateWrite stages the race the open gauge must survive: a done
// crosses below the limit and reads "closed", a try crosses back to the
// limit and publishes "open", and only then does the done's write land.
// The gauge must still end at 1, since the count is at the limit.
func TestPublishLateWrite(t *testing.T) {
	l := &limit{max: 2, open: (*stats.Gauge)(nil)}
	l.try()
	l.try() // at the limit

	g := &stallingGauge{stalled: make(chan struct{}), release: make(chan struct{})}
	l.open = g
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.done() // crosses below: reads "closed", stalls before writing
	}()
	select {
	case <-g.stalled:
	case <-time.After(5 * time.Second):
		t.Fatal("the done did not publish")
	}
	if !l.try() { // crosses back to the limit and publishes "open"
		t.Fatal("try refused below the limit")
	}
	close(g.release) // the stale "closed" lands now
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the done did not finish")
	}
	if got := g.value(); got != 1 {
		t.Errorf("open = %d with the count at its limit (%d of %d)", got, l.n.Load(), l.max)
	}
}

// TestConnectionPoolsUnlimited: by default max_connection_pools never
// refuses, and its gauge is never written (a gauge never set is never
// reported, like the other breakers' below their limits).
func TestConnectionPoolsUnlimited(t *testing.T) {
	f := newFixture(t, config.CircuitBreakers{})
	for i := range 10000 {
		if !f.b.TryConnectionPool() {
			t.Fatalf("pool %d refused with no limit", i+1)
		}
	}
	if got := f.b.Snapshot().ConnectionPools; got.Active != 10000 || got.Open() {
		t.Errorf("connection pools = %+v, want 10000 active and not open", got)
	}
	for range 10000 {
		f.b.DoneConnectionPool()
	}
	if v := f.st.CxPoolOpen.Value(); v != 0 {
		t.Errorf("cx_pool_open = %d, want 0", v)
	}
}

// TestShare: a connection that holds many requests is refused before the
// cluster's max_requests is reached, so that light connections still find
// slots: twelve connections trying to hold 100 requests each under
// max_requests 1024 leave room for others.
func TestShare(t *testing.T) {
	b := New(config.CircuitBreakers{MaxRequests: 1024}, nil)
	var hogs []*Share
	held := 0
	for range 12 {
		s := b.NewShare()
		hogs = append(hogs, s)
		for range 100 {
			if !s.Try() {
				break
			}
			if !b.TryRequest() {
				t.Fatal("max_requests refused a request the share let through")
			}
			held++
		}
	}
	if held > 1024*7/8+12*minShare {
		t.Fatalf("heavy connections hold %d of 1024", held)
	}
	// Light connections: each may still start a few requests.
	for i := range 16 {
		s := b.NewShare()
		for range 4 {
			if !s.Try() || !b.TryRequest() {
				t.Fatalf("light connection %d refused with %d heavy requests held", i, held)
			}
		}
	}
	// A small budget is exact, for one connection as for many.
	small := New(config.CircuitBreakers{MaxRequests: 10}, nil)
	one := small.NewShare()
	for i := range 10 {
		if !one.Try() || !small.TryRequest() {
			t.Fatalf("request %d of max_requests 10 refused", i)
		}
	}
	// Below half of max_requests nothing is refused, however heavy.
	b2 := New(config.CircuitBreakers{MaxRequests: 1024}, nil)
	s := b2.NewShare()
	for i := range 500 {
		if !s.Try() || !b2.TryRequest() {
			t.Fatalf("request %d refused under half of max_requests", i)
		}
	}
	for _, s := range hogs {
		for s.n.Load() > 0 {
			s.Done()
		}
	}
	if n := b.counts().holders.Load(); n != 16 {
		t.Errorf("holders = %d after the heavy ones left, want the 16 light ones", n)
	}
}

// TestCountersOnFirstUse: breakers that have claimed nothing hold no
// counters, and their snapshot shows the limits with nothing claimed; the
// first claim makes them. A limit that refuses everything has its open
// gauge from the start.
func TestCountersOnFirstUse(t *testing.T) {
	b := New(config.CircuitBreakers{MaxRequests: 5}, nil)
	if b.live.Load() != nil {
		t.Fatal("new breakers made their counters")
	}
	if s := b.Snapshot(); s.Requests != (Usage{Max: 5}) || s.Connections != (Usage{Max: defaultMaxConnections}) || s.ConnectionPools.Max != unlimited {
		t.Errorf("snapshot before any claim: %+v", s)
	}
	if !b.TryRequest() || b.live.Load() == nil || b.Snapshot().Requests != (Usage{Active: 1, Max: 5}) {
		t.Errorf("after a claim: counters made %v, requests %+v", b.live.Load() != nil, b.Snapshot().Requests)
	}
	b.DoneRequest()

	s, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cs := s.Cluster("c")
	New(config.CircuitBreakers{MaxRetries: -1}, cs)
	if got := cs.CircuitBreakers().RqRetryOpen.Value(); got != 1 {
		t.Errorf("max_retries refusing everything: rq_retry_open %d, want 1 from the start", got)
	}
}

// TestCountersLayout: max_requests, claimed by every call, and the
// connection holders sit on a cache line of their own.
func TestCountersLayout(t *testing.T) {
	var c counters
	if got := unsafe.Sizeof(limit{}); got != limitSize {
		t.Errorf("a limit is %d bytes, want limitSize %d", got, limitSize)
	}
	if off := unsafe.Offsetof(c.cx); off != 64 {
		t.Errorf("the first of the other limits is at %d, want 64", off)
	}
}

// TestCountersFromChunks: clusters' first calls make their counters a
// chunk at a time, not one allocation each, and racing first calls of one
// cluster all get the same counters.
func TestCountersFromChunks(t *testing.T) {
	const runs = 10 * countsPerChunk
	bs := make([]*Breakers, runs+1) // AllocsPerRun runs f once more first
	for i := range bs {
		bs[i] = New(config.CircuitBreakers{}, nil)
	}
	i := 0
	// About one allocation per countsPerChunk calls: the integral average
	// is 0; one per call would be 1.
	if got := testing.AllocsPerRun(runs, func() {
		if !bs[i].TryRequest() {
			t.Fatal("first request refused")
		}
		i++
	}); got != 0 {
		t.Errorf("first calls of %d clusters: %v allocations each, want 0 on average", runs, got)
	}

	b := New(config.CircuitBreakers{MaxRequests: 100}, nil)
	var wg sync.WaitGroup
	got := make([]*counters, 8)
	for i := range got {
		wg.Go(func() { got[i] = b.counts() })
	}
	wg.Wait()
	for i, c := range got {
		if c != got[0] {
			t.Fatalf("goroutine %d got other counters than goroutine 0", i)
		}
	}
	if c := got[0]; c.rq.max != 100 || c.cx.max != defaultMaxConnections {
		t.Errorf("counters limits: requests %d, connections %d", c.rq.max, c.cx.max)
	}
}
