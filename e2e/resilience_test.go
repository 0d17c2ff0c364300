package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sightline-proxy/sightline/internal/backend"
	"github.com/sightline-proxy/sightline/internal/jsonlines"
	"github.com/sightline-proxy/sightline/internal/testnet"
)

// backendProcess is a backend in a process of its own (this test binary,
// see TestMain), so that it can be SIGKILLed as a crashing service is.
type backendProcess struct {
	t    *testing.T
	addr string
	cmd  *exec.Cmd
}

func startBackendProcess(t *testing.T, addr, zone string) *backendProcess {
	t.Helper()
	b := &backendProcess{t: t, addr: addr}
	b.start(zone)
	t.Cleanup(func() { b.kill() })
	return b
}

func (b *backendProcess) start(zone string) {
	b.t.Helper()
	b.cmd = exec.Command(os.Args[0], "-test.run=^$")
	b.cmd.Env = append(os.Environ(), backendProcessEnv+"="+b.addr, "SIGHTLINE_E2E_BACKEND_ZONE="+zone)
	b.cmd.Stderr = os.Stderr
	if err := b.cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	if err := eventually(10*time.Second, func() error {
		c, err := net.DialTimeout("tcp", b.addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}); err != nil {
		b.t.Fatalf("backend process on %s did not start: %v", b.addr, err)
	}
}

func (b *backendProcess) kill() {
	if b.cmd == nil || b.cmd.Process == nil {
		return
	}
	b.cmd.Process.Signal(syscall.SIGKILL)
	b.cmd.Wait()
	b.cmd = nil
}

// healthEvents reads the health-check event log: one decoded object a line.
func healthEvents(t *testing.T, path string) []map[string]any {
	t.Helper()
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return nil
	}
	return jsonlines.Read(t, path)
}

// hasEvent reports whether the log has an event of kind for addr.
func hasEvent(events []map[string]any, kind, addr string) bool {
	host, port, _ := net.SplitHostPort(addr)
	for _, e := range events {
		h, _ := e["host"].(map[string]any)
		if _, ok := e[kind]; ok && h["address"] == host && fmt.Sprint(h["port"]) == port {
			return true
		}
	}
	return false
}

type clusterStatuses struct {
	Clusters []struct {
		Name        string `json:"name"`
		Panic       bool   `json:"panic"`
		ZoneRouting struct {
			Active bool   `json:"active"`
			State  string `json:"state"`
		} `json:"zone_routing"`
		Hosts []struct {
			Address     string `json:"address"`
			Zone        string `json:"zone"`
			HealthFlags string `json:"health_flags"`
			RqTotal     uint64 `json:"rq_total"`
		} `json:"host_statuses"`
	} `json:"cluster_statuses"`
}

func (p *proxy) clusterStatuses() clusterStatuses {
	p.t.Helper()
	code, body := p.adminGet("/clusters?format=json")
	if code != 200 {
		p.t.Fatalf("/clusters = %d", code)
	}
	var cs clusterStatuses
	if err := json.Unmarshal([]byte(body), &cs); err != nil {
		p.t.Fatal(err)
	}
	return cs
}

// hostFlags returns the health flags /clusters shows for addr.
func (p *proxy) hostFlags(addr string) string {
	for _, c := range p.clusterStatuses().Clusters {
		for _, h := range c.Hosts {
			if h.Address == addr {
				return h.HealthFlags
			}
		}
	}
	return "(absent)"
}

// load sends n unary calls at rate per second from a few workers and
// returns the errors, as a client of the proxy sees them.
func load(t *testing.T, client testgrpc.TestServiceClient, n, rate int) (failures chan error, done chan struct{}) {
	failures = make(chan error, n)
	done = make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		var wg sync.WaitGroup
		for range n {
			<-tick.C
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx := callCtx(t)
				if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 16}); err != nil {
					failures <- err
				}
			}()
		}
		wg.Wait()
	}()
	return failures, done
}

