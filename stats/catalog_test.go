package stats

import (
	"slices"
	"strings"
	"testing"
)

func defByFlat(t *testing.T, flat string) *Def {
	t.Helper()
	for _, d := range Catalog() {
		if d.Flat() == flat {
			return d
		}
	}
	t.Fatalf("no stat %q in the catalog", flat)
	return nil
}

// TestContractStats checks every stat of the contract's table: it exists
// with that flat name and kind, and where the table names the Prometheus
// family, with that family (as units: ms names it) and label set.
func TestContractStats(t *testing.T) {
	const (
		c = "cluster.{cluster_name}."
		z = c + "zone.{from_zone}.{to_zone}."
		g = c + "grpc.{grpc_service}.{grpc_method}."
		h = "http.{http_conn_manager_prefix}."
		l = "listener.{listener_address}."
		a = "accesslog.{accesslog_name}."
	)
	tests := []struct {
		give     string
		kind     Kind
		wantProm string   // "" where the contract says "same rule"
		wantTags []string // nil: not checked
	}{
		{give: c + "upstream_rq_total", kind: KindCounter, wantProm: "sightline_cluster_upstream_rq_total", wantTags: []string{TagCluster}},
		{give: c + "upstream_rq_{response_code}", kind: KindCounter, wantProm: "sightline_cluster_upstream_rq_completed_total", wantTags: []string{TagCluster, TagResponseCode}},
		{give: c + "upstream_rq_{response_code_class}xx", kind: KindCounter, wantProm: "sightline_cluster_upstream_rq_xx_total", wantTags: []string{TagCluster, TagResponseClass}},
		{give: c + "upstream_rq_time", kind: KindHistogram, wantProm: "sightline_cluster_upstream_rq_time", wantTags: []string{TagCluster}},
		{give: c + "upstream_rq_active", kind: KindGauge, wantProm: "sightline_cluster_upstream_rq_active"},
		{give: c + "upstream_rq_pending_active", kind: KindGauge},
		{give: c + "upstream_rq_retry", kind: KindCounter, wantProm: "sightline_cluster_upstream_rq_retry_total"},
		{give: c + "upstream_rq_retry_success", kind: KindCounter},
		{give: c + "upstream_rq_timeout", kind: KindCounter},
		{give: c + "upstream_rq_per_try_timeout", kind: KindCounter},
		{give: c + "upstream_rq_pending_overflow", kind: KindCounter},
		{give: c + "upstream_rq_rx_reset", kind: KindCounter},
		{give: c + "upstream_rq_tx_reset", kind: KindCounter},
		{give: c + "upstream_cx_total", kind: KindCounter},
		{give: c + "upstream_cx_connect_fail", kind: KindCounter},
		{give: c + "upstream_cx_connect_timeout", kind: KindCounter},
		{give: c + "upstream_cx_destroy", kind: KindCounter},
		{give: c + "upstream_cx_active", kind: KindGauge},
		{give: c + "membership_total", kind: KindGauge},
		{give: c + "membership_healthy", kind: KindGauge, wantProm: "sightline_cluster_membership_healthy"},
		{give: c + "health_check.attempt", kind: KindCounter, wantProm: "sightline_cluster_health_check_attempt_total"},
		{give: c + "health_check.success", kind: KindCounter},
		{give: c + "health_check.failure", kind: KindCounter},
		{give: c + "health_check.healthy", kind: KindGauge},
		{give: c + "outlier_detection.ejections_enforced_total", kind: KindCounter},
		{give: c + "outlier_detection.ejections_active", kind: KindGauge},
		{give: c + "circuit_breakers.default.rq_open", kind: KindGauge, wantProm: "sightline_cluster_circuit_breakers_default_rq_open"},
		{give: c + "circuit_breakers.default.cx_open", kind: KindGauge},
		{give: c + "circuit_breakers.default.rq_pending_open", kind: KindGauge},
		{give: c + "circuit_breakers.default.rq_retry_open", kind: KindGauge},
		{give: c + "lb_zone_routing_all_directly", kind: KindCounter},
		{give: c + "lb_zone_routing_sampled", kind: KindCounter},
		{give: c + "lb_zone_routing_cross_zone", kind: KindCounter},
		{give: c + "lb_healthy_panic", kind: KindCounter},
		{give: z + "upstream_rq_{response_code_class}xx", kind: KindCounter, wantProm: "sightline_cluster_zone_upstream_rq_xx_total",
			wantTags: []string{TagCluster, TagFromZone, TagToZone, TagResponseClass}},
		{give: z + "upstream_rq_{response_code}", kind: KindCounter},
		{give: z + "upstream_rq_time", kind: KindHistogram},
		{give: g + "total", kind: KindCounter, wantProm: "sightline_cluster_grpc_total", wantTags: []string{TagCluster, TagGRPCService, TagGRPCMethod}},
		{give: g + "success", kind: KindCounter},
		{give: g + "failure", kind: KindCounter},
		{give: g + "{grpc_status}", kind: KindCounter, wantProm: "sightline_cluster_grpc_completed_total",
			wantTags: []string{TagCluster, TagGRPCService, TagGRPCMethod, TagGRPCStatus}},
		{give: g + "upstream_rq_time", kind: KindHistogram},
		{give: h + "downstream_rq_total", kind: KindCounter, wantProm: "sightline_http_downstream_rq_total", wantTags: []string{TagHTTPPrefix}},
		{give: h + "downstream_rq_{response_code_class}xx", kind: KindCounter},
		{give: h + "downstream_rq_time", kind: KindHistogram},
		{give: h + "downstream_rq_active", kind: KindGauge},
		{give: h + "downstream_cx_total", kind: KindCounter},
		{give: h + "downstream_cx_active", kind: KindGauge},
		{give: h + "downstream_cx_http2_total", kind: KindCounter},
		{give: h + "no_route", kind: KindCounter},
		{give: h + "no_cluster", kind: KindCounter},
		{give: h + "rq_direct_response", kind: KindCounter},
		{give: l + "downstream_cx_total", kind: KindCounter, wantProm: "sightline_listener_downstream_cx_total", wantTags: []string{TagListener}},
		{give: l + "downstream_cx_active", kind: KindGauge},
		{give: "server.uptime", kind: KindGauge, wantProm: "sightline_server_uptime", wantTags: []string{}},
		{give: "server.memory_allocated", kind: KindGauge},
		{give: "server.concurrency", kind: KindGauge},
		{give: "server.live", kind: KindGauge},
		{give: "server.config_reload", kind: KindCounter},
		{give: "server.config_reload_failed", kind: KindCounter},
		{give: "server.go.gc_pause_ms", kind: KindHistogram},
		{give: "server.go.goroutines", kind: KindGauge},
		{give: a + "written", kind: KindCounter, wantProm: "sightline_accesslog_written_total"},
		{give: a + "dropped", kind: KindCounter},
		{give: a + "flushes", kind: KindCounter},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			d := defByFlat(t, tt.give)
			if d.Kind() != tt.kind {
				t.Errorf("kind = %v, want %v", d.Kind(), tt.kind)
			}
			if tt.wantProm != "" && d.PrometheusMsName("sightline") != tt.wantProm {
				t.Errorf("Prometheus family = %q, want %q", d.PrometheusMsName("sightline"), tt.wantProm)
			}
			if tt.wantTags != nil && !slices.Equal(d.TagKeys(), tt.wantTags) {
				t.Errorf("tags = %v, want %v", d.TagKeys(), tt.wantTags)
			}
		})
	}
}

