package stats

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/proxy/config"
)

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name    string
		give    config.Stats
		wantErr string
	}{
		{"no flush interval", config.Stats{}, "stats.flush_interval: must be positive"},
		{"bad exclude", config.Stats{FlushInterval: config.Duration(time.Second), Exclude: []string{"ok", "("}}, "stats.exclude[1]: error parsing regexp"},
		{"bad include", config.Stats{FlushInterval: config.Duration(time.Second), Include: []string{"[a"}}, "stats.include[0]: error parsing regexp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.give, config.Node{}, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New() error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestIncludeExclude(t *testing.T) {
	tests := []struct {
		name      string
		include   []string
		exclude   []string
		wantRetry bool // cluster.primary.upstream_rq_retry exists
		wantTotal bool // cluster.primary.upstream_rq_total exists
		wantLive  bool // server.live exists
	}{
		{name: "no filters", wantRetry: true, wantTotal: true, wantLive: true},
		{name: "empty include is no filter", include: []string{}, wantRetry: true, wantTotal: true, wantLive: true},
		{name: "exclude one", exclude: []string{`^cluster\.[^.]+\.upstream_rq_retry$`}, wantTotal: true, wantLive: true},
		{name: "include clusters", include: []string{`^cluster\.`}, wantRetry: true, wantTotal: true},
		{name: "exclude wins over include", include: []string{`^cluster\.`}, exclude: []string{`retry`}, wantTotal: true},
		{name: "dotted cluster name matched on the flat name", exclude: []string{`^cluster\.api\.example\.com\.`}, wantRetry: true, wantTotal: true, wantLive: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, rec := newStore(t, config.Stats{Include: tt.include, Exclude: tt.exclude}, Options{})
			up := s.Cluster("primary").Upstream()
			other := s.Cluster("api.example.com").Upstream()
			if got := up.RqRetry != nil; got != tt.wantRetry {
				t.Errorf("upstream_rq_retry exists = %v, want %v", got, tt.wantRetry)
			}
			if got := up.RqTotal != nil; got != tt.wantTotal {
				t.Errorf("upstream_rq_total exists = %v, want %v", got, tt.wantTotal)
			}
			if got := s.Server().Live != nil; got != tt.wantLive {
				t.Errorf("server.live exists = %v, want %v", got, tt.wantLive)
			}
			// An excluded stat is a no-op handle: counting on it is safe.
			up.RqRetry.Inc(1)
			other.RqRetry.Inc(1)
			s.Server().Live.Set(1)
			s.Flush()

			if got := rec.has("cluster.upstream_rq_retry{cluster_name=primary}"); got != tt.wantRetry {
				t.Errorf("sink has upstream_rq_retry = %v, want %v", got, tt.wantRetry)
			}
			if got := rec.has("server.live"); got != tt.wantLive {
				t.Errorf("sink has server.live = %v, want %v", got, tt.wantLive)
			}
			body := get(t, s.Handler(), "/stats")
			if got := strings.Contains(body, "cluster.primary.upstream_rq_retry:"); got != tt.wantRetry {
				t.Errorf("/stats has upstream_rq_retry = %v, want %v", got, tt.wantRetry)
			}
		})
	}
}

func get(t *testing.T, h http.Handler, target string) string {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, target, nil))
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", target, w.Code, w.Body)
	}
	return w.Body.String()
}

