package statsd

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/uber-go/tally/v4"

	"github.com/sightline-proxy/sightline/stats"
)

// sampleBuffer holds one histogram's samples between two flushes, for
// histograms: samples. The Store hands it every sample on the request path
// (RecordSample) and no bucket counts; the flush takes the samples.
//
// Past maxSamples in one interval it keeps a uniform sample of them
// (reservoir sampling), so memory and packets stay bounded under any load
// while the mean and percentiles the agent computes stay unbiased: the
// lines then carry the rate kept/seen, from which the agent counts all of
// them.
type sampleBuffer struct {
	series *series // the series it belongs to
	mu     sync.Mutex
	kept   []time.Duration
	seen   uint64 // samples recorded since the last take, kept or not
	// spare is the slice the last take returned, reused by the next
	// interval so that steady state allocates nothing; only take and the
	// flush that uses its result touch it.
	spare []time.Duration
}

// RecordSample implements stats.SampleRecorder.
func (b *sampleBuffer) RecordSample(d time.Duration) {
	b.mu.Lock()
	b.seen++
	switch {
	case len(b.kept) < maxSamples:
		b.kept = append(b.kept, d)
	default:
		if i := rand.Uint64N(b.seen); i < maxSamples {
			b.kept[i] = d
		}
	}
	b.mu.Unlock()
}

// take returns the samples kept since the last take and how many were
// recorded. The result is valid until the next take; only the flush
// goroutine calls it.
func (b *sampleBuffer) take() (kept []time.Duration, seen uint64) {
	b.mu.Lock()
	kept, seen = b.kept, b.seen
	b.kept, b.seen = b.spare[:0], 0
	b.mu.Unlock()
	b.spare = kept
	return kept, seen
}

// DurationBucket implements tally.CachedHistogram: the samples carry what
// the buckets would.
func (b *sampleBuffer) DurationBucket(time.Duration, time.Duration) tally.CachedHistogramBucket {
	return stats.Discard
}

// ValueBucket implements tally.CachedHistogram; the Store's histograms are
// all duration histograms.
func (b *sampleBuffer) ValueBucket(float64, float64) tally.CachedHistogramBucket {
	return stats.Discard
}

var (
	_ tally.CachedHistogram = (*sampleBuffer)(nil)
	_ stats.SampleRecorder  = (*sampleBuffer)(nil)
)
