// Package overload is the process's memory budget and the actions it takes
// as the budget fills, in the sense of Envoy's overload manager: resource
// monitors give a pressure between 0 and 1, and each action turns on once
// the pressure passes its threshold and off again once it falls below.
//
// Three monitors: the bytes the proxy holds in flight for its peers (DATA
// queued for a slow receiver; always on, because it is what a peer that
// does not read or a backend that stalls makes grow), and, when a limit is
// set, the Go heap (off by default: the heap holds the config too, and a
// large config must not make the proxy refuse traffic) and the downstream
// requests in flight (the concurrency budget, max_active_requests). Three
// actions, each counted:
//
//   - reset_high_memory_stream: the calls holding the most buffered bytes
//     are reset until the buffer pressure is back under the threshold
//     (Envoy's action of the same name). A well-behaved client holds
//     little, so the reset falls on the peers that made the buffers grow.
//   - stop_accepting_requests: new requests get 503, or UNAVAILABLE for
//     gRPC, with response flag OM, and are counted in the listener's
//     downstream_rq_overload_close.
//   - stop_accepting_connections: new connections are closed at once and
//     counted in the listener's downstream_cx_overload_reject.
//
// A fourth action, shrink_heap, gives free memory back to the system: the
// Go runtime's scavenger returns the pages a burst left free slowly (it
// takes about 1 % of a CPU), so that after a burst to 10,000 clusters,
// whose connections, stats and status history are all freed once idle,
// the process kept 360 to 400 MB of RSS for a live heap of 40.
// Every shrinkInterval the manager looks at the heap's free pages, and
// when they are more than shrinkMinFree and more than the live objects,
// has the runtime collect and return them (debug.FreeOSMemory), counted
// in overload.shrink_heap.shrink_count. Envoy's shrink_heap does the same
// for tcmalloc, every 10 s while its trigger is on; here it is always on
// and needs no trigger: free pages that outweigh the live heap are what a
// burst that ended leaves, and returning them costs one collection.
//
// It also runs once a process goes quiet: the collector lets the heap
// grow to twice what was live at its last pass before it runs again, and
// an idle process may not allocate that much for hours, so the garbage
// and free pages of its last busy minute stay resident (after a burst to
// 10,000 clusters, 99 to 134 MB of RSS against 65 to 72 before it). When
// the process allocated less than an eighth of its live heap since the
// last look, and what a collection would give back (dead objects and free
// pages) is more than an eighth of the live heap and shrinkMinQuiet, the
// same collection runs. A busy process never meets the first condition,
// and after one such collection an idle one does not meet the second
// until it has made new garbage.
//
// A quiet process also makes garbage without allocating, by letting go of
// what it held: the upstream connections of 10,000 clusters closed at
// their idle timeout, the status page's history of their hosts once its
// window has passed. That shows only after a collection, and the
// collector waits for the heap to double, or two minutes: after such a
// burst 4 MiB stayed resident for good, the last 16 % of the RSS over the
// idle figure. So a process that has stayed quiet for quietCollect looks
// with no collection gets one, its free pages returned; counted only
// when it gave back at least quietMinGain. One that gave back less
// doubles the wait before the next, so that an idle process collects
// once every few minutes, not every half minute.
//
// The request path reads one atomic word to learn what is active; a
// monitor goroutine recomputes it every refresh interval (100 ms by
// default: flow control bounds what can pile up in between). While the
// buffers hold less than a sixteenth of their budget, no action is on
// and the buffers are the only monitor (the default), it looks once a
// second instead, and the engine wakes it the moment the buffers reach
// that sixteenth (Engine.Alarm), far below the first action (four
// fifths of the budget by default). Every look wakes the process, and on
// a virtual machine each wake-up of an idle process costs about 0.2 ms
// of CPU: ten a second were most of what an idle proxy spent. The
// concurrency budget is also enforced exactly, at admission (Admit): a
// request past max_active_requests is refused at once, not after the next
// reading, and the budget's pressure feeds the two refusing actions (not
// the stream resets, which free memory, not requests).
package overload

import (
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sightline-proxy/sightline/internal/tick"
	"github.com/sightline-proxy/sightline/stats"
)

// Actions are the overload actions, as bits of Manager's state word.
type Actions uint32

// The actions.
const (
	ResetStreams Actions = 1 << iota
	StopRequests
	StopConnections
)

