package envoyconf

import (
	"fmt"
	"strings"
	"testing"
)

// TestImportErrors checks that what cannot be imported is an error that
// names the Envoy field, and its line when the bootstrap is YAML.
func TestImportErrors(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		isJSON  bool
		wantErr []string
	}{
		{
			name:    "unknown field",
			give:    "static_resources:\n  clusters:\n  - name: a\n    bogus_key: 1\n",
			wantErr: []string{"line 4:", `unknown field "bogus_key"`},
		},
		{
			name:    "unknown field in JSON",
			give:    `{"static_resources": {"clusters": [{"name": "a", "bogus_key": 1}]}}`,
			isJSON:  true,
			wantErr: []string{`unknown field "bogus_key"`},
		},
		{
			name: "auth filter",
			give: `static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 1}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              failure_mode_allow: false
          - name: envoy.filters.http.router
          route_config:
            virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: c}}]}]
`,
			wantErr: []string{"line 13: ", "http_filters[envoy.filters.http.ext_authz].typed_config", "Sightline has no HTTP filter envoy.extensions.filters.http.ext_authz.v3.ExtAuthz", "--skip-unsupported"},
		},
		{
			name: "named-only unknown filter",
			give: `static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 1}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          http_filters:
          - name: envoy.filters.http.jwt_authn
          - name: envoy.filters.http.router
          route_config:
            virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: c}}]}]
`,
			wantErr: []string{"http_filters[envoy.filters.http.jwt_authn]", "Sightline has no HTTP filter envoy.filters.http.jwt_authn"},
		},
		{
			name:    "missing route configuration",
			give:    "static_resources:\n  listeners:\n  - name: l\n    address: {socket_address: {address: 127.0.0.1, port_value: 1}}\n    filter_chains:\n    - filters:\n      - name: hcm\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n          stat_prefix: x\n          rds: {route_config_name: missing, config_source: {ads: {}}}\n",
			wantErr: []string{`rds.route_config_name: no route configuration named "missing"`},
		},
		{
			name:    "EDS cluster without endpoints",
			give:    "static_resources:\n  clusters:\n  - name: a\n    type: EDS\n    eds_cluster_config: {eds_config: {ads: {}}}\n",
			wantErr: []string{"line 5: ", `clusters[a].eds_cluster_config: no cluster load assignment named "a"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Import([]byte(tc.give), tc.isJSON)
			if err == nil {
				t.Fatal("Import succeeded, want an error")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestHeaderRemovalOfEnvoyHeaders checks that removing Envoy's own
// response headers is dropped with a note (Sightline never sends them),
// while removing any other header is refused.
func TestHeaderRemovalOfEnvoyHeaders(t *testing.T) {
	const tmpl = `static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 1}}
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          http_filters: [{name: envoy.filters.http.router}]
          route_config:
            response_headers_to_remove: [%s]
            virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: c}}]}]
  clusters:
  - name: c
    load_assignment: {cluster_name: c, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 2}}}}]}]}
`
	_, skipped, err := Import([]byte(fmt.Sprintf(tmpl, "x-envoy-upstream-service-time, X-Envoy-Decorator-Operation")), false)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range skipped {
		found = found || strings.HasSuffix(s.Path, "route_config.response_headers_to_remove")
	}
	if !found {
		t.Errorf("skipped %v, want route_config.response_headers_to_remove", skipped)
	}
	if _, _, err := Import([]byte(fmt.Sprintf(tmpl, "x-envoy-upstream-service-time, server")), false); err == nil || !strings.Contains(err.Error(), "response_headers_to_remove: Sightline has no header mutations") {
		t.Errorf("removing server: %v, want it refused", err)
	}
}

// TestPerRouteLocalRateLimit checks that a route's local rate limit is
// carried when its HTTP connection manager has the local_ratelimit filter
// (with Envoy's enabled and enforced percentages written out), and
// skipped when it has not, since Envoy would not apply it either.
func TestPerRouteLocalRateLimit(t *testing.T) {
	const tmpl = `static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 1}}
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          http_filters:%s
          - name: envoy.filters.http.router
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
              - match: {prefix: /}
                route: {cluster: c}
                typed_per_filter_config:
                  envoy.filters.http.local_ratelimit:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
                    stat_prefix: route_rl
                    token_bucket: {max_tokens: 10, fill_interval: 1s}
                    filter_enabled: {default_value: {numerator: 100}}
  clusters:
  - name: c
    load_assignment: {cluster_name: c, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 2}}}}]}]}
`
	filter := `
          - name: envoy.filters.http.local_ratelimit
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit, stat_prefix: rl}`
	doc, _, err := Import([]byte(fmt.Sprintf(tmpl, filter)), false)
	if err != nil {
		t.Fatal(err)
	}
	cfg := loads(t, doc)
	rl := cfg.Listeners[0].VirtualHosts[0].Routes[0].LocalRateLimit
	if rl == nil || rl.TokenBucket == nil || rl.TokenBucket.MaxTokens != 10 || rl.FilterEnabled == nil || *rl.FilterEnabled != 100 ||
		rl.FilterEnforced == nil || *rl.FilterEnforced != 0 {
		t.Errorf("route local_rate_limit %+v, want 10 tokens, enabled 100%%, enforced 0%% (Envoy's default)", rl)
	}
	if cfg.Listeners[0].LocalRateLimit != nil {
		t.Errorf("listener local_rate_limit %+v, want none: the filter has no bucket of its own", cfg.Listeners[0].LocalRateLimit)
	}

	doc, skipped, err := Import([]byte(fmt.Sprintf(tmpl, "")), false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := loads(t, doc); cfg.Listeners[0].VirtualHosts[0].Routes[0].LocalRateLimit != nil {
		t.Error("a per-route local rate limit without the filter was carried")
	}
	if len(skipped) != 1 || !strings.Contains(skipped[0].Why, "no local_ratelimit filter") {
		t.Errorf("skipped %v, want the per-route config", skipped)
	}
}
