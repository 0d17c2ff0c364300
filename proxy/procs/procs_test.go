package procs

import (
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// repeat is n Intervals of the cores used, nothing queued.
func repeat(used float64, n int) []Load {
	return repeatLoad(Load{Used: used}, n)
}

func repeatLoad(l Load, n int) []Load {
	s := make([]Load, n)
	for i := range s {
		s[i] = l
	}
	return s
}

func cat(ls ...[]Load) []Load { return slices.Concat(ls...) }

func TestPolicy(t *testing.T) {
	need := int(ShrinkAfter / Interval)
	queued := Load{Used: 0.4, Queued: true}
	tests := []struct {
		name    string
		max     int
		samples []Load
		want    int // after the samples
	}{
		{"starts at the most", 4, nil, 4},
		{"light load shrinks to one after ShrinkAfter", 2, repeat(0.2, need), 1},
		{"not before", 2, repeat(0.2, need-1), 2},
		{"a busy Interval restarts the wait", 2, cat(repeat(0.2, need-1), repeat(1.5, 1), repeat(0.2, need-1)), 2},
		{"shrinks to what keeps each half busy", 8, repeat(1.4, need), 3},
		{"one thread busier than GrowAt grows to the most", 4, cat(repeat(0.1, need), repeat(0.75, 1)), 4},
		{"one thread under GrowAt stays", 4, cat(repeat(0.1, need), repeat(0.65, 1)), 1},
		{"between ShrinkTo and GrowAt nothing moves", 2, cat(repeat(0.1, need), repeat(0.6, 3*need)), 1},
		{"two threads at 0.6 stay two", 2, repeat(0.6, 3*need), 2},
		{"goroutines queued on one thread grow to the most", 2, cat(repeat(0.1, need), repeatLoad(queued, 1)), 2},
		{"no shrink while goroutines queue", 2, repeatLoad(queued, 3*need), 2},
		{"a load back soon after a shrink holds the next off twice as long", 2,
			cat(repeat(0.1, need), repeatLoad(queued, 1), repeat(0.1, 2*need-1)), 2},
		{"and then shrinks", 2,
			cat(repeat(0.1, need), repeatLoad(queued, 1), repeat(0.1, 2*need)), 1},
		{"one processor: nothing to adapt", 1, cat(repeat(0.1, need), repeat(3, 1), repeatLoad(queued, 1)), 1},
		{"a look after a long wait counts its Intervals", 2, []Load{{Used: 0.1, Intervals: need}}, 1},
		{"a load back long after a shrink, by the clock, waits the usual time", 2,
			cat(repeat(0.1, need), []Load{{Used: 0.001, Intervals: 2 * need}}, repeatLoad(queued, 1), repeat(0.1, need)), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPolicy(tt.max)
			got := tt.max
			for _, u := range tt.samples {
				got = p.Next(u)
			}
			if got != tt.want {
				t.Errorf("GOMAXPROCS %d, want %d", got, tt.want)
			}
		})
	}
}

// fakeProcess is a process whose CPU time a test sets and whose
// GOMAXPROCS it reads.
type fakeProcess struct {
	mu    sync.Mutex
	busy  float64 // cores in use from now on
	cpu   time.Duration
	at    time.Time
	procs int
	max   int // what the runtime would pick
	sets  []int
}

func (f *fakeProcess) cpuTime() (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	f.cpu += time.Duration(f.busy * float64(now.Sub(f.at)))
	f.at = now
	return f.cpu, true
}

func (f *fakeProcess) setBusy(b float64) {
	f.cpuTime() // account the time so far at the old rate
	f.mu.Lock()
	f.busy = b
	f.mu.Unlock()
}

func (f *fakeProcess) set(n int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.procs
	if n > 0 {
		f.procs = n
		f.sets = append(f.sets, n)
	}
	return old
}

// reset is runtime.SetDefaultGOMAXPROCS on a machine of max processors.
func (f *fakeProcess) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.procs = f.max
	f.sets = append(f.sets, f.max)
}

func (f *fakeProcess) current() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.procs
}

