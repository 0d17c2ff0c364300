// Package cumulative keeps totals since start for sinks that show them that
// way (Prometheus, OTLP with cumulative temporality), from the deltas the
// stats Store reports at each flush.
package cumulative

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uber-go/tally/v4"

	"github.com/sightline-proxy/sightline/stats"
)

// Set is a tally.CachedStatsReporter that keeps, for each stat, its total
// (counters), last value (gauges) or bucket counts and sum (histograms).
// Values are atomics: a reader on another goroutine (a scrape) sees each
// value whole, as of the last flush or the one in progress. T is what the
// sink keeps beside each label set (its rendered labels, say), built once
// and shared by every stat with those labels.
//
// A series is a few words: a proxy with thousands of clusters has tens of
// them per cluster in every sink, so the labels are shared and a
// histogram's buckets are kept apart from the counters and gauges.
type Set[T any] struct {
	ext       func(d *stats.Def, values []string) T
	exemplars bool
	// Started is when the Set was built: every stat was 0 then, which
	// makes it each stat's creation time (OpenMetrics' _created).
	Started time.Time

	mu     sync.Mutex
	series []*Series[T]
	last   *Labels[T] // the label set of the last series added
}

// New returns an empty Set; ext builds a label set's extra (its rendered
// labels, say).
func New[T any](ext func(d *stats.Def, values []string) T) *Set[T] {
	return &Set[T]{ext: ext, Started: time.Now()}
}

// KeepExemplars makes the Set's histograms keep, in each bucket, the last
// sampled call recorded there (stats.ExemplarRecorder). Call it before the
// Set is given to the Store.
func (c *Set[T]) KeepExemplars() { c.exemplars = true }

// Exemplar is a sampled call kept beside a histogram bucket.
type Exemplar struct {
	Trace stats.TraceID
	Value time.Duration
	At    time.Time
}

// Labels are the tag values of a group of series, in their Defs' TagKeys
// order, and what the sink built from them. Shared; never modified.
type Labels[T any] struct {
	keys   []string
	Values []string
	Ext    T
}

// Series is one stat: a Def and its labels.
type Series[T any] struct {
	Def *stats.Def
	*Labels[T]

	v       atomic.Uint64 // counter: int64 total; gauge: float64 bits
	touched atomic.Bool   // gauge reported at least once
	hist    *histogram    // histograms only
}

// histogram is a histogram series' state.
type histogram struct {
	buckets []bucket                   // one per stats.Buckets pair
	sum     atomic.Int64               // nanoseconds
	ex      []atomic.Pointer[Exemplar] // with exemplars: one per bucket
}

type bucket struct{ n atomic.Uint64 }

// ReportSamples adds samples to the bucket.
func (b *bucket) ReportSamples(n int64) { b.n.Add(uint64(n)) }

// Series returns every series so far, in allocation order. The slice is
// the caller's; the series are shared and their values move.
func (c *Set[T]) Series() []*Series[T] {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clip(c.series)
}

