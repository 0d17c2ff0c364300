// Package mirrortest has what the mirror tests of the HTTP/1.1 and HTTP/2
// engines share: a route mirrored to a shadow cluster, a burst of calls
// through it, and the checks on the copies once the burst is over.
package mirrortest

import (
	"io"
	"maps"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/internal/leakcheck"
	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/route"
	"github.com/sightline-proxy/sightline/stats"
)

// Options say what Build builds.
type Options struct {
	// Primary and Shadow are the addresses of the clusters' one host.
	Primary, Shadow string
	// ShadowBreakers are the shadow cluster's circuit breakers.
	ShadowBreakers config.CircuitBreakers
	// Timeout is the route's; 0 for none.
	Timeout time.Duration
	// Protocol is both clusters' upstream protocol; "" for the default.
	Protocol string
	// NewUpstream makes each host's upstream, as the engine under test
	// does.
	NewUpstream func(*cluster.Cluster, *host.Host) host.Upstream
}

// Mirrored is a route table whose one route goes to cluster "primary"
// and is mirrored, every request, to cluster "shadow"; both clusters
// count in Store.
type Mirrored struct {
	Routes *route.Table
	Shadow *cluster.Cluster
	Store  *stats.Store
}

// Build builds the clusters and the route of o; the clusters are closed
// when the test ends.
func Build(t testing.TB, o Options) *Mirrored {
	t.Helper()
	store, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	build := func(name, addr string, cb config.CircuitBreakers) *cluster.Cluster {
		cfg := config.Cluster{Name: name, Protocol: o.Protocol, LBPolicy: "round_robin", CircuitBreakers: cb,
			Endpoints: []config.Endpoint{{Address: addr}}}
		c, err := cluster.New(cfg, cluster.Options{NewUpstream: o.NewUpstream, Stats: store.Cluster(name), Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	primary, shadow := build("primary", o.Primary, config.CircuitBreakers{}), build("shadow", o.Shadow, o.ShadowBreakers)
	vh := config.VirtualHost{Name: "all", Domains: []string{"*"}, Routes: []config.Route{{
		Match: config.RouteMatch{Prefix: "/"}, Cluster: "primary", Timeout: config.Duration(o.Timeout),
		Mirror: &config.Mirror{Cluster: "shadow"},
	}}}
	table, err := route.New([]config.VirtualHost{vh}, map[string]*cluster.Cluster{"primary": primary, "shadow": shadow})
	if err != nil {
		t.Fatal(err)
	}
	return &Mirrored{Routes: table, Shadow: shadow, Store: store}
}

// Burst sends n small POST bodies with do from workers goroutines, and
// returns how many were answered 200 and the most goroutines seen running
// meanwhile. A call that fails or gets another status fails the test.
func Burst(t *testing.T, n, workers int, do func(body io.Reader) (int, error)) (ok int64, peak int) {
	t.Helper()
	var (
		next, okN atomic.Int64
		maxG      atomic.Int64
		wg        sync.WaitGroup
		errOnce   sync.Once
	)
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				code, err := do(strings.NewReader("hello"))
				if err != nil {
					errOnce.Do(func() { t.Errorf("primary call: %v", err) })
					continue
				}
				if code == 200 {
					okN.Add(1)
				} else {
					errOnce.Do(func() { t.Errorf("primary call answered %d", code) })
				}
				if g := int64(runtime.NumGoroutine()); g > maxG.Load() {
					maxG.Store(g) // racy max across workers: close enough for a bound
				}
			}
		})
	}
	wg.Wait()
	return okN.Load(), int(maxG.Load())
}

// Post is a call for Burst: a POST of its body to url with client, with
// header (nil for none) added; the response body is read whole.
func Post(client *http.Client, url string, header http.Header) func(body io.Reader) (int, error) {
	return func(body io.Reader) (int, error) {
		req, err := http.NewRequest("POST", url, body)
		if err != nil {
			return 0, err
		}
		maps.Copy(req.Header, header)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
}

// CheckCopies checks the copies of requests calls mirrored to shadow,
// once every call is answered: some were sent and every other one was
// refused and counted in upstream_rq_pending_overflow; within 10 s every
// copy has ended (no goroutine naming one of markers is left) and has
// given back its max_requests slot.
func CheckCopies(t *testing.T, shadow *cluster.Cluster, requests int64, markers ...string) {
	t.Helper()
	up := shadow.Stats.Upstream()
	// A copy is sent or refused on its own goroutine, after the primary
	// call it copies may have been answered: wait until every copy was
	// one or the other (or the deadline, and fail below).
	deadline := time.Now().Add(10 * time.Second)
	for up.RqTotal.Value()+up.RqPendingOverflow.Value() < requests && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	admitted := up.RqTotal.Value()
	t.Logf("%d copies sent, %d refused", admitted, up.RqPendingOverflow.Value())
	if admitted == 0 || admitted > requests {
		t.Fatalf("the shadow got %d copies of %d requests", admitted, requests)
	}
	if got := up.RqPendingOverflow.Value(); got != requests-admitted {
		t.Errorf("shadow upstream_rq_pending_overflow = %d, want %d (%d requests, %d copies sent)",
			got, requests-admitted, requests, admitted)
	}
	if leaked := leakcheck.Wait(10*time.Second, markers...); leaked != "" {
		t.Fatalf("mirror goroutines left after their timeout:\n%s", leaked)
	}
	if got := shadow.Breakers.Snapshot().Requests.Active; got != 0 {
		t.Fatalf("%d shadow max_requests slots still held", got)
	}
}

// WaitGoroutines waits up to 10 s for the goroutines to be no more than
// baseline+slack, and fails the test if they stay more.
func WaitGoroutines(t *testing.T, baseline, slack int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > baseline+slack && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > baseline+slack {
		t.Errorf("%d goroutines after the copies' timeout, want at most %d (baseline %d)", g, baseline+slack, baseline)
	}
}