// Defaults: the buffer budget is far above what normal traffic holds (a
// stream holds at most its flow-control window, 64 KiB until it proves a
// fast reader) and well under the memory of the smallest machine the proxy
// runs on; the thresholds keep the order reset, then refuse.
const (
	DefaultMaxBufferedBytes = 64 << 20
	DefaultResetStreams     = 0.80
	DefaultStopRequests     = 0.95
	DefaultStopConnections  = 0.95
	DefaultRefreshInterval  = 100 * time.Millisecond

	// quietRefresh is how often the manager looks while it is quiet
	// (see the package comment), quietShare the share of the buffer
	// budget that ends the quiet.
	quietRefresh = time.Second
	quietShare   = 16

	// shrinkInterval is how often shrink_heap looks at the free pages,
	// shrinkMinFree the least it returns.
	shrinkInterval = 10 * time.Second
	shrinkMinFree  = 64 << 20
	shrinkMinQuiet = 4 << 20
	// quietCollect is how many quiet looks with no collection shrink_heap
	// waits before it runs one, quietMinGain what one must give back to
	// be counted and to keep the wait short.
	quietCollect = 3
	quietMinGain = 1 << 20
)

// Config configures a Manager. Zero fields take the defaults; a zero
// MaxHeapBytes turns the heap monitor off.
type Config struct {
	MaxBufferedBytes int64
	MaxHeapBytes     int64
	// MaxActiveRequests is the concurrency budget: downstream requests in
	// flight in the whole process; 0 turns the monitor off.
	MaxActiveRequests int64
	RefreshInterval   time.Duration
	// Thresholds: the pressure (0 to 1] at which each action turns on.
	ResetStreams, StopRequests, StopConnections float64
}

// Engine is what the manager watches and acts on: the bytes buffered in
// flight, and a way to reset the calls holding the most of them.
type Engine struct {
	// Buffered returns the bytes held in flight now.
	Buffered func() int64
	// Reset resets calls, largest buffers first, until about free bytes
	// are released, and returns how many calls it reset.
	Reset func(free int64) int
	// Budget, when set, is told the buffer budget, at start and on every
	// Reconfigure.
	Budget func(bytes int64)
	// Alarm, when set, arms a one-shot alarm: a send on c, which must
	// not block, once the bytes held reach at. It replaces an alarm
	// still armed. Without it the manager looks every refresh interval.
	Alarm func(at int64, c chan<- struct{})
}

// Manager watches the monitors and keeps the active actions. A nil
// *Manager has every action off.
type Manager struct {
	cfg   atomic.Pointer[Config] // read by the monitor; Reconfigure swaps it
	eng   Engine
	st    *stats.Overload
	state atomic.Uint32
	// maxActive mirrors cfg.MaxActiveRequests for Admit; active counts
	// the requests Admit let in while it was set.
	maxActive atomic.Int64
	active    atomic.Int64
	stop      chan struct{}
	done      chan struct{}
	once      sync.Once
	// wake is the Engine's alarm (capacity 1): the buffers grew while
	// the manager was quiet.
	wake chan struct{}
	// quiet is quietRefresh; a test raises it so that only the alarm
	// can wake a quiet manager.
	quiet time.Duration
	heap  [1]metrics.Sample
	// shrink_heap's reading (see the shrink* indexes), and the bytes
	// allocated as of the last one.
	pages  [shrinkSamples]metrics.Sample
	allocs uint64
	// cycles is the collections counted at the last look; uncollected
	// the quiet looks since one ran, wait how many shrink_heap lets pass
	// before it runs one itself (quietCollect, doubled while they find
	// nothing to give back).
	cycles      uint64
	uncollected int
	wait        int
	// minGain is quietMinGain; a test that cannot keep the rest of its
	// process from making garbage raises it.
	minGain uint64
}

// Indexes of Manager.pages.
const (
	shrinkObjects  = iota // live and not yet swept dead objects
	shrinkFree            // free pages, not yet returned
	shrinkLive            // the live heap at the last collection
	shrinkAllocs          // bytes allocated since the process started
	shrinkCycles          // collections since the process started
	shrinkReleased        // free pages returned to the system
	shrinkSamples
)

// New returns a Manager watching eng; Start runs it.
func New(cfg Config, eng Engine, st *stats.Overload) *Manager {
	if st == nil {
		st = stats.Nop().Overload()
	}
	m := &Manager{eng: eng, st: st, stop: make(chan struct{}), done: make(chan struct{}),
		wake: make(chan struct{}, 1), quiet: quietRefresh}
	m.heap[0].Name = "/memory/classes/heap/objects:bytes"
	m.pages[shrinkObjects].Name = "/memory/classes/heap/objects:bytes"
	m.pages[shrinkFree].Name = "/memory/classes/heap/free:bytes"
	m.pages[shrinkLive].Name = "/gc/heap/live:bytes"
	m.pages[shrinkAllocs].Name = "/gc/heap/allocs:bytes"
	m.pages[shrinkCycles].Name = "/gc/cycles/total:gc-cycles"
	m.pages[shrinkReleased].Name = "/memory/classes/heap/released:bytes"
	m.wait, m.minGain = quietCollect, quietMinGain
	m.Reconfigure(cfg)
	return m
}

