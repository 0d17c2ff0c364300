package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/sightline-proxy/sightline/internal/backend"
	"github.com/sightline-proxy/sightline/internal/leakcheck"
)

// Timeouts of the harness. They are generous: the machine may be slow and
// shared, and a race-built proxy is several times slower than a plain one.
const (
	readyTimeout = 20 * time.Second // from exec to /ready = 200
	stopTimeout  = 20 * time.Second // from SIGTERM to exit
	callTimeout  = 10 * time.Second // one gRPC call that should succeed
)

var (
	// binPath is the sightline binary TestMain built.
	binPath string
	// repoRoot is the module's root directory.
	repoRoot string
)

// TestMain builds the sightline binary once for every test. When the tests
// run under the race detector the proxy is built with it too, so that a data
// race in the proxy under real traffic fails the test that caused it (the
// race-built binary then exits 66 instead of 0).
func TestMain(m *testing.M) {
	if addr := os.Getenv(backendProcessEnv); addr != "" {
		runBackendProcess(addr)
		return
	}
	os.Exit(buildAndRun(m))
}

// backendProcessEnv makes the test binary a backend process instead: a
// backend that can be SIGKILLed, as a crashing service is.
const backendProcessEnv = "SIGHTLINE_E2E_BACKEND_ADDR"

func runBackendProcess(addr string) {
	if _, err := backend.Start(addr, "process", os.Getenv("SIGHTLINE_E2E_BACKEND_ZONE")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	select {}
}

func buildAndRun(m *testing.M) int {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		fmt.Fprintln(os.Stderr, "e2e: cannot find the test file's directory")
		return 1
	}
	repoRoot = filepath.Dir(filepath.Dir(file))
	dir, err := os.MkdirTemp("", "sightline-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binPath = filepath.Join(dir, "sightline")
	args := []string{"build", "-o", binPath}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/sightline")
	cmd := exec.Command("go", args...)
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go %s: %v\n%s", strings.Join(args, " "), err, out)
		return 1
	}
	code := m.Run()
	if code == 0 {
		// Every goroutine is a suspect: the backends, receivers and
		// clients each test starts must be gone once it ends.
		if leaked := leakcheck.WaitAll(10 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "e2e: leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	return code
}

// procEnv is the environment of the sightline processes the tests run. A
// race-built binary sleeps a second at exit by default so that late race
// reports make it out; the tests wait for the exit anyway, so that second
// only slows every test down. A GORACE the user set is kept.
func procEnv() []string {
	env := os.Environ()
	if raceEnabled && os.Getenv("GORACE") == "" {
		env = append(env, "GORACE=atexit_sleep_ms=50")
	}
	return env
}

// lockedBuffer collects a process's output; it is written by exec's copying
// goroutine and read by the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tail returns the last n bytes of s, for failure messages.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// proxy is one running sightline process.
type proxy struct {
	t       *testing.T
	cmd     *exec.Cmd
	admin   string // admin host:port
	cfgPath string
	output  *lockedBuffer // stdout and stderr

	exited  chan struct{} // closed when the process has exited
	waitErr error         // valid once exited is closed

	stopOnce sync.Once
	infoOnce sync.Once
	info     serverInfo
}

// serverInfo is the part of /server_info the tests read.
type serverInfo struct {
	Version   string   `json:"version"`
	Commit    string   `json:"commit"`
	GoVersion string   `json:"go_version"`
	State     string   `json:"state"`
	Listeners []string `json:"listeners"`
	Admin     string   `json:"admin_address"`
	Node      struct {
		ID   string `json:"id"`
		Zone string `json:"zone"`
	} `json:"node"`
}

// startProxy writes body (a config without an admin section) to a file in
// t.TempDir(), adds an admin address on a free loopback port, runs
// `sightline [extraArgs] -c FILE` and waits until /ready answers 200. The
// process is stopped with SIGTERM when the test ends, and must exit 0.
//
// Listeners should use 127.0.0.1:0; proxy.listener reads the bound address
// from /server_info.
func startProxy(t *testing.T, body string, extraArgs ...string) *proxy {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "sightline.yaml")
	// The admin port is picked free and then closed, so another process may
	// take it before the proxy binds it: try again with another port then.
	var lastOutput string
	for attempt := 0; attempt < 3; attempt++ {
		admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		cfg := fmt.Sprintf("admin: {address: %q}\n%s", admin, body)
		if rest, ok := strings.CutPrefix(body, "admin: {"); ok {
			// The body sets admin keys of its own: the address joins them.
			cfg = fmt.Sprintf("admin: {address: %q, %s", admin, rest)
		}
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		p := &proxy{t: t, admin: admin, cfgPath: cfgPath, output: &lockedBuffer{}, exited: make(chan struct{})}
		args := append(append([]string{}, extraArgs...), "-c", cfgPath)
		p.cmd = exec.Command(binPath, args...)
		p.cmd.Env = procEnv()
		p.cmd.Stdout = p.output
		p.cmd.Stderr = p.output
		if err := p.cmd.Start(); err != nil {
			t.Fatalf("starting sightline: %v", err)
		}
		go func() {
			p.waitErr = p.cmd.Wait()
			close(p.exited)
		}()
		err := p.waitReady(readyTimeout)
		if err == nil {
			t.Cleanup(p.cleanup)
			return p
		}
		p.kill()
		lastOutput = p.output.String()
		if !strings.Contains(lastOutput, "address already in use") {
			t.Fatalf("sightline did not become ready: %v\nconfig:\n%s\noutput:\n%s", err, cfg, tail(lastOutput, 4000))
		}
	}
	t.Fatalf("sightline could not bind its ports after 3 attempts:\n%s", tail(lastOutput, 4000))
	return nil
}

// waitReady polls /ready until it answers 200, the process exits or the
// timeout passes.
func (p *proxy) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("sightline exited before it was ready: %v", p.waitErr)
		default:
		}
		resp, err := client.Get("http://" + p.admin + "/ready")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("/ready did not answer 200 within %v (last error: %v)", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill ends a process that failed to start.
func (p *proxy) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// cleanup stops the proxy if the test has not, asserts a clean exit and shows
// the proxy's output when the test failed.
func (p *proxy) cleanup() {
	p.stopOnce.Do(func() {
		code, _ := p.terminate()
		if code != 0 {
			p.t.Errorf("sightline exited with code %d after SIGTERM, want 0", code)
		}
	})
	out := p.output.String()
	if strings.Contains(out, "WARNING: DATA RACE") {
		p.t.Errorf("the race detector found a data race in sightline:\n%s", tail(out, 20000))
		return
	}
	if p.t.Failed() {
		p.t.Logf("sightline output:\n%s", tail(out, 8000))
	}
}

// stop sends SIGTERM and waits for the process to exit; it returns the exit
// code and how long the exit took. The test fails if it does not exit within
// stopTimeout.
func (p *proxy) stop() (code int, took time.Duration) {
	p.t.Helper()
	code = -1
	p.stopOnce.Do(func() { code, took = p.terminate() })
	return code, took
}

func (p *proxy) terminate() (int, time.Duration) {
	start := time.Now()
	select {
	case <-p.exited:
	default:
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			p.t.Errorf("sending SIGTERM: %v", err)
		}
	}
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		p.t.Errorf("sightline did not exit within %v of SIGTERM; killing it", stopTimeout)
		p.kill()
	}
	return p.cmd.ProcessState.ExitCode(), time.Since(start)
}

