package cluster

import (
	"testing"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/host"
)

// testPool is a host's pool as ReleaseIdlePools sees it: connections or
// none, closed or not.
type testPool struct {
	conns  int
	closed bool
}

func (p *testPool) Close() error { p.closed = true; return nil }

// TestReleaseIdlePools: a pool is dropped by the second sweep that finds
// it without connections and its host without requests since the first,
// and closed by the sweep after; a pool with a connection, a host that
// served a request since the last sweep or has one in flight keeps its
// pool; Close closes what was dropped.
func TestReleaseIdlePools(t *testing.T) {
	var made []*testPool
	c, err := New(config.Cluster{Name: "c", LBPolicy: "round_robin", Endpoints: []config.Endpoint{
		{Address: "10.0.0.1:80"}, {Address: "10.0.0.2:80"}, {Address: "10.0.0.3:80"}, {Address: "10.0.0.4:80"},
	}}, Options{
		Log:          zerolog.Nop(),
		NewUpstream:  func(*Cluster, *host.Host) host.Upstream { p := &testPool{}; made = append(made, p); return p },
		UpstreamIdle: func(u host.Upstream) bool { return u.(*testPool).conns == 0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := c.Hosts()
	quiet, busy, active, connected := hs[0], hs[1], hs[2], hs[3]
	for _, h := range []*host.Host{quiet, busy, active, connected} {
		h.Upstream()
	}
	connected.MadeUpstream().(*testPool).conns = 1
	pool := quiet.MadeUpstream().(*testPool)

	c.ReleaseIdlePools() // the first sight of every pool: none dropped
	for _, h := range hs {
		if h.MadeUpstream() == nil {
			t.Fatalf("%s lost its pool at the first sweep", h.Address)
		}
	}
	busy.RqTotal.Add(1)
	active.Active.Add(1)
	c.ReleaseIdlePools()
	if quiet.MadeUpstream() != nil || pool.closed {
		t.Errorf("the quiet host's pool: still its host's %v, closed %v; want dropped, not yet closed", quiet.MadeUpstream() != nil, pool.closed)
	}
	for _, h := range []*host.Host{busy, active, connected} {
		if h.MadeUpstream() == nil {
			t.Errorf("%s lost its pool (a request since, one in flight or a connection)", h.Address)
		}
	}
	busyPool := busy.MadeUpstream().(*testPool)
	c.ReleaseIdlePools()
	if !pool.closed {
		t.Error("the dropped pool was not closed by the next sweep")
	}
	if quiet.Upstream() == host.Upstream(pool) || len(made) != 5 {
		t.Error("the host's next request did not make a new pool")
	}
	// busy's request was before the last sweep: quiet since, it goes now;
	// the cluster closes before the next sweep, and closes it.
	if busy.MadeUpstream() != nil || busyPool.closed {
		t.Fatalf("busy's pool: still its host's %v, closed %v; want dropped", busy.MadeUpstream() != nil, busyPool.closed)
	}
	c.Close()
	if !busyPool.closed {
		t.Error("Close left a dropped pool open")
	}
	c.ReleaseIdlePools() // after Close: nothing
}

// TestReleaseIdlePoolsIdleClusterAllocates: sweeping a cluster none of
// whose hosts has a pool, as most of 10,000 are once a burst to them is
// over, allocates nothing; the sweeps run every few seconds over every
// cluster, and their garbage kept an idle proxy's collector from
// counting it quiet.
func TestReleaseIdlePoolsIdleClusterAllocates(t *testing.T) {
	c, err := New(config.Cluster{Name: "c", LBPolicy: "round_robin", Endpoints: []config.Endpoint{
		{Address: "10.0.0.1:80"}, {Address: "10.0.0.2:80"},
	}}, Options{
		Log:          zerolog.Nop(),
		NewUpstream:  func(*Cluster, *host.Host) host.Upstream { return &testPool{} },
		UpstreamIdle: func(u host.Upstream) bool { return u.(*testPool).conns == 0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n := testing.AllocsPerRun(100, c.ReleaseIdlePools); n != 0 {
		t.Errorf("a cluster that never made a pool: %v allocations a sweep, want 0", n)
	}
	h := c.Hosts()[0]
	h.Upstream()
	for range 3 { // seen, dropped, closed
		c.ReleaseIdlePools()
	}
	if h.MadeUpstream() != nil {
		t.Fatal("the idle pool was not dropped")
	}
	if n := testing.AllocsPerRun(100, c.ReleaseIdlePools); n != 0 {
		t.Errorf("a cluster whose pools were dropped: %v allocations a sweep, want 0", n)
	}
}
