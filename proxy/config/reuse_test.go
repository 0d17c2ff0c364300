package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// reuseBase is a config whose clusters: list is long enough to be read in
// pieces and has clusters of every kind: health checks, outlier detection,
// breakers, zones, an anchor and its alias (never reused).
func reuseBase() string {
	return clustersConfig(300) + `  - name: checked
    lb_policy: least_request
    health_check: {interval: 2s, timeout: 1s, tcp: {}}
    outlier_detection: {consecutive_5xx: 3}
    circuit_breakers: {max_requests: 10}
    endpoints: [{address: 127.0.0.1:7000, zone: z1, weight: 3}]
  - &shared
    name: anchored
    endpoints: [{address: 127.0.0.1:7001}]
stats: {flush_interval: 2s}
`
}

// loadAt writes body at path and loads it.
func loadAt(t *testing.T, path, body string) (*Config, error) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(path)
}

// TestReuseGivesWhatALoadGives: loading a file again after edits reuses
// the clusters whose text did not change, and gives exactly the config,
// or the problems, a first load of the same text gives.
func TestReuseGivesWhatALoadGives(t *testing.T) {
	base := reuseBase()
	edits := []struct {
		name string
		edit func(string) string
	}{
		{"nothing", func(s string) string { return s }},
		{"one weight", func(s string) string {
			return strings.Replace(s, "127.0.0.1:1030, weight: 1", "127.0.0.1:1030, weight: 5", 1)
		}},
		{"lines added above", func(s string) string { return strings.Replace(s, "clusters:\n", "# the clusters\n\nclusters:\n", 1) }},
		{"a cluster removed", func(s string) string {
			return strings.Replace(s, "  - name: c7\n    endpoints:\n      - {address: 127.0.0.1:1038, weight: 1}\n      - {address: 127.0.0.1:1039, weight: 1}\n", "", 1)
		}},
		{"the anchored one", func(s string) string { return strings.Replace(s, "127.0.0.1:7001", "127.0.0.1:7002", 1) }},
		{"a problem in a new entry", func(s string) string {
			return strings.Replace(s, "stats:", "  - name: c12\n    endpoints: [{address: 127.0.0.1:9}]\nstats:", 1)
		}},
		{"a problem in a reused one", func(s string) string { return strings.Replace(s, "cluster: c0", "cluster: c0x", 1) }},
		{"a problem after the list", func(s string) string { return strings.Replace(s, "flush_interval: 2s", "flush_interval: 2", 1) }},
	}
	for _, tt := range edits {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			again := filepath.Join(dir, "c.yaml")
			first, err := loadAt(t, again, base)
			if err != nil {
				t.Fatal(err)
			}
			body := tt.edit(base)
			reused, rerr := loadAt(t, again, body)
			fresh, ferr := loadAt(t, filepath.Join(dir, "fresh", "..", "c-fresh.yaml"), body)
			switch {
			case (rerr == nil) != (ferr == nil):
				t.Fatalf("loaded again: %v; first load: %v", rerr, ferr)
			case rerr != nil:
				if got, want := strings.ReplaceAll(rerr.Error(), "c.yaml", "X"), strings.ReplaceAll(ferr.Error(), "c-fresh.yaml", "X"); got != want {
					t.Errorf("loaded again:\n%s\nfirst load:\n%s", got, want)
				}
				return
			}
			// An untouched cluster is the one decoded the first time: it
			// shares what it points to.
			if i := slices.IndexFunc(reused.Clusters, func(c Cluster) bool { return c.Name == "c100" }); reused.Clusters[i].PanicThreshold != first.Clusters[100].PanicThreshold {
				t.Error("an unchanged cluster was decoded again")
			}
			if i := slices.IndexFunc(reused.Clusters, func(c Cluster) bool { return c.Name == "anchored" }); reused.Clusters[i].PanicThreshold == first.Clusters[301].PanicThreshold {
				t.Error("a cluster with an anchor was reused")
			}
			reused.Files, fresh.Files = nil, nil
			reused.FileHashes, fresh.FileHashes = nil, nil
			reused.at, fresh.at = nil, nil
			if !reflect.DeepEqual(reused, fresh) {
				t.Errorf("loaded again, the config differs from a first load of the same text")
			}
		})
	}
}
