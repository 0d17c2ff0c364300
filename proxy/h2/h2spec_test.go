package h2

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/h2spec"
	"github.com/sightline-proxy/sightline/internal/testnet"
	"github.com/sightline-proxy/sightline/internal/testtool"
)

// TestH2Spec runs the whole h2spec suite (RFC 7540/9113, HPACK and the
// generic cases) against the engine in front of a Go h2c backend that
// answers 200 with a small body, over h2c and over TLS. Every case must
// pass, none skipped.
func TestH2Spec(t *testing.T) {
	bin := testtool.Look(t, "h2spec")
	backend := testnet.Serve(t, okHandler, testnet.HTTP1|testnet.H2C)
	for _, tt := range []struct {
		name  string
		tls   bool
		flags []string
	}{
		{name: "h2c"},
		{name: "tls", tls: true, flags: []string{"-t", "-k"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, []testCluster{{name: "ok", addrs: []string{backend}}},
				[]testRoute{{prefix: "/", cluster: "ok"}}, proxyOpts{tls: tt.tls})
			host, port, _ := net.SplitHostPort(p.addr)
			report := filepath.Join(t.TempDir(), "report.xml")
			args := append([]string{"-h", host, "-p", port, "--timeout", "2", "-j", report}, tt.flags...)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			out, runErr := exec.CommandContext(ctx, bin, args...).CombinedOutput()
			res, err := h2spec.Parse(report)
			if err != nil {
				t.Fatalf("h2spec: %v (run error %v)\n%s", err, runErr, out)
			}
			t.Logf("h2spec %s: %d tests, %d passed, %d skipped, %d failed", tt.name, res.Total, res.Passed, len(res.Skipped), len(res.Failed))
			if len(res.Failed) > 0 {
				t.Errorf("h2spec cases failed:\n  %s\n%s", strings.Join(res.Failed, "\n  "), tail(string(out), 8000))
			}
			if res.Total != 145 || res.Passed != 145 || len(res.Skipped) > 0 {
				t.Errorf("h2spec passed %d of %d cases (%d skipped), want 145 of 145", res.Passed, res.Total, len(res.Skipped))
			}
		})
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
