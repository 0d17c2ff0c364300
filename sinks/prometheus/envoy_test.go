package prometheus

import (
	"bytes"
	"context"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/stats"
)

// newEnvoyStore returns a Store flushing into two Prometheus sinks, one
// with each naming, so that a test can hold one against the other.
func newEnvoyStore(t testing.TB) (s *stats.Store, envoy, sightline *Sink) {
	t.Helper()
	envoy = New(config.Prometheus{Naming: config.PrometheusNamingEnvoy})
	sightline = New(config.Prometheus{Namespace: "sightline", Naming: config.PrometheusNamingSightline})
	s, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{ID: "edge-1", Zone: "zone-a"},
		stats.Options{Sinks: []stats.Sink{envoy, sightline}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s, envoy, sightline
}

// TestEnvoyNames holds the family and labels of stats Envoy has against
// what Envoy's admin prints for the same flat name (Envoy's default tag
// extractors, their order, its sanitizing), and those Envoy has not
// against the rule they follow.
func TestEnvoyNames(t *testing.T) {
	tests := []struct {
		give       string // flat name
		wantFamily string
		wantLabels string
	}{
		{"cluster.primary.upstream_rq_total", "envoy_cluster_upstream_rq_total", `envoy_cluster_name="primary"`},
		{"cluster.primary.upstream_rq_200", "envoy_cluster_upstream_rq", `envoy_response_code="200",envoy_cluster_name="primary"`},
		{"cluster.primary.upstream_rq_5xx", "envoy_cluster_upstream_rq_xx", `envoy_response_code_class="5",envoy_cluster_name="primary"`},
		{"cluster.primary.upstream_rq_completed", "envoy_cluster_upstream_rq_completed", `envoy_cluster_name="primary"`},
		{"per_client.http_local_rate_limit.rate_limited", "envoy_http_local_rate_limit_rate_limited", `envoy_local_http_ratelimit_prefix="per_client"`},
		{"cluster.primary.ratelimit.over_limit", "envoy_cluster_ratelimit_over_limit", `envoy_cluster_name="primary"`},
		{"cluster.primary.upstream_rq_time", "envoy_cluster_upstream_rq_time", `envoy_cluster_name="primary"`},
		{"cluster.primary.retry.upstream_rq_503", "envoy_cluster_retry_upstream_rq", `envoy_response_code="503",envoy_cluster_name="primary"`},
		{"cluster.primary.membership_healthy", "envoy_cluster_membership_healthy", `envoy_cluster_name="primary"`},
		{"cluster.primary.health_check.attempt", "envoy_cluster_health_check_attempt", `envoy_cluster_name="primary"`},
		{"cluster.primary.outlier_detection.ejections_active", "envoy_cluster_outlier_detection_ejections_active", `envoy_cluster_name="primary"`},
		{"cluster.primary.circuit_breakers.default.rq_open", "envoy_cluster_circuit_breakers_default_rq_open", `envoy_cluster_name="primary"`},
		{"http.ingress_http.downstream_rq_2xx", "envoy_http_downstream_rq_xx", `envoy_response_code_class="2",envoy_http_conn_manager_prefix="ingress_http"`},
		{"http.ingress_http.downstream_rq_total", "envoy_http_downstream_rq_total", `envoy_http_conn_manager_prefix="ingress_http"`},
		{"http.ingress_http.downstream_cx_active", "envoy_http_downstream_cx_active", `envoy_http_conn_manager_prefix="ingress_http"`},
		{"listener.127.0.0.1:10000.downstream_cx_total", "envoy_listener_downstream_cx_total", `envoy_listener_address="127.0.0.1_10000"`},
		{"listener.[::1]:10000.downstream_cx_active", "envoy_listener_downstream_cx_active", `envoy_listener_address="[__1]_10000"`},
		{"cluster.primary.grpc.Greeter.SayHello.total", "envoy_cluster_grpc_total",
			`envoy_grpc_bridge_method="SayHello",envoy_grpc_bridge_service="Greeter",envoy_cluster_name="primary"`},
		{"cluster.primary.grpc.Greeter.SayHello.14", "envoy_cluster_grpc_14",
			`envoy_grpc_bridge_method="SayHello",envoy_grpc_bridge_service="Greeter",envoy_cluster_name="primary"`},
		{"cluster.primary.grpc.Greeter.SayHello.upstream_rq_time", "envoy_cluster_grpc_upstream_rq_time",
			`envoy_grpc_bridge_method="SayHello",envoy_grpc_bridge_service="Greeter",envoy_cluster_name="primary"`},
		{"server.uptime", "envoy_server_uptime", ""},
		{"server.go.gc_pause_ms", "envoy_server_go_gc_pause_ms", ""},

		// Envoy's extractors take one segment: a dotted name is cut at its
		// first dot and the rest stays in the family, as with Envoy.
		{"cluster.api.example.com.upstream_rq_total", "envoy_cluster_example_com_upstream_rq_total", `envoy_cluster_name="api"`},
		{"cluster.primary.grpc.grpc.testing.TestService.UnaryCall.total", "envoy_cluster_grpc_TestService_UnaryCall_total",
			`envoy_grpc_bridge_method="testing",envoy_grpc_bridge_service="grpc",envoy_cluster_name="primary"`},
		// Envoy has no zone extractor: the zones are in the family.
		{"cluster.primary.zone.zone-a.zone-b.upstream_rq_2xx", "envoy_cluster_zone_zone_a_zone_b_upstream_rq_xx",
			`envoy_response_code_class="2",envoy_cluster_name="primary"`},
		// An address Envoy's extractor does not read stays in the family.
		{"listener.localhost:10000.downstream_cx_total", "envoy_listener_localhost_10000_downstream_cx_total", ""},

		// Stats Envoy has not: their tags as envoy_<tag key>.
		{"accesslog.ingress.0.written", "envoy_accesslog_written", `envoy_accesslog_name="ingress.0"`},
		{"sink.statsd.batches_dropped", "envoy_sink_batches_dropped", `envoy_sink_name="statsd"`},
		{"overload.heap.pressure", "envoy_overload_heap_pressure", ""},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			d, values, ok := stats.Parse(tt.give)
			if !ok {
				t.Fatalf("%q is not a stat", tt.give)
			}
			n := nameEnvoy(d, values)
			if n.family != tt.wantFamily || n.labels != tt.wantLabels {
				t.Errorf("got %s{%s}, want %s{%s}", n.family, n.labels, tt.wantFamily, tt.wantLabels)
			}
		})
	}
}

