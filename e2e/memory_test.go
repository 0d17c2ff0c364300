package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestAdminMemoryAndPprof reads /memory and Go's profiles from the admin
// listener of the real binary, and checks admin.pprof: false takes the
// profiles away.
func TestAdminMemoryAndPprof(t *testing.T) {
	backends := startBackends(t, 1)
	p := startProxy(t, simpleConfig("round_robin", addrsOf(backends)...))

	code, body := p.adminGet("/memory")
	if code != 200 {
		t.Fatalf("/memory: %d %s", code, body)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("/memory is not JSON: %v\n%s", err, body)
	}
	num := func(k string) uint64 {
		s, _ := m[k].(string)
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Errorf("/memory %s = %v, want a byte count as a string", k, m[k])
		}
		return n
	}
	allocated, heap := num("allocated"), num("heap_size")
	for _, k := range []string{"pageheap_unmapped", "pageheap_free", "total_thread_cache", "total_physical_bytes", "stacks", "rss"} {
		num(k)
	}
	if allocated == 0 || heap < allocated || num("rss") < allocated/2 {
		t.Errorf("/memory: allocated %d, heap_size %d, rss %d: want 0 < allocated <= heap_size, and an RSS that holds the heap", allocated, heap, num("rss"))
	}
	if g, _ := m["goroutines"].(float64); g < 5 {
		t.Errorf("/memory goroutines = %v", m["goroutines"])
	}

	code, body = p.adminGet("/debug/pprof/")
	if code != 200 || !strings.Contains(body, "goroutine") || !strings.Contains(body, "heap") {
		t.Fatalf("/debug/pprof/: %d\n%s", code, body)
	}
	code, body = p.adminGet("/debug/pprof/heap")
	if code != 200 {
		t.Fatalf("/debug/pprof/heap: %d", code)
	}
	prof := filepath.Join(t.TempDir(), "heap.pb.gz")
	if err := os.WriteFile(prof, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "tool", "pprof", "-sample_index=inuse_space", "-top", prof).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "inuse_space") {
		t.Errorf("go tool pprof on /debug/pprof/heap: %v\n%s", err, out)
	}

	off := startProxy(t, "admin: {pprof: false}\n"+simpleConfig("round_robin", addrsOf(backends)...))
	if code, _ := off.adminGet("/debug/pprof/"); code != 404 {
		t.Errorf("/debug/pprof/ with admin.pprof: false: %d, want 404", code)
	}
	if code, _ := off.adminGet("/memory"); code != 200 {
		t.Errorf("/memory with admin.pprof: false: %d, want 200", code)
	}
}
