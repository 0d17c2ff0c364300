package h2

import (
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/internal/mirrortest"
	"github.com/sightline-proxy/sightline/internal/testnet"
	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/upstream"
)

// mirrorProxy is a Server whose one route goes to cluster "primary" and
// is mirrored, every request, to cluster "shadow"; both clusters count
// in a real stats store.
type mirrorProxy struct {
	addr   string
	shadow *cluster.Cluster
}

// startMirrorProxy serves h2c on 127.0.0.1:0, trusting request headers:
// the route (timeout timeout, 0 for none) goes to primaryAddr and is
// mirrored to shadowAddr, whose cluster has breakers cb and connects
// within a second.
func startMirrorProxy(t testing.TB, primaryAddr, shadowAddr string, cb config.CircuitBreakers, timeout time.Duration) *mirrorProxy {
	t.Helper()
	m := mirrortest.Build(t, mirrortest.Options{
		Primary: primaryAddr, Shadow: shadowAddr, ShadowBreakers: cb, Timeout: timeout,
		NewUpstream: func(c *cluster.Cluster, h *host.Host) host.Upstream {
			o := PoolOptions{ConnectTimeout: time.Second, Breakers: c.Breakers,
				Stats: c.Stats}
			return NewUpstream(h.Address, o, upstream.New(h.Address, upstream.Options{ConnectTimeout: time.Second, Breakers: c.Breakers}))
		},
	})
	srv := NewServer(ServerOptions{Routes: m.Routes, TrustRequestHeaders: true, Log: zerolog.Nop()})
	return &mirrorProxy{addr: serve(t, srv, false), shadow: m.Shadow}
}

// mirrorMarkers name the goroutines a mirrored request runs on.
var mirrorMarkers = []string{"router.(*Mirror).Send", "h2.(*rtStream).sendBody"}

// TestMirrorBlackHole: with a shadow cluster that holds every request
// (accepts and never answers), never accepts (a full accept queue) or
// refuses connections, a burst of mirrored calls all succeed; at most the
// shadow's max_requests copies are out at once, so goroutines stay under
// a bound set by it; every other copy is counted in the shadow's
// upstream_rq_pending_overflow; and once the copies' timeout (the call's:
// the route's, or what the request set) has passed, nothing of them is
// left.
func TestMirrorBlackHole(t *testing.T) {
	const (
		requests    = 5000
		workers     = 32
		maxRequests = 16
		// perMirror is the most goroutines one copy may hold: its own,
		// the request body's writer, and the context's timer callback.
		perMirror = 3
		// slack covers the client's, the proxy's and the pools'
		// connections, which do not grow with the copies.
		slack = 40
	)
	// silent is an HTTP/2 server that takes every stream and never
	// answers; mute a listener that accepts and never says a word (no
	// SETTINGS: the pool gives up after its connect timeout).
	silent := func(t *testing.T) string {
		return startFakeUpstream(t, &fakeUpstream{onRequest: func(*fakeConn, uint32) {}}).addr
	}
	mute := func(t *testing.T) string { a, _ := testnet.MuteListener(t); return a }
	tests := []struct {
		name   string
		shadow func(t *testing.T) string
		// fromRequest: the route has no timeout; each request sets 1s
		// with x-sightline-upstream-rq-timeout-ms, and the copy has it.
		fromRequest bool
	}{
		{name: "accepts and never answers", shadow: silent},
		{name: "accepts and never answers, timeout set by the request", shadow: silent, fromRequest: true},
		{name: "accepts and never says a word", shadow: mute},
		{name: "never accepts", shadow: func(t *testing.T) string { return testnet.FullBacklog(t) }},
		{name: "closed port", shadow: func(t *testing.T) string { return testnet.ClosedPort(t) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The backend reads the body before it answers: one that
			// answers first resets the stream (NO_ERROR), and a burst
			// of those fails calls in a way mirroring has no part in.
			primary := testnet.Serve(t, testnet.Drain, testnet.HTTP1|testnet.H2C)
			timeout := time.Second
			if tt.fromRequest {
				timeout = 0
			}
			p := startMirrorProxy(t, primary, tt.shadow(t), config.CircuitBreakers{MaxRequests: maxRequests}, timeout)
			client := h2cClient()
			defer client.CloseIdleConnections()
			baseline := runtime.NumGoroutine()

			var header http.Header
			if tt.fromRequest {
				header = http.Header{"X-Sightline-Upstream-Rq-Timeout-Ms": {"1000"}}
			}
			ok, peak := mirrortest.Burst(t, requests, workers, mirrortest.Post(client, "http://"+p.addr+"/", header))
			if ok != requests {
				t.Fatalf("%d of %d primary calls answered 200", ok, requests)
			}
			if bound := baseline + 2*workers + perMirror*maxRequests + slack; peak > bound {
				t.Errorf("%d goroutines during the burst, want at most %d (baseline %d)", peak, bound, baseline)
			}
			t.Logf("at most %d goroutines (baseline %d)", peak, baseline)

			// The copies end within their timeout (1s).
			mirrortest.CheckCopies(t, p.shadow, requests, mirrorMarkers...)
			client.CloseIdleConnections()
			mirrortest.WaitGoroutines(t, baseline, slack)
		})
	}
}

// BenchmarkProxyUnaryMirrorRefused is BenchmarkProxyUnary on a route
// mirrored to a cluster whose max_requests refuses every copy: a refused
// copy must cost nothing but its counter (0 allocs/op).
func BenchmarkProxyUnaryMirrorRefused(b *testing.B) {
	up := startBenchUpstream(b)
	p := startProxy(b, []testCluster{
		{name: "bench", addrs: []string{up}},
		{name: "shadow", addrs: []string{testnet.ClosedPort(b)}, breakers: config.CircuitBreakers{MaxRequests: -1}},
	}, []testRoute{{prefix: "/", cluster: "bench", mirror: "shadow"}}, proxyOpts{})
	benchPipelined(b, p)
}

// TestMirrorRefusedAllocatesNothing runs BenchmarkProxyUnaryMirrorRefused:
// the mirror cluster's slot is claimed before anything of the copy is
// made.
func TestMirrorRefusedAllocatesNothing(t *testing.T) {
	if raceDetector {
		t.Skip("under the race detector sync.Pool drops what it is given, so the engine allocates")
	}
	r := testing.Benchmark(BenchmarkProxyUnaryMirrorRefused)
	if r.N == 0 {
		t.Fatal("the benchmark did not run")
	}
	if a := r.AllocsPerOp(); a != 0 {
		t.Fatalf("a call whose mirror is refused allocates %d times (%d B), want 0", a, r.AllocedBytesPerOp())
	}
}