func (c *Set[T]) add(name string, tags map[string]string) *Series[T] {
	d, values, err := stats.Resolve(name, tags)
	if err != nil {
		// Only the Store allocates, and only catalog stats: a sink under
		// some other tally scope is misused.
		panic(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// The Store creates a family's stats one after the other with the
	// same labels: sharing the last label set shares almost all of them.
	l := c.last
	if l == nil || !slices.Equal(l.Values, values) || !slices.Equal(l.keys, d.TagKeys()) {
		l = &Labels[T]{keys: d.TagKeys(), Values: values, Ext: c.ext(d, values)}
		c.last = l
	}
	s := &Series[T]{Def: d, Labels: l}
	c.series = append(c.series, s)
	return s
}

// AllocateCounter implements tally.CachedStatsReporter.
func (c *Set[T]) AllocateCounter(name string, tags map[string]string) tally.CachedCount {
	return c.add(name, tags)
}

// AllocateGauge implements tally.CachedStatsReporter.
func (c *Set[T]) AllocateGauge(name string, tags map[string]string) tally.CachedGauge {
	return c.add(name, tags)
}

// AllocateHistogram implements tally.CachedStatsReporter.
func (c *Set[T]) AllocateHistogram(name string, tags map[string]string, b tally.Buckets) tally.CachedHistogram {
	s := c.add(name, tags)
	s.hist = &histogram{buckets: make([]bucket, b.Len()+1)}
	if !c.exemplars {
		return s
	}
	s.hist.ex = make([]atomic.Pointer[Exemplar], len(s.hist.buckets))
	return exemplarSeries[T]{s}
}

// exemplarSeries is a histogram of a Set that keeps exemplars: the Store
// finds RecordExemplar on it, and on no other Set's histograms.
type exemplarSeries[T any] struct{ *Series[T] }

// RecordExemplar implements stats.ExemplarRecorder: the call replaces the
// last one kept in its bucket.
func (s exemplarSeries[T]) RecordExemplar(d time.Duration, trace stats.TraceID) {
	s.hist.ex[stats.BucketIndex(d)].Store(&Exemplar{Trace: trace, Value: d, At: time.Now()})
}

// AllocateTimer implements tally.CachedStatsReporter; the Store has no
// timers.
func (c *Set[T]) AllocateTimer(string, map[string]string) tally.CachedTimer { return stats.Discard }

// Capabilities implements tally.CachedStatsReporter.
func (c *Set[T]) Capabilities() tally.Capabilities { return capabilities{} }

// Flush implements tally.CachedStatsReporter: values are already in place.
func (c *Set[T]) Flush() {}

type capabilities struct{}

func (capabilities) Reporting() bool { return true }
func (capabilities) Tagging() bool   { return true }

// ReportCount adds a counter's increase.
func (s *Series[T]) ReportCount(delta int64) { s.v.Add(uint64(delta)) }

// ReportGauge sets a gauge.
func (s *Series[T]) ReportGauge(v float64) {
	s.v.Store(math.Float64bits(v))
	s.touched.Store(true)
}

// ReportSum adds to a histogram's sum.
func (s *Series[T]) ReportSum(delta time.Duration) { s.hist.sum.Add(int64(delta)) }

// DurationBucket returns the bucket whose upper bound is upper.
func (s *Series[T]) DurationBucket(_, upper time.Duration) tally.CachedHistogramBucket {
	return &s.hist.buckets[stats.BucketIndex(upper)]
}

// ValueBucket implements tally.CachedHistogram; the Store's histograms are
// all duration histograms.
func (s *Series[T]) ValueBucket(float64, float64) tally.CachedHistogramBucket {
	return stats.Discard
}

// Counter returns a counter's total.
func (s *Series[T]) Counter() int64 { return int64(s.v.Load()) }

// Gauge returns a gauge's last value.
func (s *Series[T]) Gauge() float64 { return math.Float64frombits(s.v.Load()) }

// Histogram returns a histogram's count per bucket (the last is +Inf), the
// total count and the sum of its samples.
func (s *Series[T]) Histogram() (buckets []uint64, count uint64, sum time.Duration) {
	buckets = make([]uint64, len(s.hist.buckets))
	for i := range s.hist.buckets {
		buckets[i] = s.hist.buckets[i].n.Load()
		count += buckets[i]
	}
	return buckets, count, time.Duration(s.hist.sum.Load())
}

// Exemplar returns the last exemplar kept in bucket i, or nil.
func (s *Series[T]) Exemplar(i int) *Exemplar {
	if s.hist.ex == nil {
		return nil
	}
	return s.hist.ex[i].Load()
}

// Touched reports whether the stat has been reported anything: push sinks
// leave out the others unless told to emit zeros.
func (s *Series[T]) Touched() bool {
	switch s.Def.Kind() {
	case stats.KindCounter:
		return s.v.Load() != 0
	case stats.KindGauge:
		return s.touched.Load()
	}
	for i := range s.hist.buckets {
		if s.hist.buckets[i].n.Load() != 0 {
			return true
		}
	}
	return false
}
