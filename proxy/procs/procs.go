// Package procs runs the proxy on as few threads as its load needs.
//
// With GOMAXPROCS above one, the Go scheduler wakes a spinning thread to
// look for work whenever the network readies a goroutine and a processor
// is idle, and at light load that thread finds none: measured on two
// cores at 2,000 gRPC calls a second, 130 µs of CPU per call against 87
// on one, where HAProxy's two threads stay at 97. Under heavy load both
// processors are busy, nothing spins, and two run twice the work.
//
// So the Controller looks at the process every Interval and moves
// GOMAXPROCS between one and the most the process may use (what the Go
// runtime picks: the GOMAXPROCS environment variable, or the CPUs of the
// machine and its cgroup limit). It grows at once, to the most, when the
// threads in use are busier than GrowAt, or when goroutines ready to run
// waited for a thread (the median wait over WaitAt: on a machine whose
// other processes take the CPU, the proxy's one thread is not busy but
// its goroutines queue). It shrinks, to as many as keep each busy at
// most ShrinkTo, only after that many would have done, with no queueing,
// for ShrinkAfter; a load that makes it grow again soon after waits
// twice as long before the next shrink, up to MaxShrinkAfter. A load
// that arrives while the proxy runs on one thread waits at most one
// Interval for the others.
//
// An idle process is looked at less often: once a second while it runs
// on one thread and used less than IdleBelow of a core, or while one is
// the most it may use (there is nothing to decide then but whether the
// runtime raised the most). Each look wakes the process, and on a virtual
// machine each wake-up of an idle process costs about 0.2 ms of CPU: ten
// a second were most of what an idle proxy spent. A load that arrives at
// an idle proxy therefore waits at most IdleInterval for the others.
//
// Envoy runs a fixed number of worker threads (--concurrency); HAProxy
// and nginx a fixed number of threads or processes. Their idle threads
// sleep in the kernel and cost nothing; Go's idle processors are what
// cost, so only here is this needed.
package procs

import (
	"math"
	"runtime"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/sightline-proxy/sightline/internal/tick"
)

// Tuning: see the package comment.
const (
	Interval       = 100 * time.Millisecond
	IdleInterval   = time.Second
	IdleBelow      = 0.01
	GrowAt         = 0.7
	WaitAt         = 50 * time.Microsecond
	ShrinkTo       = 0.5
	ShrinkAfter    = 2 * time.Second
	MaxShrinkAfter = time.Minute
)

// minWaitSamples is how many scheduling waits an Interval must have for
// their median to count: the runtime samples them.
const minWaitSamples = 10

// Load is what the process did in one Interval.
type Load struct {
	// Used is the cores the process used: CPU time over wall time.
	Used float64
	// Queued says goroutines ready to run waited for a thread: the
	// median wait was over WaitAt.
	Queued bool
	// Intervals is how many Intervals the look covered (0 counts as
	// one): more after an idle wait, so that the policy's clock (a
	// shrink's wait, a load that comes back soon after one) keeps to
	// wall time.
	Intervals int
}

// idle says the process looked at with load l, on cur of max processors,
// may next be looked at after IdleInterval.
func (l Load) idle(cur, max int) bool {
	return max == 1 || cur == 1 && !l.Queued && l.Used < IdleBelow
}

// Policy decides the processor count from the process's load, one
// Interval at a time. The zero value is unusable: see NewPolicy.
type Policy struct {
	max  int // the most processors
	cur  int
	low  int // consecutive Intervals that fewer processors would have served
	need int // Intervals of low before a shrink
	// since counts the Intervals since the last shrink, to tell a load
	// that comes back soon after one.
	since int
}

// NewPolicy returns a Policy that starts at max processors.
func NewPolicy(max int) *Policy {
	return &Policy{max: max, cur: max, need: intervals(ShrinkAfter), since: intervals(MaxShrinkAfter)}
}

func intervals(d time.Duration) int { return int(d / Interval) }

// SetMax changes the most processors, as when the CPU limit changed, and
// goes to it.
func (p *Policy) SetMax(max int) { p.max, p.cur, p.low = max, max, 0 }

