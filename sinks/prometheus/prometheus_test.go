package prometheus

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/stats"
)

// newStore returns a Store flushing into a Prometheus sink with the default
// units.
func newStore(t testing.TB, cfg config.Stats) (*stats.Store, *Sink) {
	return newStoreUnits(t, cfg, config.PrometheusUnitsBase)
}

// newStoreUnits returns a Store flushing into a Prometheus sink showing
// units.
func newStoreUnits(t testing.TB, cfg config.Stats, units string) (*stats.Store, *Sink) {
	t.Helper()
	sink := New(config.Prometheus{Namespace: "sightline", Units: units})
	cfg.FlushInterval = config.Duration(time.Hour)
	s, err := stats.New(cfg, config.Node{ID: "edge-1", Zone: "zone-a"}, stats.Options{Sinks: []stats.Sink{sink}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s, sink
}

// useEverything touches every stat family of cluster name.
func useEverything(s *stats.Store, name string) {
	c := s.Cluster(name)
	up := c.Upstream()
	up.RqTotal.Inc(3)
	up.RqActive.Inc()
	up.RqCompleted(200)
	up.RqCompleted(503)
	up.RqTime.RecordDuration(1200 * time.Microsecond)
	up.RqRetry.Inc(1)
	c.Connections().CxTotal.Inc(1)
	c.Membership().Total.Set(3)
	c.HealthCheck().Attempt.Inc(1)
	c.OutlierDetection().EjectionsEnforced.Inc(1)
	c.CircuitBreakers().RqOpen.Set(0)
	c.LoadBalancer().HealthyPanic.Inc(1)
	z := c.Zone("zone-b").Upstream()
	z.RqCompleted(200)
	z.RqTime.RecordDuration(time.Millisecond)
	m := c.GRPC("/grpc.testing.TestService/UnaryCall")
	m.Completed(0)
	m.Completed(14)
	m.RqTime.RecordDuration(3 * time.Millisecond)
	h := s.HTTP("ingress_http")
	h.DownstreamRqTotal.Inc(1)
	h.RqCompleted(200)
	h.DownstreamRqTime.RecordDuration(2 * time.Millisecond)
	s.Listener("[::1]:10000").DownstreamCxTotal.Inc(1)
	s.AccessLog("ingress.0").Written.Inc(1)
	s.Server().Live.Set(1)
	s.Server().ConfigReload.Inc(1)
}

func scrape(t testing.TB, h http.Handler, target, accept string) (body []byte, contentType string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	if accept != "" {
		r.Header.Set("Accept", accept)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", target, w.Code, w.Body)
	}
	return w.Body.Bytes(), w.Header().Get("Content-Type")
}

func parse(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing the exposition: %v\n%s", err, body)
	}
	return fams
}

func TestExposition(t *testing.T) {
	for _, tt := range []struct {
		units string
		// the upstream_rq_time family, the 1.2 ms sample's sum and the
		// first bound at or above it, in the unit shown
		family   string
		sum, le  float64
		uptime   string
		memory   string
		connTime string
	}{
		{config.PrometheusUnitsBase, "sightline_cluster_upstream_rq_time_seconds", 0.0012, 0.0025,
			"sightline_server_uptime_seconds", "sightline_server_memory_allocated_bytes", "sightline_cluster_upstream_cx_connect_time_seconds"},
		{config.PrometheusUnitsMs, "sightline_cluster_upstream_rq_time", 1.2, 2.5,
			"sightline_server_uptime", "sightline_server_memory_allocated", "sightline_cluster_upstream_cx_connect_time"},
	} {
		t.Run(tt.units, func(t *testing.T) {
			s, sink := newStoreUnits(t, config.Stats{}, tt.units)
			testExposition(t, s, sink, tt.family, tt.sum, tt.le)
			body, _ := scrape(t, sink, "/stats/prometheus", "")
			fams := parse(t, body)
			for _, name := range []string{tt.uptime, tt.memory, tt.connTime} {
				if fams[name] == nil {
					t.Errorf("%s missing", name)
				}
			}
		})
	}
}

func testExposition(t *testing.T, s *stats.Store, sink *Sink, rqTime string, wantSum, wantLe float64) {
	s.Server().Uptime.Set(7)
	s.Server().MemoryAllocated.Set(1 << 20)
	s.Cluster("primary").Connections().CxConnectMs.RecordDuration(time.Millisecond)
	useEverything(s, "api.example.com")
	useEverything(s, "primary")
	s.Flush()
	body, ct := scrape(t, sink, "/stats/prometheus", "")
	if !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type = %q, want text 0.0.4", ct)
	}

	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}

	fams := parse(t, body)
	for _, tt := range []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"sightline_cluster_upstream_rq_total", map[string]string{"cluster_name": "api.example.com"}, 3},
		{"sightline_cluster_upstream_rq_completed_total", map[string]string{"cluster_name": "api.example.com", "response_code": "503"}, 1},
		{"sightline_cluster_upstream_rq_xx_total", map[string]string{"cluster_name": "primary", "response_code_class": "2"}, 1},
		{"sightline_cluster_upstream_rq_active", map[string]string{"cluster_name": "primary"}, 1},
		{"sightline_cluster_membership_hosts", map[string]string{"cluster_name": "primary"}, 3},
		{"sightline_cluster_zone_upstream_rq_xx_total", map[string]string{"cluster_name": "primary", "from_zone": "zone-a", "to_zone": "zone-b", "response_code_class": "2"}, 1},
		{"sightline_cluster_grpc_total", map[string]string{"cluster_name": "api.example.com", "grpc_service": "grpc.testing.TestService", "grpc_method": "UnaryCall"}, 2},
		{"sightline_cluster_grpc_completed_total", map[string]string{"cluster_name": "api.example.com", "grpc_service": "grpc.testing.TestService", "grpc_method": "UnaryCall", "grpc_status": "14"}, 1},
		{"sightline_listener_downstream_cx_total", map[string]string{"listener_address": "[::1]:10000"}, 2},
		{"sightline_http_downstream_rq_xx_total", map[string]string{"http_conn_manager_prefix": "ingress_http", "response_code_class": "2"}, 2},
		{"sightline_accesslog_written_total", map[string]string{"accesslog_name": "ingress.0"}, 2},
		{"sightline_server_live", map[string]string{}, 1},
	} {
		if got, ok := value(fams[tt.family], tt.labels); !ok || got != tt.want {
			t.Errorf("%s%v = %v (found %v), want %v", tt.family, tt.labels, got, ok, tt.want)
		}
	}

	h := fams[rqTime]
	if h == nil || h.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("%s: %v", rqTime, h)
	}
	for _, m := range h.Metric {
		hist := m.GetHistogram()
		if hist.GetSampleCount() != 1 || hist.GetSampleSum() != wantSum {
			t.Errorf("upstream_rq_time count %d sum %v, want 1 and %v", hist.GetSampleCount(), hist.GetSampleSum(), wantSum)
		}
		for _, b := range hist.Bucket {
			if want := uint64(0); b.GetUpperBound() >= wantLe {
				want = 1
				if b.GetCumulativeCount() != want {
					t.Errorf("bucket le %v = %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
				}
			}
		}
	}
	for name, f := range fams {
		if f.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
	}
	promtool(t, body)
}

