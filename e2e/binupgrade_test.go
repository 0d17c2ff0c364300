package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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
)

// upgradeTimeout bounds one upgrade, from the request to the old
// process's exit: a race-built binary loads, health-checks and drains in
// a few seconds on a busy machine.
const upgradeTimeout = 60 * time.Second

// upgradeCallTimeout bounds one call of the load: generous, since the
// test asks that every call be answered, and a busy machine running
// three race-built processes and this one can stall them for seconds.
const upgradeCallTimeout = 30 * time.Second

// upgradable is a sightline process started with a pid file, and the
// processes that replace it. Their output goes to a file, not a pipe: a
// new process inherits the old one's stdout and stderr, and exec's Wait
// on a pipe would wait for every process that holds it.
type upgradable struct {
	t       *testing.T
	cfgPath string
	pidFile string
	admin   string
	outPath string
	first   *exec.Cmd
	exited  chan struct{} // closed when the first process has exited
	waitErr error
}

// startUpgradable writes body with an admin address on a free port, runs
// `bin run -c FILE --pid-file FILE` and waits until /ready answers 200
// and the pid file names the process. Whatever process serves when the
// test ends is stopped with SIGTERM and must exit.
func startUpgradable(t *testing.T, bin, body string) *upgradable {
	t.Helper()
	dir := t.TempDir()
	u := &upgradable{t: t, cfgPath: filepath.Join(dir, "sightline.yaml"), pidFile: filepath.Join(dir, "sightline.pid"), outPath: filepath.Join(dir, "sightline.out")}
	// The admin port is picked free and then closed: another process may
	// take it first, so try again with another port then.
	for attempt := 0; attempt < 3; attempt++ {
		u.admin = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		u.writeConfig(body)
		out, err := os.OpenFile(u.outPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		u.first = exec.Command(bin, "run", "-c", u.cfgPath, "--pid-file", u.pidFile)
		u.first.Env = procEnv()
		u.first.Stdout, u.first.Stderr = out, out
		err = u.first.Start()
		out.Close()
		if err != nil {
			t.Fatalf("starting sightline: %v", err)
		}
		u.exited = make(chan struct{})
		go func(cmd *exec.Cmd, exited chan struct{}) {
			u.waitErr = cmd.Wait()
			close(exited)
		}(u.first, u.exited)
		p := &proxy{t: t, admin: u.admin, exited: u.exited}
		if err := p.waitReady(readyTimeout); err != nil {
			u.first.Process.Kill()
			<-u.exited
			if strings.Contains(u.output(), "address already in use") {
				continue
			}
			t.Fatalf("sightline did not become ready: %v\noutput:\n%s", err, tail(u.output(), 4000))
		}
		if pid := u.waitPIDFile(0); pid != u.first.Process.Pid {
			t.Fatalf("the pid file names %d, want the process started, %d", pid, u.first.Process.Pid)
		}
		t.Cleanup(u.cleanup)
		return u
	}
	t.Fatalf("sightline could not bind its ports after 3 attempts:\n%s", tail(u.output(), 4000))
	return nil
}

func (u *upgradable) writeConfig(body string) {
	u.t.Helper()
	cfg := fmt.Sprintf("admin: {address: %q}\n%s", u.admin, body)
	if err := os.WriteFile(u.cfgPath, []byte(cfg), 0o600); err != nil {
		u.t.Fatal(err)
	}
}

// output is what every process wrote to stdout and stderr.
func (u *upgradable) output() string {
	b, _ := os.ReadFile(u.outPath)
	return string(b)
}

// proxy gives the admin helpers of the process serving now, with no
// cached answers.
func (u *upgradable) proxy() *proxy { return &proxy{t: u.t, admin: u.admin} }

// readPID returns the pid the pid file names, or 0.
func (u *upgradable) readPID() int {
	b, err := os.ReadFile(u.pidFile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// waitPIDFile waits until the pid file names a process other than not.
func (u *upgradable) waitPIDFile(not int) int {
	u.t.Helper()
	deadline := time.Now().Add(upgradeTimeout)
	for {
		if pid := u.readPID(); pid != 0 && pid != not {
			return pid
		}
		if time.Now().After(deadline) {
			u.t.Fatalf("the pid file still names %d after %v\noutput:\n%s", u.readPID(), upgradeTimeout, tail(u.output(), 4000))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// upgrade runs `sightline upgrade` with args and returns its exit code,
// stdout and stderr.
func (u *upgradable) upgrade(args ...string) (int, string, string) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), upgradeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, append([]string{"upgrade"}, args...)...)
	cmd.Env = procEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		u.t.Fatalf("running sightline upgrade: %v", err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// copyFile copies src to dst with mode perm.
func copyFile(t *testing.T, src, dst string, perm os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, perm); err != nil {
		t.Fatal(err)
	}
}

// alive reports whether pid runs: a process that is gone, or a zombie
// that no parent has reaped yet (an upgraded process's parent has
// exited before it), does not.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'X')
}

// waitExit waits until pid has exited; the first process is waited for,
// and must exit 0.
func (u *upgradable) waitExit(pid int) {
	u.t.Helper()
	if pid == u.first.Process.Pid {
		select {
		case <-u.exited:
			if u.waitErr != nil {
				u.t.Errorf("the first process exited with %v, want 0", u.waitErr)
			}
		case <-time.After(upgradeTimeout):
			u.t.Fatalf("the first process (pid %d) did not exit within %v of its upgrade", pid, upgradeTimeout)
		}
		return
	}
	deadline := time.Now().Add(upgradeTimeout)
	for alive(pid) {
		if time.Now().After(deadline) {
			u.t.Fatalf("pid %d did not exit within %v", pid, upgradeTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop ends the process serving now with SIGTERM and waits for it.
func (u *upgradable) stop() {
	u.t.Helper()
	pid := u.readPID()
	if pid == 0 || !alive(pid) {
		return
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		u.t.Fatalf("SIGTERM to %d: %v", pid, err)
	}
	u.waitExit(pid)
}

// cleanup kills what still runs (a test that failed half-way) and fails
// the test on a data race any process reported.
func (u *upgradable) cleanup() {
	for _, pid := range []int{u.readPID(), u.first.Process.Pid} {
		if pid != 0 && alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	<-u.exited
	out := u.output()
	if strings.Contains(out, "WARNING: DATA RACE") {
		u.t.Errorf("the race detector found a data race in sightline:\n%s", tail(out, 20000))
		return
	}
	if u.t.Failed() {
		u.t.Logf("sightline output:\n%s", tail(out, 8000))
	}
}

// upgradeConfig has a gRPC listener and an HTTP/1.1 one, both writing
// one access log, and a health-checked cluster, so that the new process
// is ready only after its first round of checks. The breakers are wide:
// a race-built proxy on a busy machine can stall for seconds, and 250
// calls/s then pile up past the default 1024 requests, which is not what
// this test is about.
func upgradeConfig(grpcAddrs []string, webAddr, accessLog string) string {
	return fmt.Sprintf(`node: {id: e2e, zone: zone-a}
server: {drain_time: 1s, drain_timeout: 10s}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    access_log: [{path: %[1]q, flush_interval: 100ms}]
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - match: {prefix: /}
            cluster: upstream
  - name: edge
    address: 127.0.0.1:0
    protocols: [http1]
    access_log: [{path: %[1]q, flush_interval: 100ms}]
    virtual_hosts:
      - name: web
        domains: ['*']
        routes:
          - match: {prefix: /web/}
            cluster: web
clusters:
  - name: upstream
    endpoints: %[2]s
    health_check: {interval: 1s, timeout: 5s, grpc: {}}
    circuit_breakers: {max_pending_requests: 100000, max_requests: 100000}
  - name: web
    protocol: http1
    circuit_breakers: {max_connections: 100000, max_pending_requests: 100000, max_requests: 100000}
    endpoints: [{address: %[3]q}]
`, accessLog, endpoints(grpcAddrs...), webAddr)
}

// callLoad sends calls at a steady rate from several kinds of client
// and counts what they see. Every call it sends must succeed.
type callLoad struct {
	sent, ok atomic.Int64
	mu       sync.Mutex
	failures []string
	answered []string // the x-request-id of every call that succeeded
	stop     context.CancelFunc
	wg       sync.WaitGroup
}

func (l *callLoad) fail(kind string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) < 20 {
		l.failures = append(l.failures, fmt.Sprintf("%s at %s: %v", kind, time.Now().Format("15:04:05.000"), err))
	}
}

// pace runs call rate times a second until ctx ends, each call in its
// own goroutine so that a slow one does not hold the next back. Each
// call gets its own x-request-id, "kind-n", which the access log
// records: a call logged twice or not at all can be named.
func (l *callLoad) pace(ctx context.Context, kind string, rate int, call func(ctx context.Context, id string) error) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for n := 1; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			l.sent.Add(1)
			l.wg.Add(1)
			id := strings.ReplaceAll(kind, " ", "-") + "-" + strconv.Itoa(n)
			go func() {
				defer l.wg.Done()
				// Not ctx: a call sent is waited for to its end.
				cctx, cancel := context.WithTimeout(context.Background(), upgradeCallTimeout)
				defer cancel()
				if err := call(cctx, id); err != nil {
					l.fail(id, err)
					return
				}
				l.mu.Lock()
				l.answered = append(l.answered, id)
				l.mu.Unlock()
				l.ok.Add(1)
			}()
		}
	}()
}

// startCallLoad sends about 500 calls a second: gRPC unary calls on one
// long-lived connection (250/s) and each on a new connection (25/s),
// HTTP/1.1 requests on kept-alive connections (200/s) and each on a new
// connection (25/s).
func startCallLoad(t *testing.T, grpcAddr, webAddr string) *callLoad {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &callLoad{stop: cancel}
	conn, _ := dialGRPC(t, grpcAddr)
	long := testgrpc.NewTestServiceClient(conn)
	l.pace(ctx, "grpc long-lived", 250, func(ctx context.Context, id string) error {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", id)
		_, err := long.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 32, Payload: payload(32)})
		return err
	})
	l.pace(ctx, "grpc new connection", 25, func(ctx context.Context, id string) error {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", id)
		c, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = testgrpc.NewTestServiceClient(c).UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 32})
		return err
	})
	kept := &http.Transport{MaxIdleConnsPerHost: 32}
	fresh := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(func() { kept.CloseIdleConnections() })
	for _, c := range []struct {
		kind string
		rate int
		tr   *http.Transport
	}{{"http1 kept-alive", 200, kept}, {"http1 new connection", 25, fresh}} {
		client := &http.Client{Transport: c.tr}
		l.pace(ctx, c.kind, c.rate, func(ctx context.Context, id string) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+webAddr+"/web/ok", nil)
			if err != nil {
				return err
			}
			req.Header.Set("x-request-id", id)
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %d, body %q (%v)", resp.StatusCode, tail(string(body), 200), err)
			}
			return nil
		})
	}
	t.Cleanup(l.finish)
	return l
}

