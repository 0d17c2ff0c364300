// Package tick gives the process's periodic work one clock. A Ticker of
// period d ticks at the multiples of d since the process started, so that
// tickers of the same period, or of periods that are multiples of one
// another, tick in the same wake-up of the process. An idle proxy is woken
// by its tickers alone, and on a virtual machine each wake-up of an idle
// process costs about 0.2 ms of CPU (the kernel's and the hypervisor's
// work to wake a thread, and the Go scheduler's); each with a phase of its
// own, the tickers of the stats flush, the access log, the status page,
// the listeners' byte counts and the engine's sweeps woke it once each,
// every second.
package tick

import (
	"sync"
	"time"
)

// epoch is the process's clock's zero.
var epoch = time.Now()

// Until returns how long from now to the next multiple of d on the
// process's clock: a time.Timer reset to it fires with the Tickers of
// period d.
func Until(d time.Duration) time.Duration { return until(time.Since(epoch), d) }

// until is Until at elapsed time since the epoch: in (0, d].
func until(elapsed, d time.Duration) time.Duration { return d - elapsed%d }

// Ticker is time.Ticker on the process's clock: it sends the time on C at
// each multiple of its period, dropping ticks a slow reader missed, as
// time.Ticker does. Its first tick comes within one period.
type Ticker struct {
	C <-chan time.Time
	c chan time.Time
	d time.Duration

	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

// NewTicker returns a Ticker of period d, which must be positive.
func NewTicker(d time.Duration) *Ticker {
	if d <= 0 {
		panic("tick: non-positive period")
	}
	c := make(chan time.Time, 1)
	tk := &Ticker{C: c, c: c, d: d}
	tk.mu.Lock()
	tk.t = time.AfterFunc(Until(d), tk.fire)
	tk.mu.Unlock()
	return tk
}

func (tk *Ticker) fire() {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if tk.stopped {
		return
	}
	select {
	case tk.c <- time.Now():
	default:
	}
	tk.t.Reset(Until(tk.d))
}

// Stop turns the Ticker off: no tick is sent once it returns. It does
// not close C.
func (tk *Ticker) Stop() {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	tk.stopped = true
	tk.t.Stop()
}
