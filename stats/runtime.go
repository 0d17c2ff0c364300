package stats

import (
	"math"
	"runtime/metrics"
	"time"
)

// The runtime/metrics the server stats come from. runtime/metrics reads
// without stopping the world, unlike runtime.ReadMemStats.
const (
	metricGCPauses    = "/sched/pauses/total/gc:seconds"
	metricHeapObjects = "/memory/classes/heap/objects:bytes"
	metricGoroutines  = "/sched/goroutines:goroutines"
	metricGOMAXPROCS  = "/sched/gomaxprocs:threads"
)

// runtimeSampler copies runtime/metrics into the server stats at each
// flush. Only the flush uses it.
type runtimeSampler struct {
	samples []metrics.Sample
	// gcSeen is the runtime's cumulative pause histogram at the last
	// sample; the difference is what the flush adds to GoGCPause.
	gcSeen []uint64
}

func newRuntimeSampler() runtimeSampler {
	return runtimeSampler{samples: []metrics.Sample{
		{Name: metricGCPauses},
		{Name: metricHeapObjects},
		{Name: metricGoroutines},
		{Name: metricGOMAXPROCS},
	}}
}

func (r *runtimeSampler) sample(srv *Server, started time.Time) {
	metrics.Read(r.samples)
	srv.Uptime.Set(int64(time.Since(started) / time.Second))
	for _, s := range r.samples {
		switch s.Name {
		case metricGCPauses:
			r.addPauses(srv.GoGCPause, s.Value.Float64Histogram())
		case metricHeapObjects:
			srv.MemoryAllocated.Set(int64(s.Value.Uint64()))
		case metricGoroutines:
			srv.GoGoroutines.Set(int64(s.Value.Uint64()))
		case metricGOMAXPROCS:
			srv.Concurrency.Set(int64(s.Value.Uint64()))
		}
	}
}

// addPauses records the pauses since the last sample. The runtime keeps
// them in its own fine buckets (a few per power of two), not as single
// values, so each pause is recorded at the middle of its runtime bucket:
// the sum is within a few percent, the bucket counts exact where the
// runtime's buckets nest in ours.
func (r *runtimeSampler) addPauses(h *Histogram, pauses *metrics.Float64Histogram) {
	if h == nil {
		return
	}
	if len(r.gcSeen) != len(pauses.Counts) {
		r.gcSeen = make([]uint64, len(pauses.Counts))
	}
	for i, n := range pauses.Counts {
		d := n - r.gcSeen[i]
		r.gcSeen[i] = n
		if d == 0 {
			continue
		}
		lo, hi := pauses.Buckets[i], pauses.Buckets[i+1]
		mid := (lo + hi) / 2
		switch {
		case math.IsInf(lo, -1):
			mid = max(hi, 0)
		case math.IsInf(hi, 1):
			mid = lo
		}
		h.record(time.Duration(mid*float64(time.Second)), d)
	}
}
