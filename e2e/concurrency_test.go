package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestAdaptiveConcurrency: with server.adaptive_concurrency off the proxy
// keeps every thread the Go runtime gave it (server.concurrency); a
// reload turning it on takes an idle proxy down to one within a few
// seconds, and one turning it off gives them all back.
func TestAdaptiveConcurrency(t *testing.T) {
	bs := startBackends(t, 1)
	cfg := func(adaptive bool) string {
		return routedConfig{
			top:     fmt.Sprintf("server: {adaptive_concurrency: %v}", adaptive),
			cluster: "endpoints: " + endpoints(addrsOf(bs)...),
		}.String()
	}
	p := startProxy(t, cfg(false))
	var most int64
	if err := eventually(5*time.Second, func() error {
		if most = p.gauge("server.concurrency"); most == 0 {
			return fmt.Errorf("server.concurrency not reported yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if most < 2 {
		t.Skipf("the proxy may use %d thread: nothing to adapt", most)
	}
	time.Sleep(3 * time.Second) // longer than procs.ShrinkAfter
	if got := p.gauge("server.concurrency"); got != most {
		t.Fatalf("server.concurrency %d with adaptive_concurrency off, want %d", got, most)
	}

	want := func(n int64) {
		t.Helper()
		if err := eventually(15*time.Second, func() error {
			if got := p.gauge("server.concurrency"); got != n {
				return fmt.Errorf("server.concurrency %d, want %d", got, n)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	p.rewrite(cfg(true))
	p.sighup()
	want(1)
	p.rewrite(cfg(false))
	p.sighup()
	want(most)
}