func waitProcs(t *testing.T, f *fakeProcess, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for f.current() != want {
		if time.Now().After(deadline) {
			t.Fatalf("GOMAXPROCS %d after %v, want %d", f.current(), within, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// controller is a Controller of f.
func (f *fakeProcess) controller() *Controller {
	return &Controller{cpu: f.cpuTime, queued: func() bool { return false }, set: f.set, reset: f.reset}
}

// TestController: an idle process drops to one processor, takes them all
// back under load, and gets them all back when adapting stops.
func TestController(t *testing.T) {
	f := &fakeProcess{at: time.Now(), procs: 2, max: 2}
	c := f.controller()
	c.SetEnabled(true)
	t.Cleanup(func() { c.SetEnabled(false) })
	waitProcs(t, f, 1, 10*ShrinkAfter)
	f.setBusy(0.95)
	waitProcs(t, f, 2, 50*Interval)
	f.setBusy(0)
	waitProcs(t, f, 1, 10*ShrinkAfter)
	c.SetEnabled(false)
	if got := f.current(); got != 2 {
		t.Errorf("GOMAXPROCS %d once adapting stopped, want 2", got)
	}
	c.SetEnabled(false) // idempotent

	// A new CPU limit, set while adapting, is the most from then on.
	f = &fakeProcess{at: time.Now(), procs: 2, max: 4}
	c = f.controller()
	c.SetEnabled(true)
	waitProcs(t, f, 1, 10*ShrinkAfter)
	f.mu.Lock()
	f.procs = 3 // as the runtime does when the limit changes
	f.mu.Unlock()
	f.setBusy(2.9)
	waitProcs(t, f, 3, 3*IdleInterval) // the idle process looks once per IdleInterval
	time.Sleep(5 * Interval)
	if got := f.current(); got != 3 {
		t.Errorf("GOMAXPROCS %d under load after the runtime set 3, want 3", got)
	}
	c.SetEnabled(false)
}

// TestControllerOneProcessor: on a process limited to one processor, an
// idle or busy one, the controller never sets GOMAXPROCS but to give it
// back when it stops.
func TestControllerOneProcessor(t *testing.T) {
	one := &fakeProcess{at: time.Now(), procs: 1, max: 1}
	c := one.controller()
	c.SetEnabled(true)
	time.Sleep(3 * Interval)
	one.setBusy(1)
	time.Sleep(3 * Interval)
	c.SetEnabled(false)
	if want := []int{1}; !slices.Equal(one.sets, want) {
		t.Errorf("GOMAXPROCS set to %v, want %v (the reset when stopping)", one.sets, want)
	}
}

func TestLoadIdle(t *testing.T) {
	tests := []struct {
		name     string
		l        Load
		cur, max int
		want     bool
	}{
		{"one thread of two, nothing used", Load{}, 1, 2, true},
		{"one thread of two, under IdleBelow", Load{Used: IdleBelow / 2}, 1, 2, true},
		{"one thread of two, at IdleBelow", Load{Used: IdleBelow}, 1, 2, false},
		{"one thread of two, goroutines queued", Load{Queued: true}, 1, 2, false},
		{"two threads, nothing used", Load{}, 2, 2, false},
		{"one thread at most, busy", Load{Used: 1, Queued: true}, 1, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.l.idle(tt.cur, tt.max); got != tt.want {
				t.Errorf("idle(%+v, %d of %d) = %v, want %v", tt.l, tt.cur, tt.max, got, tt.want)
			}
		})
	}
}

// TestControllerIdleLooks: a process that may use one processor is
// looked at once per IdleInterval, not once per Interval: every look
// wakes the process. A busy machine makes fewer looks, never more.
func TestControllerIdleLooks(t *testing.T) {
	one := &fakeProcess{at: time.Now(), procs: 1, max: 1}
	var mu sync.Mutex
	looks := 0
	c := one.controller()
	c.cpu = func() (time.Duration, bool) {
		mu.Lock()
		looks++
		mu.Unlock()
		return one.cpuTime()
	}
	c.SetEnabled(true)
	wait := 2*IdleInterval + IdleInterval/2
	time.Sleep(wait)
	c.SetEnabled(false)
	mu.Lock()
	defer mu.Unlock()
	// SetEnabled's reading and the start's, a look within an Interval,
	// then one at each multiple of IdleInterval on the process's clock:
	// up to three in two and a half.
	if most := 4 + int(wait/IdleInterval); looks > most {
		t.Errorf("%d looks in %v at one processor, want at most %d", looks, wait, most)
	}
}

// TestWaitsQueued reads the runtime's scheduling waits: goroutines that
// take turns on one thread queue; a quiet process does not.
func TestWaitsQueued(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	w := newWaits()
	w.queued()
	time.Sleep(2 * Interval)
	if w.queued() {
		t.Error("a quiet process queued")
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				spin(200 * time.Microsecond)
				runtime.Gosched()
			}
		}()
	}
	time.Sleep(2 * Interval)
	queued := w.queued()
	close(stop)
	wg.Wait()
	if !queued {
		t.Error("four busy goroutines on one thread did not queue")
	}
}

// spin keeps the thread busy for d.
func spin(d time.Duration) {
	for start := time.Now(); time.Since(start) < d; {
	}
}