// finish stops sending and waits for every call sent to end.
func (l *callLoad) finish() {
	l.stop()
	l.wg.Wait()
}

// waitCalls waits until n more calls succeeded than when it was called:
// traffic flows through the process serving now.
func (l *callLoad) waitCalls(t *testing.T, n int64) {
	t.Helper()
	want := l.ok.Load() + n
	deadline := time.Now().Add(upgradeTimeout)
	for l.ok.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls succeeded in %v, want %d", l.ok.Load()-want+n, upgradeTimeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBinaryUpgradeUnderLoad: about 500 calls a second, gRPC and
// HTTP/1.1, on long-lived and new connections, while the binary is
// upgraded twice in a row, once with `sightline upgrade` and once with
// SIGUSR2 to the pid in the pid file. No call fails, every call has its
// access-log line in the file both processes write, each upgrade starts
// a new pid that keeps the listeners' ports and the admin address and
// counts its generation, and the old process exits.
func TestBinaryUpgradeUnderLoad(t *testing.T) {
	bs := startBackends(t, 2)
	web := startWebBackend(t)
	accessLog := filepath.Join(t.TempDir(), "access.log")
	u := startUpgradable(t, binPath, upgradeConfig(addrsOf(bs), web, accessLog))
	p := u.proxy()
	grpcAddr, webAddr := p.listener("ingress"), p.listener("edge")
	load := startCallLoad(t, grpcAddr, webAddr)
	load.waitCalls(t, 250)

	pid := u.first.Process.Pid
	for gen := 1; gen <= 2; gen++ {
		var newPID int
		if gen == 1 {
			code, stdout, stderr := u.upgrade("-c", u.cfgPath)
			if code != 0 {
				t.Fatalf("sightline upgrade exited %d: %s%s", code, stdout, stderr)
			}
			newPID = u.readPID()
			want := fmt.Sprintf("upgraded: pid %d serves (generation 1); pid %d drains and exits\n", newPID, pid)
			if stdout != want {
				t.Errorf("sightline upgrade printed %q, want %q", stdout, want)
			}
		} else {
			if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
				t.Fatal(err)
			}
			newPID = u.waitPIDFile(pid)
		}
		if newPID == pid || !alive(newPID) {
			t.Fatalf("upgrade %d: the pid file names %d (old pid %d), want a new running process", gen, newPID, pid)
		}
		u.waitExit(pid)
		p := u.proxy()
		if got := p.counter("server.hot_restart_generation"); got != int64(gen) {
			t.Errorf("upgrade %d: server.hot_restart_generation %d, want %d", gen, got, gen)
		}
		if got := p.counter("server.hot_restart_epoch"); got != int64(gen) {
			t.Errorf("upgrade %d: server.hot_restart_epoch %d, want %d", gen, got, gen)
		}
		if g, w := p.listener("ingress"), p.listener("edge"); g != grpcAddr || w != webAddr {
			t.Errorf("upgrade %d: listeners at %s and %s, want %s and %s (inherited)", gen, g, w, grpcAddr, webAddr)
		}
		// The new process carries the traffic on its own.
		load.waitCalls(t, 250)
		pid = newPID
	}

	load.finish()
	u.stop()
	sent, ok := load.sent.Load(), load.ok.Load()
	if sent != ok {
		t.Errorf("%d calls sent, %d succeeded; failures: %s", sent, ok, strings.Join(load.failures, "\n"))
	}
	lines := readAccessLog(t, accessLog) // fails on a line that is not whole JSON
	retried := checkAccessLog(t, lines, load.answered)
	if int64(len(lines)-retried) != sent {
		t.Errorf("the access log has %d lines (%d of them attempts the client retried) for %d calls", len(lines), retried, sent)
	}
	// One line per upgrade in each process.
	if n := strings.Count(u.output(), `"event":"upgrade"`); n != 4 {
		t.Errorf("%d upgrade log lines, want 4 (one in each process for each upgrade)", n)
	}
	// How long each upgrade took, from the trigger to the new process
	// ready (the old process's "took", in ms).
	var took []string
	for _, m := range regexp.MustCompile(`"took":([0-9.]+)`).FindAllStringSubmatch(u.output(), -1) {
		took = append(took, m[1]+"ms")
	}
	t.Logf("%d calls, %d access-log lines (%d attempts the client retried), 2 upgrades taking %s", sent, len(lines), retried, strings.Join(took, " and "))
}