// serverInfo returns /server_info, read once.
func (p *proxy) serverInfo() serverInfo {
	p.t.Helper()
	p.infoOnce.Do(func() {
		status, body := p.adminGet("/server_info")
		if status != http.StatusOK {
			p.t.Fatalf("/server_info: status %d: %s", status, body)
		}
		if err := json.Unmarshal([]byte(body), &p.info); err != nil {
			p.t.Fatalf("/server_info is not JSON: %v\n%s", err, body)
		}
	})
	return p.info
}

// listener returns the bound address of the named listener.
func (p *proxy) listener(name string) string {
	p.t.Helper()
	info := p.serverInfo()
	for _, l := range info.Listeners {
		if n, addr, ok := strings.Cut(l, "="); ok && n == name {
			return addr
		}
	}
	p.t.Fatalf("/server_info lists no listener %q: %q", name, info.Listeners)
	return ""
}

// adminGet GETs an admin path and returns the status and body.
func (p *proxy) adminGet(path string) (int, string) {
	p.t.Helper()
	return p.adminDo(http.MethodGet, path)
}

// adminPost POSTs to an admin path and returns the status and body.
func (p *proxy) adminPost(path string) (int, string) {
	p.t.Helper()
	return p.adminDo(http.MethodPost, path)
}

func (p *proxy) adminDo(method, path string) (int, string) {
	p.t.Helper()
	code, body, err := p.tryAdmin(method, path)
	if err != nil {
		p.t.Fatal(err)
	}
	return code, body
}

// tryAdmin is adminDo for callers that expect the admin server may be gone.
func (p *proxy) tryAdmin(method, path string) (int, string, error) {
	req, err := http.NewRequest(method, "http://"+p.admin+path, nil)
	if err != nil {
		return 0, "", err
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", fmt.Errorf("%s %s: reading body: %w", method, path, err)
	}
	return resp.StatusCode, string(b), nil
}