// value returns the sample of family whose labels are exactly labels.
func value(f *dto.MetricFamily, labels map[string]string) (float64, bool) {
	for _, m := range f.GetMetric() {
		if len(m.Label) != len(labels) {
			continue
		}
		match := true
		for _, l := range m.Label {
			match = match && labels[l.GetName()] == l.GetValue()
		}
		if !match {
			continue
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// promtool runs `promtool check metrics` on an exposition. Without promtool
// the test is skipped, unless CI is set: CI must run it.
func promtool(t *testing.T, exposition []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is not installed (apt-get install -y --no-install-recommends prometheus); CI must run this check")
		}
		t.Skip("promtool is not installed")
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	t.Logf("promtool check metrics: clean on %d lines", bytes.Count(exposition, []byte("\n")))
}

func TestOpenMetrics(t *testing.T) {
	s, sink := newStore(t, config.Stats{})
	useEverything(s, "primary")
	trace := stats.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	before := time.Now()
	up := s.Cluster("primary").Upstream()
	up.RqTime.RecordTraced(7*time.Millisecond, trace)
	up.RqTime.RecordTraced(8*time.Millisecond, stats.TraceID{}) // not sampled: no exemplar
	up.RqTime.RecordTraced(90*time.Second, trace)               // past the last bound: +Inf
	s.Flush()
	body, ct := scrape(t, sink, "/stats/prometheus", "application/openmetrics-text; version=1.0.0; charset=utf-8")
	if !strings.HasPrefix(ct, "application/openmetrics-text; version=1.0.0") {
		t.Errorf("Content-Type = %q, want OpenMetrics 1.0.0", ct)
	}
	if !bytes.HasSuffix(body, []byte("# EOF\n")) {
		t.Errorf("OpenMetrics exposition does not end in # EOF:\n%s", body)
	}
	// OpenMetrics names a counter family without _total, its samples with.
	if !bytes.Contains(body, []byte("# TYPE sightline_cluster_upstream_rq counter\n")) ||
		!bytes.Contains(body, []byte(`sightline_cluster_upstream_rq_total{cluster_name="primary"} 3.0`)) {
		t.Errorf("OpenMetrics counter not as expected:\n%s", body)
	}

	got := parseOpenMetrics(t, body)
	const fam = "sightline_cluster_upstream_rq_time_seconds"
	if got.units[fam] != "seconds" || got.units["sightline_server_memory_allocated_bytes"] != "bytes" {
		t.Errorf("UNIT of %s = %q, of memory_allocated_bytes = %q", fam, got.units[fam], got.units["sightline_server_memory_allocated_bytes"])
	}
	if _, ok := got.units["sightline_cluster_upstream_rq"]; ok {
		t.Error("a count has a UNIT")
	}
	for _, series := range []string{
		`sightline_cluster_upstream_rq_total{cluster_name="primary"}`,
		fam + `_count{cluster_name="primary"}`,
	} {
		st, ok := got.created[series]
		if !ok || st < before.Add(-time.Minute).UnixMilli() || st > time.Now().UnixMilli() {
			t.Errorf("%s: created %d (found %v), want about now", series, st, ok)
		}
	}
	wantTrace := "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, tt := range []struct {
		le    string
		value float64
	}{{"0.01", 0.007}, {"+Inf", 90}} {
		series := fam + `_bucket{cluster_name="primary",le="` + tt.le + `"}`
		e, ok := got.exemplars[series]
		if !ok {
			t.Errorf("%s: no exemplar", series)
			continue
		}
		if e.Labels.Get("trace_id") != wantTrace || e.Value != tt.value || !e.HasTs || e.Ts < before.UnixMilli() {
			t.Errorf("%s: exemplar %v, want trace_id %s value %v at about now", series, e, wantTrace, tt.value)
		}
	}
	if len(got.exemplars) != 2 {
		t.Errorf("%d exemplars, want 2 (an unsampled call has none): %v", len(got.exemplars), got.exemplars)
	}
}

// openMetrics is what Prometheus' own OpenMetrics parser found.
type openMetrics struct {
	units     map[string]string            // family → UNIT
	created   map[string]int64             // series → created, ms since the epoch
	exemplars map[string]exemplar.Exemplar // series → its exemplar
}

// parseOpenMetrics parses an exposition as a Prometheus server does when it
// scrapes, with created timestamps taken from _created lines.
func parseOpenMetrics(t *testing.T, body []byte) openMetrics {
	t.Helper()
	out := openMetrics{units: map[string]string{}, created: map[string]int64{}, exemplars: map[string]exemplar.Exemplar{}}
	p := textparse.NewOpenMetricsParser(body, labels.NewSymbolTable(), textparse.WithOMParserSTSeriesSkipped())
	for {
		entry, err := p.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("Prometheus' OpenMetrics parser: %v\n%s", err, body)
		}
		switch entry {
		case textparse.EntryUnit:
			name, unit := p.Unit()
			out.units[string(name)] = string(unit)
		case textparse.EntrySeries:
			series, _, _ := p.Series()
			if st := p.StartTimestamp(); st != 0 {
				out.created[string(series)] = st
			}
			var e exemplar.Exemplar
			if p.Exemplar(&e) {
				out.exemplars[string(series)] = e
			}
		}
	}
}

