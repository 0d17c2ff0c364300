package prometheus

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/uber-go/tally/v4"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/stats"
)

// newStore returns a Store flushing into a Prometheus sink, with every
// family of stats used at least once.
func newStore(t testing.TB, cfg config.Stats) (*stats.Store, *Sink) {
	t.Helper()
	sink := New(config.Prometheus{Namespace: "sightline"})
	cfg.FlushInterval = config.Duration(time.Hour)
	s, err := stats.New(cfg, config.Node{ID: "edge-1", Zone: "zone-a"}, stats.Options{Sinks: []tally.CachedStatsReporter{sink}})
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
	s, sink := newStore(t, config.Stats{})
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

	h := fams["sightline_cluster_upstream_rq_time"]
	if h.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("upstream_rq_time is %v", h.GetType())
	}
	for _, m := range h.Metric {
		hist := m.GetHistogram()
		if hist.GetSampleCount() != 1 || hist.GetSampleSum() != 1.2 {
			t.Errorf("upstream_rq_time count %d sum %v, want 1 and 1.2 (ms)", hist.GetSampleCount(), hist.GetSampleSum())
		}
		for _, b := range hist.Bucket {
			if want := uint64(0); b.GetUpperBound() >= 2.5 {
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
		{"^sightline_cluster_upstream_rq_time_bucket$", []string{"sightline_cluster_upstream_rq_time"}},
		{"upstream_rq_time_count", []string{"sightline_cluster_grpc_upstream_rq_time", "sightline_cluster_upstream_rq_time", "sightline_cluster_zone_upstream_rq_time"}},
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
