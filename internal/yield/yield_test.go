package yield

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/testnet"
)

// TestYieldRunsNetworkGoroutines runs a long loop on the only P that
// yields every few items, and checks that a goroutine whose socket
// became readable ran at the first yield. With runtime.Gosched in
// place of Yield it runs only once the runtime's monitor polls the
// network and preempts the loop, 10 ms or more in.
func TestYieldRunsNetworkGoroutines(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	y := New()
	defer y.Close()
	const items, per, every = 400, 50 * time.Microsecond, 10 // 20 ms of work
	var done atomic.Int64
	ranAt := testnet.ReadableWhileBusy(t, done.Load)
	for i := range items {
		for end := time.Now().Add(per); time.Now().Before(end); {
		}
		done.Add(1)
		if i%every == every-1 {
			y.Yield()
		}
	}
	if at := <-ranAt; at > every {
		t.Errorf("the reader ran after %d of %d items, want at the first yield, after %d", at, items, every)
	}
}

// TestYieldAlone checks that Yield returns when nothing else runs, many
// times over: the pipe is drained each time and never fills.
func TestYieldAlone(t *testing.T) {
	y := New()
	defer y.Close()
	for range 100_000 {
		y.Yield()
	}
}
