package forward

import (
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/internal/leakcheck"
	"github.com/sightline-proxy/sightline/internal/mirrortest"
	"github.com/sightline-proxy/sightline/internal/testnet"
	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/h2"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/upstream"
)

// mirrorProxy is a Handler on an HTTP/1.1 listener whose one route goes
// to cluster "primary" and is mirrored, every request, to cluster
// "shadow"; both count in a real stats store.
type mirrorProxy struct {
	addr   string
	shadow *cluster.Cluster
}

// startMirrorProxy serves HTTP/1.1 on 127.0.0.1:0, trusting request
// headers: the route (timeout timeout, 0 for none) goes to primaryAddr and
// is mirrored to shadowAddr, whose cluster has breakers cb. Both clusters
// are "auto": HTTP/1.1 upstream, as the client's. Connects give up after
// a second.
func startMirrorProxy(t testing.TB, primaryAddr, shadowAddr string, cb config.CircuitBreakers, timeout time.Duration) *mirrorProxy {
	t.Helper()
	m := mirrortest.Build(t, mirrortest.Options{
		Primary: primaryAddr, Shadow: shadowAddr, ShadowBreakers: cb, Timeout: timeout, Protocol: "auto",
		NewUpstream: func(c *cluster.Cluster, h *host.Host) host.Upstream {
			po := h2.PoolOptions{ConnectTimeout: time.Second, Breakers: c.Breakers, Log: zerolog.Nop()}
			return h2.NewUpstream(h.Address, po, upstream.New(h.Address, upstream.Options{ConnectTimeout: time.Second, Breakers: c.Breakers}))
		},
	})
	h := &Handler{Routes: m.Routes, TrustRequestHeaders: true, Stats: m.Store.HTTP("test"), Log: zerolog.Nop()}
	return &mirrorProxy{addr: testnet.Serve(t, h, testnet.HTTP1), shadow: m.Shadow}
}

// TestMirrorBlackHole: with a shadow cluster that accepts and never
// answers, never accepts (a full accept queue) or refuses connections, a
// burst of mirrored HTTP/1.1 calls all succeed; at most the shadow's
// max_requests copies are out at once, so goroutines stay under a bound
// set by it; every other copy is counted in the shadow's
// upstream_rq_pending_overflow; and once the copies' timeout (the call's:
// the route's, or what the request set) has passed, nothing of them is
// left.
func TestMirrorBlackHole(t *testing.T) {
	const (
		requests    = 5000
		warmup      = 320 // of requests
		workers     = 32
		maxRequests = 16
		// perMirror is the most goroutines one copy may hold: its own,
		// its connection's reader, writer and dialer, and the context's
		// timer callback.
		perMirror = 5
		// slack covers connections opened past the warm-up's, which do
		// not grow with the copies.
		slack = 40
	)
	mute := func(t *testing.T) string { a, _ := testnet.MuteListener(t); return a }
	tests := []struct {
		name   string
		shadow func(t *testing.T) string
		// fromRequest: the route has no timeout; each request sets 1s
		// with x-sightline-upstream-rq-timeout-ms, and the copy has it.
		fromRequest bool
	}{
		{name: "accepts and never answers", shadow: mute},
		{name: "accepts and never answers, timeout set by the request", shadow: mute, fromRequest: true},
		{name: "never accepts", shadow: func(t *testing.T) string { return testnet.FullBacklog(t) }},
		{name: "closed port", shadow: func(t *testing.T) string { return testnet.ClosedPort(t) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := time.Second
			if tt.fromRequest {
				timeout = 0
			}
			p := startMirrorProxy(t, testnet.Serve(t, testnet.Drain, testnet.HTTP1), tt.shadow(t), config.CircuitBreakers{MaxRequests: maxRequests}, timeout)
			client := h1Client(t)
			client.Transport.(*http.Transport).MaxIdleConnsPerHost = workers
			defer client.CloseIdleConnections()
			var header http.Header
			if tt.fromRequest {
				header = http.Header{"X-Sightline-Upstream-Rq-Timeout-Ms": {"1000"}}
			}
			call := mirrortest.Post(client, "http://"+p.addr+"/", header)
			// Warm up: every worker's connection, to the proxy and from it
			// to the primary, is open; the warm-up's copies have ended.
			okWarm, _ := mirrortest.Burst(t, warmup, workers, call)
			if leaked := leakcheck.Wait(10*time.Second, "router.(*Mirror).Send"); leaked != "" {
				t.Fatalf("mirror goroutines left after their timeout:\n%s", leaked)
			}
			baseline := runtime.NumGoroutine()
			ok, peak := mirrortest.Burst(t, requests-warmup, workers, call)
			if ok += okWarm; ok != requests {
				t.Fatalf("%d of %d primary calls answered 200", ok, requests)
			}
			// Each call in flight holds a few goroutines of its own (the
			// servers' background readers, the client's round trip).
			if bound := baseline + 3*workers + perMirror*maxRequests + slack; peak > bound {
				t.Errorf("%d goroutines during the burst, want at most %d (baseline %d)", peak, bound, baseline)
			}
			t.Logf("at most %d goroutines (baseline %d)", peak, baseline)

			// The copies end within their timeout (1s).
			mirrortest.CheckCopies(t, p.shadow, requests, "router.(*Mirror).Send")
			mirrortest.WaitGoroutines(t, baseline, slack)
		})
	}
}

// TestMirrorRefusedStreamsBody: when the mirror cluster refuses the copy
// and the route has no retries, the request body is not kept: it streams
// to the primary as it comes, and the refusal is counted.
func TestMirrorRefusedStreamsBody(t *testing.T) {
	started := make(chan struct{})
	primary := testnet.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started) // before the body is whole
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}), testnet.HTTP1)
	p := startMirrorProxy(t, primary, testnet.ClosedPort(t), config.CircuitBreakers{MaxRequests: -1}, 0)
	pr, pw := io.Pipe()
	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	client := h1Client(t)
	go func() {
		req, _ := http.NewRequest("POST", "http://"+p.addr+"/", pr)
		resp, err := client.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{string(b), err}
	}()
	if _, err := pw.Write([]byte("first part, ")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		pw.CloseWithError(io.ErrUnexpectedEOF)
		<-done
		t.Fatal("the primary got nothing before the body was whole: it was kept for a refused mirror")
	}
	pw.Write([]byte("then the rest"))
	pw.Close()
	r := <-done
	if r.err != nil || r.body != "first part, then the rest" {
		t.Fatalf("got %q, %v; want the whole body echoed", r.body, r.err)
	}
	if got := p.shadow.Stats.Upstream().RqPendingOverflow.Value(); got != 1 {
		t.Fatalf("shadow upstream_rq_pending_overflow = %d, want 1", got)
	}
}
