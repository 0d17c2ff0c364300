package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// runCLI runs the sightline binary with args and returns its exit code,
// stdout and stderr.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = procEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running sightline %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

const goodYAML = `node: {id: edge-1, zone: zone-a}
listeners:
  - name: ingress
    address: 127.0.0.1:10000
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - name: everything
            match: {prefix: /}
            cluster: primary
clusters:
  - name: primary
    lb_policy: round_robin
    endpoints: [{address: 127.0.0.1:5101}, {address: 127.0.0.1:5102}]
`

const goodJSON = `{
  "node": {"id": "edge-1", "zone": "zone-a"},
  "listeners": [{
    "name": "ingress",
    "address": "127.0.0.1:10000",
    "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
      {"name": "everything", "match": {"prefix": "/"}, "cluster": "primary"}
    ]}]
  }],
  "clusters": [{"name": "primary", "lb_policy": "round_robin", "endpoints": [{"address": "127.0.0.1:5101"}]}]
}
`

// badYAML has three problems, on lines 10 (a cluster no cluster has), 11 (a
// duration without a unit) and 15 (an unknown key).
const badYAML = `node: {id: edge-1, zone: zone-a}
listeners:
  - name: ingress
    address: 127.0.0.1:10000
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - match: {prefix: /}
            cluster: nowhere
            timeout: 15
clusters:
  - name: primary
    endpoints: [{address: 127.0.0.1:5101}]
    bogus_key: true
`

