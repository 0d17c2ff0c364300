package config

import (
	"testing"
	"time"
)

func TestLoadRateLimitErrors(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		wantErr string
	}{
		{
			name: "a bucket without unit, zero tokens and a short interval",
			give: `listeners:
  - name: a
    address: 127.0.0.1:1
    local_rate_limit:
      token_bucket: {max_tokens: 0, fill_interval: 10ms}
    virtual_hosts:
      - domains: ['*']
        local_rate_limit:
          token_bucket: {max_tokens: 5, fill_interval: 1}
        routes: [{match: {prefix: /}, cluster: c}]
` + clusterC,
			wantErr: "main.yaml:5:34: listeners[0].local_rate_limit.token_bucket.max_tokens: must be greater than 0 (e.g. max_tokens: 100)\n" +
				"main.yaml:5:52: listeners[0].local_rate_limit.token_bucket.fill_interval: must be at least 50ms, got 10ms (Envoy's minimum too; e.g. fill_interval: 1s)\n" +
				"main.yaml:9:56: listeners[0].virtual_hosts[0].local_rate_limit.token_bucket.fill_interval: duration 1 has no unit (durations need a unit, e.g. 1s)",
		},
		{
			name: "no bucket at all, and unknown keys",
			give: `listeners:
  - name: a
    address: 127.0.0.1:1
    virtual_hosts:
      - domains: ['*']
        routes:
          - match: {prefix: /}
            cluster: c
            local_rate_limit: {stat_prefix: x, enable_x_ratelimit_headers: DRAFT_VERSION_3, filter_enforced: 150}
            rate_limits:
              - actions: [{remote_adress: {}}]
` + clusterC,
			wantErr: "main.yaml:9:31: listeners[0].virtual_hosts[0].routes[0].local_rate_limit: must set token_bucket or descriptors (e.g. token_bucket: {max_tokens: 100, tokens_per_fill: 100, fill_interval: 1s})\n" +
				"main.yaml:9:76: listeners[0].virtual_hosts[0].routes[0].local_rate_limit.enable_x_ratelimit_headers: must be one of OFF, DRAFT_VERSION_03, got \"DRAFT_VERSION_3\" (did you mean \"DRAFT_VERSION_03\"?)\n" +
				"main.yaml:9:110: listeners[0].virtual_hosts[0].routes[0].local_rate_limit.filter_enforced: must be from 0 to 100, got 150\n" +
				"main.yaml:11:27: listeners[0].virtual_hosts[0].routes[0].rate_limits[0].actions[0]: must set one action (one of request_headers, remote_address, generic_key, header_value_match)\n" +
				"main.yaml:11:28: listeners[0].virtual_hosts[0].routes[0].rate_limits[0].actions[0]: unknown key \"remote_adress\" (did you mean \"remote_address\"?)",
		},
		{
			name: "actions: none, two in one, bad header, empty values",
			give: `listeners:
  - name: a
    address: 127.0.0.1:1
    virtual_hosts:
      - domains: ['*']
        rate_limits:
          - actions: []
          - actions:
              - {remote_address: {}, generic_key: {descriptor_value: x}}
              - request_headers: {header_name: 'x user', descriptor_key: ''}
              - header_value_match: {descriptor_value: ''}
        routes: [{match: {prefix: /}, cluster: c}]
` + clusterC,
			wantErr: "main.yaml:7:22: listeners[0].virtual_hosts[0].rate_limits[0].actions: must list at least one action (e.g. actions: [{remote_address: {}}])\n" +
				"main.yaml:9:17: listeners[0].virtual_hosts[0].rate_limits[1].actions[0]: must set only one action, got remote_address and generic_key (put each action in an entry of its own)\n" +
				"main.yaml:10:48: listeners[0].virtual_hosts[0].rate_limits[1].actions[1].request_headers.header_name: \"x user\" is not a header name (a header name, or one of :path, :authority, :method)\n" +
				"main.yaml:10:74: listeners[0].virtual_hosts[0].rate_limits[1].actions[1].request_headers.descriptor_key: must not be empty (the key the rate limit service's config (or a local descriptor) names)\n" +
				"main.yaml:11:37: listeners[0].virtual_hosts[0].rate_limits[1].actions[2].header_value_match.headers: must list at least one header matcher (e.g. headers: [{name: x-tier, exact: free}])\n" +
				"main.yaml:11:56: listeners[0].virtual_hosts[0].rate_limits[1].actions[2].header_value_match.descriptor_value: must not be empty",
		},
		{
			name: "a rate limit service on an unknown cluster, with no domain",
			give: `listeners:
  - name: a
    address: 127.0.0.1:1
    rate_limit: {cluster: ratelimt, timeout: 0s, status: 200}
    virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, cluster: c}]}]
clusters:
  - {name: c, endpoints: [{address: 127.0.0.1:1}]}
  - {name: ratelimit, endpoints: [{address: 127.0.0.1:2}]}
`,
			wantErr: "main.yaml:4:17: listeners[0].rate_limit.domain: must not be empty (the domain of the rate limit service's config, e.g. domain: edge)\n" +
				"main.yaml:4:27: listeners[0].rate_limit.cluster: unknown cluster \"ratelimt\" (did you mean \"ratelimit\"?)\n" +
				"main.yaml:4:46: listeners[0].rate_limit.timeout: must be greater than 0, got 0s (20ms by default)\n" +
				"main.yaml:4:58: listeners[0].rate_limit.status: must be from 400 to 599, got 200 (429 (Too Many Requests) is the default)",
		},
		{
			name: "a rate limit service on an HTTP/1.1 cluster, or with tls",
			give: `listeners:
  - name: a
    address: 127.0.0.1:1
    rate_limit: {domain: d, cluster: rl1}
    virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, cluster: c}]}]
  - name: b
    address: 127.0.0.1:2
    rate_limit: {domain: d, cluster: rltls}
    virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, cluster: c}]}]
clusters:
  - {name: c, endpoints: [{address: 127.0.0.1:1}]}
  - {name: rl1, protocol: http1, endpoints: [{address: 127.0.0.1:2}]}
  - {name: rltls, tls: {sni: rls}, endpoints: [{address: 127.0.0.1:3}]}
`,
			wantErr: "main.yaml:4:38: listeners[0].rate_limit.cluster: cluster \"rl1\" has protocol http1; the rate limit service speaks gRPC (give the rate limit service a cluster of its own with protocol http2)\n" +
				"main.yaml:8:38: listeners[1].rate_limit.cluster: cluster \"rltls\" has tls, which the rate limit client does not use (the rate limit service is reached in plaintext (h2c))",
		},
		{
			name: "a descriptor without entries or bucket",
			give: `listeners:
  - name: a
    address: 127.0.0.1:1
    local_rate_limit:
      descriptors:
        - entries: []
          token_bucket: {max_tokens: 1}
    virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, cluster: c}]}]
` + clusterC,
			wantErr: "main.yaml:6:20: listeners[0].local_rate_limit.descriptors[0].entries: must list at least one entry (e.g. entries: [{key: remote_address}]: a bucket per client address)\n" +
				"main.yaml:7:25: listeners[0].local_rate_limit.descriptors[0].token_bucket.fill_interval: must be set (e.g. fill_interval: 1s)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inDir(t, map[string]string{"main.yaml": tt.give})
			if got := loadProblems(t, "main.yaml"); got != tt.wantErr {
				t.Errorf("problems:\n%s\nwant:\n%s", got, tt.wantErr)
			}
		})
	}
}