// checkAccessLog checks that every call answered has its line: one line
// with response code 200 under its x-request-id. The only calls allowed
// more lines are HTTP/1.1 requests on kept-alive connections, and only
// when every line comes from a connection of its own: a request that
// reached an idle kept-alive connection of the old process just as it
// closed it (Connection: close came too late for it) is logged there,
// with the flag DC (the downstream connection ended) or as answered when
// the write into the closed connection went unnoticed, and the client
// sends it again, as HTTP/1.1 clients do with an idempotent request on a
// reused connection that closed before any answer. Go's client takes the
// next connection of its pool for that, which the old process may be
// closing too: it tries again for as long as a reused connection fails
// that way. It returns how many such lines there are.
func checkAccessLog(t *testing.T, lines []map[string]any, answered []string) (retried int) {
	t.Helper()
	byID := map[string][]attempt{}
	for _, l := range lines {
		id, _ := l["request_id"].(string)
		byID[id] = append(byID[id], attempt{fmt.Sprint(l["response_code"]), fmt.Sprint(l["response_flags"]), fmt.Sprint(l["downstream_remote_address"])})
	}
	bad := 0
	complain := func(format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf(format, args...)
		}
	}
	want := map[string]bool{}
	for _, id := range answered {
		want[id] = true
		es := byID[id]
		switch {
		case len(es) == 0:
			complain("access log: no line for call %s", id)
		case es[len(es)-1].code != "200":
			complain("access log: call %s ends with %+v, want response code 200", id, es[len(es)-1])
		case len(es) > 1 && strings.HasPrefix(id, "http1-kept-alive-") && retriedOnOwnConns(es):
			retried += len(es) - 1
		case len(es) > 1:
			complain("access log: call %s has %d lines %+v, want 1", id, len(es), es)
		}
	}
	for id, es := range byID {
		if !want[id] {
			complain("access log: %d lines for %q, which is no call that succeeded: %+v", len(es), id, es)
		}
	}
	return retried
}