func TestFlushDeltas(t *testing.T) {
	s, rec := newStore(t, config.Stats{}, Options{})
	up := s.Cluster("primary").Upstream()
	up.RqTotal.Inc(3)
	up.RqActive.Inc()
	up.RqActive.Inc()
	up.RqTime.RecordDuration(300 * time.Microsecond)
	up.RqTime.RecordDuration(2 * time.Millisecond)
	up.RqTime.RecordDuration(2 * time.Minute)
	up.RqCompleted(200)
	up.RqCompleted(200)
	up.RqCompleted(503)
	up.RqCompleted(0) // no response: counts nowhere
	s.Flush()
	up.RqTotal.Inc(2)
	up.RqActive.Dec()
	s.Flush()
	s.Flush() // nothing moved

	total := rec.get("cluster.upstream_rq_total{cluster_name=primary}")
	if total.total != 5 || len(total.deltas) != 2 {
		t.Errorf("upstream_rq_total: deltas %v, want [3 2]", total.deltas)
	}
	active := rec.get("cluster.upstream_rq_active{cluster_name=primary}")
	if active.gauge != 1 || active.gauges != 2 {
		t.Errorf("upstream_rq_active: %v after %d reports, want 1 after 2", active.gauge, active.gauges)
	}
	tm := rec.get("cluster.upstream_rq_time{cluster_name=primary}")
	wantBuckets := map[time.Duration]int64{500 * time.Microsecond: 1, 2500 * time.Microsecond: 1, time.Duration(1<<63 - 1): 1}
	for upper, n := range wantBuckets {
		if tm.buckets[upper] != n {
			t.Errorf("upstream_rq_time bucket le %v = %d, want %d (all: %v)", upper, tm.buckets[upper], n, tm.buckets)
		}
	}
	if want := 300*time.Microsecond + 2*time.Millisecond + 2*time.Minute; tm.sum != want {
		t.Errorf("upstream_rq_time sum = %v, want %v", tm.sum, want)
	}
	for key, want := range map[string]int64{
		"cluster.upstream_rq_completed{cluster_name=primary,response_code=200}": 2,
		"cluster.upstream_rq_completed{cluster_name=primary,response_code=503}": 1,
		"cluster.upstream_rq_xx{cluster_name=primary,response_code_class=2}":    2,
		"cluster.upstream_rq_xx{cluster_name=primary,response_code_class=5}":    1,
		"cluster.upstream_rq_retry{cluster_name=primary}":                       0,
		"cluster.upstream_rq_pending_overflow{cluster_name=primary}":            0,
		"cluster.upstream_rq_per_try_timeout{cluster_name=primary}":             0,
		"cluster.upstream_rq_retry_success{cluster_name=primary}":               0,
		"cluster.upstream_rq_rx_reset{cluster_name=primary}":                    0,
		"cluster.upstream_rq_tx_reset{cluster_name=primary}":                    0,
		"cluster.upstream_rq_timeout{cluster_name=primary}":                     0,
		"cluster.upstream_rq_pending_active{cluster_name=primary}":              0,
		"cluster.upstream_rq_total{cluster_name=primary}":                       5,
		"cluster.upstream_rq_active{cluster_name=primary}":                      0,
		"cluster.upstream_rq_time{cluster_name=primary}":                        0,
		"server.config_reload{}":                                                0,
		"stats.overflow{}":                                                      0,
		"cluster.upstream_rq_completed{cluster_name=primary,response_code=0}":   -1,
		"cluster.upstream_rq_xx{cluster_name=primary,response_code_class=0}":    -1,
		"cluster.upstream_rq_completed{cluster_name=primary,response_code=201}": -1,
		"cluster.upstream_cx_total{cluster_name=primary}":                       -1,
		"cluster.health_check.attempt{cluster_name=primary}":                    -1,
		"cluster.zone.upstream_rq_time{cluster_name=primary,from_zone=zone-a}":  -1,
		"cluster.membership_healthy{cluster_name=primary}":                      -1,
		"cluster.lb_healthy_panic{cluster_name=primary}":                        -1,
		"cluster.circuit_breakers.default.rq_open{cluster_name=primary}":        -1,
		"cluster.outlier_detection.ejections_active{cluster_name=primary}":      -1,
		"cluster.grpc.total{cluster_name=primary,grpc_method=M,grpc_service=S}": -1,
	} {
		r := rec.get(key)
		switch {
		case want < 0 && r != nil:
			t.Errorf("%s exists, want it never created", key)
		case want >= 0 && r == nil:
			t.Errorf("%s missing", key)
		case want > 0 && r.total != want:
			t.Errorf("%s = %d, want %d", key, r.total, want)
		}
	}
}