// TestEnvoyNamesLoseNothing names every stat of the catalog and wants a
// valid family, each tag value in a label or in the family name, and no
// family shared by two kinds (Prometheus would refuse the scrape).
func TestEnvoyNamesLoseNothing(t *testing.T) {
	sample := map[string]string{
		stats.TagCluster: "primary", stats.TagFromZone: "zone-a", stats.TagToZone: "zone-b",
		stats.TagResponseCode: "503", stats.TagResponseClass: "5", stats.TagGRPCService: "Greeter",
		stats.TagGRPCMethod: "SayHello", stats.TagGRPCStatus: "14", stats.TagHTTPPrefix: "ingress_http",
		stats.TagListener: "127.0.0.1:10000", stats.TagAccessLog: "main", stats.TagSink: "otlp",
		stats.TagLocalRateLimit: "per_client",
	}
	envoyValue := map[string]string{stats.TagListener: "127.0.0.1_10000", stats.TagFromZone: "zone_a", stats.TagToZone: "zone_b"}
	validName := regexp.MustCompile(`^envoy_[a-zA-Z0-9_]+$`)
	kinds := map[string]stats.Kind{}
	for _, d := range stats.Catalog() {
		values := make([]string, len(d.TagKeys()))
		for i, k := range d.TagKeys() {
			values[i] = sample[k]
		}
		n := nameEnvoy(d, values)
		if !validName.MatchString(n.family) {
			t.Errorf("%s: family %q is not a valid name", d.Flat(), n.family)
		}
		for _, k := range d.TagKeys() {
			v := sample[k]
			if ev, ok := envoyValue[k]; ok {
				v = ev
			}
			inFamily := regexp.MustCompile(`_` + regexp.QuoteMeta(v) + `(_|$)`).MatchString(n.family)
			if !strings.Contains(n.labels, `="`+v+`"`) && !inFamily {
				t.Errorf("%s: %s=%q is neither a label nor in the family: %s{%s}", d.Flat(), k, v, n.family, n.labels)
			}
		}
		if k, seen := kinds[n.family]; seen && k != d.Kind() {
			t.Errorf("%s: family %s is a %v and a %v", d.Flat(), n.family, k, d.Kind())
		}
		kinds[n.family] = d.Kind()
	}
}