// attempt is one access-log line of a request: its response code and
// flags, and the client's address, which names its connection.
type attempt struct{ code, flags, conn string }

// retriedOnOwnConns reports whether the lines of one request are
// attempts the client made again on other connections: each on a
// connection of its own, and each but the last ended as a closing
// connection ends one (DC, or answered into the closed connection).
func retriedOnOwnConns(es []attempt) bool {
	seen := map[string]bool{}
	for i, e := range es {
		if seen[e.conn] || i < len(es)-1 && e.code != "200" && e.flags != "DC" {
			return false
		}
		seen[e.conn] = true
	}
	return true
}

// TestBinaryUpgradeRefused: an upgrade to a config that does not load
// fails with the config's problem; the old process keeps serving, on the
// same pid. Once the config is fixed and a new binary installed at the
// running one's path, the upgrade runs the new binary, with the
// listeners of the new config: one kept (its socket and port
// inherited), one dropped (its socket closed), one added (bound).
func TestBinaryUpgradeRefused(t *testing.T) {
	bs := startBackends(t, 1)
	web := startWebBackend(t)
	good := upgradeConfig(addrsOf(bs), web, filepath.Join(t.TempDir(), "access.log"))
	// The binary at a path of the test's own, so that it can be replaced.
	bin := filepath.Join(t.TempDir(), "sightline")
	copyFile(t, binPath, bin, 0o755)
	u := startUpgradable(t, bin, good)
	pid := u.first.Process.Pid
	p0 := u.proxy()
	ingress, edge := p0.listener("ingress"), p0.listener("edge")
	client := testClient(t, ingress)

	u.writeConfig(good + "  - {name: broken, connect_timeout: 15, endpoints: [{address: 127.0.0.1:1}]}\n")
	// Through the admin server: the new process refuses the config.
	code, stdout, stderr := u.upgrade("--admin", u.admin)
	if code == 0 {
		t.Fatalf("sightline upgrade to a bad config exited 0: %s", stdout)
	}
	if !strings.Contains(stderr, "upgrade failed") || !strings.Contains(stderr, "connect_timeout") {
		t.Errorf("sightline upgrade said %q, want the new process's reason naming connect_timeout", stderr)
	}
	// With -c: the command reads the config itself and says why.
	code, _, stderr = u.upgrade("-c", u.cfgPath)
	if code == 0 || !strings.Contains(stderr, "connect_timeout") {
		t.Errorf("sightline upgrade -c with a bad config: exit %d, %q; want non-zero naming connect_timeout", code, stderr)
	}

	if got := u.readPID(); got != pid {
		t.Errorf("the pid file names %d after the failed upgrade, want %d", got, pid)
	}
	select {
	case <-u.exited:
		t.Fatalf("the old process exited after a failed upgrade: %v", u.waitErr)
	default:
	}
	if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
		t.Errorf("a call after the failed upgrade: %v", err)
	}
	p := u.proxy()
	if status, _ := p.adminGet("/ready"); status != http.StatusOK {
		t.Errorf("/ready %d after the failed upgrade, want 200", status)
	}
	if got := p.counter("server.hot_restart_generation"); got != 0 {
		t.Errorf("server.hot_restart_generation %d after a failed upgrade, want 0", got)
	}
	if !strings.Contains(u.output(), "upgrade failed; this process keeps serving") {
		t.Errorf("the old process did not log why the upgrade failed")
	}

	// Fixed, and a new binary installed as install(1) does (a new file
	// renamed over the old): the upgrade runs it. The "new version" is
	// a script that leaves a mark and runs the real binary.
	start, end := strings.Index(good, "  - name: edge\n"), strings.Index(good, "clusters:\n")
	extra := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	u.writeConfig(good[:start] + fmt.Sprintf(`  - name: extra
    address: %s
    virtual_hosts: [{name: all, domains: ['*'], routes: [{match: {prefix: /}, cluster: upstream}]}]
`, extra) + good[end:])
	mark := filepath.Join(t.TempDir(), "new-binary-ran")
	script := fmt.Sprintf("#!/bin/sh\necho \"$$\" > %q\nexec %q \"$@\"\n", mark, binPath)
	if err := os.WriteFile(bin+".new", []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bin+".new", bin); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := u.upgrade("-c", u.cfgPath); code != 0 {
		t.Fatalf("sightline upgrade after the fix exited %d: %s%s", code, stdout, stderr)
	}
	u.waitExit(pid)
	ran, err := os.ReadFile(mark)
	if err != nil {
		t.Fatalf("the binary installed at the running one's path did not run: %v", err)
	}
	if got, want := strings.TrimSpace(string(ran)), strconv.Itoa(u.readPID()); got != want {
		t.Errorf("the new binary ran as pid %s, but the pid file names %s", got, want)
	}
	if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
		t.Errorf("a call after the upgrade through the inherited listener: %v", err)
	}
	if _, err := testClient(t, extra).UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
		t.Errorf("a call after the upgrade through the added listener: %v", err)
	}
	p1 := u.proxy()
	if got := p1.listener("ingress"); got != ingress {
		t.Errorf("ingress moved from %s to %s", ingress, got)
	}
	// The dropped listener's socket is closed in both processes: its
	// port refuses.
	if c, err := net.DialTimeout("tcp", edge, 5*time.Second); err == nil {
		c.Close()
		t.Errorf("the dropped listener's address %s still accepts", edge)
	}
	want := fmt.Sprintf(`"inherited":["admin admin %s","listener ingress 127.0.0.1:0"],"bound":["listener extra %s"],"closed":["listener edge 127.0.0.1:0"]`, u.admin, extra)
	if !strings.Contains(u.output(), want) {
		t.Errorf("the new process's upgrade line lacks %s", want)
	}
	u.stop()
}