// TestLazyFamilies checks that a cluster costs no stats until a family is
// used, and that asking again returns the same handles.
func TestLazyFamilies(t *testing.T) {
	s, _ := newStore(t, config.Stats{}, Options{})
	count := func() int {
		n := 0
		s.Collect(func(*Point) { n++ })
		return n
	}
	before := count()
	c := s.Cluster("idle")
	c.Zone("zone-b")
	if after := count(); after != before {
		t.Fatalf("an idle cluster created %d stats", after-before)
	}
	families := []struct {
		name string
		use  func() any
	}{
		{"Upstream", func() any { return c.Upstream() }},
		{"Connections", func() any { return c.Connections() }},
		{"Membership", func() any { return c.Membership() }},
		{"HealthCheck", func() any { return c.HealthCheck() }},
		{"OutlierDetection", func() any { return c.OutlierDetection() }},
		{"CircuitBreakers", func() any { return c.CircuitBreakers() }},
		{"LoadBalancer", func() any { return c.LoadBalancer() }},
		{"Zone.Upstream", func() any { return c.Zone("zone-b").Upstream() }},
	}
	for _, f := range families {
		if first, again := f.use(), f.use(); first != again {
			t.Errorf("%s: a second call built new handles", f.name)
		}
	}
	if s.Cluster("idle") != c {
		t.Error("Cluster: a second call built a new cluster")
	}
}

// TestReload checks that handles asked for again, as a reload does, keep
// counting where they were.
func TestReload(t *testing.T) {
	s, rec := newStore(t, config.Stats{}, Options{})
	s.Cluster("primary").Upstream().RqTotal.Inc(2)
	s.HTTP("ingress").DownstreamRqTotal.Inc(1)
	s.Listener("127.0.0.1:10000").DownstreamCxTotal.Inc(1)
	s.AccessLog("ingress.0").Written.Inc(1)
	s.Flush()
	// The reload builds everything again from the new config.
	s.Cluster("primary").Upstream().RqTotal.Inc(3)
	s.HTTP("ingress").DownstreamRqTotal.Inc(1)
	s.Listener("127.0.0.1:10000").DownstreamCxTotal.Inc(1)
	s.AccessLog("ingress.0").Written.Inc(1)
	s.Server().ConfigReload.Inc(1)
	s.Flush()
	for key, want := range map[string]int64{
		"cluster.upstream_rq_total{cluster_name=primary}":                5,
		"http.downstream_rq_total{http_conn_manager_prefix=ingress}":     2,
		"listener.downstream_cx_total{listener_address=127.0.0.1:10000}": 2,
		"accesslog.written{accesslog_name=ingress.0}":                    2,
		"server.config_reload{}":                                         1,
	} {
		if r := rec.get(key); r == nil || r.total != want {
			t.Errorf("%s = %v, want %d", key, r, want)
		}
	}
}

func TestZonePairs(t *testing.T) {
	s, rec := newStore(t, config.Stats{}, Options{})
	c := s.Cluster("primary")
	z := c.Zone("zone-b")
	if c.Zone("zone-b") != z {
		t.Error("Zone: a second call built a new pair")
	}
	z.Upstream().RqCompleted(204)
	z.Upstream().RqTime.RecordDuration(time.Millisecond)
	c.Zone("").Upstream().RqCompleted(200) // a host without a zone: counts nowhere
	c.Zone("").Upstream().RqTime.RecordDuration(time.Millisecond)
	s.Flush()
	if r := rec.get("cluster.zone.upstream_rq_completed{cluster_name=primary,from_zone=zone-a,response_code=204,to_zone=zone-b}"); r == nil || r.total != 1 {
		t.Errorf("zone pair code = %v, want 1", r)
	}
	if r := rec.get("cluster.zone.upstream_rq_xx{cluster_name=primary,from_zone=zone-a,response_code_class=2,to_zone=zone-b}"); r == nil || r.total != 1 {
		t.Errorf("zone pair class = %v, want 1", r)
	}
	if rec.has("to_zone=}") {
		t.Error("a zone pair without a zone was created")
	}

	// A proxy without a zone has no zone pairs at all.
	s2, err := New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s2.Cluster("primary").Zone("zone-b") != noZone {
		t.Error("a proxy without a zone built a zone pair")
	}
}

