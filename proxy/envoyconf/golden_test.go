package envoyconf

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sightline-proxy/sightline/proxy/config"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata")

// goldenCases are the Envoy bootstraps of testdata, with the options an
// import takes for each.
var goldenCases = []struct {
	name string
	opts Options
	// wantErr is part of the error an import without SkipUnsupported
	// must give; "" when it must succeed.
	wantErr string
}{
	{name: "front-proxy"},
	{name: "grpc-bridge"},
	{name: "chef-fleet"},
	{name: "envoyproxy_io_proxy", opts: Options{SkipUnsupported: true},
		wantErr: "route.host_rewrite_literal: Sightline does not rewrite the host header"},
}

// TestGolden imports each bootstrap of testdata and compares the
// document and the skipped fields with the golden files
// (<name>.sightline.yaml, <name>.skipped.txt); -update rewrites them.
// Each document must load with Sightline's own config loader.
func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", tc.name+".envoy.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" {
				_, _, err := Import(in, false)
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Import without skipping unsupported fields: error %v, want one with %q", err, tc.wantErr)
				}
			}
			doc, skipped, err := ImportWith(in, false, tc.opts)
			if err != nil {
				t.Fatalf("Import: %v", err)
			}
			var sk strings.Builder
			for _, s := range skipped {
				sk.WriteString(s.Path + ": " + s.Why + "\n")
			}
			golden(t, tc.name+".sightline.yaml", doc)
			golden(t, tc.name+".skipped.txt", []byte(sk.String()))
			loads(t, doc)
		})
	}
}

// golden compares got with testdata/name, or writes it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// loads checks that doc loads with Sightline's config loader.
func loads(t *testing.T, doc []byte) *config.Config {
	t.Helper()
	// The inputs name their certificate files relative to the working
	// directory, as Envoy and Sightline read them: testdata/certs/...
	path := filepath.Join(t.TempDir(), "sightline.yaml")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("the translated document does not load: %v\n%s", err, doc)
	}
	return cfg
}

// TestExampleEnvoyConfigs imports the Envoy bootstraps among the example
// configs: each must translate with nothing refused, and load.
func TestExampleEnvoyConfigs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "configs", "envoy", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no Envoy example configs in configs/envoy")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			doc, _, err := Import(in, false)
			if err != nil {
				t.Fatal(err)
			}
			loads(t, doc)
		})
	}
}