// Reconfigure applies a new budget and thresholds from the monitor's next
// reading (a config reload); the refresh interval stays the one the
// manager started with.
func (m *Manager) Reconfigure(cfg Config) {
	if cfg.MaxBufferedBytes <= 0 {
		cfg.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = DefaultRefreshInterval
	}
	if cfg.ResetStreams <= 0 {
		cfg.ResetStreams = DefaultResetStreams
	}
	if cfg.StopRequests <= 0 {
		cfg.StopRequests = DefaultStopRequests
	}
	if cfg.StopConnections <= 0 {
		cfg.StopConnections = DefaultStopConnections
	}
	if old := m.cfg.Load(); old != nil {
		cfg.RefreshInterval = old.RefreshInterval
	}
	m.cfg.Store(&cfg)
	m.maxActive.Store(max(cfg.MaxActiveRequests, 0))
	if m.eng.Budget != nil {
		m.eng.Budget(cfg.MaxBufferedBytes)
	}
}

// level is the buffered bytes at pressure p of the budget of cfg.
func level(cfg *Config, p float64) int64 { return int64(p * float64(cfg.MaxBufferedBytes)) }

// Start reads the monitors once, so that the actions are right from the
// first request, then runs the monitor until Stop.
func (m *Manager) Start() {
	m.update()
	go m.run()
}

// Stop ends the monitor and waits for it.
func (m *Manager) Stop() {
	m.once.Do(func() { close(m.stop) })
	<-m.done
}

// Active reports whether every action of a is on.
func (m *Manager) Active(a Actions) bool {
	return m != nil && Actions(m.state.Load())&a == a
}

// Admit decides whether a new downstream request is served: not while
// stop_accepting_requests is on, nor when the process already has
// max_active_requests in flight. held says that the request counts
// against the budget: the caller then calls Release, once, when it ends.
// With no budget set, Admit is one atomic load more than Active and
// counts nothing, so that requests do not contend on a shared counter.
// A nil Manager admits everything.
func (m *Manager) Admit() (ok, held bool) {
	if m == nil {
		return true, false
	}
	if Actions(m.state.Load())&StopRequests != 0 {
		return false, false
	}
	limit := m.maxActive.Load()
	if limit == 0 {
		return true, false
	}
	if m.active.Add(1) > limit {
		m.active.Add(-1)
		return false, false
	}
	return true, true
}

// Release ends a request Admit held.
func (m *Manager) Release() { m.active.Add(-1) }

// ActiveRequests is the number of requests held against the budget.
func (m *Manager) ActiveRequests() int64 {
	if m == nil {
		return 0
	}
	return m.active.Load()
}

func (m *Manager) run() {
	defer close(m.done)
	t := time.NewTimer(tick.Until(m.next()))
	defer t.Stop()
	shrink := tick.NewTicker(shrinkInterval)
	defer shrink.Stop()
	for {
		select {
		case <-m.stop:
			m.state.Store(0)
			return
		case <-t.C:
		case <-m.wake:
		case <-shrink.C:
			m.shrinkHeap()
			continue
		}
		m.update()
		t.Reset(tick.Until(m.next()))
	}
}

// next returns how long to wait before the next look: the refresh
// interval, or m.quiet while the manager may be quiet (see the package
// comment), with the engine's alarm armed to end the wait early. The
// buffers are read again once the alarm is armed, so that bytes that
// arrived before it was cannot go unseen for the whole wait.
func (m *Manager) next() time.Duration {
	cfg := m.cfg.Load()
	if m.eng.Alarm == nil || m.eng.Buffered == nil || cfg.MaxHeapBytes > 0 || cfg.MaxActiveRequests > 0 ||
		m.state.Load() != 0 || cfg.RefreshInterval >= m.quiet {
		return cfg.RefreshInterval
	}
	mark := cfg.MaxBufferedBytes / quietShare
	if m.eng.Buffered() >= mark {
		return cfg.RefreshInterval
	}
	m.eng.Alarm(mark, m.wake)
	if m.eng.Buffered() >= mark {
		return cfg.RefreshInterval
	}
	return m.quiet
}

