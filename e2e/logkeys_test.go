package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/testnet"
)

// TestLogLinesHaveUniqueKeys: every line of the proxy's own JSON log has
// each key once. A logger handed down with a key (the cluster, the
// component) and given the same key again below wrote it twice, which log
// shippers and jq each read differently. The scenario makes the health
// checker, the statsd sink and the config watcher log.
func TestLogLinesHaveUniqueKeys(t *testing.T) {
	dead := testnet.ClosedPort(t)
	cfg := fmt.Sprintf(`
stats:
  flush_interval: 100ms
  sinks:
    - statsd: {address: %q, protocol: udp}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - match: {prefix: /}
            cluster: dead
clusters:
  - name: dead
    endpoints: [{address: %q}]
    health_check: {tcp: {}, interval: 100ms, timeout: 100ms, healthy_threshold: 1, unhealthy_threshold: 1}
    outlier_detection: {consecutive_5xx: 5}
`, dead, dead)
	p := startProxy(t, cfg, "-watch")
	want := []string{"health check", "sending stats failed"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := p.output.String()
		missing := ""
		for _, w := range want {
			if !strings.Contains(out, w) {
				missing = w
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q line in the log:\n%s", missing, tail(out, 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	lines := 0
	for _, line := range strings.Split(p.output.String(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		lines++
		if dup := duplicateKey(line); dup != "" {
			t.Errorf("key %q twice in %s", dup, line)
		}
	}
	if lines == 0 {
		t.Fatal("no JSON log lines")
	}
}

// duplicateKey returns a key that appears twice in one object of the JSON
// line (encoding/json keeps the last and says nothing), or "".
func duplicateKey(line string) string {
	dec := json.NewDecoder(strings.NewReader(line))
	var walk func() string
	walk = func() string {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, _ := dec.Token()
				key, _ := k.(string)
				if seen[key] {
					return key
				}
				seen[key] = true
				if d := walk(); d != "" {
					return d
				}
			}
			dec.Token() // }
		case json.Delim('['):
			for dec.More() {
				if d := walk(); d != "" {
					return d
				}
			}
			dec.Token() // ]
		}
		return ""
	}
	return walk()
}
