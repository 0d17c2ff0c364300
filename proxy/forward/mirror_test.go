package forward

import (
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/internal/leakcheck"
	"github.com/sightline-proxy/sightline/internal/testnet"
	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/h2"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/route"
	"github.com/sightline-proxy/sightline/proxy/upstream"
	"github.com/sightline-proxy/sightline/stats"
)

// mirrorProxy is a Handler on an HTTP/1.1 listener whose one route goes
// to cluster "primary" and is mirrored, every request, to cluster
// "shadow"; both count in a real stats store.
type mirrorProxy struct {
	addr            string
	primary, shadow *cluster.Cluster
}

// startMirrorProxy serves HTTP/1.1 on 127.0.0.1:0, trusting request
// headers: the route (timeout timeout, 0 for none) goes to primaryAddr and
// is mirrored to shadowAddr, whose cluster has breakers cb. Both clusters
// are "auto": HTTP/1.1 upstream, as the client's. Connects give up after
// a second.
func startMirrorProxy(t testing.TB, primaryAddr, shadowAddr string, cb config.CircuitBreakers, timeout time.Duration) *mirrorProxy {
	t.Helper()
	store, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	build := func(name, addr string, cb config.CircuitBreakers) *cluster.Cluster {
		cfg := config.Cluster{Name: name, Protocol: "auto", LBPolicy: "round_robin", CircuitBreakers: cb,
			Endpoints: []config.Endpoint{{Address: addr}}}
		c, err := cluster.New(cfg, cluster.Options{
			NewUpstream: func(c *cluster.Cluster, h *host.Host) host.Upstream {
				po := h2.PoolOptions{ConnectTimeout: time.Second, Breakers: c.Breakers, Log: zerolog.Nop()}
				return h2.NewUpstream(h.Address, po, upstream.New(h.Address, upstream.Options{ConnectTimeout: time.Second, Breakers: c.Breakers}))
			},
			Stats: store.Cluster(name),
			Log:   zerolog.Nop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	p := &mirrorProxy{primary: build("primary", primaryAddr, config.CircuitBreakers{}), shadow: build("shadow", shadowAddr, cb)}
	vh := config.VirtualHost{Name: "all", Domains: []string{"*"}, Routes: []config.Route{{
		Match: config.RouteMatch{Prefix: "/"}, Cluster: "primary", Timeout: config.Duration(timeout),
		Mirror: &config.Mirror{Cluster: "shadow"},
	}}}
	table, err := route.New([]config.VirtualHost{vh}, map[string]*cluster.Cluster{"primary": p.primary, "shadow": p.shadow})
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{Routes: table, TrustRequestHeaders: true, Stats: store.HTTP("test"), Log: zerolog.Nop()}
	p.addr = testnet.Serve(t, h, testnet.HTTP1)
	return p
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
			var (
				next, ok, peak atomic.Int64
				errOnce        sync.Once
			)
			burst := func(n int64) {
				var wg sync.WaitGroup
				next.Store(0)
				for range workers {
					wg.Go(func() {
						for next.Add(1) <= n {
							req, _ := http.NewRequest("POST", "http://"+p.addr+"/", strings.NewReader("hello"))
							if tt.fromRequest {
								req.Header.Set("X-Sightline-Upstream-Rq-Timeout-Ms", "1000")
							}
							resp, err := client.Do(req)
							if err != nil {
								errOnce.Do(func() { t.Errorf("primary call: %v", err) })
								continue
							}
							io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							if resp.StatusCode == 200 {
								ok.Add(1)
							} else {
								errOnce.Do(func() { t.Errorf("primary call answered %d", resp.StatusCode) })
							}
							if g := int64(runtime.NumGoroutine()); g > peak.Load() {
								peak.Store(g) // racy max across workers: close enough for a bound
							}
						}
					})
				}
				wg.Wait()
			}
			// Warm up: every worker's connection, to the proxy and from it
			// to the primary, is open; the warm-up's copies have ended.
			burst(warmup)
			if leaked := leakcheck.Wait(10*time.Second, "router.(*Mirror).Send"); leaked != "" {
				t.Fatalf("mirror goroutines left after their timeout:\n%s", leaked)
			}
			baseline := runtime.NumGoroutine()
			peak.Store(0)
			burst(requests - warmup)
			if ok.Load() != requests {
				t.Fatalf("%d of %d primary calls answered 200", ok.Load(), requests)
			}
			// Each call in flight holds a few goroutines of its own (the
			// servers' background readers, the client's round trip).
			if bound := baseline + 3*workers + perMirror*maxRequests + slack; int(peak.Load()) > bound {
				t.Errorf("%d goroutines during the burst, want at most %d (baseline %d)", peak.Load(), bound, baseline)
			}
			up := p.shadow.Stats.Upstream()
			admitted := up.RqTotal.Value()
			t.Logf("%d copies sent, %d refused; at most %d goroutines (baseline %d)", admitted, up.RqPendingOverflow.Value(), peak.Load(), baseline)
			if admitted == 0 || admitted > requests {
				t.Fatalf("the shadow got %d copies of %d requests", admitted, requests)
			}
			if got := up.RqPendingOverflow.Value(); got != requests-admitted {
				t.Errorf("shadow upstream_rq_pending_overflow = %d, want %d (%d requests, %d copies sent)",
					got, requests-admitted, requests, admitted)
			}

			// The copies end within their timeout (1s).
			if leaked := leakcheck.Wait(10*time.Second, "router.(*Mirror).Send"); leaked != "" {
				t.Fatalf("mirror goroutines left after their timeout:\n%s", leaked)
			}
			if got := p.shadow.Breakers.Snapshot().Requests.Active; got != 0 {
				t.Fatalf("%d shadow max_requests slots still held", got)
			}
			deadline := time.Now().Add(10 * time.Second)
			for runtime.NumGoroutine() > baseline+slack && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if g := runtime.NumGoroutine(); g > baseline+slack {
				t.Errorf("%d goroutines after the copies' timeout, want at most %d (baseline %d)", g, baseline+slack, baseline)
			}
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