// TestEnvoyExposition reads a scrape as Envoy's admin writes it: the
// counter section, then gauges, then histograms; TYPE lines, no HELP, no
// _total added, braces without labels, Envoy's buckets in milliseconds and
// the sum as %.32g, a blank line after each family.
func TestEnvoyExposition(t *testing.T) {
	s, envoy, _ := newEnvoyStore(t)
	up := s.Cluster("primary").Upstream()
	up.RqCompleted(200)
	up.RqCompleted(200)
	up.RqCompleted(503)
	for _, d := range []time.Duration{300 * time.Microsecond, 3 * time.Millisecond, 3 * time.Millisecond, 70 * time.Second} {
		up.RqTime.RecordDuration(d)
	}
	s.Cluster("primary").Membership().Healthy.Set(3)
	s.Server().ConfigReload.Inc(1)
	s.Flush()

	filter := `^(cluster\.primary\.(upstream_rq_(200|503|5xx|time)|membership_healthy)|server\.config_reload)$`
	body, ct := scrape(t, envoy, "/stats/prometheus?filter="+url.QueryEscape(filter), "application/openmetrics-text;version=1.0.0")
	if ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type = %q, want text 0.0.4 whatever the scraper accepts, as Envoy's", ct)
	}
	want := `# TYPE envoy_cluster_upstream_rq counter
envoy_cluster_upstream_rq{envoy_response_code="200",envoy_cluster_name="primary"} 2
envoy_cluster_upstream_rq{envoy_response_code="503",envoy_cluster_name="primary"} 1

# TYPE envoy_cluster_upstream_rq_xx counter
envoy_cluster_upstream_rq_xx{envoy_response_code_class="5",envoy_cluster_name="primary"} 1

# TYPE envoy_server_config_reload counter
envoy_server_config_reload{} 1

# TYPE envoy_cluster_membership_healthy gauge
envoy_cluster_membership_healthy{envoy_cluster_name="primary"} 3

# TYPE envoy_cluster_upstream_rq_time histogram
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="primary",le="0.5"} 1
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="primary",le="1"} 1
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="primary",le="5"} 3
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="primary",le="10"} 3
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="primary",le="25"} 3
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="primary",le="50"} 3
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="primary",le="100"} 3
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="primary",le="250"} 3
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="primary",le="500"} 3
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="primary",le="1000"} 3
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="primary",le="2500"} 3
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="primary",le="5000"} 3
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="primary",le="10000"} 3
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="primary",le="30000"} 3
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="primary",le="60000"} 3
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="primary",le="300000"} 3
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="primary",le="600000"} 3
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="primary",le="1800000"} 3
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="primary",le="3600000"} 3
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="primary",le="+Inf"} 4
envoy_cluster_upstream_rq_time_sum{envoy_cluster_name="primary"} 70006.30000000000291038304567337
envoy_cluster_upstream_rq_time_count{envoy_cluster_name="primary"} 4

`
	if string(body) != want {
		t.Errorf("scrape:\n%s\nwant:\n%s", body, want)
	}
	// The scrape parses as Prometheus' text format.
	fams := parse(t, body)
	if got := fams["envoy_cluster_upstream_rq_time"].GetMetric()[0].GetHistogram().GetSampleCount(); got != 4 {
		t.Errorf("parsed histogram count %d, want 4", got)
	}
}

