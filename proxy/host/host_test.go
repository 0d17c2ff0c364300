package host

import (
	"sync"
	"sync/atomic"
	"testing"
)

type pool struct{ closed *atomic.Int32 }

func (p pool) Close() error { p.closed.Add(1); return nil }

func TestUpstreamMadeOnFirstUse(t *testing.T) {
	var made, closed atomic.Int32
	h := &Host{Address: "127.0.0.1:1", NewUpstream: func(*Host) Upstream {
		made.Add(1)
		return pool{&closed}
	}}
	if made.Load() != 0 {
		t.Fatal("a pool was made before the host was used")
	}
	var wg sync.WaitGroup
	ups := make([]Upstream, 8)
	for i := range ups {
		wg.Add(1)
		go func() { defer wg.Done(); ups[i] = h.Upstream() }()
	}
	wg.Wait()
	if made.Load() != 1 {
		t.Fatalf("%d pools made by 8 concurrent first uses, want 1", made.Load())
	}
	for _, u := range ups {
		if u != ups[0] {
			t.Fatal("concurrent first uses got different pools")
		}
	}
	if err := h.CloseUpstream(); err != nil || closed.Load() != 1 {
		t.Fatalf("CloseUpstream: err %v, %d closes, want 1", err, closed.Load())
	}
	if err := h.CloseUpstream(); err != nil || closed.Load() != 1 {
		t.Fatalf("second CloseUpstream: err %v, %d closes, want still 1", err, closed.Load())
	}
}

func TestUpstreamAfterClose(t *testing.T) {
	var made, closed atomic.Int32
	h := &Host{NewUpstream: func(*Host) Upstream { made.Add(1); return pool{&closed} }}
	if err := h.CloseUpstream(); err != nil || closed.Load() != 0 {
		t.Fatalf("closing a host never used: err %v, %d closes, want 0", err, closed.Load())
	}
	// A request that picked the host just before its cluster closed gets
	// a closed pool, not a live one nobody will close.
	if h.Upstream() == nil || made.Load() != 1 || closed.Load() != 1 {
		t.Fatalf("use after close: made %d, closed %d; want a pool made and closed at once", made.Load(), closed.Load())
	}
	if (&Host{}).Upstream() != nil {
		t.Fatal("a host without NewUpstream returned a pool")
	}
}
