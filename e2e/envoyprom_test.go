package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/testtool"
)

// promSample is one series of an instant query's result.
type promSample struct {
	labels map[string]string
	value  float64
}

// vector runs an instant query and returns every series, without the
// metric name and the scrape's job and instance labels.
func (p *promServer) vector(expr string) ([]promSample, error) {
	data, err := p.get("/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return nil, err
	}
	var res struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, err
	}
	out := make([]promSample, len(res.Result))
	for i, r := range res.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: value %q: %w", expr, s, err)
		}
		maps.DeleteFunc(r.Metric, func(k, _ string) bool { return k == "job" || k == "instance" || k == "__name__" })
		out[i] = promSample{labels: r.Metric, value: v}
	}
	return out, nil
}

// TestEnvoyNamingDashboardQueries runs queries as Envoy dashboards write
// them (Envoy's documented stat names, envoy_ families and labels) against
// a real Prometheus scraping a proxy with stats.prometheus.naming: envoy,
// under traffic of every kind. The rates and the quantile must come back
// for the clusters and prefixes that had traffic; once the traffic has
// stopped, the counters and gauges Prometheus holds must be the proxy's
// own /stats values, under the Envoy names.
func TestEnvoyNamingDashboardQueries(t *testing.T) {
	promBin := testtool.Look(t, "prometheus")
	env := startObservedEnv(t, "naming: envoy")
	prom := startPrometheus(t, promBin, env.p.admin)
	prom.waitScrapes(t, 6)
	env.traffic.check(t)

	// Rates and quantiles over the traffic, as dashboards chart them.
	wantSeries := func(expr, label string, want ...string) []promSample {
		t.Helper()
		got, err := prom.vector(expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		var values []string
		for _, s := range got {
			values = append(values, s.labels[label])
			if s.value <= 0 {
				t.Errorf("%s: %v = %v, want more than 0", expr, s.labels, s.value)
			}
		}
		for _, w := range want {
			if !slices.Contains(values, w) {
				t.Errorf("%s: no series with %s=%q (got %q)", expr, label, w, values)
			}
		}
		return got
	}
	wantSeries(`sum(rate(envoy_cluster_upstream_rq_total[1m])) by (envoy_cluster_name)`,
		"envoy_cluster_name", "primary", "canary", "shadow", "web")
	for _, s := range wantSeries(`histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket[1m])) by (le, envoy_cluster_name))`,
		"envoy_cluster_name", "primary", "web") {
		// Loopback backends answer in milliseconds: a p99 in seconds would
		// mean the buckets are not Envoy's milliseconds.
		if s.value > 1000 {
			t.Errorf("p99 of %v: %v ms, want under a second", s.labels, s.value)
		}
	}
	wantSeries(`sum(rate(envoy_http_downstream_rq_xx[1m])) by (envoy_http_conn_manager_prefix)`,
		"envoy_http_conn_manager_prefix", "ingress_http", "edge_http")
	fivexx, err := prom.scalar(`sum(rate(envoy_cluster_upstream_rq_xx{envoy_response_code_class="5"}[1m]))`)
	if err != nil || fivexx <= 0 {
		t.Errorf("5xx rate: %v (%v), want more than 0: the web backend fails /web/fail with 503", fivexx, err)
	}

	// Then the values themselves, once the traffic is over and the last
	// flush scraped: each series as /stats has it under its flat name.
	env.traffic.stop()
	<-env.traffic.done
	// Both listeners are configured at 127.0.0.1:0: their stats are one
	// listener's, named by the configured address as Envoy names them.
	const listener = "listener.127.0.0.1:0"
	checks := []struct {
		expr   string
		labels func(flat string) map[string]string // the labels of the series for a flat name, or nil
		flat   []string                            // the stats the query must return, by flat name
	}{
		{
			expr:   `envoy_cluster_upstream_rq_total`,
			labels: clusterLabels(".upstream_rq_total"),
			flat:   []string{"cluster.primary.upstream_rq_total", "cluster.canary.upstream_rq_total", "cluster.web.upstream_rq_total"},
		},
		{
			expr:   `envoy_cluster_membership_healthy`,
			labels: clusterLabels(".membership_healthy"),
			flat:   []string{"cluster.primary.membership_healthy", "cluster.web.membership_healthy"},
		},
		{
			expr: `envoy_cluster_upstream_rq{envoy_cluster_name="web"}`,
			labels: func(flat string) map[string]string {
				code := strings.TrimPrefix(flat, "cluster.web.upstream_rq_")
				return map[string]string{"envoy_cluster_name": "web", "envoy_response_code": code}
			},
			flat: []string{"cluster.web.upstream_rq_200", "cluster.web.upstream_rq_503"},
		},
		{
			expr: `envoy_http_downstream_rq_xx{envoy_http_conn_manager_prefix="edge_http"}`,
			labels: func(flat string) map[string]string {
				class := strings.TrimSuffix(strings.TrimPrefix(flat, "http.edge_http.downstream_rq_"), "xx")
				return map[string]string{"envoy_http_conn_manager_prefix": "edge_http", "envoy_response_code_class": class}
			},
			flat: []string{"http.edge_http.downstream_rq_2xx", "http.edge_http.downstream_rq_4xx", "http.edge_http.downstream_rq_5xx"},
		},
		{
			expr: `envoy_listener_downstream_cx_active`,
			labels: func(flat string) map[string]string {
				addr := strings.TrimSuffix(strings.TrimPrefix(flat, "listener."), ".downstream_cx_active")
				return map[string]string{"envoy_listener_address": strings.ReplaceAll(addr, ":", "_")}
			},
			flat: []string{listener + ".downstream_cx_active"},
		},
		{
			expr: `envoy_listener_downstream_cx_total`,
			labels: func(flat string) map[string]string {
				addr := strings.TrimSuffix(strings.TrimPrefix(flat, "listener."), ".downstream_cx_total")
				return map[string]string{"envoy_listener_address": strings.ReplaceAll(addr, ":", "_")}
			},
			flat: []string{listener + ".downstream_cx_total"},
		},
	}
	for _, c := range checks {
		if err := eventually(30*time.Second, func() error {
			own, _ := statsText(t, env.p, "")
			got, err := prom.vector(c.expr)
			if err != nil {
				return err
			}
			for _, flat := range c.flat {
				want, ok := statsInt(t, own, flat)
				if !ok {
					return fmt.Errorf("/stats has no %s", flat)
				}
				labels := c.labels(flat)
				i := slices.IndexFunc(got, func(s promSample) bool { return maps.Equal(s.labels, labels) })
				if i < 0 {
					return fmt.Errorf("no series %v among %v", labels, got)
				}
				if got[i].value != float64(want) {
					return fmt.Errorf("%v = %v, /stats %s = %d", labels, got[i].value, flat, want)
				}
				if want == 0 && !strings.HasSuffix(flat, "_active") {
					return fmt.Errorf("/stats %s = 0: the traffic did not reach it", flat)
				}
			}
			return nil
		}); err != nil {
			t.Errorf("%s: %v", c.expr, err)
		}
	}
	if v, err := prom.scalar(`envoy_cluster_membership_healthy{envoy_cluster_name="primary"}`); err != nil || v != 4 {
		t.Errorf(`envoy_cluster_membership_healthy{envoy_cluster_name="primary"} = %v (%v), want 4 (five endpoints, one closed)`, v, err)
	}
}

// clusterLabels gives the labels of cluster.<name><suffix>.
func clusterLabels(suffix string) func(string) map[string]string {
	return func(flat string) map[string]string {
		name := strings.TrimSuffix(strings.TrimPrefix(flat, "cluster."), suffix)
		return map[string]string{"envoy_cluster_name": name}
	}
}
