package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const envoyMinimal = `static_resources:
  clusters:
  - name: backend
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 50051}}}}]}]
`

func TestEnvoyFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, file, give string
		want             bool
	}{
		{name: "static_resources", file: "a.yaml", give: "admin: {}\nstatic_resources:\n  clusters: []\n", want: true},
		{name: "dynamic_resources", file: "b.yaml", give: "# an ADS bootstrap\ndynamic_resources:\n  ads_config: {}\n", want: true},
		{name: "quoted key", file: "c.yaml", give: "\"static_resources\": {}\n", want: true},
		{name: "json", file: "d.json", give: `{"admin": {}, "static_resources": {}}`, want: true},
		{name: "sightline", file: "e.yaml", give: "listeners: []\nclusters: []\n"},
		{name: "both", file: "f.yaml", give: "static_resources: {}\nlisteners: []\n"},
		{name: "nested key only", file: "g.yaml", give: "x:\n  static_resources: {}\n"},
		{name: "sightline json", file: "h.json", give: `{"clusters": []}`},
		{name: "missing", file: "none.yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.file)
			if tc.give != "" {
				path = writeFile(t, dir, tc.file, tc.give)
			}
			if got := envoyFile(path); got != tc.want {
				t.Errorf("envoyFile = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestImportCommand(t *testing.T) {
	dir := t.TempDir()
	envoy := writeFile(t, dir, "envoy.yaml", envoyMinimal)
	out := filepath.Join(dir, "out.yaml")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "stdout", args: []string{"import", envoy}, wantStdout: "name: backend"},
		{name: "flags after the file", args: []string{"import", envoy, "-o", out}},
		{name: "no file", args: []string{"import"}, wantCode: 2, wantStderr: "want one Envoy bootstrap file, got 0"},
		{name: "two files", args: []string{"import", envoy, envoy}, wantCode: 2, wantStderr: "got 2"},
		{name: "missing file", args: []string{"import", filepath.Join(dir, "nope.yaml")}, wantCode: 1, wantStderr: "no such file"},
		{name: "unknown field", args: []string{"import", writeFile(t, dir, "bad.yaml", "static_resources: {bogus: 1}\n")}, wantCode: 1, wantStderr: `line 1: reading the Envoy bootstrap`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\n%s", code, tc.wantCode, stderr)
			}
			if !strings.Contains(stdout, tc.wantStdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.wantStdout, stdout)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantStderr, stderr)
			}
		})
	}
	doc, err := os.ReadFile(out)
	if err != nil || !strings.Contains(string(doc), "connect_timeout: 5s") {
		t.Errorf("-o wrote %q (%v), want the config with Envoy's 5s connect timeout", doc, err)
	}
}

// TestValidateEnvoy validates a bootstrap as it is, detected or named by
// --envoy, and refuses an Envoy field that cannot be dropped safely
// unless --skip-unsupported.
func TestValidateEnvoy(t *testing.T) {
	dir := t.TempDir()
	envoy := writeFile(t, dir, "envoy.yaml", envoyMinimal+"layered_runtime: {layers: [{name: a, admin_layer: {}}]}\n")
	for _, args := range [][]string{{"validate", "-c", envoy}, {"validate", "--envoy", "-c", envoy}} {
		code, stdout, stderr := runCLI(t, args...)
		if code != 0 || !strings.Contains(stdout, "clusters: 1") || !strings.Contains(stderr, "layered_runtime") {
			t.Errorf("%v: exit %d\n%s%s", args, code, stdout, stderr)
		}
	}
	// --envoy on a Sightline file: it is read as Envoy's, and refused.
	sl := writeFile(t, dir, "sl.yaml", "clusters: [{name: a, endpoints: [{address: 127.0.0.1:1}]}]\n")
	if code, _, stderr := runCLI(t, "validate", "--envoy", "-c", sl); code != 1 || !strings.Contains(stderr, `unknown field "clusters"`) {
		t.Errorf("validate --envoy of a Sightline file: exit %d\n%s", code, stderr)
	}
	dyn := writeFile(t, dir, "dyn.yaml", envoyMinimal+`dynamic_resources:
  lds_config: {ads: {}}
  ads_config: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: backend}}]}
`)
	if code, stdout, stderr := runCLI(t, "validate", "-c", dyn); code != 0 || !strings.Contains(stdout, "from the control plane at") {
		t.Errorf("validate of an ADS bootstrap: exit %d, want 0 and its dynamic section\n%s%s", code, stdout, stderr)
	}
}
