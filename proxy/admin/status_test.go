package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/internal/leakcheck"
	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/stats"
)

// TestMain fails the run when any goroutine outlives the tests (a sampler,
// a server's listener, a client connection left open): every admin server
// the tests start is shut down.
func TestMain(m *testing.M) {
	leakcheck.MainAll(m, 5*time.Second)
}

// fakeSource is a Source over real clusters (static, no upstreams) and
// listeners whose stats live in a store of their own.
type fakeSource struct {
	clusters  []*cluster.Cluster
	listeners []Listener
}

func (f *fakeSource) Clusters() []*cluster.Cluster { return f.clusters }
func (f *fakeSource) ConfigJSON() ([]byte, error)  { return []byte("{}"), nil }
func (f *fakeSource) Info() any {
	return map[string]any{"version": "test", "node": map[string]string{"id": "n1", "zone": "zone-a"}, "uptime_seconds": 5}
}
func (f *fakeSource) State() string               { return "LIVE" }
func (f *fakeSource) SetHealthcheckFailed(bool)   {}
func (f *fakeSource) StatusListeners() []Listener { return f.listeners }

func newCluster(t *testing.T, name string, eps ...config.Endpoint) *cluster.Cluster {
	t.Helper()
	c, err := cluster.New(config.Cluster{Name: name, LBPolicy: "round_robin", Protocol: "http2", Endpoints: eps}, cluster.Options{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newFakeSource(t *testing.T) *fakeSource {
	t.Helper()
	st, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &fakeSource{
		clusters: []*cluster.Cluster{newCluster(t, "api",
			config.Endpoint{Address: "127.0.0.1:5001", Zone: "zone-a", Weight: 1},
			config.Endpoint{Address: "127.0.0.1:5002", Zone: "zone-b", Weight: 3},
		)},
		listeners: []Listener{{Name: "ingress", Address: "127.0.0.1:10000", StatPrefix: "ingress_http", Stats: st.HTTP("ingress_http")}},
	}
}

// hostOf returns the cluster's host with address addr.
func hostOf(t *testing.T, c *cluster.Cluster, addr string) *host.Host {
	t.Helper()
	for _, h := range c.Hosts() {
		if h.Address == addr {
			return h
		}
	}
	t.Fatalf("cluster %s has no host %s", c.Name, addr)
	return nil
}

// serve records n requests on h, errs of them failed, each taking d.
func serve(h *host.Host, n, errs int, d time.Duration) {
	for i := 0; i < n; i++ {
		h.RqTotal.Add(1)
		h.Latency.Record(d)
	}
	h.RqError.Add(uint64(errs))
}

func findHost(st Status, addr string) (ClusterWindow, HostWindow, bool) {
	for _, c := range st.Clusters {
		for _, h := range c.Hosts {
			if h.Address == addr {
				return c, h, true
			}
		}
	}
	return ClusterWindow{}, HostWindow{}, false
}

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

func ptr(v *float64) string {
	if v == nil {
		return "null"
	}
	return fmt.Sprint(*v)
}

// TestWindow drives the sampler with a fake clock and checks the rates,
// error rates and percentiles the status page is given.
func TestWindow(t *testing.T) {
	src := newFakeSource(t)
	s := New("127.0.0.1:0", src, zerolog.Nop())
	api := src.clusters[0]
	a, b := hostOf(t, api, "127.0.0.1:5001"), hostOf(t, api, "127.0.0.1:5002")
	t0 := time.Unix(1_700_000_000, 0)

	// Before any interval: no rates, no percentiles.
	s.sampler.sample(t0)
	st := s.status()
	if st.WindowSeconds != 0 {
		t.Errorf("window after the baseline = %vs, want 0", st.WindowSeconds)
	}
	if _, h, _ := findHost(st, a.Address); h.RqPerSec != 0 || h.ErrorRate != nil || h.P50 != nil {
		t.Errorf("host before any interval: rq/s %v, error rate %s, p50 %s; want 0, null, null", h.RqPerSec, ptr(h.ErrorRate), ptr(h.P50))
	}

	// Ten seconds: host a serves 20 req/s, 1 in 10 failing, 90% at 2ms
	// and 10% at 200ms; host b serves 5 req/s at 10ms; the listener 25.
	for sec := 1; sec <= 10; sec++ {
		serve(a, 18, 0, 2*time.Millisecond)
		serve(a, 2, 2, 200*time.Millisecond)
		serve(b, 5, 0, 10*time.Millisecond)
		src.listeners[0].Stats.DownstreamRqTotal.Inc(25)
		s.sampler.sample(t0.Add(time.Duration(sec) * time.Second))
	}
	st = s.status()
	if st.WindowSeconds != 10 {
		t.Errorf("window = %vs, want 10", st.WindowSeconds)
	}
	c, ha, _ := findHost(st, a.Address)
	_, hb, _ := findHost(st, b.Address)
	if ha.RqPerSec != 20 || hb.RqPerSec != 5 || c.RqPerSec != 25 {
		t.Errorf("rq/s: host a %v, host b %v, cluster %v; want 20, 5, 25", ha.RqPerSec, hb.RqPerSec, c.RqPerSec)
	}
	if ha.ErrorRate == nil || *ha.ErrorRate != 0.1 || hb.ErrorRate == nil || *hb.ErrorRate != 0 || c.ErrorRate == nil || *c.ErrorRate != 0.08 {
		t.Errorf("error rate: host a %s, host b %s, cluster %s; want 0.1, 0, 0.08", ptr(ha.ErrorRate), ptr(hb.ErrorRate), ptr(c.ErrorRate))
	}
	// The percentiles come from log-scale buckets at most 1.5x wide.
	if ha.P50 == nil || !near(*ha.P50, 2, 0.7) || ha.P99 == nil || !near(*ha.P99, 200, 70) {
		t.Errorf("host a p50 %s ms, p99 %s ms; want about 2 and 200", ptr(ha.P50), ptr(ha.P99))
	}
	if hb.P50 == nil || !near(*hb.P50, 10, 3.5) {
		t.Errorf("host b p50 %s ms, want about 10", ptr(hb.P50))
	}
	if c.P50 == nil || !near(*c.P50, 2, 0.7) || c.P99 == nil || !near(*c.P99, 200, 70) {
		t.Errorf("cluster p50 %s ms, p99 %s ms; want about 2 and 200", ptr(c.P50), ptr(c.P99))
	}
	if len(c.History) != 10 || c.History[0] != 25 || c.History[9] != 25 {
		t.Errorf("cluster history = %v, want 10 intervals of 25 req/s", c.History)
	}
	if l := st.Listeners[0]; l.RqPerSec != 25 || len(l.History) != 10 || l.RqTotal != 250 {
		t.Errorf("listener: rq/s %v, history %v, rq_total %d; want 25, 10 intervals, 250", l.RqPerSec, l.History, l.RqTotal)
	}
	if c.HostsTotal != 2 || c.HostsHealthy != 2 || ha.Weight != 1 || hb.Weight != 3 || hb.Zone != "zone-b" || ha.RqTotal != 200 || ha.RqError != 20 {
		t.Errorf("cluster %d/%d healthy, host a %+v, host b %+v", c.HostsHealthy, c.HostsTotal, ha.HostStatus, hb.HostStatus)
	}

	// Seventy more seconds, the last sixty idle but for host b's one slow
	// request a second: the window keeps only the last sixty intervals.
	for sec := 11; sec <= 80; sec++ {
		if sec <= 20 {
			serve(a, 100, 100, time.Millisecond)
		} else {
			serve(b, 1, 0, time.Second)
		}
		s.sampler.sample(t0.Add(time.Duration(sec) * time.Second))
	}
	st = s.status()
	c, ha, _ = findHost(st, a.Address)
	_, hb, _ = findHost(st, b.Address)
	if st.WindowSeconds != 60 || len(c.History) != historySlots {
		t.Errorf("window %vs with %d intervals, want 60s and %d", st.WindowSeconds, len(c.History), historySlots)
	}
	if ha.RqPerSec != 0 || ha.ErrorRate != nil || ha.P99 != nil {
		t.Errorf("host a idle for the whole window: rq/s %v, error rate %s, p99 %s; want 0, null, null", ha.RqPerSec, ptr(ha.ErrorRate), ptr(ha.P99))
	}
	if hb.RqPerSec != 1 || hb.P50 == nil || !near(*hb.P50, 1000, 350) {
		t.Errorf("host b: rq/s %v, p50 %s ms; want 1 and about 1000", hb.RqPerSec, ptr(hb.P50))
	}
	if ha.RqTotal != 1200 {
		t.Errorf("host a rq_total = %d, want the lifetime total 1200", ha.RqTotal)
	}

	// Intervals of uneven length: the rate is requests over the time the
	// window covers, not over its number of slots.
	for sec := 0; sec < historySlots; sec++ {
		serve(a, 3, 0, time.Millisecond)
		s.sampler.sample(t0.Add(80*time.Second + time.Duration(sec+1)*1500*time.Millisecond))
	}
	st = s.status()
	_, ha, _ = findHost(st, a.Address)
	if st.WindowSeconds != 90 || ha.RqPerSec != 2 {
		t.Errorf("60 intervals of 1.5s, 3 requests each: window %vs, rq/s %v; want 90 and 2", st.WindowSeconds, ha.RqPerSec)
	}
}

// TestWindowMembership checks hosts that come and go: a new host has no
// rates until its first full interval, and a host gone is forgotten.
func TestWindowMembership(t *testing.T) {
	src := newFakeSource(t)
	s := New("127.0.0.1:0", src, zerolog.Nop())
	t0 := time.Unix(1_700_000_000, 0)
	s.sampler.sample(t0)
	for sec := 1; sec <= 3; sec++ {
		s.sampler.sample(t0.Add(time.Duration(sec) * time.Second))
	}

	// A second cluster appears with requests already counted: they are
	// before its baseline and count in no interval.
	web := newCluster(t, "web", config.Endpoint{Address: "127.0.0.1:6001"})
	w := hostOf(t, web, "127.0.0.1:6001")
	serve(w, 500, 0, time.Millisecond)
	src.clusters = append(src.clusters, web)
	s.sampler.sample(t0.Add(4 * time.Second))
	c, h, ok := findHost(s.status(), w.Address)
	if !ok || h.RqPerSec != 0 || c.RqPerSec != 0 || len(c.History) != 0 {
		t.Errorf("a host at its baseline: rq/s %v, cluster rq/s %v, history %v; want 0, 0, none", h.RqPerSec, c.RqPerSec, c.History)
	}
	serve(w, 7, 0, time.Millisecond)
	s.sampler.sample(t0.Add(5 * time.Second))
	if c, h, _ = findHost(s.status(), w.Address); h.RqPerSec != 7 || c.RqPerSec != 7 || len(c.History) != 1 {
		t.Errorf("a host after one interval: rq/s %v, cluster rq/s %v, history %v; want 7, 7, one interval", h.RqPerSec, c.RqPerSec, c.History)
	}

	// The cluster goes: its hosts and history are dropped.
	src.clusters = src.clusters[:1]
	s.sampler.sample(t0.Add(6 * time.Second))
	s.sampler.mu.Lock()
	nh, nc := len(s.sampler.hosts), len(s.sampler.clusters)
	s.sampler.mu.Unlock()
	if nh != 0 || nc != 1 {
		t.Errorf("after a cluster went: the sampler keeps %d hosts with history and %d clusters, want 0 and 1 (api, whose hosts are idle)", nh, nc)
	}
}

func get(t *testing.T, h http.Handler, path, accept string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestStatusJSON checks /status.json's shape as the page reads it.
func TestStatusJSON(t *testing.T) {
	src := newFakeSource(t)
	s := New("127.0.0.1:0", src, zerolog.Nop())
	a := hostOf(t, src.clusters[0], "127.0.0.1:5001")
	a.SetFlag(host.FailedActiveHC, true)
	t0 := time.Now()
	s.sampler.sample(t0)
	serve(a, 4, 1, 3*time.Millisecond)
	s.sampler.sample(t0.Add(time.Second))

	rec := get(t, s.mux, "/status.json", "")
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("/status.json: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var raw map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatalf("/status.json is not JSON: %v\n%s", err, rec.Body)
	}
	for _, k := range []string{"time", "window_seconds", "interval_seconds", "state", "server", "listeners", "clusters"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("/status.json has no %q", k)
		}
	}
	clusters := raw["clusters"].([]any)
	c := clusters[0].(map[string]any)
	for _, k := range []string{"name", "lb_policy", "protocol", "panic", "hosts_total", "hosts_healthy", "rq_active", "rq_per_sec", "error_rate", "p50_ms", "p99_ms", "history", "hosts"} {
		if _, ok := c[k]; !ok {
			t.Errorf("a cluster in /status.json has no %q", k)
		}
	}
	hosts := c["hosts"].([]any)
	h0 := hosts[0].(map[string]any)
	for _, k := range []string{"address", "zone", "weight", "health_flags", "healthy", "rq_active", "rq_total", "rq_error", "rq_per_sec", "error_rate", "p50_ms", "p99_ms"} {
		if _, ok := h0[k]; !ok {
			t.Errorf("a host in /status.json has no %q", k)
		}
	}
	// Host b served nothing: its error rate and percentiles are null, not 0.
	h1 := hosts[1].(map[string]any)
	if h1["error_rate"] != nil || h1["p50_ms"] != nil {
		t.Errorf("an idle host's error_rate and p50_ms = %v, %v; want null", h1["error_rate"], h1["p50_ms"])
	}

	var st Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	cw, hw, _ := findHost(st, a.Address)
	if hw.Healthy || hw.HealthFlags != "/failed_active_hc" || cw.HostsHealthy != 1 || cw.HostsTotal != 2 {
		t.Errorf("host a: healthy %v flags %q; cluster %d/%d healthy; want false, /failed_active_hc, 1/2", hw.Healthy, hw.HealthFlags, cw.HostsHealthy, cw.HostsTotal)
	}
	if hw.RqPerSec != 4 || hw.ErrorRate == nil || *hw.ErrorRate != 0.25 {
		t.Errorf("host a: rq/s %v error rate %s, want 4 and 0.25", hw.RqPerSec, ptr(hw.ErrorRate))
	}
	var info struct {
		Version string              `json:"version"`
		Node    struct{ ID string } `json:"node"`
	}
	if err := json.Unmarshal(st.Server, &info); err != nil || info.Version != "test" || info.Node.ID != "n1" {
		t.Errorf("server = %s (%v), want the Source's Info", st.Server, err)
	}
	if len(st.Listeners) != 1 || st.Listeners[0].Name != "ingress" || st.Listeners[0].StatPrefix != "ingress_http" {
		t.Errorf("listeners = %+v", st.Listeners)
	}
}

// TestIndexAndPage checks who gets what at /: browsers the status page,
// everyone else the plain-text index, which /help always serves.
func TestIndexAndPage(t *testing.T) {
	s := New("127.0.0.1:0", newFakeSource(t), zerolog.Nop())
	tests := []struct {
		name, path, accept string
		wantType           string
		wantBody           string
	}{
		{name: "curl", path: "/", accept: "*/*", wantType: "text/plain", wantBody: "/status.json"},
		{name: "no accept", path: "/", wantType: "text/plain", wantBody: "/clusters"},
		{name: "browser", path: "/", accept: "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", wantType: "text/html", wantBody: "<title>Sightline status</title>"},
		{name: "help from a browser", path: "/help", accept: "text/html", wantType: "text/plain", wantBody: "/ready"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := get(t, s.mux, tt.path, tt.accept)
			if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), tt.wantType) || !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("GET %s (Accept %q): %d %q, body has %q: %v", tt.path, tt.accept, rec.Code, rec.Header().Get("Content-Type"), tt.wantBody, strings.Contains(rec.Body.String(), tt.wantBody))
			}
		})
	}

	// The page is self-contained: its script and style carry the nonce
	// the CSP names, and it refers to nothing outside the admin server.
	rec := get(t, s.mux, "/", "text/html")
	page, csp := rec.Body.String(), rec.Header().Get("Content-Security-Policy")
	m := regexp.MustCompile(`'nonce-([A-Za-z0-9+/=]+)'`).FindStringSubmatch(csp)
	if m == nil || !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("Content-Security-Policy %q: want default-src 'none' and a nonce", csp)
	}
	if strings.Count(page, `nonce="`+m[1]+`"`) != 2 || strings.Contains(page, nonceMark) {
		t.Errorf("the page's <script> and <style> do not both carry the CSP nonce")
	}
	if again := get(t, s.mux, "/", "text/html").Header().Get("Content-Security-Policy"); again == csp {
		t.Errorf("two responses got the same nonce")
	}
	for _, bad := range []string{`src="`, `href="http`, `href="//`, "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("the page refers to an outside asset (%q)", bad)
		}
	}
}

