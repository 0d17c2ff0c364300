package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// weightedConfig is routedConfig with the endpoints of "upstream" given
// weights (in order) and more listeners.
func weightedConfig(addrs []string, weights []int, listeners string) string {
	var eps []string
	for i, a := range addrs {
		eps = append(eps, fmt.Sprintf("{address: %q, weight: %d}", a, weights[i]))
	}
	return routedConfig{
		top:       "server: {drain_time: 50ms, drain_timeout: 5s}",
		cluster:   "endpoints: [" + strings.Join(eps, ", ") + "]",
		listeners: listeners,
	}.String()
}

// rewrite replaces the proxy's config file, admin section kept.
func (p *proxy) rewrite(body string) {
	p.t.Helper()
	cfg := fmt.Sprintf("admin: {address: %q}\n%s", p.admin, body)
	tmp := p.cfgPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(cfg), 0o600); err != nil {
		p.t.Fatal(err)
	}
	if err := os.Rename(tmp, p.cfgPath); err != nil { // an atomic save, as editors do
		p.t.Fatal(err)
	}
}

func (p *proxy) sighup() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		p.t.Fatal(err)
	}
}

// counter reads a counter from /stats (0 when absent).
func (p *proxy) counter(name string) int64 {
	p.t.Helper()
	_, body := p.adminGet("/stats")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `: (\d+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// steadyLoad sends unary calls over one client connection at rate per
// second until stop is closed, counting failures.
type steadyLoad struct {
	calls, failed atomic.Int64
	first         atomic.Value // the first error
	stop          chan struct{}
	done          sync.WaitGroup
}

func startSteadyLoad(t *testing.T, client testgrpc.TestServiceClient, rate int) *steadyLoad {
	l := &steadyLoad{stop: make(chan struct{})}
	l.done.Add(1)
	go func() {
		defer l.done.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		var inflight sync.WaitGroup
		defer inflight.Wait()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				l.calls.Add(1)
				if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{ResponseSize: 8}); err != nil {
					l.failed.Add(1)
					l.first.CompareAndSwap(nil, err.Error())
				}
			}()
		}
	}()
	return l
}

func (l *steadyLoad) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.done.Wait()
	if n := l.failed.Load(); n > 0 {
		t.Fatalf("%d of %d calls failed across the reloads; first: %v", n, l.calls.Load(), l.first.Load())
	}
	t.Logf("%d calls, none failed", l.calls.Load())
}

// TestReloadUnderLoad is the scenario: 500 calls/s over one
// connection for 6 s; the config is rewritten (new weights, a new backend,
// a new listener) and SIGHUP sent: no call fails and the new backend gets
// calls. Then an invalid file and SIGHUP: the proxy keeps serving the
// previous config and counts the refusal.
func TestReloadUnderLoad(t *testing.T) {
	bs := startBackends(t, 3)
	addrs := addrsOf(bs)
	p := startProxy(t, weightedConfig(addrs[:2], []int{1, 1}, ""))
	client := testClient(t, p.listener("ingress"))
	hashBefore := p.serverInfoFresh()["config_hash"]

	load := startSteadyLoad(t, client, 500)
	time.Sleep(2 * time.Second)
	extra := `- name: extra
  address: 127.0.0.1:0
  virtual_hosts: [{name: all, domains: ['*'], routes: [{match: {prefix: /}, cluster: upstream}]}]`
	p.rewrite(weightedConfig(addrs, []int{1, 3, 2}, extra))
	p.sighup()
	if err := eventually(5*time.Second, func() error {
		if n := p.counter("server.config_reload"); n != 1 {
			return fmt.Errorf("server.config_reload = %d", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before := bs[2].Calls()
	time.Sleep(2 * time.Second)
	if got := bs[2].Calls() - before; got == 0 {
		t.Fatalf("the backend added by the reload got no calls")
	}
	time.Sleep(2 * time.Second)
	load.finish(t)

	info := p.serverInfoFresh()
	if info["config_hash"] == hashBefore || info["config_loaded_at"] == "" {
		t.Fatalf("/server_info config_hash %v (was %v), loaded at %v", info["config_hash"], hashBefore, info["config_loaded_at"])
	}
	// The listener the reload added serves.
	extraAddr := ""
	for _, l := range info["listeners"].([]any) {
		if s := l.(string); strings.HasPrefix(s, "extra=") {
			extraAddr = strings.TrimPrefix(s, "extra=")
		}
	}
	if extraAddr == "" {
		t.Fatalf("/server_info lacks the new listener: %v", info["listeners"])
	}
	if _, err := testClient(t, extraAddr).EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
		t.Fatalf("call through the listener the reload added: %v", err)
	}

	// An invalid config is refused; the previous one keeps serving.
	p.rewrite("listeners: [{name: broken, address: 'not an address'}]\nclusters: []\n")
	p.sighup()
	if err := eventually(5*time.Second, func() error {
		if n := p.counter("server.config_reload_failed"); n != 1 {
			return fmt.Errorf("server.config_reload_failed = %d", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if _, err := client.EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
			t.Fatalf("call %d after the refused reload: %v", i, err)
		}
	}
	if !strings.Contains(p.output.String(), "config reload refused") || !strings.Contains(p.output.String(), p.cfgPath+":") {
		t.Fatalf("the refusal did not log its problems with file:line:column:\n%s", tail(p.output.String(), 3000))
	}
	if n := p.counter("server.config_reload"); n != 1 {
		t.Fatalf("server.config_reload = %d after the refusal, want still 1", n)
	}
}

// serverInfoFresh reads /server_info now (serverInfo caches).
func (p *proxy) serverInfoFresh() map[string]any {
	p.t.Helper()
	code, body := p.adminGet("/server_info")
	if code != 200 {
		p.t.Fatalf("/server_info = %d", code)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		p.t.Fatal(err)
	}
	return m
}

// openFDs counts the process's open file descriptors.
func (p *proxy) openFDs() int {
	p.t.Helper()
	ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(p.cmd.Process.Pid), "fd"))
	if err != nil {
		p.t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(ents)
}

// TestFiftyReloadsUnderLoad: fifty reloads in a row, each changing the
// cluster (so it is rebuilt and the old one drained), under load: no call
// fails, and goroutines and file descriptors come back to where they were.
func TestFiftyReloadsUnderLoad(t *testing.T) {
	bs := startBackends(t, 3)
	addrs := addrsOf(bs)
	p := startProxy(t, weightedConfig(addrs, []int{1, 1, 1}, ""))
	client := testClient(t, p.listener("ingress"))
	for range 50 { // warm up connections
		client.EmptyCall(callCtx(t), &testgrpc.Empty{})
	}
	time.Sleep(1500 * time.Millisecond)
	g0, _ := p.runtimeStats()
	fd0 := p.openFDs()

	load := startSteadyLoad(t, client, 200)
	for i := range 50 {
		time.Sleep(50 * time.Millisecond)
		p.rewrite(weightedConfig(addrs, []int{1 + i%3, 1 + (i+1)%3, 1}, ""))
		p.sighup()
		want := int64(i + 1)
		if err := eventually(5*time.Second, func() error {
			if n := p.counter("server.config_reload"); n != want {
				return fmt.Errorf("server.config_reload = %d, want %d", n, want)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	load.finish(t)

	// Retired clusters close after a grace; then the counts settle.
	var g1, fd1 int
	if err := eventually(15*time.Second, func() error {
		g, _ := p.runtimeStats()
		g1, fd1 = int(g), p.openFDs()
		if g1 > int(g0)+10 || fd1 > fd0+10 {
			return fmt.Errorf("goroutines %d -> %d, fds %d -> %d", g0, g1, fd0, fd1)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("goroutines %d -> %d, fds %d -> %d", g0, g1, fd0, fd1)
}

// TestWatchReloads: with --watch, saving the config (an atomic rename)
// reloads it without a signal.
func TestWatchReloads(t *testing.T) {
	bs := startBackends(t, 2)
	p := startProxy(t, weightedConfig(addrsOf(bs)[:1], []int{1}, ""), "--watch")
	client := testClient(t, p.listener("ingress"))
	p.rewrite(weightedConfig(addrsOf(bs)[1:], []int{1}, ""))
	if err := eventually(5*time.Second, func() error {
		if n := p.counter("server.config_reload"); n != 1 {
			return fmt.Errorf("server.config_reload = %d", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before := bs[1].Calls()
	for range 10 {
		if _, err := client.EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	if bs[1].Calls()-before != 10 {
		t.Fatalf("the backend of the reloaded config got %d of 10 calls", bs[1].Calls()-before)
	}
}

// TestShutdownUnderLoadLosesNothing: SIGTERM during a load; every call in
// flight completes, the process exits 0, and the access log has a line for
// every call the clients saw complete.
func TestShutdownUnderLoadLosesNothing(t *testing.T) {
	bs := startBackends(t, 2)
	logPath := filepath.Join(t.TempDir(), "access.log")
	cfg := routedConfig{
		top:      "server: {drain_time: 200ms, drain_timeout: 5s}",
		listener: fmt.Sprintf("access_log: [{path: %q, flush_interval: 1s}]", logPath),
		cluster:  "endpoints: " + endpoints(addrsOf(bs)...),
	}.String()
	p := startProxy(t, cfg)
	client := testClient(t, p.listener("ingress"))
	var completed, failed atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Each call takes ~100 ms on the backend, so some are in
				// flight at SIGTERM.
				stream, err := client.StreamingOutputCall(callCtx(t), &testgrpc.StreamingOutputCallRequest{
					ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1, IntervalUs: 100000}},
				})
				if err == nil {
					for err == nil {
						_, err = stream.Recv()
					}
					if err.Error() == "EOF" {
						err = nil
					}
				}
				if err != nil {
					// After the listener stops, new calls cannot connect:
					// only calls that started count.
					if strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "Unavailable") {
						return
					}
					failed.Add(1)
					return
				}
				completed.Add(1)
			}
		}()
	}
	time.Sleep(time.Second)
	code, _ := p.stop()
	close(stop)
	wg.Wait()
	if code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if failed.Load() != 0 {
		t.Fatalf("%d calls in flight at SIGTERM failed", failed.Load())
	}
	lines := readAccessLog(t, logPath)
	if int64(len(lines)) < completed.Load() {
		t.Fatalf("access log has %d lines for %d completed calls", len(lines), completed.Load())
	}
	t.Logf("%d calls completed, %d access-log lines", completed.Load(), len(lines))
}

// TestDrainListenersEndpoint: POST /drain_listeners fails /ready at once
// and drains the proxy to a clean exit, as SIGTERM does.
func TestDrainListenersEndpoint(t *testing.T) {
	bs := startBackends(t, 1)
	p := startProxy(t, "server: {drain_time: 300ms, drain_timeout: 2s}\n"+simpleConfig("round_robin", bs[0].Addr))
	if code, _ := p.adminPost("/drain_listeners"); code != 200 {
		t.Fatalf("POST /drain_listeners = %d", code)
	}
	if code, body, err := p.tryAdmin(http.MethodGet, "/ready"); err == nil && code != 503 {
		t.Fatalf("/ready = %d %q right after /drain_listeners, want 503", code, body)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy did not exit after /drain_listeners")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after /drain_listeners", code)
	}
}
