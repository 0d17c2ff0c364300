package overload

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/stats"
)

// TestActions: each action is on exactly while the pressure is at or over
// its threshold, and reset_high_memory_stream asks the engine to free
// down to under its threshold.
func TestActions(t *testing.T) {
	tests := []struct {
		name     string
		buffered int64
		want     Actions
		free     int64 // what Reset is asked to free; 0: not called
	}{
		{"idle", 0, 0, 0},
		{"under every threshold", 790, 0, 0},
		{"reset", 800, ResetStreams, 800 - 720},
		{"reset and refuse", 960, ResetStreams | StopRequests | StopConnections, 960 - 720},
		{"over budget", 2000, ResetStreams | StopRequests | StopConnections, 2000 - 720},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var asked int64
			eng := Engine{
				Buffered: func() int64 { return tt.buffered },
				Reset:    func(free int64) int { asked = free; return 0 },
			}
			m := New(Config{MaxBufferedBytes: 1000, RefreshInterval: time.Hour}, eng, nil)
			m.Start()
			defer m.Stop()
			for _, a := range []Actions{ResetStreams, StopRequests, StopConnections} {
				if got, want := m.Active(a), tt.want&a != 0; got != want {
					t.Errorf("action %b active = %v, want %v", a, got, want)
				}
			}
			if asked != tt.free {
				t.Errorf("Reset asked to free %d, want %d", asked, tt.free)
			}
		})
	}
}

// TestNilManager: a nil manager has every action off.
func TestNilManager(t *testing.T) {
	var m *Manager
	if m.Active(StopRequests) {
		t.Error("nil manager refuses requests")
	}
}

// TestReconfigure: a reload's budget applies at the next reading, and the
// engine is told it.
func TestReconfigure(t *testing.T) {
	var told int64
	eng := Engine{Buffered: func() int64 { return 500 }, Budget: func(b int64) { told = b }}
	m := New(Config{MaxBufferedBytes: 1000, RefreshInterval: time.Hour}, eng, nil)
	m.Start()
	defer m.Stop()
	if m.Active(StopRequests) || told != 1000 {
		t.Fatalf("at half the budget: refusing %v, engine told %d", m.Active(StopRequests), told)
	}
	m.Reconfigure(Config{MaxBufferedBytes: 400})
	m.update()
	if !m.Active(StopRequests) || told != 400 {
		t.Errorf("over the new budget: refusing %v, engine told %d", m.Active(StopRequests), told)
	}
}

