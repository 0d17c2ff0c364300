package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/sightline-proxy/sightline/internal/backend"
)

// envoyBootstrap is an Envoy v3 bootstrap as a team would run it: an
// admin port, a plaintext listener whose HTTP connection manager logs to
// a file and sends gRPC calls, retried on unavailable, to an HTTP/2
// cluster of the backends, with a gRPC health check, breakers and
// outlier detection; and a runtime layer, which Sightline does not carry.
// filters adds HTTP filters before the router; admin 0 leaves the admin
// section out.
func envoyBootstrap(admin int, accessLog, filters string, bs ...*backend.Backend) string {
	var eps []string
	for _, b := range bs {
		host, port, _ := net.SplitHostPort(b.Addr)
		eps = append(eps, fmt.Sprintf("{endpoint: {address: {socket_address: {address: %s, port_value: %s}}}}", host, port))
	}
	adminSection := ""
	if admin != 0 {
		adminSection = fmt.Sprintf("admin:\n  address: {socket_address: {address: 127.0.0.1, port_value: %d}}\n", admin)
	}
	return fmt.Sprintf(`%sstatic_resources:
  listeners:
  - name: ingress
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %s
              log_format: {text_format_source: {inline_string: "%%REQ(:PATH)%% %%GRPC_STATUS%% %%UPSTREAM_CLUSTER%%\n"}}
          route_config:
            name: routes
            virtual_hosts:
            - name: grpc
              domains: ["*"]
              routes:
              - match: {prefix: /grpc.testing.TestService/, grpc: {}}
                route:
                  cluster: grpc_backend
                  timeout: 5s
                  retry_policy: {retry_on: unavailable, num_retries: 2}
          http_filters:%s
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: grpc_backend
    type: STATIC
    connect_timeout: 1s
    lb_policy: ROUND_ROBIN
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {max_concurrent_streams: 100}}
    circuit_breakers: {thresholds: [{max_requests: 500, max_retries: 5}]}
    outlier_detection: {consecutive_5xx: 5, base_ejection_time: 10s}
    health_checks:
    - timeout: 1s
      interval: 1s
      unhealthy_threshold: 2
      healthy_threshold: 1
      grpc_health_check: {}
    load_assignment:
      cluster_name: grpc_backend
      endpoints: [{lb_endpoints: [%s]}]
layered_runtime:
  layers: [{name: static, static_layer: {health_check: {min_interval: 10}}}]
`, adminSection, accessLog, filters, strings.Join(eps, ", "))
}

