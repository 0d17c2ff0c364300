package stats

import (
	"math/bits"
	"runtime"
	"sync/atomic"
	_ "unsafe" // for go:linkname
)

// A stat that several cores update at once makes its cache line travel
// between them on every update: with two cores, counting one call cost
// four times what it cost on one. Such a stat spreads its updates over
// stripes, one per P (the scheduler's processor a goroutine runs on),
// each on its own cache line, and reads add them up. A stat gets its
// stripes the first time an update finds another core in the middle of
// one (a failed compare-and-swap), so the many stats that are never
// contended (idle clusters, rare errors) keep their one word.

// procPin pins the goroutine to its P and returns the P's id; procUnpin
// lets it go. sync.Pool keeps its per-P caches the same way; the runtime
// keeps these two reachable by linkname for packages that do likewise.
//
//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()

// cacheLine is the size stripes are padded to.
const cacheLine = 64

// newStripeCount is how many stripes a contended stat gets: GOMAXPROCS
// rounded up to a power of two, so that a P's id masks to its own stripe.
func newStripeCount() int {
	n := runtime.GOMAXPROCS(0)
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len(uint(n-1))
}

// cell is one stripe of a counter or gauge.
type cell struct {
	v atomic.Int64
	_ [cacheLine - 8]byte
}

// cells are a counter's or gauge's stripes.
type cells []cell

// add adds n to the calling P's stripe.
func (cs cells) add(n int64) {
	p := procPin()
	cs[p&(len(cs)-1)].v.Add(n)
	procUnpin()
}

// sum adds up the stripes.
func (cs cells) sum() int64 {
	var s int64
	for i := range cs {
		s += cs[i].v.Load()
	}
	return s
}

// striped is a contended-or-not int64: a base word, and stripes once an
// update has met another core's.
type striped struct {
	base  atomic.Int64
	cells atomic.Pointer[cells]
}

// add adds n: to the base while no other core is updating it at the same
// moment, to the calling P's stripe after. The first path is small enough
// to be inlined into the callers.
func (s *striped) add(n int64) {
	if v := s.base.Load(); s.cells.Load() != nil || !s.base.CompareAndSwap(v, v+n) {
		s.addStriped(n)
	}
}

// addStriped adds n to the calling P's stripe, giving s its stripes first
// if it has none.
func (s *striped) addStriped(n int64) {
	cs := s.cells.Load()
	if cs == nil {
		cs = s.grow()
	}
	cs.add(n)
}

// grow gives s its stripes, or returns those another goroutine gave it.
func (s *striped) grow() *cells {
	cs := make(cells, newStripeCount())
	if s.cells.CompareAndSwap(nil, &cs) {
		return &cs
	}
	return s.cells.Load()
}

// load returns the value: the base and every stripe.
func (s *striped) load() int64 {
	v := s.base.Load()
	if cs := s.cells.Load(); cs != nil {
		v += cs.sum()
	}
	return v
}

// store sets the value. Updates made at the same time may be lost, as with
// any store; the stats Set is used on are set, not added to.
func (s *striped) store(v int64) {
	if cs := s.cells.Load(); cs != nil {
		v -= cs.sum()
	}
	s.base.Store(v)
}

// histCell is one stripe of a histogram: its bucket counts and sum.
type histCell struct {
	counts [nBuckets]atomic.Uint64
	sum    atomic.Int64
	_      [cacheLine - (nBuckets*8+8)%cacheLine]byte
}

// histCells are a histogram's stripes.
type histCells []histCell
