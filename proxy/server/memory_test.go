package server

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

// heapFree is the heap's free memory not yet given back to the system.
func heapFree() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestMemoryReleaser: free heap memory past releaseAbove, and more than in
// use, is given back at once, then not again before releaseEvery; a
// little free memory is left to the scavenger.
func TestMemoryReleaser(t *testing.T) {
	m := newMemoryReleaser()
	runtime.GC()
	now := time.Now()
	if heapFree() < releaseAbove && m.check(now) {
		t.Fatal("gave back memory with little free")
	}
	chunks := make([][]byte, 2*releaseAbove>>20)
	for i := range chunks {
		chunks[i] = make([]byte, 1<<20)
		chunks[i][0] = 1
	}
	runtime.KeepAlive(chunks)
	chunks = nil
	runtime.GC()
	before := heapFree()
	if before < releaseAbove {
		t.Skipf("only %d MB free after freeing %d MB: the scavenger was first", before>>20, 2*releaseAbove>>20)
	}
	if !m.check(now) {
		t.Fatalf("%d MB free: not given back", before>>20)
	}
	if after := heapFree(); after >= before/2 {
		t.Errorf("free memory %d MB after giving it back, %d MB before", after>>20, before>>20)
	}
	if m.check(now.Add(releaseEvery / 2)) {
		t.Error("gave memory back twice within releaseEvery")
	}
}