// TestHealthChecksAndRetriesHideACrash is the scenario: three
// backends checked over gRPC every 200 ms with thresholds of 2; one is
// SIGKILLed during 2,000 calls at 250/s, then restarted on its port. The
// event log and /clusters show it leave and come back within 3 s each, and
// with retries on connect-failure, unavailable and reset no call fails.
func TestHealthChecksAndRetriesHideACrash(t *testing.T) {
	inproc := startBackends(t, 2)
	victimAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	victim := startBackendProcess(t, victimAddr, "zone-a")
	events := filepath.Join(t.TempDir(), "health.log")
	cfg := routedConfig{
		route: "retry_policy: {retry_on: 'connect-failure,unavailable,reset', num_retries: 2}",
		// Until the victim is ejected, a third of the calls fail on it
		// and are retried at once: more than the default max_retries (3)
		// can be in flight together on a slow machine, and a retry the
		// breaker refuses leaves its call failed (UO), as in Envoy. The
		// scenario is about retries hiding the crash, so the breaker
		// is opened up.
		cluster: fmt.Sprintf(`connect_timeout: 250ms
circuit_breakers: {max_retries: 100}
endpoints: %s
health_check:
  grpc: {}
  interval: 200ms
  interval_jitter: 0s
  timeout: 150ms
  healthy_threshold: 2
  unhealthy_threshold: 2
  event_log_path: %q`, endpoints(append(addrsOf(inproc), victimAddr)...), events),
	}.String()
	p := startProxy(t, cfg)
	client := testClient(t, p.listener("ingress"))

	failures, done := load(t, client, 2000, 250)
	time.Sleep(2 * time.Second)
	victim.kill()
	killed := time.Now()
	if err := eventually(3*time.Second, func() error {
		if !hasEvent(healthEvents(t, events), "eject_unhealthy_event", victimAddr) {
			return fmt.Errorf("no eject_unhealthy_event for %s", victimAddr)
		}
		if f := p.hostFlags(victimAddr); !strings.Contains(f, "failed_active_hc") {
			return fmt.Errorf("/clusters shows %s as %q", victimAddr, f)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v within 3 s of the kill", err)
	}
	t.Logf("ejected %v after the kill", time.Since(killed).Round(time.Millisecond))

	victim.start("zone-a")
	restarted := time.Now()
	if err := eventually(3*time.Second, func() error {
		if !hasEvent(healthEvents(t, events), "add_healthy_event", victimAddr) {
			return fmt.Errorf("no add_healthy_event for %s after the restart", victimAddr)
		}
		if f := p.hostFlags(victimAddr); f != "healthy" {
			return fmt.Errorf("/clusters shows %s as %q", victimAddr, f)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v within 3 s of the restart", err)
	}
	t.Logf("back %v after the restart", time.Since(restarted).Round(time.Millisecond))

	<-done
	close(failures)
	var errs []string
	for err := range failures {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		t.Fatalf("%d of 2000 calls failed, want 0; first: %s", len(errs), errs[0])
	}
	// One eject and one add for the victim: state changes only, no
	// per-check lines.
	ev := healthEvents(t, events)
	var forVictim int
	for _, e := range ev {
		h, _ := e["host"].(map[string]any)
		if fmt.Sprint(h["port"]) == victimAddr[strings.LastIndexByte(victimAddr, ':')+1:] {
			forVictim++
		}
	}
	if forVictim > 3 {
		t.Fatalf("%d event lines for the victim, want its state changes only:\n%v", forVictim, ev)
	}
	if code, body := p.adminGet("/stats"); code != 200 || !strings.Contains(body, "cluster.upstream.upstream_rq_retry:") {
		t.Fatalf("/stats lacks upstream_rq_retry")
	}
}

// startFailingBackend serves every gRPC method with code.
func startFailingBackend(t *testing.T, code codes.Code) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return status.Error(code, "failing on purpose")
	}))
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// TestOutlierDetectionEjectsA5xxBackend: a backend that answers every call
// with INTERNAL is ejected after consecutive_5xx failures and the others
// take the traffic.
func TestOutlierDetectionEjectsA5xxBackend(t *testing.T) {
	good := startBackends(t, 2)
	bad := startFailingBackend(t, codes.Internal)
	cfg := routedConfig{cluster: fmt.Sprintf(`endpoints: %s
outlier_detection: {consecutive_5xx: 3, interval: 1s, base_ejection_time: 30s, max_ejection_percent: 50}`,
		endpoints(append(addrsOf(good), bad)...))}.String()
	p := startProxy(t, cfg)
	client := testClient(t, p.listener("ingress"))
	failed := 0
	for range 30 {
		if _, err := client.EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
			failed++
		}
	}
	if f := p.hostFlags(bad); !strings.Contains(f, "failed_outlier_check") {
		t.Fatalf("/clusters shows the failing backend as %q, want failed_outlier_check", f)
	}
	if failed != 3 {
		t.Fatalf("%d calls failed, want exactly consecutive_5xx = 3 before the ejection", failed)
	}
	for i := range 30 {
		if _, err := client.EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
			t.Fatalf("call %d after the ejection: %v", i, err)
		}
	}
	_, body := p.adminGet("/stats")
	if !strings.Contains(body, "cluster.upstream.outlier_detection.ejections_enforced_total: 1") ||
		!strings.Contains(body, "cluster.upstream.outlier_detection.ejections_active: 1") {
		t.Fatalf("outlier stats:\n%s", grepLines(body, "outlier"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestCircuitBreakerRejectsTheExcess: with max_requests 10, 50 concurrent
// slow calls: the excess is refused at once with UNAVAILABLE and UO, and
// counted.
func TestCircuitBreakerRejectsTheExcess(t *testing.T) {
	bs := startBackends(t, 1)
	cfg := routedConfig{cluster: "endpoints: " + endpoints(addrsOf(bs)...) + "\ncircuit_breakers: {max_requests: 10}"}.String()
	p := startProxy(t, cfg)
	client := testClient(t, p.listener("ingress"))
	var ok, overflow, other atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var trailer metadata.MD
			// A call that takes 500 ms on the backend.
			stream, err := client.StreamingOutputCall(callCtx(t), &testgrpc.StreamingOutputCallRequest{
				ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1, IntervalUs: 500000}},
			}, grpc.Trailer(&trailer))
			if err == nil {
				for {
					if _, err = stream.Recv(); err != nil {
						break
					}
				}
			}
			switch {
			case err != nil && err.Error() == "EOF", err == nil:
				ok.Add(1)
			case status.Code(err) == codes.Unavailable && strings.Join(trailer.Get("x-sightline-response-flags"), "") == "UO":
				overflow.Add(1)
			default:
				other.Add(1)
				t.Logf("unexpected: %v (flags %v)", err, trailer.Get("x-sightline-response-flags"))
			}
		}()
	}
	close(start)
	wg.Wait()
	if other.Load() != 0 || ok.Load() < 10 || overflow.Load() == 0 || ok.Load()+overflow.Load() != 50 {
		t.Fatalf("%d completed, %d refused with UO, %d other; want 10+ completed and the rest refused", ok.Load(), overflow.Load(), other.Load())
	}
	_, body := p.adminGet("/stats")
	want := fmt.Sprintf("cluster.upstream.upstream_rq_pending_overflow: %d", overflow.Load())
	if !strings.Contains(body, want) {
		t.Fatalf("/stats lacks %q:\n%s", want, grepLines(body, "overflow"))
	}
}

