package config

import (
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// inDir writes files (name → content) into a new temporary directory and
// makes it the working directory, so that problems name the files as the
// test wrote them.
func inDir(t *testing.T, files map[string]string) {
	t.Helper()
	t.Chdir(t.TempDir())
	for name, content := range files {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// loadProblems loads file, which must fail with Errors, and returns them
// as Errors.Error formats them.
func loadProblems(t *testing.T, file string) string {
	t.Helper()
	cfg, err := Load(file)
	var problems Errors
	if !errors.As(err, &problems) {
		t.Fatalf("Load(%q) = %v, %v; want Errors", file, cfg, err)
	}
	if cfg != nil {
		t.Errorf("Load(%q) returned a config with its errors", file)
	}
	return err.Error()
}

// clusterC is a valid cluster named c, for configs about something else.
const clusterC = "clusters: [{name: c, endpoints: [{address: 127.0.0.1:1}]}]\n"

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		file string // main.yaml unless set
		give string
		// wantErr is every problem, one a line, in order.
		wantErr string
	}{
		{
			name: "route timeout without a unit (the contract's example)",
			give: `listeners:
  - name: a
    address: 127.0.0.1:1
    virtual_hosts:
      - domains: ['*']
        routes:
          - match: {prefix: /}
            cluster: c
            timeout: 15
` + clusterC,
			wantErr: "main.yaml:9:22: listeners[0].virtual_hosts[0].routes[0].timeout: duration 15 has no unit (durations need a unit, e.g. 15s)",
		},
		{
			name: "bad durations",
			give: `server:
  drain_time: 15
  drain_timeout: soon
stats:
  flush_interval: -1s
  compact_after: -5s
listeners:
  - name: a
    address: 127.0.0.1:1
    limits: {idle_timeout: {s: 1}, header_read_timeout: 1.5}
`,
			wantErr: "main.yaml:2:15: server.drain_time: duration 15 has no unit (durations need a unit, e.g. 15s)\n" +
				"main.yaml:3:18: server.drain_timeout: invalid duration \"soon\" (use a Go duration such as 500ms, 15s or 2m)\n" +
				"main.yaml:5:19: stats.flush_interval: must not be negative, got -1s\n" +
				"main.yaml:6:18: stats.compact_after: must not be negative, got -5s\n" +
				"main.yaml:10:28: listeners[0].limits.idle_timeout: must be a duration such as 15s, got a mapping\n" +
				"main.yaml:10:57: listeners[0].limits.header_read_timeout: duration 1.5 has no unit (durations need a unit, e.g. 1.5s)",
		},
		{
			name: "tls files that cannot be read",
			give: `listeners:
  - name: a
    address: 127.0.0.1:1
    tls: {cert_file: ., key_file: missing.pem}
`,
			wantErr: "main.yaml:4:22: listeners[0].tls.cert_file: cannot read \".\": not a regular file\n" +
				"main.yaml:4:35: listeners[0].tls.key_file: cannot read \"missing.pem\": no such file or directory",
		},
		{
			name: "json input has positions too",
			file: "main.json",
			give: `{
  "admin": {"address": "127.0.0.1:9901"},
  "server": {"drain_time": 5, "drain_timeout": "10s"},
  "clusters": [
    {"name": "c", "typo": 1, "endpoints": []}
  ]
}
`,
			wantErr: "main.json:3:28: server.drain_time: duration 5 has no unit (durations need a unit, e.g. 5s)\n" +
				"main.json:5:19: clusters[0]: unknown key \"typo\" (did you mean \"type\"?)\n" +
				"main.json:5:43: clusters[0].endpoints: must list at least one endpoint",
		},
		{
			name: "unknown cluster: did you mean, or the defined ones",
			give: `listeners:
  - name: in
    address: 127.0.0.1:10000
    virtual_hosts:
      - domains: ['*']
        routes:
          - match: {prefix: /}
            cluster: primry
          - match: {prefix: /}
            cluster: zzz
          - match: {prefix: /}
            mirror: {cluster: '', percent: 150}
clusters:
  - name: primary
    endpoints: [{address: 127.0.0.1:1}]
  - name: secondary
    endpoints: [{address: 127.0.0.1:2}]
`,
			wantErr: "main.yaml:8:22: listeners[0].virtual_hosts[0].routes[0].cluster: unknown cluster \"primry\" (did you mean \"primary\"?)\n" +
				"main.yaml:10:22: listeners[0].virtual_hosts[0].routes[1].cluster: unknown cluster \"zzz\" (defined clusters: primary, secondary)\n" +
				"main.yaml:11:13: listeners[0].virtual_hosts[0].routes[2]: must set one of cluster, weighted_clusters, cluster_header or direct_response (defined clusters: primary, secondary)\n" +
				"main.yaml:12:31: listeners[0].virtual_hosts[0].routes[2].mirror.cluster: must not be empty (defined clusters: primary, secondary)\n" +
				"main.yaml:12:44: listeners[0].virtual_hosts[0].routes[2].mirror.percent: must be from 0 to 100, got 150",
		},
		{
			name: "unknown cluster when none is defined",
			give: `listeners:
  - name: in
    address: 127.0.0.1:10000
    virtual_hosts:
      - domains: ['*']
        routes:
          - match: {prefix: /}
            cluster: a
`,
			wantErr: "main.yaml:8:22: listeners[0].virtual_hosts[0].routes[0].cluster: unknown cluster \"a\" (no clusters are defined)",
		},
		{
			name: "listener names and addresses",
			give: `listeners:
  - address: localhost
  - name: b
    address: example.com:80
  - name: b
    address: 1.2.3.4:99999
  - name: d
    address: 127.0.0.1:9901
  - name: e
    address: ':8080'
  - name: f
    address: '[::]:8080'
  - name: g
    address: 127.0.0.1:0
  - name: h
    address: 127.0.0.1:0
  - name: i
    address: ''
`,
			wantErr: "main.yaml:2:5: listeners[0].name: must not be empty\n" +
				"main.yaml:2:14: listeners[0].address: invalid address \"localhost\": missing port in address (use host:port with an IP address or localhost, e.g. 127.0.0.1:10000 or :10000)\n" +
				"main.yaml:4:14: listeners[1].address: invalid address \"example.com:80\": host must be an IP address or localhost (use host:port with an IP address or localhost, e.g. 127.0.0.1:10000 or :10000)\n" +
				"main.yaml:5:11: listeners[2].name: duplicate listener name \"b\" (first defined at main.yaml:3:11)\n" +
				"main.yaml:6:14: listeners[2].address: invalid address \"1.2.3.4:99999\": port must be a number from 0 to 65535 (use host:port with an IP address or localhost, e.g. 127.0.0.1:10000 or :10000)\n" +
				"main.yaml:8:14: listeners[3].address: duplicate address \"127.0.0.1:9901\" (the admin server listens there by default; set admin.address or pick another port)\n" +
				"main.yaml:18:14: listeners[8].address: must not be empty (e.g. 127.0.0.1:10000)",
		},
		{
			name: "listener protocols and tls files",
			give: `listeners:
  - name: a
    address: 127.0.0.1:1
    protocols: [h2, http3, http1, http1]
  - name: b
    address: 127.0.0.1:2
    protocols: [h2c]
    tls: {cert_file: nope.pem, key_file: ''}
`,
			wantErr: "main.yaml:4:17: listeners[0].protocols[0]: must be one of h2c, http1 without tls, got \"h2\" (h2 needs tls; plaintext HTTP/2 is h2c)\n" +
				"main.yaml:4:21: listeners[0].protocols[1]: must be one of h2c, http1 without tls, got \"http3\" (did you mean \"http1\"?)\n" +
				"main.yaml:4:35: listeners[0].protocols[3]: duplicate protocol \"http1\" (first defined at main.yaml:4:28)\n" +
				"main.yaml:7:17: listeners[1].protocols[0]: must be one of h2, http1 with tls, got \"h2c\" (h2c is plaintext; over tls HTTP/2 is h2, chosen by ALPN)\n" +
				"main.yaml:8:22: listeners[1].tls.cert_file: cannot read \"nope.pem\": no such file or directory\n" +
				"main.yaml:8:42: listeners[1].tls.key_file: must not be empty",
		},
		{
			name: "virtual host names and domains",
			give: `listeners:
  - name: a
    address: 127.0.0.1:1
    virtual_hosts:
      - name: x
        domains: [api.example.com, '*.example.com', 'api:*', '*', 'a*b', '*.', ':*', 'API.example.com', 'www.*', '*-bar.example.com']
      - name: x
        domains: []
      - name: y
        domains: ['*']
`,
			wantErr: "main.yaml:6:67: listeners[0].virtual_hosts[0].domains[4]: invalid domain \"a*b\" (use an exact host (api.example.com), a suffix (*.example.com), a host on any port (api:*), a prefix (www.*) or *)\n" +
				"main.yaml:6:74: listeners[0].virtual_hosts[0].domains[5]: invalid domain \"*.\" (use an exact host (api.example.com), a suffix (*.example.com), a host on any port (api:*), a prefix (www.*) or *)\n" +
				"main.yaml:6:80: listeners[0].virtual_hosts[0].domains[6]: invalid domain \":*\" (use an exact host (api.example.com), a suffix (*.example.com), a host on any port (api:*), a prefix (www.*) or *)\n" +
				"main.yaml:6:86: listeners[0].virtual_hosts[0].domains[7]: duplicate domain \"API.example.com\" (first defined at main.yaml:6:19)\n" +
				"main.yaml:7:15: listeners[0].virtual_hosts[1].name: duplicate virtual host name \"x\" (first defined at main.yaml:5:15)\n" +
				"main.yaml:8:18: listeners[0].virtual_hosts[1].domains: must list at least one domain (use \"*\" to match any host)\n" +
				"main.yaml:10:19: listeners[0].virtual_hosts[2].domains[0]: duplicate domain \"*\" (first defined at main.yaml:6:62)",
		},
		{
			name: "route match and header matchers",
			give: `listeners:
  - name: a
    address: 127.0.0.1:1
    virtual_hosts:
      - domains: ['*']
        routes:
          - match: {}
            cluster: c
          - match: {prefix: /, path: /x, regex: x}
            cluster: c
          - match: {prefix: api}
            cluster: c
          - match: {path: ''}
            cluster: c
          - match: {regex: '(a'}
            cluster: c
          - match:
              prefix: /
              headers:
                - {exact: x}
                - {name: a}
                - {name: b, exact: x, regex: y}
                - {name: c, present: false, invert: true}
                - {name: d, regex: '[z'}
                - {name: e, exact: ''}
            cluster: c
clusters: [{name: c, endpoints: [{address: 127.0.0.1:1}]}]
`,
			wantErr: "main.yaml:7:20: listeners[0].virtual_hosts[0].routes[0].match: must set one of prefix, path or regex (e.g. match: {prefix: /})\n" +
				"main.yaml:9:20: listeners[0].virtual_hosts[0].routes[1].match: must set only one of prefix, path or regex, got prefix and path and regex\n" +
				"main.yaml:11:29: listeners[0].virtual_hosts[0].routes[2].match.prefix: must start with \"/\", got \"api\"\n" +
				"main.yaml:13:27: listeners[0].virtual_hosts[0].routes[3].match.path: must start with \"/\", got \"\"\n" +
				"main.yaml:15:28: listeners[0].virtual_hosts[0].routes[4].match.regex: invalid regex: error parsing regexp: missing closing ): `(a` (regexes use Go's RE2 syntax)\n" +
				"main.yaml:20:19: listeners[0].virtual_hosts[0].routes[5].match.headers[0].name: must not be empty\n" +
				"main.yaml:21:19: listeners[0].virtual_hosts[0].routes[5].match.headers[1]: must set one of exact, present or regex\n" +
				"main.yaml:22:19: listeners[0].virtual_hosts[0].routes[5].match.headers[2]: must set only one of exact, present or regex, got exact and regex\n" +
				"main.yaml:23:38: listeners[0].virtual_hosts[0].routes[5].match.headers[3].present: must be true when set (to match a missing header, use present: true with invert: true)\n" +
				"main.yaml:24:36: listeners[0].virtual_hosts[0].routes[5].match.headers[4].regex: invalid regex: error parsing regexp: missing closing ]: `[z` (regexes use Go's RE2 syntax)",
		},
		{
			name: "route targets, hashing and retries",
			give: `listeners:
  - name: a
    address: 127.0.0.1:1
    virtual_hosts:
      - domains: ['*']
        routes:
          - match: {prefix: /}
          - match: {prefix: /}
            cluster: c
            weighted_clusters: [{cluster: c, weight: 1}]
          - match: {prefix: /}
            weighted_clusters: [{cluster: d, weight: 0}, {weight: 1}]
          - match: {prefix: /}
            weighted_clusters: []
          - match: {prefix: /}
            cluster: c
            hash_policy: [{header: ''}]
            retry_policy: {retry_on: '5xx, resett,,bogus', num_retries: -1, backoff_base: 1s}
          - match: {prefix: /}
            cluster: c
            retry_policy:
clusters: [{name: c, endpoints: [{address: 127.0.0.1:1}]}]
`,
			wantErr: "main.yaml:7:13: listeners[0].virtual_hosts[0].routes[0]: must set one of cluster, weighted_clusters, cluster_header or direct_response (defined clusters: c)\n" +
				"main.yaml:8:13: listeners[0].virtual_hosts[0].routes[1]: must set only one of cluster, weighted_clusters, cluster_header or direct_response, got cluster and weighted_clusters\n" +
				"main.yaml:12:43: listeners[0].virtual_hosts[0].routes[2].weighted_clusters[0].cluster: unknown cluster \"d\" (defined clusters: c)\n" +
				"main.yaml:12:54: listeners[0].virtual_hosts[0].routes[2].weighted_clusters[0].weight: must be greater than 0\n" +
				"main.yaml:12:58: listeners[0].virtual_hosts[0].routes[2].weighted_clusters[1].cluster: must not be empty (defined clusters: c)\n" +
				"main.yaml:14:32: listeners[0].virtual_hosts[0].routes[3].weighted_clusters: must list at least one cluster\n" +
				"main.yaml:17:36: listeners[0].virtual_hosts[0].routes[4].hash_policy[0].header: must not be empty\n" +
				"main.yaml:18:38: listeners[0].virtual_hosts[0].routes[4].retry_policy.retry_on: empty retry condition in \"5xx, resett,,bogus\" (remove the extra comma)\n" +
				"main.yaml:18:38: listeners[0].virtual_hosts[0].routes[4].retry_policy.retry_on: unknown retry condition \"bogus\" (allowed: 5xx, gateway-error, reset, connect-failure, retriable-4xx, refused-stream, cancelled, deadline-exceeded, resource-exhausted, unavailable, internal)\n" +
				"main.yaml:18:38: listeners[0].virtual_hosts[0].routes[4].retry_policy.retry_on: unknown retry condition \"resett\" (did you mean \"reset\"?)\n" +
				"main.yaml:18:73: listeners[0].virtual_hosts[0].routes[4].retry_policy.num_retries: must not be negative, got -1\n" +
				"main.yaml:18:91: listeners[0].virtual_hosts[0].routes[4].retry_policy.backoff_base: must not exceed backoff_max (250ms), got 1s\n" +
				"main.yaml:21:26: listeners[0].virtual_hosts[0].routes[5].retry_policy.retry_on: must not be empty (a comma-separated list of 5xx, gateway-error, reset, connect-failure, retriable-4xx, refused-stream, cancelled, deadline-exceeded, resource-exhausted, unavailable, internal)",
		},
		{
			name: "cluster_header and direct_response",
			give: `listeners:
  - name: a
    address: 127.0.0.1:1
    virtual_hosts:
      - domains: ['*']
        routes:
          - {match: {prefix: /a}, cluster_header: 'x target'}
          - {match: {prefix: /b}, direct_response: {status: 700}}
          - {match: {prefix: /c}, direct_response: {status: 200}, retry_policy: {retry_on: 5xx}}
          - {match: {prefix: /d}, cluster_header: x-target, direct_response: {status: 200}}
          - {match: {prefix: /e}, cluster_header: x-target}
          - {match: {prefix: /f}, direct_response: {status: 503, body: 'down for maintenance'}}
clusters: [{name: c, endpoints: [{address: 127.0.0.1:1}]}]
`,
			wantErr: "main.yaml:7:51: listeners[0].virtual_hosts[0].routes[0].cluster_header: \"x target\" is not a header name (e.g. cluster_header: x-target-cluster)\n" +
				"main.yaml:8:61: listeners[0].virtual_hosts[0].routes[1].direct_response.status: must be from 200 to 599, got 700 (e.g. status: 200)\n" +
				"main.yaml:9:81: listeners[0].virtual_hosts[0].routes[2].retry_policy: has no effect on a direct_response route\n" +
				"main.yaml:10:13: listeners[0].virtual_hosts[0].routes[3]: must set only one of cluster, weighted_clusters, cluster_header or direct_response, got cluster_header and direct_response",
		},
		{
			name: "cluster fields and endpoints",
			give: `clusters:
  - endpoints: [{address: 127.0.0.1:1}]
  - name: a
    type: statc
    protocol: h2
    lb_policy: rr
    endpoints: []
  - name: a
    endpoints:
      - {address: foo:80}
      - {address: 127.0.0.1:0}
      - {address: 127.0.0.1:1, weight: 0}
      - {address: 127.0.0.1}
      - {address: 127.0.0.1:1}
    panic_threshold: 120
    zone_aware: {min_cluster_size: -1}
  - name: d
    type: strict_dns
    endpoints:
      - {address: my-service.consul:5100}
      - {address: 'bad_name-:1'}
      - {address: '10.0.0.1:53'}
`,
			wantErr: "main.yaml:2:5: clusters[0].name: must not be empty\n" +
				"main.yaml:4:11: clusters[1].type: must be one of static, strict_dns, got \"statc\" (did you mean \"static\"?)\n" +
				"main.yaml:5:15: clusters[1].protocol: must be one of http2, http1, auto, got \"h2\"\n" +
				"main.yaml:6:16: clusters[1].lb_policy: must be one of round_robin, least_request, random, ring_hash, maglev, got \"rr\"\n" +
				"main.yaml:7:16: clusters[1].endpoints: must list at least one endpoint\n" +
				"main.yaml:8:11: clusters[2].name: duplicate cluster name \"a\" (first defined at main.yaml:3:11)\n" +
				"main.yaml:10:19: clusters[2].endpoints[0].address: invalid address \"foo:80\": host must be an IP address (a static cluster needs IP addresses; use type: strict_dns to resolve names)\n" +
				"main.yaml:11:19: clusters[2].endpoints[1].address: invalid address \"127.0.0.1:0\": port must be a number from 1 to 65535 (use IP:port, e.g. 127.0.0.1:5100)\n" +
				"main.yaml:12:40: clusters[2].endpoints[2].weight: must be at least 1, got 0 (leave it out for the default, 1)\n" +
				"main.yaml:13:19: clusters[2].endpoints[3].address: invalid address \"127.0.0.1\": missing port in address (use IP:port, e.g. 127.0.0.1:5100)\n" +
				"main.yaml:14:19: clusters[2].endpoints[4].address: duplicate endpoint \"127.0.0.1:1\" (first defined at main.yaml:12:19)\n" +
				"main.yaml:15:22: clusters[2].panic_threshold: must be from 0 to 100, got 120\n" +
				"main.yaml:16:36: clusters[2].zone_aware.min_cluster_size: must not be negative, got -1\n" +
				"main.yaml:21:19: clusters[3].endpoints[1].address: invalid address \"bad_name-:1\": host must be an IP address or a DNS name (use host:port, e.g. 127.0.0.1:5100)",
		},
		{
			name: "health check, outlier detection, circuit breakers, upstream tls",
			give: `clusters:
  - name: a
    endpoints: [{address: 127.0.0.1:1}]
    health_check: {interval: 0s, timeout: 0s, healthy_threshold: 0, unhealthy_threshold: -1}
  - name: b
    endpoints: [{address: 127.0.0.1:1}]
    health_check:
      tcp:
      http: {path: healthz, expected_statuses: [200, 700, 99]}
  - name: c
    endpoints: [{address: 127.0.0.1:1}]
    health_check: {http: {}}
    outlier_detection: {consecutive_5xx: -1, max_ejection_percent: 101}
    circuit_breakers: {max_connections: -1, max_pending_requests: -2, max_requests: -3, max_retries: -4}
    tls: {ca_file: nope.pem}
`,
			wantErr: "main.yaml:4:19: clusters[0].health_check: must set one of grpc, http or tcp (e.g. grpc: {}, http: {path: /healthz} or tcp: {})\n" +
				"main.yaml:4:30: clusters[0].health_check.interval: must be greater than 0 (leave it out for the default)\n" +
				"main.yaml:4:43: clusters[0].health_check.timeout: must be greater than 0 (leave it out for the default)\n" +
				"main.yaml:4:66: clusters[0].health_check.healthy_threshold: must be at least 1, got 0\n" +
				"main.yaml:4:90: clusters[0].health_check.unhealthy_threshold: must be at least 1, got -1\n" +
				"main.yaml:8:7: clusters[1].health_check: must set only one of grpc, http or tcp, got http and tcp\n" +
				"main.yaml:9:20: clusters[1].health_check.http.path: must start with \"/\", got \"healthz\"\n" +
				"main.yaml:9:54: clusters[1].health_check.http.expected_statuses[1]: must be a status code from 100 to 599, got 700\n" +
				"main.yaml:9:59: clusters[1].health_check.http.expected_statuses[2]: must be a status code from 100 to 599, got 99\n" +
				"main.yaml:12:26: clusters[2].health_check.http.path: must not be empty (e.g. /healthz)\n" +
				"main.yaml:13:42: clusters[2].outlier_detection.consecutive_5xx: must not be negative, got -1\n" +
				"main.yaml:13:68: clusters[2].outlier_detection.max_ejection_percent: must be from 0 to 100, got 101\n" +
				"main.yaml:14:41: clusters[2].circuit_breakers.max_connections: must not be negative, got -1\n" +
				"main.yaml:14:67: clusters[2].circuit_breakers.max_pending_requests: must not be negative, got -2\n" +
				"main.yaml:14:85: clusters[2].circuit_breakers.max_requests: must not be negative, got -3\n" +
				"main.yaml:14:102: clusters[2].circuit_breakers.max_retries: must not be negative, got -4\n" +
				"main.yaml:15:20: clusters[2].tls.ca_file: cannot read \"nope.pem\": no such file or directory",
		},
		{
			name: "event log formats and files",
			give: `clusters:
  - name: a
    endpoints: [{address: 127.0.0.1:1}]
    health_check: {tcp: {}, event_log_path: hc.log, event_log_format: envoi}
  - name: b
    endpoints: [{address: 127.0.0.1:1}]
    health_check: {tcp: {}, event_log_path: shared.log, event_log_format: envoy}
  - name: c
    endpoints: [{address: 127.0.0.1:1}]
    health_check: {tcp: {}, event_log_path: shared.log}
  - name: d
    endpoints: [{address: 127.0.0.1:1}]
    outlier_detection: {event_log_path: outlier.log}
  - name: e
    endpoints: [{address: 127.0.0.1:1}]
    outlier_detection: {event_log_path: outlier.log}
    health_check: {tcp: {}, event_log_path: outlier.log}
  - name: f
    endpoints: [{address: 127.0.0.1:1}]
    outlier_detection: {event_log_path: hc.log}
`,
			wantErr: "main.yaml:4:71: clusters[0].health_check.event_log_format: must be one of sightline, envoy, got \"envoi\" (did you mean \"envoy\"?)\n" +
				"main.yaml:10:19: clusters[2].health_check.event_log_format: format \"sightline\" differs from \"envoy\" of clusters[1].health_check, which writes the same event_log_path (give both the same format, or each its own event_log_path)\n" +
				"main.yaml:17:45: clusters[4].health_check.event_log_path: \"outlier.log\" is also the event_log_path of clusters[3].outlier_detection, whose events are of another kind (give each kind of event its own file)\n" +
				"main.yaml:20:41: clusters[5].outlier_detection.event_log_path: \"hc.log\" is also the event_log_path of clusters[0].health_check, whose events are of another kind (give each kind of event its own file)",
		},
		{
			name: "admin, stats and tracing",
			give: `admin: {address: 'localhost'}
stats:
  exclude: ['(']
  include: ['ok', '']
  sinks:
    - {}
    - statsd: {address: 127.0.0.1:8125}
      otlp: {endpoint: 127.0.0.1:4317}
    - statsd: {address: 'x', protocol: quic, tags: datadog}
    - otlp: {endpoint: 'http://collector:4318', protocol: http/protobuf}
  prometheus: {namespace: 1bad}
tracing:
  sampling: 101
  propagation: [tracecontext, jaeger, b3multi]
  otlp: {endpoint: ''}
`,
			wantErr: "main.yaml:1:18: admin.address: invalid address \"localhost\": missing port in address (use host:port with an IP address or localhost, e.g. 127.0.0.1:10000 or :10000)\n" +
				"main.yaml:3:13: stats.exclude[0]: invalid regex: error parsing regexp: missing closing ): `(` (regexes use Go's RE2 syntax)\n" +
				"main.yaml:4:19: stats.include[1]: must not be empty\n" +
				"main.yaml:6:7: stats.sinks[0]: must set one of statsd or otlp (e.g. statsd: {address: 127.0.0.1:8125})\n" +
				"main.yaml:7:7: stats.sinks[1]: must set only one of statsd or otlp (use one list entry per sink)\n" +
				"main.yaml:9:25: stats.sinks[2].statsd.address: invalid address \"x\": missing port in address (use host:port, e.g. 127.0.0.1:8125)\n" +
				"main.yaml:9:40: stats.sinks[2].statsd.protocol: must be one of udp, tcp, got \"quic\"\n" +
				"main.yaml:9:52: stats.sinks[2].statsd.tags: must be one of none, dogstatsd, got \"datadog\"\n" +
				"main.yaml:10:24: stats.sinks[3].otlp.endpoint: invalid address \"http://collector:4318\": must be host:port, without a scheme (use host:port, e.g. 127.0.0.1:4317)\n" +
				"main.yaml:10:59: stats.sinks[3].otlp.protocol: must be one of grpc, http, got \"http/protobuf\"\n" +
				"main.yaml:11:27: stats.prometheus.namespace: must be a valid Prometheus metric name prefix, got \"1bad\" (letters, digits and underscores, not starting with a digit)\n" +
				"main.yaml:13:13: tracing.sampling: must be from 0 to 100, got 101\n" +
				"main.yaml:14:31: tracing.propagation[1]: must be one of tracecontext, baggage, b3, b3multi, got \"jaeger\"\n" +
				"main.yaml:15:20: tracing.otlp.endpoint: must not be empty (use host:port, e.g. 127.0.0.1:4317)",
		},
		{
			name: "prometheus naming",
			give: `stats:
  prometheus: {naming: envoi}
`,
			wantErr: "main.yaml:2:24: stats.prometheus.naming: must be one of sightline, envoy, got \"envoi\" (did you mean \"envoy\"?)",
		},
		{
			name: "access log with path and otlp",
			give: `listeners:
  - name: in
    address: 127.0.0.1:0
    access_log:
      - {path: a.log, otlp: {endpoint: 127.0.0.1:4317}}
`,
			wantErr: "main.yaml:5:29: listeners[0].access_log[0].otlp: path and otlp are both set (keep one of them: an access log goes to a file or to a collector)",
		},
		{
			name: "access log otlp",
			give: `listeners:
  - name: in
    address: 127.0.0.1:0
    access_log:
      - {otlp: {endpoint: collector, protocol: grcp, timeout: -1s}}
`,
			wantErr: "main.yaml:5:27: listeners[0].access_log[0].otlp.endpoint: invalid address \"collector\": missing port in address (use host:port, e.g. 127.0.0.1:4317)\n" +
				"main.yaml:5:48: listeners[0].access_log[0].otlp.protocol: must be one of grpc, http, got \"grcp\"\n" +
				"main.yaml:5:63: listeners[0].access_log[0].otlp.timeout: must not be negative, got -1s",
		},
		{
			name: "prometheus units",
			give: `stats:
  prometheus: {units: seconds}
`,
			wantErr: "main.yaml:2:23: stats.prometheus.units: must be one of base, ms, got \"seconds\"",
		},
		{
			name: "prometheus units base beside naming envoy",
			give: `stats:
  prometheus: {naming: envoy, units: base}
`,
			wantErr: "main.yaml:2:38: stats.prometheus.units: must be ms with naming: envoy (Envoy's histograms are in milliseconds) (leave units out, or use naming: sightline)",
		},
		{
			name: "prometheus namespace beside naming envoy",
			give: `stats:
  prometheus: {naming: envoy, namespace: edge}
`,
			wantErr: "main.yaml:2:42: stats.prometheus.namespace: has no effect with naming: envoy (every family is envoy_…, as Envoy names them) (leave namespace out, or use naming: sightline)",
		},
		{
			name: "statsd constant tags",
			give: `stats:
  sinks:
    - statsd: {address: 127.0.0.1:8125, constant_tags: {env: prod}}
    - statsd: {address: 127.0.0.1:8125, tags: dogstatsd, constant_tags: {'a:b': x, env: '', zone: 'us east'}}
    - statsd: {address: 127.0.0.1:8125, histogram_type: h}
    - statsd: {address: 127.0.0.1:8125, tags: dogstatsd, histogram_type: timer}
    - statsd: {address: 127.0.0.1:8125, histograms: sample}
    - statsd: {address: 127.0.0.1:8125, tags: dogstatsd, constant_tags: ['env:prod']}
`,
			wantErr: "main.yaml:3:56: stats.sinks[0].statsd.constant_tags: need tags: dogstatsd (plain statsd has no tags) (set tags: dogstatsd, or leave them out)\n" +
				"main.yaml:4:81: stats.sinks[1].statsd.constant_tags.a:b: tag name \"a:b\" must not contain :, |, #, a comma or white space\n" +
				"main.yaml:4:89: stats.sinks[1].statsd.constant_tags.env: tag \"env\" needs a value (e.g. env: prod)\n" +
				"main.yaml:4:99: stats.sinks[1].statsd.constant_tags.zone: tag value \"us east\" must not contain |, #, a comma or white space\n" +
				"main.yaml:5:57: stats.sinks[2].statsd.histogram_type: must be ms for plain statsd (h and d are DogStatsD types), got \"h\" (set tags: dogstatsd, or leave it out)\n" +
				"main.yaml:6:74: stats.sinks[3].statsd.histogram_type: must be one of ms, h, d, got \"timer\"\n" +
				"main.yaml:7:53: stats.sinks[4].statsd.histograms: must be one of samples, buckets, got \"sample\" (did you mean \"samples\"?)\n" +
				"main.yaml:8:73: stats.sinks[5].statsd.constant_tags: must be a mapping, got a list",
		},
		{
			name: "access log format",
			give: "listeners: [{name: a, address: 127.0.0.1:1, access_log: [{path: '-', format: '%START_TIME% %REQ(X-CUSTOM)%'}], virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, cluster: c}]}]}]\n" + clusterC,
			wantErr: "main.yaml:1:78: listeners[0].access_log[0].format: operator %REQ(X-CUSTOM)%: X-CUSTOM is not a header the access log records " +
				"(it records :authority, :method, :path, host, user-agent, x-forwarded-for, x-request-id) " +
				"(json, envoy, or Envoy's format language, e.g. \"%START_TIME% %REQ(:PATH)% %RESPONSE_CODE%\")",
		},
		{
			name: "access log json_format",
			give: `listeners:
  - name: a
    address: 127.0.0.1:1
    access_log:
      - path: '-'
        json_format:
          code: "%RESPONSE_CODE%"
          when: "%START_TIME(%Q)%"
          nested: {a: b}
          flags: "%RESPONSE_FLAG%"
      - path: '-'
        format: envoy
        json_format: {code: "%RESPONSE_CODE%"}
      - path: '-'
        format: "%DURATION"
    virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, cluster: c}]}]
` + clusterC,
			wantErr: "main.yaml:8:17: listeners[0].access_log[0].json_format.when: operator %START_TIME(%Q)%: unknown time specifier %Q " +
				"(known: %Y %m %d %H %M %S %z %s %f %3f %E3S and strftime's others) (Envoy's format language, e.g. \"%START_TIME% %REQ(:PATH)% %RESPONSE_CODE%\")\n" +
				"main.yaml:9:19: listeners[0].access_log[0].json_format.nested: must be a string, got a mapping\n" +
				"main.yaml:10:18: listeners[0].access_log[0].json_format.flags: unknown operator %RESPONSE_FLAG% (Envoy's format language, e.g. \"%START_TIME% %REQ(:PATH)% %RESPONSE_CODE%\")\n" +
				"main.yaml:12:17: listeners[0].access_log[1].format: format and json_format are both set (keep one of them)\n" +
				"main.yaml:15:17: listeners[0].access_log[2].format: unterminated operator \"%DURATION\": an operator is %NAME% (write %% for a literal %) " +
				"(json, envoy, or Envoy's format language, e.g. \"%START_TIME% %REQ(:PATH)% %RESPONSE_CODE%\")",
		},
		{
			name: "otlp temporality",
			give: `stats:
  sinks:
    - otlp: {endpoint: 127.0.0.1:4317, temporality: deltas}
tracing:
  otlp: {endpoint: 127.0.0.1:4317, temporality: delta}
`,
			wantErr: "main.yaml:3:53: stats.sinks[0].otlp.temporality: must be one of cumulative, delta, got \"deltas\" (did you mean \"delta\"?)\n" +
				"main.yaml:5:49: tracing.otlp.temporality: is for metrics only (set it on the otlp entry of stats.sinks)",
		},
		{
			name: "access log and limits",
			give: `listeners:
  - name: a
    address: 127.0.0.1:1
    access_log:
      - {path: '', buffer_bytes: -1, filter: {status_min: 700, sample_percent: 200}}
    limits: {max_concurrent_streams: -1, max_header_bytes: -1, max_requests_per_connection: -1}
`,
			wantErr: "main.yaml:5:16: listeners[0].access_log[0].path: must not be empty (use \"-\" for stdout, or otlp: {endpoint: host:port} for a collector)\n" +
				"main.yaml:5:34: listeners[0].access_log[0].buffer_bytes: must not be negative, got -1\n" +
				"main.yaml:5:59: listeners[0].access_log[0].filter.status_min: must be from 0 to 599, got 700\n" +
				"main.yaml:5:80: listeners[0].access_log[0].filter.sample_percent: must be from 0 to 100, got 200\n" +
				"main.yaml:6:38: listeners[0].limits.max_concurrent_streams: must not be negative, got -1\n" +
				"main.yaml:6:60: listeners[0].limits.max_header_bytes: must not be negative, got -1\n" +
				"main.yaml:6:93: listeners[0].limits.max_requests_per_connection: must not be negative, got -1",
		},
		{
			name: "a refused value is reported once",
			give: `listeners:
  - name: a
    address: 127.0.0.1:1
    virtual_hosts:
      - domains: ['*']
        routes:
          - match: {prefix: [x]}
            cluster: [a]
clusters:
  - name: c
    endpoints: [~]
    health_check: {tcp: {}, interval: 15}
  - name: d
    endpoints: [{address: 127.0.0.1:1, weight: -1}]
`,
			wantErr: "main.yaml:7:29: listeners[0].virtual_hosts[0].routes[0].match.prefix: must be a string, got a list\n" +
				"main.yaml:8:22: listeners[0].virtual_hosts[0].routes[0].cluster: must be a string, got a list\n" +
				"main.yaml:11:17: clusters[0].endpoints[0]: empty list entry (remove the lone \"-\" or give it a value)\n" +
				"main.yaml:12:39: clusters[0].health_check.interval: duration 15 has no unit (durations need a unit, e.g. 15s)\n" +
				"main.yaml:14:48: clusters[1].endpoints[0].weight: must be an integer from 0 to 4294967295, got \"-1\"",
		},
		{
			name: "syntax error",
			give: `admin:
  address: [
`,
			wantErr: "main.yaml:3:1: did not find expected node content while parsing a flow node",
		},
		{
			name: "syntax error in a flow mapping",
			give: `admin: {address: x
node: 1
`,
			wantErr: "main.yaml:2:5: did not find expected ',' or '}' while parsing a flow mapping",
		},
		{
			name:    "tab in the indentation",
			give:    "admin:\n\taddress: x\n",
			wantErr: "main.yaml:2:1: found character that cannot start any token while scanning for the next token (YAML indents with spaces, not tabs)",
		},
		{
			name: "unknown keys",
			give: `listners: []
admin: {adress: x, bogus: 1}
`,
			wantErr: "main.yaml:1:1: unknown key \"listners\" (did you mean \"listeners\"?)\n" +
				"main.yaml:2:9: admin: unknown key \"adress\" (did you mean \"address\"?)\n" +
				"main.yaml:2:20: admin: unknown key \"bogus\" (known keys: address, pprof)",
		},
		{
			name: "duplicate key",
			give: `node: {id: a}
node: {id: b}
`,
			wantErr: "main.yaml:2:1: duplicate key \"node\" (first at main.yaml:1:1)",
		},
		{
			name: "mapping, list or scalar in the wrong place",
			give: `listeners: {name: a}
admin: [a]
node: {id: [x]}
`,
			wantErr: "main.yaml:1:12: listeners: must be a list, got a mapping\n" +
				"main.yaml:2:8: admin: must be a mapping, got a list\n" +
				"main.yaml:3:12: node.id: must be a string, got a list",
		},
		{
			name: "scalars of the wrong type",
			give: `server: {watch: maybe}
node: {id: 'x'}
tracing: {sampling: 'x'}
stats: {emit_zeros: 'true'}
`,
			wantErr: "main.yaml:1:17: server.watch: must be true or false, got \"maybe\"\n" +
				"main.yaml:3:21: tracing.sampling: must be a number, got \"x\"\n" +
				"main.yaml:4:21: stats.emit_zeros: must be true or false, got \"true\" (quoted values are strings; remove the quotes)",
		},
		{
			name: "document is not a mapping",
			give: `- a
`,
			wantErr: "main.yaml:1:1: must be a mapping, got a list",
		},
		{
			name: "more than one document",
			give: `node: {id: a}
---
node: {id: b}
`,
			wantErr: "main.yaml:2:1: a config file holds one YAML document, found 2 (remove the --- separator; use include: to split a config into files)",
		},
		{
			name: "empty list entries",
			give: `listeners:
  -
  - ~
`,
			wantErr: "main.yaml:2:4: listeners[0]: empty list entry (remove the lone \"-\" or give it a value)\n" +
				"main.yaml:3:5: listeners[1]: empty list entry (remove the lone \"-\" or give it a value)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := tt.file
			if file == "" {
				file = "main.yaml"
			}
			inDir(t, map[string]string{file: tt.give})
			if got := loadProblems(t, file); got != tt.wantErr {
				t.Errorf("problems:\n%s\nwant:\n%s", got, tt.wantErr)
			}
		})
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	// One run finds problems of every stage, in two files: unknown keys,
	// wrong types, bad durations and semantic problems.
	inDir(t, map[string]string{
		"main.yaml": `include: [more.yaml]
admin: {adress: 127.0.0.1:9901}
server: {drain_time: 5}
listeners:
  - name: a
    address: 127.0.0.1:1
    virtual_hosts:
      - domains: ['*']
        routes:
          - match: {prefix: /}
            cluster: primry
`,
		"more.yaml": `clusters:
  - name: primary
    lb_policy: fastest
    endpoints: [{address: 127.0.0.1:1, weight: lots}]
`,
	})
	want := "main.yaml:2:9: admin: unknown key \"adress\" (did you mean \"address\"?)\n" +
		"main.yaml:3:22: server.drain_time: duration 5 has no unit (durations need a unit, e.g. 5s)\n" +
		"main.yaml:11:22: listeners[0].virtual_hosts[0].routes[0].cluster: unknown cluster \"primry\" (did you mean \"primary\"?)\n" +
		"more.yaml:3:16: clusters[0].lb_policy: must be one of round_robin, least_request, random, ring_hash, maglev, got \"fastest\"\n" +
		"more.yaml:4:48: clusters[0].endpoints[0].weight: must be an integer from 0 to 4294967295, got \"lots\""
	if got := loadProblems(t, "main.yaml"); got != want {
		t.Errorf("problems:\n%s\nwant:\n%s", got, want)
	}
}

func TestLoadIncludes(t *testing.T) {
	type merged struct {
		files, listeners, clusters []string
	}
	tests := []struct {
		name    string
		give    map[string]string // main.yaml and the files it includes
		want    merged
		wantErr string
	}{
		{
			name: "globs relative to the including file, nested, each file once",
			give: map[string]string{
				"main.yaml": `include: ['conf.d/*.yaml', 'conf.d/a.*', 'none/*.yaml', 'nested/top.yml']
listeners: [{name: main, address: 127.0.0.1:1}]
clusters: [{name: c0, endpoints: [{address: 127.0.0.1:1}]}]
`,
				"conf.d/b.yaml":       "clusters: [{name: c2, endpoints: [{address: 127.0.0.1:1}]}]\n",
				"conf.d/a.yaml":       "listeners: [{name: a, address: 127.0.0.1:2}]\nclusters: [{name: c1, endpoints: [{address: 127.0.0.1:1}]}]\n",
				"nested/top.yml":      "include: ['inner/*.json']\n",
				"nested/inner/x.json": `{"clusters": [{"name": "c3", "endpoints": [{"address": "127.0.0.1:1"}]}]}`,
			},
			want: merged{
				files:     []string{"main.yaml", "conf.d/a.yaml", "conf.d/b.yaml", "nested/top.yml", "nested/inner/x.json"},
				listeners: []string{"main", "a"},
				clusters:  []string{"c0", "c1", "c2", "c3"},
			},
		},
		{
			name: "errors name the included file; paths index the merged config",
			give: map[string]string{
				"main.yaml": `include: ['conf.d/*.yaml', nested/top.yml]
listeners: [{name: a, address: 127.0.0.1:1}]
clusters: [{name: c0, endpoints: [{address: 127.0.0.1:1}]}]
`,
				"conf.d/a.yaml": `listeners:
  - name: a
    address: 127.0.0.1:2
clusters:
  - name: c1
    type: statc
    endpoints: [{address: 127.0.0.1:1}]
`,
				"conf.d/b.yaml":       "clusters:\n  - name: c2\n    endpoints: []\n",
				"nested/top.yml":      "include: ['inner/*.json']\n",
				"nested/inner/x.json": `{"clusters": [{"name": "c3", "endpoints": [{"address": "127.0.0.1:1", "weight": "heavy"}]}]}`,
			},
			wantErr: "conf.d/a.yaml:2:11: listeners[1].name: duplicate listener name \"a\" (first defined at main.yaml:2:20)\n" +
				"conf.d/a.yaml:6:11: clusters[1].type: must be one of static, strict_dns, got \"statc\" (did you mean \"static\"?)\n" +
				"conf.d/b.yaml:3:16: clusters[2].endpoints: must list at least one endpoint\n" +
				"nested/inner/x.json:1:81: clusters[3].endpoints[0].weight: must be an integer from 0 to 4294967295, got \"heavy\"",
		},
		{
			name: "an included file holds only include, listeners and clusters",
			give: map[string]string{
				"main.yaml": "include: [more.yaml]\n",
				"more.yaml": "admin: {address: ':1'}\nclusters: []\nnode: {id: x}\n",
			},
			wantErr: "more.yaml:1:1: \"admin\" is not allowed in an included file (an included file may only hold include, listeners, clusters)\n" +
				"more.yaml:3:1: \"node\" is not allowed in an included file (an included file may only hold include, listeners, clusters)",
		},
		{
			name: "include cycle",
			give: map[string]string{
				"main.yaml": "include: [a.yaml]\n",
				"a.yaml":    "include: [b.yaml]\n",
				"b.yaml":    "include: [a.yaml]\n",
			},
			wantErr: "b.yaml:1:11: include[0]: include cycle: a.yaml -> b.yaml -> a.yaml (a file must not include itself, directly or through other files)",
		},
		{
			name: "a glob matching the including file",
			give: map[string]string{
				"main.yaml":  "include: ['*.yaml']\n",
				"other.yaml": "clusters: [{name: c, endpoints: [{address: 127.0.0.1:1}]}]\n",
			},
			wantErr: "main.yaml:1:11: include[0]: include cycle: main.yaml -> main.yaml (a file must not include itself, directly or through other files)",
		},
		{
			name: "bad globs and files that are not configs",
			give: map[string]string{
				"main.yaml": "include: ['[', 'dir*', 'notes.txt', '']\n",
				"dir1/x":    "",
				"notes.txt": "",
			},
			wantErr: "main.yaml:1:11: include[0]: invalid glob \"[\": syntax error in pattern (globs use filepath.Match syntax: *, ?, [a-z])\n" +
				"main.yaml:1:16: include[1]: cannot include dir1: unsupported file extension \"\", want one of .yaml, .yml, .json (narrow the glob to config files)\n" +
				"main.yaml:1:24: include[2]: cannot include notes.txt: unsupported file extension \".txt\", want one of .yaml, .yml, .json (narrow the glob to config files)",
		},
		{
			name: "a syntax error in an included file stops semantic checks",
			give: map[string]string{
				// Without the broken file's clusters, the route's cluster
				// would be reported unknown: noise, so it is not.
				"main.yaml": `include: [broken.yaml]
listeners:
  - name: a
    address: 127.0.0.1:1
    virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, cluster: c}]}]
`,
				"broken.yaml": "clusters: [\n",
			},
			wantErr: "broken.yaml:2:1: did not find expected node content while parsing a flow node",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inDir(t, tt.give)
			if tt.wantErr != "" {
				if got := loadProblems(t, "main.yaml"); got != tt.wantErr {
					t.Errorf("problems:\n%s\nwant:\n%s", got, tt.wantErr)
				}
				return
			}
			cfg, err := Load("main.yaml")
			if err != nil {
				t.Fatal(err)
			}
			got := merged{files: cfg.Files}
			for _, l := range cfg.Listeners {
				got.listeners = append(got.listeners, l.Name)
			}
			for _, c := range cfg.Clusters {
				got.clusters = append(got.clusters, c.Name)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("merged %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	inDir(t, map[string]string{"sightline.toml": ""})
	if _, err := Load("sightline.toml"); err == nil || !strings.Contains(err.Error(), `unsupported file extension ".toml"`) {
		t.Errorf("Load(sightline.toml) = %v, want an unsupported extension error", err)
	}
	_, err := Load("missing.yaml")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing.yaml) = %v, want fs.ErrNotExist", err)
	}
	var problems Errors
	if errors.As(err, &problems) {
		t.Errorf("Load(missing.yaml) = Errors, want a plain error: it is not a problem in a config")
	}
}

func TestLoadJSONMatchesYAML(t *testing.T) {
	inDir(t, map[string]string{
		"c.yaml": `listeners:
  - name: in
    address: 127.0.0.1:1
    virtual_hosts:
      - domains: ['*']
        routes: [{match: {prefix: /}, cluster: c, timeout: 1.5s}]
clusters:
  - {name: c, lb_policy: maglev, endpoints: [{address: 127.0.0.1:1, weight: 3}]}
`,
		"c.json": `{
	"listeners": [{
		"name": "in",
		"address": "127.0.0.1:1",
		"virtual_hosts": [{"domains": ["*"], "routes": [{"match": {"prefix": "/"}, "cluster": "c", "timeout": "1.5s"}]}]
	}],
	"clusters": [{"name": "c", "lb_policy": "maglev", "endpoints": [{"address": "127.0.0.1:1", "weight": 3}]}]
}`,
	})
	fromYAML, err := Load("c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fromJSON, err := Load("c.json")
	if err != nil {
		t.Fatal(err)
	}
	fromJSON.Files, fromJSON.FileHashes = fromYAML.Files, fromYAML.FileHashes
	fromJSON.at, fromYAML.at = nil, nil // positions name their own files
	if !reflect.DeepEqual(fromJSON, fromYAML) {
		t.Errorf("JSON config\n%+v\ndiffers from YAML config\n%+v", fromJSON, fromYAML)
	}
}

func TestLoadDefaults(t *testing.T) {
	inDir(t, map[string]string{
		"cert.pem": "cert",
		"key.pem":  "key",
		"main.yaml": `listeners:
  - name: ingress
    address: 127.0.0.1:10000
    access_log: [{path: '-'}]
    virtual_hosts:
      - domains: ['*']
        routes:
          - match: {prefix: /}
            cluster: c
            retry_policy: {retry_on: 5xx}
  - name: secure
    address: 127.0.0.1:10443
    tls: {cert_file: cert.pem, key_file: key.pem}
clusters:
  - name: c
    endpoints: [{address: 127.0.0.1:5100}]
    health_check: {tcp: {}}
    outlier_detection: {}
`,
	})
	cfg, err := Load("main.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yes := ptr(true)
	limits := Limits{
		MaxConcurrentStreams: 1024,
		MaxHeaderBytes:       65536,
		IdleTimeout:          Duration(5 * 60e9),
		HeaderReadTimeout:    Duration(10e9),
		// Envoy's stream_idle_timeout.
		StreamIdleTimeout: ptr(Duration(5 * 60e9)),
	}
	want := &Config{
		Admin:  Admin{Address: "127.0.0.1:9901"},
		Server: Server{DrainTime: Duration(5e9), DrainTimeout: Duration(10e9)},
		Overload: Overload{MaxBufferedBytes: 64 << 20, RefreshInterval: Duration(100e6),
			Actions: OverloadActions{ResetHighMemoryStream: 0.8, StopAcceptingRequests: 0.95, StopAcceptingConnections: 0.95}},
		Stats: Stats{FlushInterval: Duration(1e9), MaxGRPCMethodsPerCluster: 1000, CompactAfter: ptr(Duration(5e9)),
			Prometheus: Prometheus{Namespace: "sightline", Naming: PrometheusNamingSightline, Units: PrometheusUnitsBase}},
		// No exporter: sampling stays 0.
		Tracing: Tracing{Propagation: []string{"tracecontext", "baggage"}, ServiceName: "sightline"},
		Listeners: []Listener{
			{
				Name:       "ingress",
				Address:    "127.0.0.1:10000",
				StatPrefix: "ingress",
				Protocols:  []string{"h2c", "http1"},
				RequestID:  RequestID{Generate: yes, PreserveExternal: yes, SetInResponse: yes},
				AccessLog: []AccessLog{{
					Path:          "-",
					FlushInterval: Duration(1e9),
					BufferBytes:   65536,
					Filter:        AccessLogFilter{SamplePercent: ptr(100.0)},
				}},
				Limits: limits,
				VirtualHosts: []VirtualHost{{
					Domains: []string{"*"},
					Routes: []Route{{
						Match:       RouteMatch{Prefix: "/"},
						Cluster:     "c",
						IdleTimeout: ptr(Duration(5 * 60e9)), // the listener's
						RetryPolicy: &RetryPolicy{
							RetryOn:     "5xx",
							NumRetries:  1,
							BackoffBase: Duration(25e6),
							BackoffMax:  Duration(250e6),
						},
					}},
				}},
			},
			{
				Name:       "secure",
				Address:    "127.0.0.1:10443",
				StatPrefix: "secure",
				Protocols:  []string{"h2", "http1"},
				TLS:        &ListenerTLS{CertFile: "cert.pem", KeyFile: "key.pem"},
				RequestID:  RequestID{Generate: yes, PreserveExternal: yes, SetInResponse: yes},
				Limits:     limits,
			},
		},
		Clusters: []Cluster{{
			Name:           "c",
			Type:           "static",
			Protocol:       "http2",
			ConnectTimeout: Duration(1e9),
			LBPolicy:       "round_robin",
			DNSRefreshRate: Duration(5e9),
			ZoneAware:      ZoneAware{MinClusterSize: 6},
			PanicThreshold: ptr(50.0),
			Endpoints:      []Endpoint{{Address: "127.0.0.1:5100", Weight: 1}},
			HealthCheck: &HealthCheck{
				TCP:                &TCPHealthCheck{},
				Interval:           Duration(5e9),
				Timeout:            Duration(1e9),
				HealthyThreshold:   2,
				UnhealthyThreshold: 3,
				// Envoy's: 60s, and the healthy one the same.
				NoTrafficInterval:        Duration(60e9),
				NoTrafficHealthyInterval: Duration(60e9),
			},
			OutlierDetection: &OutlierDetection{
				Consecutive5xx:     5,
				Interval:           Duration(10e9),
				BaseEjectionTime:   Duration(30e9),
				MaxEjectionPercent: 10,
				// Envoy's: a passing active check ends an ejection.
				SuccessfulActiveHealthCheckUnejectHost: ptr(true),
			},
			CircuitBreakers: CircuitBreakers{MaxConnections: 1024, MaxPendingRequests: 1024, MaxRequests: 1024, MaxRetries: 3},
			// Unlike Envoy's, on: a PING after 30s without a read, 15s for its ACK.
			KeepaliveInterval: ptr(Duration(30e9)),
			KeepaliveTimeout:  Duration(15e9),
		}},
		Files: []string{"main.yaml"},
	}
	// Where things were written, and what, is not what this test is about.
	cfg.at, cfg.FileHashes = nil, nil
	if !reflect.DeepEqual(cfg, want) {
		got, _ := cfg.JSON()
		wantJSON, _ := want.JSON()
		t.Errorf("defaults:\n%s\nwant:\n%s", got, wantJSON)
	}
}

func TestLoadTracingDefaults(t *testing.T) {
	tests := []struct {
		name string
		give string
		want Tracing
	}{
		{
			name: "no exporter: sampling stays 0",
			give: "tracing: {}\n",
			want: Tracing{Propagation: []string{"tracecontext", "baggage"}, ServiceName: "sightline"},
		},
		{
			name: "an exporter samples everything by default",
			give: "tracing: {otlp: {endpoint: 127.0.0.1:4317}}\n",
			want: Tracing{
				Sampling:    100,
				Propagation: []string{"tracecontext", "baggage"},
				OTLP:        &OTLP{Endpoint: "127.0.0.1:4317", Protocol: "grpc"},
				ServiceName: "sightline",
			},
		},
		{
			name: "set values are kept",
			give: "tracing: {sampling: 5, propagation: [b3], otlp: {endpoint: 'collector:4318', protocol: http}, service_name: edge}\n",
			want: Tracing{
				Sampling:    5,
				Propagation: []string{"b3"},
				OTLP:        &OTLP{Endpoint: "collector:4318", Protocol: "http"},
				ServiceName: "edge",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inDir(t, map[string]string{"main.yaml": tt.give})
			cfg, err := Load("main.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.Tracing, tt.want) {
				t.Errorf("tracing = %+v, want %+v", cfg.Tracing, tt.want)
			}
		})
	}
}

func TestLoadEmptyFileIsDefaults(t *testing.T) {
	// A config with only admin (here: nothing at all) is valid.
	inDir(t, map[string]string{"main.yaml": "# nothing yet\n"})
	cfg, err := Load("main.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Admin.Address != "127.0.0.1:9901" || len(cfg.Listeners) != 0 {
		t.Errorf("empty config = %+v, want defaults and no listeners", cfg)
	}
}

// contractExample is the contract's example config, made runnable: files
// for its tls placeholders, its route targets defined as clusters, and its
// DNS endpoint in a strict_dns cluster of its own.
const contractExample = `include: ['conf.d/*.yaml']
node:
  id: edge-1
  zone: zone-a
admin:
  address: 127.0.0.1:9901
server:
  drain_time: 5s
  drain_timeout: 10s
  watch: false
stats:
  flush_interval: 1s
  exclude: ['^cluster\.[^.]+\.update_attempt$']
  include: []
  emit_zeros: false
  sinks:
    - statsd: {address: 127.0.0.1:8125, prefix: sightline, protocol: udp, tags: none}
    - otlp: {endpoint: 127.0.0.1:4317, protocol: grpc, insecure: true}
  prometheus: {namespace: sightline}
tracing:
  sampling: 100
  propagation: [tracecontext, baggage, b3]
  otlp: {endpoint: 127.0.0.1:4317, protocol: grpc, insecure: true}
  service_name: sightline
listeners:
  - name: ingress
    address: 127.0.0.1:10000
    stat_prefix: ingress_http
    protocols: [h2, http1]
    tls: {cert_file: cert.pem, key_file: key.pem}
    request_id: {generate: true, preserve_external: true, set_in_response: true}
    trust_request_headers: false
    access_log:
      - path: /var/log/sightline/access.log
        flush_interval: 1s
        buffer_bytes: 65536
        filter: {status_min: 0, duration_min: 0s, not_health_check: true, sample_percent: 100}
    virtual_hosts:
      - name: my-service
        domains: ['my-service', 'my-service:*', '*.example.com', '*']
        routes:
          - name: home-readonly
            match: {prefix: /, grpc: true, headers: [{name: x-home-page, exact: 'true'}]}
            weighted_clusters: [{cluster: readonly, weight: 5}, {cluster: primary, weight: 95}]
          - match: {prefix: /}
            cluster: primary
            timeout: 15s
            retry_policy: {retry_on: '5xx,reset,connect-failure,unavailable', num_retries: 2, per_try_timeout: 1s}
            hash_policy: [{header: x-user-id}]
            mirror: {cluster: shadow, percent: 10}
clusters:
  - name: primary
    type: static
    protocol: http2
    connect_timeout: 500ms
    lb_policy: round_robin
    zone_aware: {enabled: true, min_cluster_size: 6}
    panic_threshold: 50
    endpoints:
      - {address: 127.0.0.1:5101, zone: zone-a, weight: 1}
      - {address: 127.0.0.1:5102, zone: zone-b}
    health_check:
      grpc: {service_name: ''}
      interval: 2s
      interval_jitter: 1s
      timeout: 1s
      healthy_threshold: 3
      unhealthy_threshold: 3
      event_log_path: /var/log/sightline/healthcheck.log
    outlier_detection: {consecutive_5xx: 5, interval: 10s, base_ejection_time: 30s, max_ejection_percent: 10}
    circuit_breakers: {max_connections: 1024, max_pending_requests: 1024, max_requests: 1024, max_retries: 3}
    tls: {sni: primary.internal, ca_file: ca.pem, insecure_skip_verify: false}
`

// contractIncluded holds the clusters the example's routes name.
const contractIncluded = `clusters:
  - name: readonly
    type: strict_dns
    protocol: auto
    lb_policy: least_request
    dns_refresh_rate: 10s
    endpoints:
      - {address: my-service.service.consul:5100}
  - name: shadow
    lb_policy: ring_hash
    endpoints: [{address: '[::1]:5103'}]
`

// loadContractExample loads the contract example in a new directory.
func loadContractExample(t *testing.T) *Config {
	t.Helper()
	inDir(t, map[string]string{
		"sightline.yaml":    contractExample,
		"conf.d/extra.yaml": contractIncluded,
		"cert.pem":          "cert",
		"key.pem":           "key",
		"ca.pem":            "ca",
	})
	cfg, err := Load("sightline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestLoadContractExample(t *testing.T) {
	cfg := loadContractExample(t)
	r := cfg.Listeners[0].VirtualHosts[0].Routes[1]
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"files", cfg.Files, []string{"sightline.yaml", "conf.d/extra.yaml"}},
		{"file hashes", cfg.FileHashes, map[string][sha256.Size]byte{
			"sightline.yaml":    sha256.Sum256([]byte(contractExample)),
			"conf.d/extra.yaml": sha256.Sum256([]byte(contractIncluded)),
		}},
		{"route timeout", r.Timeout, Duration(15e9)},
		{"per-try timeout", r.RetryPolicy.PerTryTimeout, Duration(1e9)},
		{"connect timeout", cfg.Clusters[0].ConnectTimeout, Duration(500e6)},
		{"set stat prefix", cfg.Listeners[0].StatPrefix, "ingress_http"},
		{"default weight", cfg.Clusters[0].Endpoints[1].Weight, uint32(1)},
		{"dns refresh", cfg.Clusters[1].DNSRefreshRate, Duration(10e9)},
		{"header matcher", cfg.Listeners[0].VirtualHosts[0].Routes[0].Match.Headers[0].Exact, "true"},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadAnchorsAndMergeKeys(t *testing.T) {
	const base = `clusters:
  - &base
    name: a
    lb_policy: maglev
    endpoints: [{address: 127.0.0.1:1}]
  - <<: *base
    name: b
`
	t.Run("merged fields are decoded", func(t *testing.T) {
		inDir(t, map[string]string{"main.yaml": base})
		cfg, err := Load("main.yaml")
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []string{"a", "b"} {
			if c := cfg.Clusters[i]; c.Name != want || c.LBPolicy != "maglev" || len(c.Endpoints) != 1 {
				t.Errorf("clusters[%d] = %+v, want %s with the anchor's fields", i, c, want)
			}
		}
	})
	t.Run("a problem in an alias is reported where the alias is used", func(t *testing.T) {
		inDir(t, map[string]string{"main.yaml": base + "  - *base\n"})
		want := `main.yaml:8:5: clusters[2].name: duplicate cluster name "a" (first defined at main.yaml:3:11)`
		if got := loadProblems(t, "main.yaml"); got != want {
			t.Errorf("problems:\n%s\nwant:\n%s", got, want)
		}
	})
}