// TestCLI checks the subcommands other than run: validate, version, and what
// happens with an unknown one.
func TestCLI(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good, goodJ, bad := write("good.yaml", goodYAML), write("good.json", goodJSON), write("bad.yaml", badYAML)

	// problem is one error validate must print: the line it is on, the
	// columns that may be named (the key's or the value's), and words the
	// message must have.
	type problem struct {
		line  int
		cols  []int
		words []string
	}
	tests := []struct {
		name         string
		args         []string
		wantCode     int
		wantStdout   []string // substrings
		wantStderr   []string // substrings
		wantProblems []problem
	}{
		{
			name:       "validate good yaml",
			args:       []string{"validate", "-c", good},
			wantCode:   0,
			wantStdout: []string{"ingress", "primary"},
		},
		{
			name:       "validate good json",
			args:       []string{"validate", "-c", goodJ},
			wantCode:   0,
			wantStdout: []string{"ingress", "primary"},
		},
		{
			name:     "validate bad yaml",
			args:     []string{"validate", "-c", bad},
			wantCode: 1,
			wantProblems: []problem{
				{line: 10, cols: []int{13, 22}, words: []string{"nowhere"}},
				{line: 11, cols: []int{13, 22}, words: []string{"unit"}},
				{line: 15, cols: []int{5}, words: []string{"bogus_key"}},
			},
		},
		{
			name:       "version",
			args:       []string{"version"},
			wantCode:   0,
			wantStdout: []string{"sightline", "go1."},
		},
		{
			name:       "unknown subcommand",
			args:       []string{"frobnicate"},
			wantCode:   2,
			wantStderr: []string{"frobnicate"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, stdout, stderr)
			}
			for _, s := range tt.wantStdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout does not mention %q:\n%s", s, stdout)
				}
			}
			for _, s := range tt.wantStderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr does not mention %q:\n%s", s, stderr)
				}
			}
			if len(tt.wantProblems) == 0 {
				return
			}
			// Every problem: "bad.yaml:LINE:COL: message".
			re := regexp.MustCompile(`bad\.yaml:(\d+):(\d+): (.*)`)
			found := map[int][]string{} // line → "col: message"
			for _, m := range re.FindAllStringSubmatch(stdout+stderr, -1) {
				line, _ := strconv.Atoi(m[1])
				found[line] = append(found[line], m[2]+": "+m[3])
			}
			for _, p := range tt.wantProblems {
				msgs := found[p.line]
				ok := false
				for _, msg := range msgs {
					col, text, _ := strings.Cut(msg, ": ")
					c, _ := strconv.Atoi(col)
					if !containsInt(p.cols, c) {
						continue
					}
					all := true
					for _, w := range p.words {
						all = all && strings.Contains(text, w)
					}
					ok = ok || all
				}
				if !ok {
					t.Errorf("no problem reported as bad.yaml:%d:%v: … mentioning %q (on that line: %q)", p.line, p.cols, p.words, msgs)
				}
			}
			if t.Failed() {
				t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
			}
		})
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestAdmin checks the admin endpoints against what the proxy did.
func TestAdmin(t *testing.T) {
	backends := startBackends(t, 2)
	p := startProxy(t, fmt.Sprintf(`node: {id: edge-e2e, zone: zone-e2e}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - match: {prefix: /}
            cluster: upstream
clusters:
  - name: upstream
    lb_policy: round_robin
    endpoints: %s
`, endpoints(addrsOf(backends)...)))
	addr := p.listener("ingress")

	t.Run("ready and healthcheck", func(t *testing.T) {
		steps := []struct {
			method, path string
			wantStatus   int
			wantReady    int
		}{
			{method: "GET", path: "/ready", wantStatus: 200, wantReady: 200},
			{method: "POST", path: "/healthcheck/fail", wantStatus: 200, wantReady: 503},
			{method: "GET", path: "/healthcheck/ok", wantStatus: 405, wantReady: 503},
			{method: "POST", path: "/healthcheck/ok", wantStatus: 200, wantReady: 200},
			{method: "GET", path: "/healthcheck/fail", wantStatus: 405, wantReady: 200},
		}
		for _, s := range steps {
			status, body := p.adminDo(s.method, s.path)
			if status != s.wantStatus {
				t.Errorf("%s %s: status %d, want %d (body %q)", s.method, s.path, status, s.wantStatus, body)
			}
			status, body = p.adminGet("/ready")
			if status != s.wantReady {
				t.Errorf("after %s %s: /ready %d %q, want %d", s.method, s.path, status, body, s.wantReady)
			}
			if status == 200 && strings.TrimSpace(body) != "LIVE" {
				t.Errorf("after %s %s: /ready body %q, want LIVE", s.method, s.path, body)
			}
		}
	})

	t.Run("clusters", func(t *testing.T) {
		client := testClient(t, addr)
		const ok, failing = 7, 3
		for i := 0; i < ok; i++ {
			if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < failing; i++ {
			_, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.Internal), Message: "boom"}})
			if status.Code(err) != codes.Internal {
				t.Fatalf("got %v, want the backend's Internal", err)
			}
		}

		code, text := p.adminGet("/clusters")
		if code != 200 {
			t.Fatalf("/clusters: status %d", code)
		}
		var total, errs int
		for _, b := range backends {
			n := clustersField(t, text, "upstream::"+b.Addr+"::rq_total::")
			if int64(n) != b.Calls() {
				t.Errorf("/clusters says %s has rq_total %d; the backend served %d calls", b.Addr, n, b.Calls())
			}
			total += n
			errs += clustersField(t, text, "upstream::"+b.Addr+"::rq_error::")
		}
		if total != ok+failing || errs != failing {
			t.Errorf("/clusters: rq_total %d and rq_error %d over the hosts, want %d and %d\n%s", total, errs, ok+failing, failing, text)
		}

		code, js := p.adminGet("/clusters?format=json")
		if code != 200 {
			t.Fatalf("/clusters?format=json: status %d", code)
		}
		var doc struct {
			Clusters []struct {
				Name  string `json:"name"`
				Hosts []struct {
					Address string `json:"address"`
					RqTotal uint64 `json:"rq_total"`
					RqError uint64 `json:"rq_error"`
				} `json:"host_statuses"`
			} `json:"cluster_statuses"`
		}
		if err := json.Unmarshal([]byte(js), &doc); err != nil {
			t.Fatalf("/clusters?format=json is not JSON: %v\n%s", err, js)
		}
		if len(doc.Clusters) != 1 || doc.Clusters[0].Name != "upstream" || len(doc.Clusters[0].Hosts) != len(backends) {
			t.Fatalf("/clusters?format=json: want one cluster upstream with %d hosts, got %s", len(backends), js)
		}
		var jtotal, jerrs uint64
		for _, h := range doc.Clusters[0].Hosts {
			jtotal += h.RqTotal
			jerrs += h.RqError
		}
		if jtotal != ok+failing || jerrs != failing {
			t.Errorf("/clusters?format=json: rq_total %d, rq_error %d over the hosts, want %d and %d", jtotal, jerrs, ok+failing, failing)
		}
	})

	t.Run("config_dump", func(t *testing.T) {
		code, js := p.adminGet("/config_dump")
		if code != 200 {
			t.Fatalf("/config_dump: status %d", code)
		}
		var doc struct {
			Node struct {
				ID string `json:"id"`
			} `json:"node"`
			Clusters []struct {
				Name           string `json:"name"`
				ConnectTimeout any    `json:"connect_timeout"`
				LBPolicy       string `json:"lb_policy"`
			} `json:"clusters"`
		}
		if err := json.Unmarshal([]byte(js), &doc); err != nil {
			t.Fatalf("/config_dump is not JSON: %v\n%s", err, js)
		}
		if doc.Node.ID != "edge-e2e" {
			t.Errorf("/config_dump node.id = %q, want edge-e2e", doc.Node.ID)
		}
		if len(doc.Clusters) != 1 {
			t.Fatalf("/config_dump has %d clusters, want 1:\n%s", len(doc.Clusters), js)
		}
		// connect_timeout was not set: the dump shows the default.
		if got := doc.Clusters[0].ConnectTimeout; got != "1s" {
			t.Errorf("/config_dump clusters[0].connect_timeout = %v, want the default \"1s\"", got)
		}
		if got := doc.Clusters[0].LBPolicy; got != "round_robin" {
			t.Errorf("/config_dump clusters[0].lb_policy = %q, want round_robin", got)
		}
	})

	t.Run("server_info", func(t *testing.T) {
		code, js := p.adminGet("/server_info")
		if code != 200 {
			t.Fatalf("/server_info: status %d", code)
		}
		var info serverInfo
		if err := json.Unmarshal([]byte(js), &info); err != nil {
			t.Fatalf("/server_info is not JSON: %v\n%s", err, js)
		}
		if info.Version == "" || info.Commit == "" || !strings.HasPrefix(info.GoVersion, "go1.") {
			t.Errorf("/server_info version %q, commit %q, go_version %q: want all set", info.Version, info.Commit, info.GoVersion)
		}
		if info.State != "LIVE" {
			t.Errorf("/server_info state = %q, want LIVE", info.State)
		}
		if info.Node.ID != "edge-e2e" || info.Node.Zone != "zone-e2e" {
			t.Errorf("/server_info node = %+v, want edge-e2e in zone-e2e", info.Node)
		}
		if info.Admin != p.admin {
			t.Errorf("/server_info admin_address = %q, want %q", info.Admin, p.admin)
		}
		if len(info.Listeners) != 1 || info.Listeners[0] != "ingress="+addr {
			t.Errorf("/server_info listeners = %q, want [ingress=%s]", info.Listeners, addr)
		}
	})
}