// Next takes the load of the last Interval and returns the processor
// count for the next one.
func (p *Policy) Next(l Load) int {
	p.since += max(l.Intervals, 1)
	if p.cur < p.max && (l.Queued || l.Used > GrowAt*float64(p.cur)) {
		if p.since < 2*p.need {
			// Back soon after a shrink: hold the next one off longer.
			p.need = min(2*p.need, intervals(MaxShrinkAfter))
		} else {
			p.need = intervals(ShrinkAfter)
		}
		p.cur, p.low = p.max, 0
		return p.cur
	}
	want := min(max(1, int(math.Ceil(l.Used/ShrinkTo))), p.max)
	if want >= p.cur || l.Queued {
		p.low = 0
		return p.cur
	}
	if p.low += max(l.Intervals, 1); p.low >= p.need {
		p.cur, p.low, p.since = want, 0, 0
	}
	return p.cur
}

// Controller applies a Policy to the running process. Its methods are
// safe to call from any goroutine.
type Controller struct {
	// cpu returns the CPU time the process used since it started; ok is
	// false where that cannot be read, and the controller does nothing.
	cpu func() (time.Duration, bool)
	// queued reports whether goroutines waited for a thread since its
	// last call.
	queued func() bool
	// set changes GOMAXPROCS and returns the value before (0: only read
	// it): runtime.GOMAXPROCS.
	set func(int) int
	// reset gives GOMAXPROCS back to the runtime, which sets the most the
	// process may use and follows its CPU limit from then on:
	// runtime.SetDefaultGOMAXPROCS.
	reset func()

	mu      sync.Mutex
	enabled bool
	stop    chan struct{} // nil when not running
	done    chan struct{}
}

var (
	processOnce sync.Once
	process     *Controller
)

// Process returns the process's Controller. It does nothing until
// SetEnabled(true). While it runs, the most processors is what the Go
// runtime would pick (runtime.SetDefaultGOMAXPROCS), read again whenever
// the controller goes back to it.
func Process() *Controller {
	processOnce.Do(func() {
		process = &Controller{cpu: processCPU, queued: newWaits().queued, set: runtime.GOMAXPROCS, reset: runtime.SetDefaultGOMAXPROCS}
	})
	return process
}

// SetEnabled starts or stops adapting. Stopping gives GOMAXPROCS back to
// the runtime: every processor the process may use.
func (c *Controller) SetEnabled(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if on == c.enabled {
		return
	}
	c.enabled = on
	if on {
		if _, ok := c.cpu(); !ok {
			return // no way to see the load
		}
		c.stop, c.done = make(chan struct{}), make(chan struct{})
		go c.run(c.stop, c.done)
		return
	}
	if c.stop != nil {
		close(c.stop)
		<-c.done
		c.stop, c.done = nil, nil
		c.reset()
	}
}

func (c *Controller) run(stop, done chan struct{}) {
	defer close(done)
	cur := c.set(0)
	p := NewPolicy(cur)
	t := time.NewTimer(tick.Until(Interval))
	defer t.Stop()
	lastCPU, _ := c.cpu()
	last := time.Now()
	c.queued()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		cpu, _ := c.cpu()
		now := time.Now()
		took := now.Sub(last)
		l := Load{Used: float64(cpu-lastCPU) / float64(took), Queued: c.queued(),
			Intervals: int((took + Interval/2) / Interval)}
		lastCPU, last = cpu, now
		if n := c.set(0); n != cur {
			// Someone else set it (the runtime, for a new CPU limit):
			// that is the most from now on.
			p.SetMax(n)
			cur = n
		}
		switch n := p.Next(l); {
		case n == cur:
		case n == p.max:
			c.reset()
			cur = c.set(0)
			p.SetMax(cur)
		default:
			c.set(n)
			cur = n
		}
		if l.idle(cur, p.max) {
			t.Reset(tick.Until(IdleInterval))
		} else {
			t.Reset(tick.Until(Interval))
		}
	}
}

// waits reads the runtime's histogram of how long runnable goroutines
// waited for a thread.
type waits struct {
	s    []metrics.Sample
	seen []uint64
}

func newWaits() *waits {
	return &waits{s: []metrics.Sample{{Name: "/sched/latencies:seconds"}}}
}

// queued reports whether the median wait since the last call was over
// WaitAt, among enough waits to tell.
func (w *waits) queued() bool {
	metrics.Read(w.s)
	if w.s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return false
	}
	h := w.s[0].Value.Float64Histogram()
	if len(w.seen) != len(h.Counts) {
		w.seen = make([]uint64, len(h.Counts))
	}
	var total, over uint64
	for i, n := range h.Counts {
		d := n - w.seen[i]
		w.seen[i] = n
		total += d
		if h.Buckets[i] >= WaitAt.Seconds() {
			over += d
		}
	}
	return total >= minWaitSamples && 2*over > total
}