func TestFilter(t *testing.T) {
	s, sink := newStore(t, config.Stats{})
	useEverything(s, "primary")
	s.Flush()
	for _, tt := range []struct {
		give string
		want []string
	}{
		{"^sightline_cluster_upstream_rq_total$", []string{"sightline_cluster_upstream_rq_total"}},
		{"^sightline_cluster_upstream_rq_time_seconds_bucket$", []string{"sightline_cluster_upstream_rq_time_seconds"}},
		{"upstream_rq_time_seconds_count", []string{"sightline_cluster_grpc_upstream_rq_time_seconds", "sightline_cluster_upstream_rq_time_seconds", "sightline_cluster_zone_upstream_rq_time_seconds"}},
		{"grpc_(total|completed_total)$", []string{"sightline_cluster_grpc_completed_total", "sightline_cluster_grpc_total"}},
	} {
		body, _ := scrape(t, sink, "/stats/prometheus?filter="+tt.give, "")
		fams := parse(t, body)
		if len(fams) != len(tt.want) {
			t.Errorf("filter %q: %d families, want %v:\n%s", tt.give, len(fams), tt.want, body)
		}
		for _, name := range tt.want {
			if fams[name] == nil {
				t.Errorf("filter %q: %s missing", tt.give, name)
			}
		}
	}
	w := httptest.NewRecorder()
	sink.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/stats/prometheus?filter=(", nil))
	if w.Code != http.StatusBadRequest {
		t.Errorf("bad filter: %d, want 400", w.Code)
	}
}

// TestExcludedNowhere checks that an excluded stat is not in the exposition.
func TestExcludedNowhere(t *testing.T) {
	s, sink := newStore(t, config.Stats{Exclude: []string{`\.upstream_rq_retry$`, `^cluster\.[^.]+\.grpc\.`}})
	useEverything(s, "primary")
	s.Flush()
	body, _ := scrape(t, sink, "/stats/prometheus", "")
	for name := range parse(t, body) {
		if name == "sightline_cluster_upstream_rq_retry_total" || strings.HasPrefix(name, "sightline_cluster_grpc_") {
			t.Errorf("excluded %s is in the exposition", name)
		}
	}
	if !bytes.Contains(body, []byte("sightline_cluster_upstream_rq_retry_success_total")) {
		t.Error("a stat the exclusion does not match is missing")
	}
}

// BenchmarkScrape measures a /stats/prometheus scrape with 1,000 clusters
// that have all seen traffic.
func BenchmarkScrape(b *testing.B) {
	s, sink := newStore(b, config.Stats{})
	for i := range 1000 {
		useEverything(s, "cluster-"+strconv.Itoa(i))
	}
	s.Flush()
	body, _ := scrape(b, sink, "/stats/prometheus", "")
	r := httptest.NewRequest(http.MethodGet, "/stats/prometheus", nil)
	b.ReportAllocs()
	for b.Loop() {
		sink.ServeHTTP(discard{}, r)
	}
	b.ReportMetric(float64(len(body)), "B/scrape")
	b.ReportMetric(float64(bytes.Count(body, []byte("\n"))), "lines/scrape")
}

// discard is a ResponseWriter that drops the body, so that the benchmark
// measures the scrape and not a growing buffer.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) WriteHeader(int)             {}

// TestCreatedOff checks created: false: OpenMetrics without _created.
func TestCreatedOff(t *testing.T) {
	off := false
	sink := New(config.Prometheus{Namespace: "sightline", Units: config.PrometheusUnitsBase, Created: &off})
	s, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{Sinks: []stats.Sink{sink}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	useEverything(s, "primary")
	s.Flush()
	body, _ := scrape(t, sink, "/stats/prometheus", "application/openmetrics-text; version=1.0.0")
	if bytes.Contains(body, []byte("_created")) {
		t.Errorf("created: false, yet the exposition has _created lines:\n%s", body)
	}
	if !bytes.Contains(body, []byte(`sightline_cluster_upstream_rq_total{cluster_name="primary"} 3.0`)) {
		t.Errorf("counter missing:\n%s", body)
	}
}

// BenchmarkClusterStatsMemory measures the heap one cluster's stats hold in
// the Store and this sink when the cluster is built (connection, request,
// breaker, membership and load-balancer families) and has served nothing:
// b.N clusters, reported per cluster.
func BenchmarkClusterStatsMemory(b *testing.B) {
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	s, _ := newStore(b, config.Stats{})
	for i := range b.N {
		c := s.Cluster("cluster-" + strconv.Itoa(i))
		c.Connections()
		c.Upstream()
		c.CircuitBreakers()
		c.Membership().Total.Set(2)
		c.LoadBalancer()
	}
	b.ReportMetric(float64(heap()-before)/float64(b.N), "B/cluster")
	runtime.KeepAlive(s)
}