// TestStartShutdown runs the admin server on a real socket: the sampler
// runs while it serves and stops with it.
func TestStartShutdown(t *testing.T) {
	src := newFakeSource(t)
	s := New("127.0.0.1:0", src, zerolog.Nop())
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + s.Addr() + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var st Status
	if err := json.Unmarshal(body, &st); err != nil || len(st.Clusters) != 1 || len(st.Clusters[0].Hosts) != 2 {
		t.Errorf("/status.json over the network: %v\n%s", err, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("a second Shutdown: %v", err)
	}

	// Shutdown without Start (a proxy whose start failed) returns at once.
	s2 := New("127.0.0.1:0", src, zerolog.Nop())
	if err := s2.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown before Start: %v", err)
	}
}

// TestIdleHostsKeepNoHistory: the sampler keeps slots only for hosts,
// clusters and listeners that served something in the last minute, and
// drops them a minute after their last request; the page's figures are
// the same either way.
func TestIdleHostsKeepNoHistory(t *testing.T) {
	src := newFakeSource(t)
	s := New("127.0.0.1:0", src, zerolog.Nop())
	api := src.clusters[0]
	a, b := hostOf(t, api, "127.0.0.1:5001"), hostOf(t, api, "127.0.0.1:5002")
	t0 := time.Unix(1_700_000_000, 0)
	tick := 0
	next := func() {
		tick++
		s.sampler.sample(t0.Add(time.Duration(tick) * time.Second))
	}
	s.sampler.sample(t0)
	next()
	slotsOf := func(h *host.Host) bool { hh := s.sampler.hosts[h]; return hh != nil && !hh.empty() }
	if slotsOf(a) || slotsOf(b) || !s.sampler.clusters["api"].empty() {
		t.Fatal("idle hosts and their cluster have history slots")
	}
	if s.sampler.hosts[a] != nil || s.sampler.hosts[b] != nil {
		t.Fatal("hosts that never served anything have a baseline entry")
	}
	if _, h, _ := findHost(s.status(), b.Address); h.RqPerSec != 0 || h.ErrorRate != nil {
		t.Errorf("an idle host's window: %+v, want nothing", h)
	}
	serve(a, 10, 1, 2*time.Millisecond)
	next()
	if !slotsOf(a) || slotsOf(b) || s.sampler.clusters["api"].empty() {
		t.Fatalf("after a's requests: history a %v b %v cluster %v; want a and the cluster only",
			slotsOf(a), slotsOf(b), !s.sampler.clusters["api"].empty())
	}
	// a's first requests are measured from zero, not taken as its baseline.
	if _, h, _ := findHost(s.status(), a.Address); h.RqPerSec != 10 || h.ErrorRate == nil || *h.ErrorRate != 0.1 {
		t.Errorf("a's window: %+v, want its 10 requests in the last second, 1 failed", h)
	}
	for range historySlots - 1 {
		next()
	}
	if !slotsOf(a) {
		t.Fatal("a's slots dropped while its requests are still in the window")
	}
	next()
	if slotsOf(a) || !s.sampler.clusters["api"].empty() {
		t.Error("a's history kept a minute after its last request")
	}
	if s.sampler.hosts[a] != nil {
		t.Error("a's entry kept a minute after its last request")
	}
	if _, h, _ := findHost(s.status(), a.Address); h.RqPerSec != 0 || h.ErrorRate != nil {
		t.Errorf("a's window a minute later: %+v, want nothing", h)
	}
	// Its next requests are measured from its last sample, as long as
	// the cluster: a's window is the whole minute.
	serve(a, 6, 0, 2*time.Millisecond)
	next()
	if _, h, _ := findHost(s.status(), a.Address); !near(h.RqPerSec, 6.0/historySlots, 1e-9) {
		t.Errorf("a's window after a quiet minute: %v rq/s, want its 6 requests over the minute", h.RqPerSec)
	}
}