// TestEnvoyExpositionAgrees reads every series of both namings after the
// same traffic: each family of the default naming has the same number of
// series and the same total in the Envoy naming, and ?usedonly leaves out
// the stats never reported to.
func TestEnvoyExpositionAgrees(t *testing.T) {
	s, envoy, sightline := newEnvoyStore(t)
	useEverything(s, "primary")
	s.Flush()
	envoyBody, _ := scrape(t, envoy, "/stats/prometheus", "")
	sightlineBody, _ := scrape(t, sightline, "/stats/prometheus", "")
	ours, theirs := parse(t, sightlineBody), parse(t, envoyBody)
	for _, tt := range []struct{ sightline, envoy string }{
		{"sightline_cluster_upstream_rq_total", "envoy_cluster_upstream_rq_total"},
		{"sightline_cluster_upstream_rq_completed_total", "envoy_cluster_upstream_rq"},
		{"sightline_cluster_upstream_rq_xx_total", "envoy_cluster_upstream_rq_xx"},
		{"sightline_cluster_membership_hosts", "envoy_cluster_membership_total"},
		{"sightline_http_downstream_rq_xx_total", "envoy_http_downstream_rq_xx"},
		{"sightline_listener_downstream_cx_total", "envoy_listener_downstream_cx_total"},
		{"sightline_accesslog_written_total", "envoy_accesslog_written"},
		{"sightline_server_config_reload_total", "envoy_server_config_reload"},
	} {
		o, e := ours[tt.sightline], theirs[tt.envoy]
		if o == nil || e == nil {
			t.Errorf("%s: %v, %s: %v; want both", tt.sightline, o != nil, tt.envoy, e != nil)
			continue
		}
		if len(o.GetMetric()) != len(e.GetMetric()) || sum(o) != sum(e) {
			t.Errorf("%s has %d series summing to %v, %s %d summing to %v", tt.sightline, len(o.GetMetric()), sum(o), tt.envoy, len(e.GetMetric()), sum(e))
		}
	}

	checkUsedOnly(t, envoy, envoyBody, `envoy_cluster_upstream_rq_total{envoy_cluster_name="primary"} 3`, `envoy_cluster_upstream_rq_timeout{`)
	// The default naming takes usedonly too, and keeps every used series.
	usedOurs := checkUsedOnly(t, sightline, sightlineBody, `sightline_cluster_upstream_rq_total{cluster_name="primary"} 3`, `sightline_cluster_upstream_rq_timeout_total{`)
	for name, f := range parse(t, usedOurs) {
		if all := ours[name]; all == nil || f.GetType() == dto.MetricType_COUNTER && sum(f) != sum(all) {
			t.Errorf("?usedonly: %s differs from the whole scrape", name)
		}
	}
}

// checkUsedOnly scrapes sink with ?usedonly: the series used (a line
// that has used) stays, the one never reported to (whose name begins
// unused, which the whole scrape has) goes, and the scrape is smaller.
func checkUsedOnly(t *testing.T, sink *Sink, whole []byte, used, unused string) []byte {
	t.Helper()
	if !bytes.Contains(whole, []byte(unused)) {
		t.Fatalf("the whole scrape has no %s to leave out", unused)
	}
	body, _ := scrape(t, sink, "/stats/prometheus?usedonly", "")
	if !bytes.Contains(body, []byte(used)) || bytes.Contains(body, []byte(unused)) {
		t.Errorf("?usedonly: want %s and no %s (never reported to):\n%s", used, unused, body)
	}
	if len(body) >= len(whole) {
		t.Errorf("?usedonly is %d bytes, the whole scrape %d: want fewer", len(body), len(whole))
	}
	return body
}

// sum adds the values of a counter or gauge family's series.
func sum(f *dto.MetricFamily) float64 {
	var total float64
	for _, m := range f.GetMetric() {
		total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return total
}