// TestAdmitConcurrencyBudget: past max_active_requests a request is
// refused at once, whatever the monitor last read; a released request
// makes room; no budget counts nothing.
func TestAdmitConcurrencyBudget(t *testing.T) {
	type step struct {
		release  bool // release one held request instead of admitting
		wantOK   bool
		wantHeld bool
	}
	admit := func(ok bool) step { return step{wantOK: ok, wantHeld: ok} }
	tests := []struct {
		name  string
		max   int64
		steps []step
	}{
		{"no budget: everything, nothing held", 0, []step{{wantOK: true}, {wantOK: true}, {wantOK: true}}},
		{"a budget of two", 2, []step{admit(true), admit(true), admit(false), admit(false), {release: true}, admit(true), admit(false)}},
		{"a budget of one", 1, []step{admit(true), admit(false), {release: true}, {release: false, wantOK: true, wantHeld: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(Config{MaxActiveRequests: tt.max, RefreshInterval: time.Hour}, Engine{}, nil)
			for i, s := range tt.steps {
				if s.release {
					m.Release()
					continue
				}
				ok, held := m.Admit()
				if ok != s.wantOK || held != s.wantHeld {
					t.Errorf("step %d: Admit = %v, %v; want %v, %v", i, ok, held, s.wantOK, s.wantHeld)
				}
			}
		})
	}
}

// TestConcurrencyPressure: the budget's pressure turns the refusing
// actions on at their thresholds, and never the stream resets.
func TestConcurrencyPressure(t *testing.T) {
	m := New(Config{MaxActiveRequests: 20, RefreshInterval: time.Hour}, Engine{}, nil)
	for range 18 {
		m.Admit()
	}
	m.update()
	if m.Active(StopRequests) || m.Active(ResetStreams) {
		t.Fatalf("at 90%%: refusing %v, resetting %v", m.Active(StopRequests), m.Active(ResetStreams))
	}
	m.Admit()
	m.update()
	if !m.Active(StopRequests) || !m.Active(StopConnections) || m.Active(ResetStreams) {
		t.Errorf("at 95%%: refusing %v, closing %v, resetting %v; want true, true, false",
			m.Active(StopRequests), m.Active(StopConnections), m.Active(ResetStreams))
	}
	if ok, _ := m.Admit(); ok {
		t.Error("admitted while stop_accepting_requests is on")
	}
	m.Release()
	m.update()
	if m.Active(StopRequests) {
		t.Error("still refusing at 90%")
	}
	// A reload's budget applies at once to admission.
	m.Reconfigure(Config{MaxActiveRequests: 10})
	if ok, _ := m.Admit(); ok {
		t.Error("admitted past a lowered budget")
	}
}

// newShrinkManager returns a Manager that is not started, for calling
// shrinkHeap by hand, and its stats.
func newShrinkManager(t *testing.T) (*Manager, *stats.Overload) {
	t.Helper()
	store, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := store.Overload()
	return New(Config{RefreshInterval: time.Hour}, Engine{}, st), st
}

// TestShrinkHeap: the free pages a burst of allocations leaves behind are
// given back to the system and counted; a heap with little free is left
// alone.
func TestShrinkHeap(t *testing.T) {
	m, st := newShrinkManager(t)
	freePages := func() uint64 {
		s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	// A burst: 256 MiB in 1 MiB objects, then garbage.
	burst := make([][]byte, 256)
	for i := range burst {
		burst[i] = make([]byte, 1<<20)
		burst[i][0] = 1
	}
	runtime.KeepAlive(burst)
	burst = nil
	runtime.GC()
	if f := freePages(); f < shrinkMinFree {
		t.Skipf("the runtime returned the burst's pages itself (%d bytes free left)", f)
	}
	if !m.shrinkHeap() {
		t.Fatalf("%d bytes of free pages after the burst not given back", freePages())
	}
	if n := st.ShrinkHeap.Value(); n != 1 {
		t.Errorf("overload.shrink_heap.shrink_count = %d, want 1", n)
	}
	if f := freePages(); f >= shrinkMinFree {
		t.Errorf("%d bytes of free pages left after shrink_heap", f)
	}
	if m.shrinkHeap() {
		t.Error("shrink_heap ran again with nothing to give back")
	}
}

// TestShrinkHeapQuiet: a process that goes quiet with garbage from when it
// was busy gives it back once, and not while it allocates.
func TestShrinkHeapQuiet(t *testing.T) {
	m, st := newShrinkManager(t)
	// A live heap of 16 MiB lets the collector wait for as much garbage
	// again before it runs.
	live := make([][]byte, 256)
	for i := range live {
		live[i] = make([]byte, 64<<10)
	}
	runtime.GC()
	m.shrinkHeap() // the first look only notes the allocations so far
	before := st.ShrinkHeap.Value()

	// Busy: 12 MiB of short-lived buffers, under shrinkMinFree, so the
	// burst rule does not apply.
	var sink []byte
	for range 192 {
		sink = make([]byte, 64<<10)
		sink[0] = 1
	}
	runtime.KeepAlive(sink)
	sink = nil
	if m.shrinkHeap() {
		t.Fatal("shrink_heap ran while the process was allocating")
	}
	// Quiet since the last look: what the busy time left is given back.
	if !m.shrinkHeap() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}, {Name: "/gc/heap/live:bytes"}}
		metrics.Read(s)
		t.Fatalf("quiet process kept %d bytes of free pages for a live heap of %d", s[0].Value.Uint64(), s[1].Value.Uint64())
	}
	if n := st.ShrinkHeap.Value() - before; n != 1 {
		t.Errorf("overload.shrink_heap.shrink_count grew by %d, want 1", n)
	}
	if m.shrinkHeap() {
		t.Error("shrink_heap ran again in a quiet process with nothing new to give back")
	}
	runtime.KeepAlive(live)
}