func TestGRPCMethods(t *testing.T) {
	s, rec := newStore(t, config.Stats{}, Options{MaxGRPCMethods: 2})
	c := s.Cluster("primary")
	calls := []struct {
		path   string
		status int
	}{
		{"/grpc.testing.TestService/UnaryCall", 0},
		{"/grpc.testing.TestService/UnaryCall", 14},
		{"/grpc.health.v1.Health/Check", 0},
		{"/grpc.testing.TestService/EmptyCall", 0},     // over the cap
		{"/grpc.testing.TestService/EmptyCall", 2},     // over the cap
		{"/grpc.testing.TestService/StreamingCall", 0}, // over the cap
		{"/not a method/x", 0},                         // not gRPC: other, no overflow
		{"/a..b/x", 0},                                 // not gRPC: other, no overflow
		{"no-slash", 0},                                // not gRPC: other, no overflow
		{"/grpc.testing.TestService/UnaryCall", 99},    // status out of range
	}
	for _, call := range calls {
		m := c.GRPC(call.path)
		m.Completed(call.status)
		m.RqTime.RecordDuration(time.Millisecond)
	}
	if a, b := c.GRPC("/grpc.testing.TestService/UnaryCall"), c.GRPC("/grpc.testing.TestService/UnaryCall"); a != b {
		t.Error("GRPC: a method seen before got new handles")
	}
	if a, b := c.GRPC("/x.Y/Over"), c.GRPC("/grpc.testing.TestService/EmptyCall"); a != b {
		t.Error("GRPC: refused methods do not share grpc.other.other")
	}
	s.Flush()

	const unary = "cluster_name=primary,grpc_method=UnaryCall,grpc_service=grpc.testing.TestService"
	const other = "cluster_name=primary,grpc_method=other,grpc_service=other"
	for key, want := range map[string]int64{
		"cluster.grpc.total{" + unary + "}":                                                             3,
		"cluster.grpc.success{" + unary + "}":                                                           1,
		"cluster.grpc.failure{" + unary + "}":                                                           2,
		"cluster.grpc.completed{" + unary + ",grpc_status=0}":                                           1,
		"cluster.grpc.completed{" + unary + ",grpc_status=14}":                                          1,
		"cluster.grpc.total{cluster_name=primary,grpc_method=Check,grpc_service=grpc.health.v1.Health}": 1,
		"cluster.grpc.total{" + other + "}":                                                             6,
		"cluster.grpc.success{" + other + "}":                                                           5,
		"stats.overflow{}":                                                                              5, // three calls above, two lookups after
	} {
		if r := rec.get(key); r == nil || r.total != want {
			t.Errorf("%s = %v, want %d", key, r, want)
		}
	}
	if rec.has("grpc_method=EmptyCall") || rec.has("grpc_status=99") {
		t.Error("stats were created past the cap or out of range")
	}
}

func TestSplitGRPCPath(t *testing.T) {
	tests := []struct {
		give        string
		wantService string
		wantMethod  string
		wantOK      bool
	}{
		{give: "/grpc.testing.TestService/UnaryCall", wantService: "grpc.testing.TestService", wantMethod: "UnaryCall", wantOK: true},
		{give: "/Svc/M_1", wantService: "Svc", wantMethod: "M_1", wantOK: true},
		{give: "/Svc/"},
		{give: "//M"},
		{give: "/Svc/M/extra"},
		{give: "/.Svc/M"},
		{give: "/Svc./M"},
		{give: "/Svc/M.x"},
		{give: "/S%20vc/M"},
		{give: "Svc/M"},
		{give: "/" + strings.Repeat("a", maxGRPCName+1) + "/M"},
	}
	for _, tt := range tests {
		service, method, ok := splitGRPCPath(tt.give)
		if service != tt.wantService || method != tt.wantMethod || ok != tt.wantOK {
			t.Errorf("splitGRPCPath(%q) = %q, %q, %v, want %q, %q, %v", tt.give, service, method, ok, tt.wantService, tt.wantMethod, tt.wantOK)
		}
	}
}

func TestServerRuntime(t *testing.T) {
	s, rec := newStore(t, config.Stats{}, Options{})
	s.Flush()
	srv := s.Server()
	if srv.GoGoroutines.Value() <= 0 || srv.MemoryAllocated.Value() <= 0 || srv.Concurrency.Value() <= 0 {
		t.Errorf("runtime gauges not set: goroutines %d, memory %d, concurrency %d",
			srv.GoGoroutines.Value(), srv.MemoryAllocated.Value(), srv.Concurrency.Value())
	}
	for _, key := range []string{"server.go.goroutines{}", "server.memory_allocated{}", "server.concurrency{}", "server.uptime{}"} {
		if r := rec.get(key); r == nil || r.gauges == 0 {
			t.Errorf("%s not reported: %v", key, r)
		}
	}
}