// readyDuringDrain polls /ready after SIGTERM until it answers 503, and
// returns an error saying what it saw otherwise. It gives up at once when
// the process has exited.
func (p *proxy) readyDuringDrain(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		code, body, err := p.tryAdmin(http.MethodGet, "/ready")
		switch {
		case err == nil && code == http.StatusServiceUnavailable:
			return nil
		case err == nil:
			err = fmt.Errorf("/ready answers %d %q while draining, want 503", code, strings.TrimSpace(body))
		}
		select {
		case <-p.exited:
			return fmt.Errorf("/ready: the process had already exited (%v), want 503 while draining", p.waitErr)
		default:
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// freeAddr returns a loopback address that was free a moment ago, for a
// listener the test starts there later. An address that must stay dead
// is testnet.ClosedPort, which keeps the port taken.
func freeAddr(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", freePort(t))
}

// startBackends starts n interop TestService backends, stopped when the test
// ends.
func startBackends(t *testing.T, n int) []*backend.Backend {
	t.Helper()
	bs := make([]*backend.Backend, n)
	for i := range bs {
		bs[i] = startBackend(t, "127.0.0.1:0", fmt.Sprintf("backend-%d", i+1))
	}
	return bs
}

func startBackend(t *testing.T, addr, name string) *backend.Backend {
	t.Helper()
	b, err := backend.Start(addr, name, "zone-a")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	return b
}

// endpoints renders backend addresses as a flow-style endpoints list.
func endpoints(addrs ...string) string {
	parts := make([]string, len(addrs))
	for i, a := range addrs {
		parts[i] = fmt.Sprintf("{address: %q}", a)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func addrsOf(bs []*backend.Backend) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Addr
	}
	return out
}

// simpleConfig is a config with one plaintext listener named ingress, one
// catch-all route and one cluster named "upstream" over addrs.
func simpleConfig(lbPolicy string, addrs ...string) string {
	return routedConfig{cluster: "lb_policy: " + lbPolicy + "\nendpoints: " + endpoints(addrs...)}.String()
}

// routedConfig is the config most tests need: node e2e in zone-a, one
// plaintext listener named ingress with a catch-all route to the cluster
// "upstream", and what a test adds. Each part is YAML as it would sit at
// its place, without the indentation: top-level keys (server, tracing…),
// keys of the listener, of the route, and of the cluster (endpoints
// included), and whole listeners and clusters to add.
type routedConfig struct {
	top, listener, route, cluster string
	listeners, clusters           string
}

func (c routedConfig) String() string {
	return fmt.Sprintf(`node: {id: e2e, zone: zone-a}
%slisteners:
  - name: ingress
    address: 127.0.0.1:0
%s    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - match: {prefix: /}
            cluster: upstream
%s%sclusters:
  - name: upstream
%s%s`, indent(c.top, 0), indent(c.listener, 4), indent(c.route, 12), indent(c.listeners, 2),
		indent(c.cluster, 4), indent(c.clusters, 2))
}

// indent puts n spaces before every line of s, which ends with a newline
// unless empty.
func indent(s string, n int) string {
	if s == "" {
		return ""
	}
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pad + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// dialCounter counts the TCP connections a gRPC client opens.
type dialCounter struct{ n atomic.Int64 }

func (d *dialCounter) dial(ctx context.Context, addr string) (net.Conn, error) {
	d.n.Add(1)
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", addr)
}

// dialGRPC opens a plaintext gRPC client connection to addr, closed when the
// test ends. The returned counter counts the TCP connections it opened.
func dialGRPC(t *testing.T, addr string, opts ...grpc.DialOption) (*grpc.ClientConn, *dialCounter) {
	t.Helper()
	dc := &dialCounter{}
	opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dc.dial),
	}, opts...)
	conn, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		t.Fatalf("grpc.NewClient(%s): %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, dc
}

// testClient dials addr and returns a TestService client.
func testClient(t *testing.T, addr string) testgrpc.TestServiceClient {
	t.Helper()
	conn, _ := dialGRPC(t, addr)
	return testgrpc.NewTestServiceClient(conn)
}

// callCtx returns a context for one call that should succeed.
func callCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// mdValue returns the first value of key in the response header, or else in
// the trailer: a trailers-only response (a local error of the proxy, or a
// backend failing before it sent anything) carries everything in the only
// HEADERS frame, which grpc-go reports as trailers.
func mdValue(hdr, trl metadata.MD, key string) string {
	if v := hdr.Get(key); len(v) > 0 {
		return v[0]
	}
	if v := trl.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// callCounts returns every backend's call count.
func callCounts(bs []*backend.Backend) []int64 {
	out := make([]int64, len(bs))
	for i, b := range bs {
		out[i] = b.Calls()
	}
	return out
}

// deltas returns after[i]-before[i].
func deltas(before, after []int64) []int64 {
	out := make([]int64, len(before))
	for i := range before {
		out[i] = after[i] - before[i]
	}
	return out
}

// runParallel calls fn(i) for every i in [0, n) from workers goroutines and
// returns the errors, at most 10 of them, and how many there were.
func runParallel(n, workers int, fn func(i int) error) (errs []error, failed int) {
	var (
		next atomic.Int64
		mu   sync.Mutex
		wg   sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					failed++
					if len(errs) < 10 {
						errs = append(errs, fmt.Errorf("call %d: %w", i, err))
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return errs, failed
}

// eventually calls fn until it returns nil or timeout passes, and returns its
// last error.
func eventually(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