// sightlineCmd runs the binary to its end and returns its exit code,
// stdout and stderr.
func sightlineCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = procEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("running sightline %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// startEnvoyProxy runs `sightline [args] -c bootstrap` on an Envoy
// bootstrap, whose admin address the bootstrap gives, and waits until it
// is ready.
func startEnvoyProxy(t *testing.T, path string, admin int, args ...string) *proxy {
	t.Helper()
	p := &proxy{t: t, admin: fmt.Sprintf("127.0.0.1:%d", admin), cfgPath: path, output: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(binPath, append(append([]string{}, args...), "-c", path)...)
	p.cmd.Env = procEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting sightline: %v", err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	if err := p.waitReady(readyTimeout); err != nil {
		p.kill()
		t.Fatalf("sightline did not become ready: %v\n%s", err, tail(p.output.String(), 4000))
	}
	t.Cleanup(p.cleanup)
	return p
}

// TestEnvoyImport takes an Envoy bootstrap as it is: sightline import
// writes a config that validates, reporting the runtime layer it cannot
// carry; the bootstrap runs directly (detected as Envoy's, and with
// --envoy), proxying real gRPC calls over both backends and logging them
// in the file the bootstrap names, and SIGHUP reloads its translation;
// the imported config runs too; an auth filter is refused, naming the
// field, unless --skip-unsupported.
func TestEnvoyImport(t *testing.T) {
	bs := startBackends(t, 2)
	dir := t.TempDir()
	accessLog := filepath.Join(dir, "access.log")
	admin := freePort(t)
	bootstrap := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(bootstrap, []byte(envoyBootstrap(admin, accessLog, "", bs...)), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("import", func(t *testing.T) {
		out := filepath.Join(dir, "sightline.yaml")
		code, stdout, stderr := sightlineCmd(t, "import", bootstrap, "-o", out)
		if code != 0 {
			t.Fatalf("sightline import: exit %d\n%s", code, stderr)
		}
		if stdout != "" {
			t.Errorf("sightline import -o wrote %q to stdout", stdout)
		}
		if !strings.Contains(stderr, "layered_runtime: Sightline has no runtime") {
			t.Errorf("sightline import's summary does not name layered_runtime:\n%s", stderr)
		}
		doc, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"# not carried: layered_runtime", "protocol: http2", "retry_on: unavailable", "grpc: true", "max_requests: 500"} {
			if !strings.Contains(string(doc), want) {
				t.Errorf("the imported config has no %q:\n%s", want, doc)
			}
		}
		code, stdout, stderr = sightlineCmd(t, "validate", "-c", out)
		if code != 0 || !strings.Contains(stdout, "clusters: 1") {
			t.Fatalf("sightline validate of the import: exit %d\n%s%s", code, stdout, stderr)
		}
	})

	t.Run("run the import", func(t *testing.T) {
		// Without an admin section, so that startProxy adds its own.
		path := filepath.Join(dir, "noadmin.yaml")
		if err := os.WriteFile(path, []byte(envoyBootstrap(0, accessLog, "", bs...)), 0o600); err != nil {
			t.Fatal(err)
		}
		code, doc, stderr := sightlineCmd(t, "import", path)
		if code != 0 {
			t.Fatalf("sightline import: exit %d\n%s", code, stderr)
		}
		before := callCounts(bs)
		p := startProxy(t, doc)
		client := testClient(t, p.listener("ingress"))
		for i := range 10 {
			if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
				t.Fatalf("call %d through the imported config: %v", i, err)
			}
		}
		if d := deltas(before, callCounts(bs)); d[0]+d[1] != 10 {
			t.Errorf("backend calls %v, want the 10 calls", d)
		}
	})

	for _, args := range [][]string{nil, {"--envoy"}} {
		t.Run(fmt.Sprintf("run %v", args), func(t *testing.T) {
			before := callCounts(bs)
			p := startEnvoyProxy(t, bootstrap, admin, append([]string{"run"}, args...)...)
			client := testClient(t, p.listener("ingress"))
			for i := range 20 {
				if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
					t.Fatalf("call %d through the Envoy bootstrap's listener: %v", i, err)
				}
			}
			if d := deltas(before, callCounts(bs)); d[0] == 0 || d[1] == 0 || d[0]+d[1] != 20 {
				t.Errorf("backend calls %v, want the 20 calls spread over both", d)
			}
			if err := eventually(5*time.Second, func() error {
				b, _ := os.ReadFile(accessLog)
				if !strings.Contains(string(b), "/grpc.testing.TestService/UnaryCall OK grpc_backend") {
					return fmt.Errorf("access log %q has no line for the calls", b)
				}
				return nil
			}); err != nil {
				t.Error(err)
			}
			if !strings.Contains(p.output.String(), "layered_runtime") {
				t.Errorf("the proxy did not log the skipped layered_runtime:\n%s", tail(p.output.String(), 2000))
			}
			if code, _ := p.stop(); code != 0 {
				t.Errorf("exit code %d after SIGTERM", code)
			}
		})
	}

	t.Run("reload", func(t *testing.T) {
		path := filepath.Join(dir, "reload.yaml")
		if err := os.WriteFile(path, []byte(envoyBootstrap(admin, accessLog, "", bs...)), 0o600); err != nil {
			t.Fatal(err)
		}
		p := startEnvoyProxy(t, path, admin)
		client := testClient(t, p.listener("ingress"))
		// The bootstrap now logs to another file; SIGHUP reloads its
		// translation, and the calls after it are logged there.
		reloaded := filepath.Join(dir, "reloaded.log")
		if err := os.WriteFile(path, []byte(envoyBootstrap(admin, reloaded, "", bs...)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if err := eventually(10*time.Second, func() error {
			if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
				return err
			}
			if b, _ := os.ReadFile(reloaded); !strings.Contains(string(b), "/grpc.testing.TestService/UnaryCall OK grpc_backend") {
				return fmt.Errorf("the access log the reloaded bootstrap names has %q", b)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("an auth filter is refused", func(t *testing.T) {
		authz := `
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              grpc_service: {envoy_grpc: {cluster_name: authz}}`
		path := filepath.Join(dir, "authz.yaml")
		if err := os.WriteFile(path, []byte(envoyBootstrap(admin, accessLog, authz, bs...)), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := sightlineCmd(t, "validate", "-c", path)
		if code != 1 || !strings.Contains(stderr, "http_filters[envoy.filters.http.ext_authz]") || !strings.Contains(stderr, "--skip-unsupported") {
			t.Errorf("validate of a bootstrap with ext_authz: exit %d, want 1 naming the filter:\n%s", code, stderr)
		}
		code, stdout, stderr := sightlineCmd(t, "import", path)
		if code != 1 || stdout != "" {
			t.Errorf("import of a bootstrap with ext_authz: exit %d, stdout %q, want 1 and nothing:\n%s", code, stdout, stderr)
		}
		code, _, stderr = sightlineCmd(t, "validate", "--skip-unsupported", "-c", path)
		if code != 0 || !strings.Contains(stderr, "UNSAFE to drop") {
			t.Errorf("validate --skip-unsupported: exit %d, want 0 with the filter reported unsafe:\n%s", code, stderr)
		}
	})
}