// shrinkHeap is the shrink_heap action: the heap's free pages are given
// back to the system when they outweigh the live heap and shrinkMinFree
// (a burst ended), or when the process has gone quiet with garbage or
// free pages left from when it was busy, or has stayed quiet for a while
// with no collection. It reports whether it gave memory back.
func (m *Manager) shrinkHeap() bool {
	metrics.Read(m.pages[:])
	objects, free := m.pages[shrinkObjects].Value.Uint64(), m.pages[shrinkFree].Value.Uint64()
	live, allocs := m.pages[shrinkLive].Value.Uint64(), m.pages[shrinkAllocs].Value.Uint64()
	cycles := m.pages[shrinkCycles].Value.Uint64()
	since := allocs - m.allocs
	first := m.allocs == 0
	m.allocs = allocs
	burstEnded := free >= shrinkMinFree && free > objects
	quiet := !first && since < live/8
	switch {
	case !quiet:
		m.uncollected, m.wait = 0, quietCollect
	case cycles != m.cycles:
		m.uncollected = 0
	default:
		m.uncollected++
	}
	m.cycles = cycles
	reclaimable := free + objects - min(objects, live)
	switch {
	case burstEnded || quiet && reclaimable > max(live/8, shrinkMinQuiet):
		m.release()
		m.st.ShrinkHeap.Inc(1)
		return true
	case quiet && m.uncollected >= m.wait:
		released := m.pages[shrinkReleased].Value.Uint64()
		m.release()
		if m.pages[shrinkReleased].Value.Uint64() < released+m.minGain {
			m.wait *= 2
			return false
		}
		m.wait = quietCollect
		m.st.ShrinkHeap.Inc(1)
		return true
	}
	return false
}

// release collects and returns every free page to the system, and notes
// the allocations, collections and returned pages after it.
func (m *Manager) release() {
	debug.FreeOSMemory()
	metrics.Read(m.pages[shrinkAllocs:])
	m.allocs = m.pages[shrinkAllocs].Value.Uint64()
	m.cycles = m.pages[shrinkCycles].Value.Uint64()
	m.uncollected = 0
}

// update reads the monitors, sets the actions, and resets the largest
// calls while reset_high_memory_stream is on.
func (m *Manager) update() {
	cfg := m.cfg.Load()
	heap := 0.0
	if cfg.MaxHeapBytes > 0 {
		metrics.Read(m.heap[:])
		heap = float64(m.heap[0].Value.Uint64()) / float64(cfg.MaxHeapBytes)
		m.st.HeapPressure.Set(int64(heap * 100))
	}
	p := max(m.bufferPressure(cfg), heap)
	if p >= cfg.ResetStreams && m.eng.Reset != nil && m.eng.Buffered != nil {
		// Free down to below the threshold, with some room, so that
		// the next burst does not trip it again at once. Under heap
		// pressure, buffers are what can be freed at once.
		target := level(cfg, cfg.ResetStreams*0.9)
		if heap >= cfg.ResetStreams {
			target = 0
		}
		if free := m.eng.Buffered() - target; free > 0 {
			if n := m.eng.Reset(free); n > 0 {
				m.st.ResetStreams.Inc(int64(n))
			}
		}
		p = max(m.bufferPressure(cfg), heap) // the heap falls only after a GC
	}
	var a Actions
	if p >= cfg.ResetStreams {
		a |= ResetStreams
	}
	// The concurrency budget's pressure turns the refusing actions on,
	// not the resets: those free buffers, not requests.
	if cfg.MaxActiveRequests > 0 {
		rq := float64(m.active.Load()) / float64(cfg.MaxActiveRequests)
		m.st.ActiveRequestsPressure.Set(int64(rq * 100))
		p = max(p, rq)
	}
	if p >= cfg.StopRequests {
		a |= StopRequests
	}
	if p >= cfg.StopConnections {
		a |= StopConnections
	}
	m.state.Store(uint32(a))
	m.st.ResetStreamsActive.Set(b2i(a&ResetStreams != 0))
	m.st.StopRequestsActive.Set(b2i(a&StopRequests != 0))
	m.st.StopConnectionsActive.Set(b2i(a&StopConnections != 0))
}

func (m *Manager) bufferPressure(cfg *Config) float64 {
	var n int64
	if m.eng.Buffered != nil {
		n = m.eng.Buffered()
	}
	p := float64(n) / float64(cfg.MaxBufferedBytes)
	m.st.BufferPressure.Set(int64(p * 100))
	return p
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