// TestPrometheusRule checks the family rule on every stat: dots as
// underscores, counters and only counters ending in _total, and no unit
// abbreviation, which promtool refuses.
func TestPrometheusRule(t *testing.T) {
	for _, d := range Catalog() {
		name := d.PrometheusName("sightline")
		if strings.ContainsAny(name, ".{}") {
			t.Errorf("%s: family %q is not a Prometheus name", d.Flat(), name)
		}
		if isTotal := strings.HasSuffix(name, "_total"); isTotal != (d.Kind() == KindCounter) {
			t.Errorf("%s: %v family %q: only counters end in _total", d.Flat(), d.Kind(), name)
		}
		if u := d.PrometheusUnit(); u != "" && !strings.HasSuffix(strings.TrimSuffix(name, "_total"), "_"+u) {
			t.Errorf("%s: family %q does not end in its unit %q", d.Flat(), name, u)
		}
		if strings.HasSuffix(name, "_ms") {
			t.Errorf("%s: family %q has a unit abbreviation", d.Flat(), name)
		}
		if d.Help() == "" {
			t.Errorf("%s: no help", d.Flat())
		}
		if (d.Kind() == KindHistogram) != (d.Unit() == "ms") {
			t.Errorf("%s: %v with unit %q: histograms and only histograms are in ms", d.Flat(), d.Kind(), d.Unit())
		}
	}
}