// BenchmarkSamplerIdleHosts is the sampler's memory for 10,000 idle hosts.
func BenchmarkSamplerIdleHosts(b *testing.B) {
	eps := make([]config.Endpoint, 10_000)
	for i := range eps {
		eps[i] = config.Endpoint{Address: fmt.Sprintf("127.0.0.%d:%d", 1+i/50000, 1024+i), Weight: 1}
	}
	c, err := cluster.New(config.Cluster{Name: "big", LBPolicy: "round_robin", Protocol: "http2", Endpoints: eps}, cluster.Options{Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	src := &fakeSource{clusters: []*cluster.Cluster{c}}
	var m0, m1 runtime.MemStats
	for b.Loop() {
		runtime.GC()
		runtime.ReadMemStats(&m0)
		s := newSampler(src)
		for i := range 5 {
			s.sample(time.Unix(int64(i), 0))
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/10_000, "B/host")
		runtime.KeepAlive(s)
	}
}

// TestWindowPercentilesExpire: latencies count in the window's
// percentiles for about a minute (the histograms are kept per ten
// seconds), then no more.
func TestWindowPercentilesExpire(t *testing.T) {
	src := newFakeSource(t)
	s := New("127.0.0.1:0", src, zerolog.Nop())
	a := hostOf(t, src.clusters[0], "127.0.0.1:5001")
	t0 := time.Unix(1_700_000_000, 0)
	s.sampler.sample(t0)
	p99 := func() float64 {
		_, h, _ := findHost(s.status(), a.Address)
		if h.P99 == nil {
			return 0
		}
		return *h.P99
	}
	for tick := 1; tick <= 75; tick++ {
		d := time.Millisecond
		if tick == 2 {
			d = 500 * time.Millisecond
		}
		serve(a, 100, 0, d)
		s.sampler.sample(t0.Add(time.Duration(tick) * time.Second))
		switch got := p99(); {
		case tick >= 2 && tick <= 50 && got < 300:
			t.Fatalf("tick %d: p99 %v ms, want the 500 ms calls of tick 2 in it", tick, got)
		case tick >= 72 && got > 10:
			t.Fatalf("tick %d: p99 %v ms, want the 500 ms calls of tick 2 gone", tick, got)
		}
	}
}

// TestWindowFewCalls: a host that serves a call now and then keeps those
// intervals as a short list, not a minute of slots, and the page's figures
// are those of the calls; once it serves steadily it gets the slots, with
// the same figures; a minute after its last call it holds only its
// counters' baseline, and a call then is measured from it.
func TestWindowFewCalls(t *testing.T) {
	src := newFakeSource(t)
	s := New("127.0.0.1:0", src, zerolog.Nop())
	a := hostOf(t, src.clusters[0], "127.0.0.1:5001")
	t0 := time.Unix(1_700_000_000, 0)
	tick := 0
	next := func() {
		tick++
		s.sampler.sample(t0.Add(time.Duration(tick) * time.Second))
	}
	s.sampler.sample(t0)
	for range 59 {
		next()
	}
	window := func() HostWindow {
		_, h, _ := findHost(s.status(), a.Address)
		return h
	}
	serve(a, 3, 1, 4*time.Millisecond)
	next()
	serve(a, 3, 0, 300*time.Millisecond)
	next()
	hh := s.sampler.hosts[a]
	if hh.slots != nil || len(hh.few) != 2 {
		t.Fatalf("two intervals with calls: slots %v, %d events; want 2 events and no slots", hh.slots != nil, len(hh.few))
	}
	h := window()
	// The host's window begins with its first interval with calls.
	if h.RqPerSec != 3 || h.ErrorRate == nil || !near(*h.ErrorRate, 1.0/6, 1e-6) || h.P50 == nil || !near(*h.P50, 4, 1.5) || h.P99 == nil || !near(*h.P99, 300, 100) {
		t.Errorf("6 calls in 2 s: rq/s %v, error rate %s, p50 %s, p99 %s; want 3, 1/6, about 4 and 300",
			h.RqPerSec, ptr(h.ErrorRate), ptr(h.P50), ptr(h.P99))
	}
	if c, _, _ := findHost(s.status(), a.Address); c.History[58] != 3 || c.History[59] != 3 || c.History[57] != 0 {
		t.Errorf("cluster history ends %v, want ..., 0, 3, 3", c.History[55:])
	}

	// Steady traffic: slots, the same figures.
	for range maxFew {
		serve(a, 10, 0, 4*time.Millisecond)
		next()
	}
	if hh.slots == nil || hh.few != nil {
		t.Fatalf("%d intervals with calls: slots %v, %d events; want slots", 2+maxFew, hh.slots != nil, len(hh.few))
	}
	if h := window(); !near(h.RqPerSec, float64(6+10*maxFew)/float64(2+maxFew), 1e-3) || h.ErrorRate == nil || !near(*h.ErrorRate, 1.0/float64(6+10*maxFew), 1e-6) {
		t.Errorf("after the switch: rq/s %v, error rate %s; want every call of the window", h.RqPerSec, ptr(h.ErrorRate))
	}

	// A minute quiet: nothing but the counters' baseline, and the host
	// no latency buckets.
	for range historySlots {
		next()
	}
	if !hh.empty() || a.TakeLatency(new([host.LatencyBuckets]uint64)) {
		t.Fatalf("a minute after the last call: history empty %v; want empty, and no latencies left in the host", hh.empty())
	}
	serve(a, 2, 0, 300*time.Millisecond)
	next()
	if h := window(); !near(h.RqPerSec, 2.0/60, 1e-3) || h.P50 == nil || !near(*h.P50, 300, 100) {
		t.Errorf("a call after a quiet minute: rq/s %v, p50 %s; want 2/60 and about 300", h.RqPerSec, ptr(h.P50))
	}
}

// BenchmarkSamplerBurst is the memory of the status page's figures (the
// sampler's and the hosts' latency arrays) for 10,000 hosts that served a
// call each, right after and a minute later.
func BenchmarkSamplerBurst(b *testing.B) {
	eps := make([]config.Endpoint, 10_000)
	for i := range eps {
		eps[i] = config.Endpoint{Address: fmt.Sprintf("127.0.0.%d:%d", 1+i/50000, 1024+i), Weight: 1}
	}
	c, err := cluster.New(config.Cluster{Name: "big", LBPolicy: "round_robin", Protocol: "http2", Endpoints: eps}, cluster.Options{Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	src := &fakeSource{clusters: []*cluster.Cluster{c}}
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for b.Loop() {
		before := heap()
		s := newSampler(src)
		s.sample(time.Unix(0, 0))
		for _, h := range c.Hosts() {
			serve(h, 1, 0, time.Millisecond)
		}
		s.sample(time.Unix(1, 0))
		after := heap()
		for i := range historySlots {
			s.sample(time.Unix(int64(2+i), 0))
		}
		quiet := heap()
		b.ReportMetric(float64(int64(after)-int64(before))/10_000, "B/host")
		b.ReportMetric(float64(int64(quiet)-int64(before))/10_000, "B/quiet-host")
		runtime.KeepAlive(s)
	}
}
