package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sightline-proxy/sightline/internal/jsonlines"
)

// envoyLine is the pattern Envoy's log shippers parse Envoy's default
// access-log line with (the fields of Filebeat's Envoy module): time,
// method, path, protocol, code, flags, bytes in and out, duration,
// upstream service time, then x-forwarded-for, user agent, request id,
// authority and upstream host, quoted.
var envoyLine = regexp.MustCompile(`^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\] "(\S+) (\S+) (\S+)" (\d+) (\S+) (\d+) (\d+) (\d+) (\S+) "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)"$`)

// TestAccessLogFormats: requests through the real binary, logged by one
// listener to two files, one in Envoy's default text line (format: envoy)
// and one in a json_format, read back as Envoy's users read them.
func TestAccessLogFormats(t *testing.T) {
	echo := startEchoBackend(t)
	dir := t.TempDir()
	textPath, jsonPath := filepath.Join(dir, "envoy.log"), filepath.Join(dir, "json.log")
	p := startProxy(t, fmt.Sprintf(`node: {id: e2e, zone: zone-a}
server: {drain_time: 50ms}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    protocols: [h2c, http1]
    access_log:
      - {path: %[2]q, format: envoy, flush_interval: 100ms}
      - path: %[3]q
        flush_interval: 100ms
        json_format:
          status: "%%RESPONSE_CODE%%"
          bytes_received: "%%BYTES_RECEIVED%%"
          request: "%%REQ(:METHOD)%% %%REQ(:PATH)%% %%PROTOCOL%%"
          upstream: "%%UPSTREAM_HOST%%"
          flags: "%%RESPONSE_FLAGS%%"
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - match: {prefix: /h1/}
            cluster: web
clusters:
  - {name: web, protocol: http1, endpoints: %[1]s}
`, endpoints(echo), textPath, jsonPath))
	addr := p.listener("ingress")

	get, err := http.NewRequest(http.MethodGet, "http://"+addr+"/h1/echo?q=a%20b&x=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	get.Header.Set("User-Agent", "curl/8.5.0")
	get.Header.Set("X-Request-Id", "req-1")
	doEcho(t, h1Client(), get)
	post, err := http.NewRequest(http.MethodPost, "http://"+addr+"/h1/post?y=%2F", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	doEcho(t, h2cClient(), post)
	resp, err := h1Client().Get("http://" + addr + "/nowhere")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unrouted request: status %d, want 404", resp.StatusCode)
	}
	if code, _ := p.stop(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\n%s", code, tail(p.output.String(), 3000))
	}

	b, err := os.ReadFile(textPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("the envoy log has %d lines, want 3:\n%s", len(lines), b)
	}
	// Field numbers in envoyLine: 2 method, 3 path, 4 protocol, 5 code,
	// 6 flags, 7 bytes received, 10 upstream service time, 12 user agent,
	// 13 request id, 14 authority, 15 upstream host.
	want := []map[int]string{
		{2: "GET", 3: "/h1/echo?q=a%20b&x=1", 4: "HTTP/1.1", 5: "200", 6: "-", 7: "0", 12: "curl/8.5.0", 13: "req-1", 14: addr, 15: echo},
		{2: "POST", 3: "/h1/post?y=%2F", 4: "HTTP/2", 5: "200", 6: "-", 7: "5", 12: "Go-http-client/2.0", 14: addr, 15: echo},
		{2: "GET", 3: "/nowhere", 4: "HTTP/1.1", 5: "404", 6: "NR", 7: "0", 10: "-", 15: "-"},
	}
	// A line is written when its request ends, which may be after the
	// client has its whole response and sent the next request: the
	// lines are matched by path, not by order.
	byPath := map[string][]string{}
	for i, line := range lines {
		m := envoyLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("line %d is not Envoy's default line: %q", i+1, line)
		}
		byPath[m[3]] = m
	}
	for _, w := range want {
		m := byPath[w[3]]
		if m == nil {
			t.Errorf("no line for %s:\n%s", w[3], b)
			continue
		}
		for f, v := range w {
			if m[f] != v {
				t.Errorf("line of %s: field %d = %q, want %q (%q)", w[3], f, m[f], v, m[0])
			}
		}
	}

	got := jsonlines.Read(t, jsonPath)
	wantJSON := []map[string]any{
		{"status": 200.0, "bytes_received": 0.0, "request": "GET /h1/echo?q=a%20b&x=1 HTTP/1.1", "upstream": echo, "flags": nil},
		{"status": 200.0, "bytes_received": 5.0, "request": "POST /h1/post?y=%2F HTTP/2", "upstream": echo, "flags": nil},
		{"status": 404.0, "bytes_received": 0.0, "request": "GET /nowhere HTTP/1.1", "upstream": nil, "flags": "NR"},
	}
	if len(got) != len(wantJSON) {
		t.Fatalf("the json_format log has %d lines, want %d: %v", len(got), len(wantJSON), got)
	}
	gotByRequest := map[any]string{}
	for _, g := range got {
		gotByRequest[g["request"]] = fmt.Sprint(g)
	}
	for _, w := range wantJSON {
		if g := gotByRequest[w["request"]]; g != fmt.Sprint(w) {
			t.Errorf("json line of %v = %s, want %v", w["request"], g, w)
		}
	}
}
