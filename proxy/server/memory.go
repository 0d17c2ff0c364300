package server

import (
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Memory the heap no longer uses is given back to the system by Go's
// background scavenger, slowly (it takes about 1% of a CPU): after a
// burst the process keeps, for minutes, the RSS of its busiest moment.
// After a burst to 10,000 clusters, whose stats, pools and status page
// history are all freed once idle, that was 400 MB for a 50 MB live heap.
// So every sweep (poolSweepEvery) looks at the heap, and when more of it is
// free and not yet given back than in use, and at least releaseAbove, it
// gives it back at once (debug.FreeOSMemory: a collection and a scavenge,
// a few milliseconds per 10 MB live), at most once per releaseEvery.
const (
	releaseAbove = 64 << 20
	releaseEvery = 30 * time.Second
)

// memoryReleaser decides when to give free memory back. Only the sweep
// goroutine uses it.
type memoryReleaser struct {
	samples [2]metrics.Sample
	last    time.Time
}

func newMemoryReleaser() *memoryReleaser {
	return &memoryReleaser{samples: [2]metrics.Sample{
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
	}}
}

// check gives free memory back if there is enough of it, and reports
// whether it did.
func (m *memoryReleaser) check(now time.Time) bool {
	if now.Sub(m.last) < releaseEvery {
		return false
	}
	metrics.Read(m.samples[:])
	free, used := m.samples[0].Value.Uint64(), m.samples[1].Value.Uint64()
	if free < releaseAbove || free < used {
		return false
	}
	m.last = now
	debug.FreeOSMemory()
	return true
}