func TestStatsHandler(t *testing.T) {
	s, _ := newStore(t, config.Stats{Exclude: []string{`^server\.`, `^stats\.`}}, Options{})
	up := s.Cluster("api.example.com").Upstream()
	up.RqTotal.Inc(7)
	up.RqActive.Set(2)
	for _, d := range []time.Duration{time.Millisecond, time.Millisecond, 3 * time.Millisecond, 70 * time.Millisecond} {
		up.RqTime.RecordDuration(d)
	}
	s.HTTP("ingress").DownstreamRqTotal.Inc(1)

	body := get(t, s.Handler(), "/stats?filter=upstream_rq_(total|active|time|retry)$")
	want := "cluster.api.example.com.upstream_rq_active: 2\n" +
		"cluster.api.example.com.upstream_rq_retry: 0\n" +
		"cluster.api.example.com.upstream_rq_time: P50(1) P90(80) P99(98) P999(99.8) count(4) sum(75)\n" +
		"cluster.api.example.com.upstream_rq_total: 7\n"
	if body != want {
		t.Errorf("/stats =\n%s\nwant\n%s", body, want)
	}

	body = get(t, s.Handler(), "/stats?usedonly")
	if strings.Contains(body, "upstream_rq_retry") || !strings.Contains(body, "http.ingress.downstream_rq_total: 1\n") {
		t.Errorf("/stats?usedonly =\n%s", body)
	}
	if strings.Contains(get(t, s.Handler(), "/stats"), "No recorded values") == false {
		t.Error("/stats: an empty histogram should say so")
	}

	var doc struct {
		Stats []struct {
			Name      string             `json:"name"`
			Type      string             `json:"type"`
			Value     *int64             `json:"value"`
			Count     uint64             `json:"count"`
			Sum       float64            `json:"sum"`
			Quantiles map[string]float64 `json:"quantiles"`
		} `json:"stats"`
	}
	body = get(t, s.Handler(), "/stats?format=json&filter=upstream_rq_(total|time)$")
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("/stats?format=json: %v\n%s", err, body)
	}
	if len(doc.Stats) != 2 || doc.Stats[0].Type != "histogram" || doc.Stats[0].Count != 4 || doc.Stats[0].Quantiles["P99"] != 98 ||
		doc.Stats[1].Name != "cluster.api.example.com.upstream_rq_total" || doc.Stats[1].Value == nil || *doc.Stats[1].Value != 7 {
		t.Errorf("/stats?format=json = %s", body)
	}

	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/stats?filter=(", nil))
	if w.Code != http.StatusBadRequest {
		t.Errorf("bad filter: %d, want 400", w.Code)
	}
}

// TestStatsFilterAllocations: a filter that keeps one stat of each
// cluster makes the names of the others in one buffer: what a request
// allocates is about what it answers, not every stat of every cluster
// (with 10,000 clusters that served, tens of megabytes a request, which
// the heap kept until the next collection).
func TestStatsFilterAllocations(t *testing.T) {
	s, _ := newStore(t, config.Stats{}, Options{})
	const clusters = 200
	for i := range clusters {
		up := s.Cluster(fmt.Sprintf("c%d", i)).Upstream()
		up.RqTotal.Inc(1)
		up.RqTime.RecordDuration(time.Millisecond)
	}
	req := httptest.NewRequest(http.MethodGet, `/stats?filter=^cluster\.c[0-9]*\.upstream_rq_total$`, nil)
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, req)
	if n := strings.Count(w.Body.String(), "upstream_rq_total: 1\n"); n != clusters {
		t.Fatalf("filter kept %d clusters' upstream_rq_total, want %d:\n%s", n, clusters, w.Body.String())
	}
	// Per cluster: the kept name and its entry, the walk's point, the
	// histograms' buckets: about 6 (10 under -race). Making every
	// stat's name, as before, was 23 here.
	allocs := testing.AllocsPerRun(5, func() { s.Handler().ServeHTTP(nullWriter{}, req) })
	if per := allocs / clusters; per > 12 {
		t.Errorf("a filtered /stats allocates %.1f times per cluster, want at most 12", per)
	}
}