func TestLoadRateLimitDefaults(t *testing.T) {
	inDir(t, map[string]string{"main.yaml": `listeners:
  - name: a
    address: 127.0.0.1:1
    stat_prefix: edge
    local_rate_limit:
      token_bucket: {max_tokens: 10, fill_interval: 1s}
    rate_limit: {domain: d, cluster: c}
    virtual_hosts:
      - domains: ['*']
        rate_limits: [{actions: [{generic_key: {descriptor_value: v}}, {header_value_match: {descriptor_value: m, headers: [{name: x, present: true}]}}]}]
        routes: [{match: {prefix: /}, cluster: c}]
` + clusterC})
	cfg, err := Load("main.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Listeners[0]
	rl := l.LocalRateLimit
	if rl.StatPrefix != "edge" || rl.TokenBucket.TokensPerFill != 1 || !*rl.AlwaysConsumeDefaultTokenBucket ||
		*rl.FilterEnabled != 100 || *rl.FilterEnforced != 100 || rl.Status != 429 || !*rl.RateLimitedAsResourceExhausted ||
		rl.EnableXRateLimitHeaders != XRateLimitOff || rl.MaxDynamicDescriptors != 1024 {
		t.Errorf("local_rate_limit defaults: %+v", rl)
	}
	if g := l.RateLimit; g.Timeout.D() != 20*time.Millisecond || g.Status != 429 || g.FailureModeDeny {
		t.Errorf("rate_limit defaults: %+v", g)
	}
	acts := l.VirtualHosts[0].RateLimits[0].Actions
	if acts[0].GenericKey.DescriptorKey != "generic_key" || acts[1].HeaderValueMatch.DescriptorKey != "header_match" || !*acts[1].HeaderValueMatch.ExpectMatch {
		t.Errorf("action defaults: %+v %+v", acts[0].GenericKey, acts[1].HeaderValueMatch)
	}
}
