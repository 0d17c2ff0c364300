package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// TestSoak runs only when SIGHTLINE_SOAK is a duration ("3m"; scripts/soak.sh
// sets it): calls at 200/s through the real binary while backends in
// processes of their own are SIGKILLed and restarted at random, one at a
// time. No call may fail (every failure fits in the retry budget), and the
// proxy's goroutines and heap must not grow between the first and the last
// minute.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("SIGHTLINE_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("set SIGHTLINE_SOAK to a duration to run the soak (scripts/soak.sh)")
	}
	const n = 4
	procs := make([]*backendProcess, n)
	addrs := make([]string, n)
	for i := range procs {
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		procs[i] = startBackendProcess(t, addrs[i], "zone-a")
	}
	cfg := routedConfig{
		route: "retry_policy: {retry_on: 'connect-failure,unavailable,reset', num_retries: 3}",
		cluster: `connect_timeout: 250ms
endpoints: ` + endpoints(addrs...) + `
health_check: {grpc: {}, interval: 200ms, interval_jitter: 50ms, timeout: 150ms, healthy_threshold: 2, unhealthy_threshold: 2}
outlier_detection: {consecutive_5xx: 5, interval: 1s, base_ejection_time: 2s, max_ejection_percent: 50}`,
	}.String()
	p := startProxy(t, cfg)
	client := testClient(t, p.listener("ingress"))

	stop := make(chan struct{})
	var calls, failed atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the load
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var inflight sync.WaitGroup
		defer inflight.Wait()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				calls.Add(1)
				if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{ResponseSize: 64}); err != nil {
					if failed.Add(1) <= 5 {
						t.Logf("call failed: %v", err)
					}
				}
			}()
		}
	}()
	wg.Add(1)
	go func() { // the chaos: one backend down at a time, for 1-3 s
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(1000+rand.IntN(2000)) * time.Millisecond):
			}
			i := rand.IntN(n)
			procs[i].kill()
			select {
			case <-stop:
			case <-time.After(time.Duration(1000+rand.IntN(2000)) * time.Millisecond):
			}
			procs[i].start("zone-a")
		}
	}()

	warm := min(time.Minute, d/3)
	time.Sleep(warm)
	g0, m0 := p.runtimeStats()
	time.Sleep(d - warm)
	close(stop)
	wg.Wait()
	time.Sleep(2 * time.Second) // let connections and timers settle
	g1, m1 := p.runtimeStats()
	t.Logf("%d calls, %d failed; goroutines %d -> %d; heap %d -> %d bytes", calls.Load(), failed.Load(), g0, g1, m0, m1)
	if failed.Load() != 0 {
		t.Errorf("%d of %d calls failed, want 0", failed.Load(), calls.Load())
	}
	if g1 > g0+20 {
		t.Errorf("goroutines grew from %d to %d", g0, g1)
	}
	if m1 > m0*2 && m1-m0 > 16<<20 {
		t.Errorf("heap grew from %d to %d bytes", m0, m1)
	}
}

var (
	goroutinesRe = regexp.MustCompile(`(?m)^server\.go\.goroutines: (\d+)$`)
	memoryRe     = regexp.MustCompile(`(?m)^server\.memory_allocated: (\d+)$`)
)

// runtimeStats reads the proxy's goroutine count and allocated heap from
// /stats.
func (p *proxy) runtimeStats() (goroutines, heap int64) {
	p.t.Helper()
	_, body := p.adminGet("/stats")
	g := goroutinesRe.FindStringSubmatch(body)
	m := memoryRe.FindStringSubmatch(body)
	if g == nil || m == nil {
		p.t.Fatalf("/stats lacks server.go.goroutines or server.memory_allocated")
	}
	goroutines, _ = strconv.ParseInt(g[1], 10, 64)
	heap, _ = strconv.ParseInt(m[1], 10, 64)
	return goroutines, heap
}