// TestZoneAwareRouting: the proxy in zone-a, two hosts there and four in
// zone-b, every zone taken to send an equal share. Envoy's algorithm keeps
// upstream/local = (2/6)/(1/2) = 66.7% of the calls in zone-a and sends the
// rest across. With zone-a's hosts gone, traffic crosses zones with no
// failed call.
func TestZoneAwareRouting(t *testing.T) {
	local := startBackends(t, 2)
	var remote []*backend.Backend
	for i := range 4 {
		b, err := backend.Start("127.0.0.1:0", fmt.Sprintf("remote-%d", i), "zone-b")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Stop)
		remote = append(remote, b)
	}
	var eps []string
	for _, b := range local {
		eps = append(eps, fmt.Sprintf("{address: %q, zone: zone-a}", b.Addr))
	}
	for _, b := range remote {
		eps = append(eps, fmt.Sprintf("{address: %q, zone: zone-b}", b.Addr))
	}
	cfg := routedConfig{
		route: "retry_policy: {retry_on: 'connect-failure,unavailable,reset', num_retries: 3}",
		cluster: `connect_timeout: 250ms
zone_aware: {enabled: true, min_cluster_size: 6}
endpoints: [` + strings.Join(eps, ", ") + `]
health_check: {grpc: {}, interval: 200ms, interval_jitter: 0s, timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 1}`,
	}.String()
	p := startProxy(t, cfg)
	cs := p.clusterStatuses()
	if zr := cs.Clusters[0].ZoneRouting; !zr.Active || !strings.HasPrefix(zr.State, "sampled") {
		t.Fatalf("/clusters zone routing = %+v, want active and sampled", zr)
	}
	client := testClient(t, p.listener("ingress"))
	const n = 3000
	for i := range n {
		if _, err := client.EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	var inLocal int64
	for _, b := range local {
		inLocal += b.Calls()
	}
	share := float64(inLocal) / n
	if share < 0.6166 || share > 0.7166 {
		t.Fatalf("zone-a got %.1f%% of the calls, want 66.7%% ± 5", share*100)
	}
	_, body := p.adminGet("/stats")
	for _, stat := range []string{"lb_zone_routing_sampled", "lb_zone_routing_cross_zone"} {
		if !strings.Contains(body, "cluster.upstream."+stat+":") {
			t.Fatalf("/stats lacks %s:\n%s", stat, grepLines(body, "lb_zone"))
		}
	}
	// The per-zone stats agree with where the calls went.
	if !strings.Contains(body, "cluster.upstream.zone.zone-a.zone-a.upstream_rq_200: "+strconv.FormatInt(inLocal, 10)) {
		t.Fatalf("zone-a.zone-a stats do not say %d:\n%s", inLocal, grepLines(body, ".zone."))
	}

	// The local zone goes away: calls cross zones, none fails.
	for _, b := range local {
		b.Stop()
	}
	for i := range 500 {
		if _, err := client.EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
			t.Fatalf("call %d after zone-a went down: %v", i, err)
		}
	}
	if err := eventually(3*time.Second, func() error {
		if zr := p.clusterStatuses().Clusters[0].ZoneRouting; zr.Active {
			return fmt.Errorf("zone routing still %q with zone-a down", zr.State)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestNoHealthyHost: with every host failing its checks and no panic
// mode, calls fail at once with UNAVAILABLE and UH.
func TestNoHealthyHost(t *testing.T) {
	cfg := routedConfig{cluster: "panic_threshold: 0\nendpoints: " + endpoints(testnet.ClosedPort(t)) +
		"\nhealth_check: {tcp: {}, interval: 200ms, timeout: 100ms, healthy_threshold: 1, unhealthy_threshold: 1}"}.String()
	p := startProxy(t, cfg)
	client := testClient(t, p.listener("ingress"))
	var trailer metadata.MD
	start := time.Now()
	_, err := client.EmptyCall(callCtx(t), &testgrpc.Empty{}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.Unavailable || strings.Join(trailer.Get("x-sightline-response-flags"), "") != "UH" {
		t.Fatalf("got %v with flags %v, want UNAVAILABLE and UH", err, trailer.Get("x-sightline-response-flags"))
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v; a cluster with no healthy host must answer at once", d)
	}
}