// TestStatsHandlerSorted: /stats writes a cluster at a time, and the
// whole is still one sort of every name: process-wide stats that sort
// before, between and after the clusters' ("cluster_manager." after
// "cluster.z."), and clusters whose names extend another's past a dot.
func TestStatsHandlerSorted(t *testing.T) {
	s, _ := newStore(t, config.Stats{}, Options{})
	for _, name := range []string{"web", "api.example.com", "api", "a-b", "api.example", "z", "apiary"} {
		c := s.Cluster(name)
		c.Upstream().RqTotal.Inc(1)
		c.Upstream().RqTime.RecordDuration(time.Millisecond)
		c.SetMembership(1, 1)
	}
	s.HTTP("ingress").DownstreamRqTotal.Inc(1)
	s.Server().ConfigReload.Inc(1)

	var names []string
	for _, line := range strings.Split(strings.TrimSuffix(get(t, s.Handler(), "/stats"), "\n"), "\n") {
		name, _, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("/stats line %q", line)
		}
		names = append(names, name)
	}
	want := map[string]bool{}
	s.walk(true, "", func(p *Point) { want[p.Def.FlatName(p.Values)] = true })
	if len(names) != len(want) {
		t.Errorf("/stats has %d lines, want one per stat: %d", len(names), len(want))
	}
	if !slices.IsSorted(names) {
		for i := 1; i < len(names); i++ {
			if names[i-1] > names[i] {
				t.Errorf("/stats: %q before %q", names[i-1], names[i])
			}
		}
	}
	for _, n := range []string{"cluster.api.example.com.upstream_rq_total", "cluster.apiary.upstream_rq_total", "server.config_reload", "http.ingress.downstream_rq_total"} {
		if !want[n] || !slices.Contains(names, n) {
			t.Errorf("/stats has no %s", n)
		}
	}

	var doc struct {
		Stats []struct {
			Name string `json:"name"`
		} `json:"stats"`
	}
	body := get(t, s.Handler(), "/stats?format=json")
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("/stats?format=json: %v", err)
	}
	var jsonNames []string
	for _, st := range doc.Stats {
		jsonNames = append(jsonNames, st.Name)
	}
	if !slices.Equal(jsonNames, names) {
		t.Errorf("/stats?format=json names differ from /stats:\n%v\n%v", jsonNames, names)
	}
}

func TestLifecycle(t *testing.T) {
	t.Run("loop flushes and Close flushes last", func(t *testing.T) {
		s, rec := newStore(t, config.Stats{FlushInterval: config.Duration(5 * time.Millisecond)}, Options{})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s.Start(ctx)
		s.Start(ctx) // a second Start does nothing
		total := s.Cluster("primary").Upstream().RqTotal
		total.Inc(1)
		deadline := time.After(5 * time.Second)
		for r := rec.get("cluster.upstream_rq_total{cluster_name=primary}"); r.total == 0; r = rec.get("cluster.upstream_rq_total{cluster_name=primary}") {
			select {
			case <-rec.flushes:
			case <-deadline:
				t.Fatal("the flush loop never flushed")
			}
		}
		total.Inc(41)
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if r := rec.get("cluster.upstream_rq_total{cluster_name=primary}"); r.total != 42 || !rec.isClosed() {
			t.Errorf("after Close: total %d, sink closed %v; want 42, true", r.total, rec.closed)
		}
		total.Inc(1)
		s.Flush() // after Close: nothing
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if r := rec.get("cluster.upstream_rq_total{cluster_name=primary}"); r.total != 42 {
			t.Errorf("a flush after Close reached the sink: %d", r.total)
		}
	})
	t.Run("Close without Start", func(t *testing.T) {
		s, rec := newStore(t, config.Stats{}, Options{})
		s.Server().ConfigReload.Inc(1)
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if r := rec.get("server.config_reload{}"); r.total != 1 {
			t.Errorf("final flush: %d, want 1", r.total)
		}
		s.Start(context.Background()) // after Close: nothing
	})
	t.Run("cancelled context stops the loop", func(t *testing.T) {
		s, _ := newStore(t, config.Stats{FlushInterval: config.Duration(time.Millisecond)}, Options{})
		ctx, cancel := context.WithCancel(context.Background())
		s.Start(ctx)
		cancel()
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			t.Fatal("the loop did not stop")
		}
	})
}

func TestNopKeepsNothing(t *testing.T) {
	s := Nop()
	c := s.Cluster("c")
	c.Upstream().RqTotal.Inc(1)
	c.Upstream().RqCompleted(200)
	c.GRPC("/pkg.Svc/Method").Completed(0)
	c.Membership().Total.Set(3)
	s.Flush()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/stats", nil))
	if body := strings.TrimSpace(rec.Body.String()); body != "" {
		t.Errorf("/stats of a discarding store shows:\n%s", body)
	}
}