// TestPrometheusBaseUnits checks the default families: durations in
// seconds and sizes in bytes, named at the end, before _total.
func TestPrometheusBaseUnits(t *testing.T) {
	tests := []struct {
		flat, want, wantMs, wantUnit string
	}{
		{"cluster.{cluster_name}.upstream_rq_time", "sightline_cluster_upstream_rq_time_seconds", "sightline_cluster_upstream_rq_time", "seconds"},
		{"cluster.{cluster_name}.upstream_cx_connect_ms", "sightline_cluster_upstream_cx_connect_time_seconds", "sightline_cluster_upstream_cx_connect_time", "seconds"},
		{"server.go.gc_pause_ms", "sightline_server_go_gc_pause_time_seconds", "sightline_server_go_gc_pause_time", "seconds"},
		{"server.uptime", "sightline_server_uptime_seconds", "sightline_server_uptime", "seconds"},
		{"server.memory_allocated", "sightline_server_memory_allocated_bytes", "sightline_server_memory_allocated", "bytes"},
		{"http.{http_conn_manager_prefix}.downstream_cx_rx_bytes_total", "sightline_http_downstream_cx_rx_bytes_total", "sightline_http_downstream_cx_rx_bytes_total", "bytes"},
		{"cluster.{cluster_name}.upstream_rq_total", "sightline_cluster_upstream_rq_total", "sightline_cluster_upstream_rq_total", ""},
	}
	for _, tt := range tests {
		t.Run(tt.flat, func(t *testing.T) {
			d := defByFlat(t, tt.flat)
			if got := d.PrometheusName("sightline"); got != tt.want {
				t.Errorf("PrometheusName = %q, want %q", got, tt.want)
			}
			if got := d.PrometheusMsName("sightline"); got != tt.wantMs {
				t.Errorf("PrometheusMsName = %q, want %q", got, tt.wantMs)
			}
			if got := d.PrometheusUnit(); got != tt.wantUnit {
				t.Errorf("PrometheusUnit = %q, want %q", got, tt.wantUnit)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		flat string // the Def's pattern
		give []string
		want string
	}{
		{"dotted cluster", "cluster.{cluster_name}.upstream_rq_total", []string{"api.example.com"}, "cluster.api.example.com.upstream_rq_total"},
		{"response code", "cluster.{cluster_name}.upstream_rq_{response_code}", []string{"api.example.com", "503"}, "cluster.api.example.com.upstream_rq_503"},
		{"response class", "cluster.{cluster_name}.upstream_rq_{response_code_class}xx", []string{"primary", "2"}, "cluster.primary.upstream_rq_2xx"},
		{"zone pair code", "cluster.{cluster_name}.zone.{from_zone}.{to_zone}.upstream_rq_{response_code}", []string{"a.b", "zone-a", "zone-b", "200"}, "cluster.a.b.zone.zone-a.zone-b.upstream_rq_200"},
		{"zone pair time", "cluster.{cluster_name}.zone.{from_zone}.{to_zone}.upstream_rq_time", []string{"primary", "us-east-1a", "us-east-1b"}, "cluster.primary.zone.us-east-1a.us-east-1b.upstream_rq_time"},
		{"dotted service", "cluster.{cluster_name}.grpc.{grpc_service}.{grpc_method}.total", []string{"primary", "grpc.testing.TestService", "UnaryCall"}, "cluster.primary.grpc.grpc.testing.TestService.UnaryCall.total"},
		{"dotted service and cluster", "cluster.{cluster_name}.grpc.{grpc_service}.{grpc_method}.{grpc_status}", []string{"api.example.com", "grpc.health.v1.Health", "Check", "14"}, "cluster.api.example.com.grpc.grpc.health.v1.Health.Check.14"},
		{"grpc status 0", "cluster.{cluster_name}.grpc.{grpc_service}.{grpc_method}.{grpc_status}", []string{"c", "S", "M", "0"}, "cluster.c.grpc.S.M.0"},
		{"grpc time", "cluster.{cluster_name}.grpc.{grpc_service}.{grpc_method}.upstream_rq_time", []string{"c", "pkg.v1.S", "M"}, "cluster.c.grpc.pkg.v1.S.M.upstream_rq_time"},
		{"ipv4 listener", "listener.{listener_address}.downstream_cx_total", []string{"127.0.0.1:10000"}, "listener.127.0.0.1:10000.downstream_cx_total"},
		{"ipv6 listener", "listener.{listener_address}.downstream_cx_active", []string{"[::1]:10000"}, "listener.[::1]:10000.downstream_cx_active"},
		{"ipv6 listener full", "listener.{listener_address}.downstream_cx_total", []string{"[2001:db8::1]:443"}, "listener.[2001:db8::1]:443.downstream_cx_total"},
		{"http class", "http.{http_conn_manager_prefix}.downstream_rq_{response_code_class}xx", []string{"ingress_http", "5"}, "http.ingress_http.downstream_rq_5xx"},
		{"dotted access log", "accesslog.{accesslog_name}.written", []string{"ingress.0"}, "accesslog.ingress.0.written"},
		{"no tags", "server.go.gc_pause_ms", []string{}, "server.go.gc_pause_ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := defByFlat(t, tt.flat)
			got := d.FlatName(tt.give)
			if got != tt.want {
				t.Fatalf("FlatName(%q) = %q, want %q", tt.give, got, tt.want)
			}
			pd, values, ok := Parse(got)
			if !ok {
				t.Fatalf("Parse(%q) found nothing", got)
			}
			if pd != d || !slices.Equal(values, tt.give) {
				t.Errorf("Parse(%q) = %s %q, want %s %q", got, pd.Flat(), values, d.Flat(), tt.give)
			}
		})
	}
}

// TestRoundTripCatalog renders and parses every stat with dotted values
// wherever a tag may hold dots.
func TestRoundTripCatalog(t *testing.T) {
	sample := map[string]string{
		TagCluster: "api.example.com", TagFromZone: "zone-a", TagToZone: "zone-b",
		TagResponseCode: "404", TagResponseClass: "4", TagGRPCService: "grpc.testing.TestService",
		TagGRPCMethod: "StreamingCall", TagGRPCStatus: "16", TagHTTPPrefix: "ingress.http",
		TagListener: "[::1]:10000", TagAccessLog: "ingress.0", TagSink: "statsd_1",
		TagLocalRateLimit: "edge.per_client",
	}
	for _, d := range Catalog() {
		values := make([]string, len(d.TagKeys()))
		for i, k := range d.TagKeys() {
			values[i] = sample[k]
		}
		flat := d.FlatName(values)
		pd, got, ok := Parse(flat)
		if !ok || pd != d || !slices.Equal(got, values) {
			t.Errorf("Parse(%q) = %v %q %v, want %s %q", flat, pd, got, ok, d.Flat(), values)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, give := range []string{
		"",
		"cluster.a.upstream_rq_999",
		"cluster.a.upstream_rq_6xx",
		"cluster.a.grpc.S.M.17",
		"cluster.a.grpc.S.M.01",
		"cluster..upstream_rq_total",
		"cluster.a.zone.x.y.z.upstream_rq_time.extra",
		"nope",
	} {
		if d, values, ok := Parse(give); ok {
			t.Errorf("Parse(%q) = %s %q, want no match", give, d.Flat(), values)
		}
	}
}

func TestResolve(t *testing.T) {
	for _, d := range Catalog() {
		tags := map[string]string{}
		want := make([]string, len(d.TagKeys()))
		for i, k := range d.TagKeys() {
			tags[k] = "v" + k
			want[i] = "v" + k
		}
		got, values, err := Resolve(d.Name(), tags)
		if err != nil || got != d || !slices.Equal(values, want) {
			t.Errorf("Resolve(%q) = %v %q %v", d.Name(), got, values, err)
		}
	}
	if _, _, err := Resolve("cluster.nope", nil); err == nil {
		t.Error("Resolve of an unknown name succeeded")
	}
}
