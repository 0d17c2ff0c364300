package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// clustersConfig is a config of n static clusters of two hosts each, as
// bench/scale.sh writes it: 1.2 MB for 10,000.
func clustersConfig(n int) string {
	var b strings.Builder
	b.WriteString(`admin: {address: 127.0.0.1:9901}
listeners:
  - name: in
    address: 127.0.0.1:18180
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            cluster: c0
clusters:
`)
	for c := range n {
		fmt.Fprintf(&b, "  - name: c%d\n    endpoints:\n", c)
		for h := range 2 {
			fmt.Fprintf(&b, "      - {address: 127.0.0.1:%d, weight: 1}\n", 1024+(c*2+h)%60000)
		}
	}
	return b.String()
}

// BenchmarkLoad10kClusters is what loading a 10,000-cluster file the
// first time costs (each time a new file: nothing is reused).
func BenchmarkLoad10kClusters(b *testing.B) {
	dir, data := b.TempDir(), []byte(clustersConfig(10_000))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		path := filepath.Join(dir, fmt.Sprintf("c%d.yaml", i))
		if err := os.WriteFile(path, data, 0o600); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		cfg, err := Load(path)
		if err != nil {
			b.Fatal(err)
		}
		if len(cfg.Clusters) != 10_000 {
			b.Fatalf("%d clusters", len(cfg.Clusters))
		}
	}
}

// TestWalkerDecodesAsYAML: the walker decodes the example configs, the
// contract's and a generated one of many clusters exactly as yaml v4
// decodes them.
func TestWalkerDecodesAsYAML(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "configs", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs (%v)", err)
	}
	docs := map[string][]byte{
		"contract.yaml": []byte(contractExample),
		"clusters.yaml": []byte(clustersConfig(100)),
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs[filepath.Base(f)] = data
	}
	for name, data := range docs {
		t.Run(name, func(t *testing.T) { decodesAsYAML(t, name, data) })
	}
}

// BenchmarkReload10kClusters is loading a 10,000-cluster file again after
// one cluster's weight changed, as a reload does: the other 9,999
// clusters are reused as decoded the time before (reuse.go).
func BenchmarkReload10kClusters(b *testing.B) {
	path := filepath.Join(b.TempDir(), "c.yaml")
	base := clustersConfig(10_000)
	last := strings.LastIndex(base, "weight: 1}")
	versions := []string{base, base[:last] + "weight: 2}" + base[last+len("weight: 1}"):]}
	if err := os.WriteFile(path, []byte(base), 0o600); err != nil {
		b.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		if err := os.WriteFile(path, []byte(versions[(i+1)%2]), 0o600); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		cfg, err := Load(path)
		if err != nil {
			b.Fatal(err)
		}
		if w := cfg.Clusters[9999].Endpoints[1].Weight; w != uint32(1+(i+1)%2) {
			b.Fatalf("the changed cluster's weight is %d", w)
		}
	}
}