// clustersField returns the number on the /clusters text line that starts
// with prefix.
func clustersField(t *testing.T, text, prefix string) int {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("/clusters line %q: %v", line, err)
			}
			return n
		}
	}
	t.Fatalf("/clusters has no line %s…:\n%s", prefix, text)
	return 0
}

// TestGracefulShutdown sends SIGTERM while a streaming call is in flight: the
// call must complete, new connections must be refused, and the process must
// exit 0 within drain_timeout.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	b := startBackends(t, 1)[0]
	const drainTimeout = 5 * time.Second
	p := startProxy(t, fmt.Sprintf("server: {drain_time: 100ms, drain_timeout: %s}\n", drainTimeout)+
		simpleConfig("round_robin", b.Addr), "run")
	addr := p.listener("ingress")
	client := testClient(t, addr)

	// Five messages 250ms apart: the call lasts about a second.
	const n = 5
	params := make([]*testgrpc.ResponseParameters, n)
	for i := range params {
		params[i] = &testgrpc.ResponseParameters{Size: int32(100 + i), IntervalUs: 250_000}
	}
	stream, err := client.StreamingOutputCall(callCtx(t), &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first message: %v", err)
	}

	sent := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// /ready fails at once.
	if err := p.readyDuringDrain(time.Second); err != nil {
		t.Error(err)
	}

	// New connections are refused once drain_time (100ms) has passed,
	// while the call is still in flight.
	if err := eventually(2*time.Second, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return errors.New("the listener still accepts new connections after SIGTERM")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("dialing the listener after SIGTERM: %v, want connection refused", err)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}

	for i := 1; i < n; i++ {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("message %d of %d after SIGTERM: %v", i+1, n, err)
		}
		checkPayload(t, resp.GetPayload(), 100+i)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("the in-flight call ended with %v, want success", err)
	}

	select {
	case <-p.exited:
	case <-time.After(drainTimeout + 2*time.Second):
		t.Fatalf("sightline had not exited %v after SIGTERM (drain_timeout %v)", time.Since(sent), drainTimeout)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("sightline exited %d after SIGTERM, want 0", code)
	}
	t.Logf("exited %v after SIGTERM", time.Since(sent).Round(time.Millisecond))
}

// TestDrainTime checks drain_time: after SIGTERM /ready fails at once, but
// the listeners keep accepting new connections and serving them for
// drain_time, so that a load balancer has time to notice; then they stop.
func TestDrainTime(t *testing.T) {
	t.Parallel()
	b := startBackends(t, 1)[0]
	const drainTime = time.Second
	p := startProxy(t, fmt.Sprintf("server: {drain_time: %s, drain_timeout: 2s}\n", drainTime)+
		simpleConfig("round_robin", b.Addr))
	addr := p.listener("ingress")

	sent := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.readyDuringDrain(time.Second); err != nil {
		t.Error(err)
	}

	// A client that connects now, well within drain_time, is still served.
	if since := time.Since(sent); since < drainTime/2 {
		if _, err := testClient(t, addr).UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
			t.Errorf("a new connection %v after SIGTERM (drain_time %v): %v, want it served", since.Round(time.Millisecond), drainTime, err)
		}
	} else {
		t.Logf("too slow to check the first half of drain_time (%v passed)", since)
	}

	// After drain_time the listener refuses connections.
	if err := eventually(drainTime+2*time.Second, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("the listener still accepts connections %v after SIGTERM (drain_time %v)", time.Since(sent).Round(time.Millisecond), drainTime)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if took := time.Since(sent); took < drainTime {
		t.Errorf("the listener stopped accepting %v after SIGTERM, before drain_time (%v) was over", took.Round(time.Millisecond), drainTime)
	}
	// Then it exits by itself, 0, within drain_timeout.
	select {
	case <-p.exited:
	case <-time.After(3 * time.Second):
		t.Fatalf("sightline had not exited %v after SIGTERM", time.Since(sent).Round(time.Millisecond))
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("sightline exited %d, want 0", code)
	}
	t.Logf("exited %v after SIGTERM", time.Since(sent).Round(time.Millisecond))
}