// TestShrinkHeapLetGo: what a quiet process lets go of without allocating
// (connections closed at their idle timeout, a window's history) is given
// back once it has stayed quiet for quietCollect looks with no collection;
// a collection that finds nothing doubles the wait before the next.
func TestShrinkHeapLetGo(t *testing.T) {
	m, st := newShrinkManager(t)
	held := make([][]byte, 256) // 16 MiB
	for i := range held {
		held[i] = make([]byte, 64<<10)
		held[i][0] = 1
	}
	debug.FreeOSMemory() // no free pages for the other rules to find
	m.shrinkHeap()       // the first look only notes the allocations so far
	before := st.ShrinkHeap.Value()
	runtime.KeepAlive(held)
	held = nil // let go, allocating nothing
	released := func() uint64 {
		s := []metrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	was := released()
	look := func(want bool, what string) {
		t.Helper()
		if got := m.shrinkHeap(); got != want {
			t.Fatalf("%s: shrink_heap gave memory back: %v, want %v", what, got, want)
		}
	}
	for i := range quietCollect - 1 {
		look(false, fmt.Sprintf("quiet look %d", i+1))
	}
	look(true, "the quietCollect-th quiet look with no collection")
	if n := st.ShrinkHeap.Value() - before; n != 1 {
		t.Errorf("overload.shrink_heap.shrink_count grew by %d, want 1", n)
	}
	if got := released() - min(was, released()); got < 8<<20 {
		t.Errorf("%d bytes returned to the system of the 16 MiB let go", got)
	}
	// Nothing more to give back: a collection after quietCollect looks
	// returns nothing and is not counted, and the next waits twice as long.
	// "Nothing" is under a gain no garbage of the test process's other
	// goroutines can reach (a busy machine let them make a MiB).
	m.minGain = 1 << 40
	for i := range quietCollect {
		look(false, fmt.Sprintf("quiet look %d after the release", i+1))
	}
	for i := range 2*quietCollect - 1 {
		look(false, fmt.Sprintf("quiet look %d after a collection that found nothing", i+1))
	}
	cycles := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(cycles)
	look(false, "the look after twice the wait")
	after := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(after)
	if after[0].Value.Uint64() == cycles[0].Value.Uint64() {
		t.Error("no collection after twice the wait")
	}
	if n := st.ShrinkHeap.Value() - before; n != 1 {
		t.Errorf("overload.shrink_heap.shrink_count grew by %d, want 1: collections that gave nothing back were counted", n)
	}
}

// quietEngine is an Engine with an alarm the test rings itself, as the
// engine's buffers would.
type quietEngine struct {
	mu       sync.Mutex
	buffered int64
	reads    int
	armedAt  int64 // 0: no alarm
	c        chan<- struct{}
	onArm    func(q *quietEngine) // under mu
}

func (q *quietEngine) engine() Engine {
	return Engine{
		Buffered: func() int64 {
			q.mu.Lock()
			defer q.mu.Unlock()
			q.reads++
			return q.buffered
		},
		Reset: func(int64) int { return 0 },
		Alarm: func(at int64, c chan<- struct{}) {
			q.mu.Lock()
			defer q.mu.Unlock()
			q.armedAt, q.c = at, c
			if q.onArm != nil {
				q.onArm(q)
			}
		},
	}
}

func (q *quietEngine) set(n int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.buffered = n
}

// ring sends the armed alarm's signal, as getBuf does at its mark.
func (q *quietEngine) ring(t *testing.T) {
	t.Helper()
	q.mu.Lock()
	c := q.c
	q.armedAt, q.c = 0, nil
	q.mu.Unlock()
	if c == nil {
		t.Fatal("no alarm armed")
	}
	c <- struct{}{}
}

func waitActive(t *testing.T, m *Manager, a Actions, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for m.Active(a) != want {
		if time.Now().After(deadline) {
			t.Fatalf("action %b active = %v after 10 s, want %v", a, !want, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestQuietManager: with little buffered, no action on and the buffers as
// the only monitor, the manager stops looking every refresh interval and
// arms the engine's alarm at a sixteenth of the budget; the alarm wakes it
// at once, and it looks every refresh interval again while anything is on.
// The quiet wait is an hour here, so that only the alarm can wake it.
func TestQuietManager(t *testing.T) {
	q := &quietEngine{}
	m := New(Config{MaxBufferedBytes: 1600, RefreshInterval: time.Millisecond}, q.engine(), nil)
	m.quiet = time.Hour
	m.Start()
	defer m.Stop()
	time.Sleep(50 * time.Millisecond)
	q.mu.Lock()
	reads, at := q.reads, q.armedAt
	q.mu.Unlock()
	if at != 100 {
		t.Fatalf("alarm armed at %d, want 100 (a sixteenth of the budget)", at)
	}
	if reads > 4 {
		t.Errorf("%d readings of the buffers in 50 ms while quiet, want at most 4 (the start's, and two around arming the alarm)", reads)
	}

	q.set(1500)
	q.ring(t)
	waitActive(t, m, ResetStreams, true)
	q.set(0) // no alarm: an action on keeps the manager looking
	waitActive(t, m, ResetStreams, false)
}

// TestQuietManagerRace: bytes buffered while the alarm is armed, which
// rang no alarm, are seen by the reading after arming it.
func TestQuietManagerRace(t *testing.T) {
	q := &quietEngine{}
	q.onArm = func(q *quietEngine) {
		if q.buffered == 0 {
			q.buffered = 1500 // arrived past the mark before the alarm was set
		}
	}
	m := New(Config{MaxBufferedBytes: 1600, RefreshInterval: time.Millisecond}, q.engine(), nil)
	m.quiet = time.Hour
	m.Start()
	defer m.Stop()
	waitActive(t, m, ResetStreams, true)
}

// TestNeverQuiet: a heap monitor or a concurrency budget keeps the
// manager looking every refresh interval; no alarm is armed.
func TestNeverQuiet(t *testing.T) {
	for _, cfg := range []Config{
		{MaxBufferedBytes: 1600, MaxHeapBytes: 1 << 40, RefreshInterval: time.Millisecond},
		{MaxBufferedBytes: 1600, MaxActiveRequests: 10, RefreshInterval: time.Millisecond},
	} {
		t.Run(fmt.Sprintf("heap %d requests %d", cfg.MaxHeapBytes, cfg.MaxActiveRequests), func(t *testing.T) {
			q := &quietEngine{}
			m := New(cfg, q.engine(), nil)
			m.quiet = time.Hour
			m.Start()
			defer m.Stop()
			q.set(1500)
			waitActive(t, m, ResetStreams, true)
			q.mu.Lock()
			defer q.mu.Unlock()
			if q.armedAt != 0 {
				t.Errorf("alarm armed at %d", q.armedAt)
			}
		})
	}
}
