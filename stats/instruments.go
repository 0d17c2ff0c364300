package stats

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/uber-go/tally/v4"
)

// bounds are the upper bounds of every histogram's buckets, 0.1 ms to 60 s
// on a 1-2.5-5 ladder: a proxy's own latency is tens of microseconds to a
// few milliseconds, its upstreams' up to the longest sane timeout. One set
// of buckets for all histograms keeps every histogram at one fixed-size
// allocation and lets sinks share their bucket tables.
var bounds = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	1 * time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	1 * time.Second, 2500 * time.Millisecond, 5 * time.Second,
	10 * time.Second, 30 * time.Second, 60 * time.Second,
}

// nBuckets counts the buckets: one per bound plus the +Inf bucket.
const nBuckets = len(bounds) + 1

// Buckets are the histogram buckets as tally describes them; sinks get this
// value in AllocateHistogram and one DurationBucket call per bucket. It
// must not be modified.
var Buckets = tally.DurationBuckets(bounds[:])

// bucketPairs are Buckets as (lower, upper] pairs, the first from -Inf, the
// last to +Inf: what each DurationBucket call is given.
var bucketPairs = tally.BucketPairs(Buckets)

// BoundsMillis returns the finite bucket upper bounds in milliseconds, the
// unit every histogram is shown in.
func BoundsMillis() []float64 {
	ms := make([]float64, len(bounds))
	for i, b := range bounds {
		ms[i] = Millis(b)
	}
	return ms
}

// Millis converts d to the milliseconds histograms are shown in.
func Millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BucketIndex returns the index of the bucket d falls in: the first whose
// upper bound is at least d (Prometheus' "le"). Given the upper bound a
// DurationBucket call names, it is that bucket's index; the +Inf bucket,
// whose upper bound tally gives as the largest Duration, is the last.
func BucketIndex(d time.Duration) int {
	i, _ := slices.BinarySearch(bounds[:], d)
	return i
}

// Counter counts events. The request path calls Inc: one atomic add. A nil
// *Counter is an excluded stat and does nothing, so callers never branch.
type Counter struct {
	v striped
	// flushed is v as of the last flush: what pull sinks show. Only the
	// flush writes it.
	flushed atomic.Int64
	def     *Def
	labels  *labels
	out     []tally.CachedCount // one per push sink
}

// Inc adds n (n ≥ 0) to the counter.
func (c *Counter) Inc(n int64) {
	if c != nil {
		c.v.add(n)
	}
}

// Value returns the total since the Store was built; 0 when excluded.
func (c *Counter) Value() int64 {
	if c == nil {
		return 0
	}
	return c.v.load()
}

// flush hands the increase since the last flush to every push sink and
// reports whether there was one. Counters that did not move are not
// reported, as tally does, so push sinks send nothing for them.
func (c *Counter) flush() bool {
	v := c.v.load()
	d := v - c.flushed.Load()
	if d == 0 {
		return false
	}
	c.flushed.Store(v)
	for _, o := range c.out {
		o.ReportCount(d)
	}
	return true
}

// settled reports whether the counter holds what the last flush read.
func (c *Counter) settled() bool { return c.v.load() == c.flushed.Load() }

// Gauge is a current value: requests in flight, hosts healthy, bytes in
// use. Inc and Dec are one atomic add each. A nil *Gauge is excluded and
// does nothing.
//
// Gauges hold integers: every gauge Sightline has counts something, and an
// integer add is what lets Inc and Dec race freely.
type Gauge struct {
	v    striped
	used atomic.Bool
	// reported says the gauge was set by the last flush, and flushed is
	// the value it read then: what pull sinks show. Only the flush writes
	// them.
	reported atomic.Bool
	// resend has the next flush report the value to the push sinks even
	// though it did not change: they were given new handles (compact.go).
	resend  atomic.Bool
	flushed atomic.Int64
	def     *Def
	labels  *labels
	out     []tally.CachedGauge // one per push sink
}

// Inc adds one.
func (g *Gauge) Inc() { g.Add(1) }

// Dec subtracts one.
func (g *Gauge) Dec() { g.Add(-1) }

// Add adds n, which may be negative.
func (g *Gauge) Add(n int64) {
	if g != nil {
		g.v.add(n)
		g.touch()
	}
}

// Set replaces the value.
func (g *Gauge) Set(v int64) {
	if g != nil {
		g.v.store(v)
		g.touch()
	}
}

// touch marks the gauge used; the load first keeps the hot path from
// writing a shared cache line on every call.
func (g *Gauge) touch() {
	if !g.used.Load() {
		g.used.Store(true)
	}
}

// Value returns the current value; 0 when excluded.
func (g *Gauge) Value() int64 {
	if g == nil {
		return 0
	}
	return g.v.load()
}

// flush reports the value to every push sink when it changed since the
// last flush, as tally reports only updated gauges (sinks keep the last
// value), and reports whether it did. A gauge never set is never reported.
func (g *Gauge) flush() bool {
	if !g.used.Load() {
		return false
	}
	v := g.v.load()
	if g.reported.Load() && v == g.flushed.Load() && !g.resend.Load() {
		return false
	}
	g.flushed.Store(v)
	g.reported.Store(true)
	g.resend.Store(false)
	for _, o := range g.out {
		o.ReportGauge(float64(v))
	}
	return true
}

// settled reports whether the gauge holds what the last flush read.
func (g *Gauge) settled() bool {
	return g.used.Load() == g.reported.Load() && g.v.load() == g.flushed.Load()
}

// Histogram is a distribution of durations, shown in milliseconds.
// RecordDuration is a binary search over 18 bounds and two atomic adds. A
// nil *Histogram is excluded and does nothing.
type Histogram struct {
	counts  [nBuckets]atomic.Uint64
	sum     atomic.Int64              // nanoseconds
	stripes atomic.Pointer[histCells] // nil until contended (stripe.go)

	// flushed and flushedSum are the counts and the sum as of the last
	// flush: what pull sinks show. Only the flush writes them.
	flushed    [nBuckets]atomic.Uint64
	flushedSum atomic.Int64
	def        *Def
	labels     *labels
	// ex holds the last sampled call of each bucket, made on the first
	// one, when a sink keeps exemplars (keepEx).
	ex     atomic.Pointer[exemplars]
	keepEx bool
	// push is what the push sinks take; nil without push sinks.
	push *histPush
}

// exemplars are a histogram's exemplars, one per bucket.
type exemplars [nBuckets]atomic.Pointer[Exemplar]

// Exemplar is a sampled call kept beside the histogram bucket its duration
// fell in, so that a latency spike on a dashboard links to a trace.
type Exemplar struct {
	Trace TraceID
	Value time.Duration
	At    time.Time
}

// histPush is a histogram's handles in the push sinks.
type histPush struct {
	// handles holds, per push sink, what AllocateHistogram returned.
	handles []tally.CachedHistogram
	// out holds the sinks' buckets, sink after sink: out[k*nBuckets+i] is
	// sink k's bucket i. sums holds, per sink, where the sum goes, nil for
	// a sink that does not take sums.
	out  []tally.CachedHistogramBucket
	sums []SumReporter
	// samples are the sinks that take every sample (SampleRecorder);
	// usually none, and then recording costs nothing more.
	samples []SampleRecorder
}

// RecordDuration adds one sample. Negative durations (a clock stepping
// back) count as zero.
func (h *Histogram) RecordDuration(d time.Duration) {
	if h != nil {
		h.record(max(d, 0), 1)
	}
}

// RecordTraced adds one sample of a call and, when trace is not zero (the
// call's trace is sampled) and a sink keeps exemplars, keeps the call as
// its bucket's exemplar. With a zero trace it is RecordDuration.
func (h *Histogram) RecordTraced(d time.Duration, trace TraceID) {
	if h == nil {
		return
	}
	d = max(d, 0)
	h.record(d, 1)
	if trace != (TraceID{}) && h.keepEx {
		ex := h.ex.Load()
		if ex == nil {
			ex = h.makeExemplars()
		}
		ex[BucketIndex(d)].Store(&Exemplar{Trace: trace, Value: d, At: time.Now()})
	}
}

// makeExemplars gives h its exemplars, or returns those another goroutine
// gave it.
func (h *Histogram) makeExemplars() *exemplars {
	ex := new(exemplars)
	if h.ex.CompareAndSwap(nil, ex) {
		return ex
	}
	return h.ex.Load()
}

// record adds n samples of d, and hands them to the sinks that take every
// sample.
func (h *Histogram) record(d time.Duration, n uint64) {
	i, add := BucketIndex(d), int64(d)*int64(n)
	h.add(i, n, add)
	if p := h.push; p != nil {
		for _, r := range p.samples {
			for range n {
				r.RecordSample(d)
			}
		}
	}
}

// add adds n samples to bucket i and add to the sum.
func (h *Histogram) add(i int, n uint64, add int64) {
	if hs := h.stripes.Load(); hs != nil {
		hs.record(i, n, add)
	} else if sum := h.sum.Load(); h.sum.CompareAndSwap(sum, sum+add) {
		h.counts[i].Add(n)
	} else {
		h.grow().record(i, n, add)
	}
}

// grow gives h its stripes (stripe.go), or returns those another goroutine
// gave it.
func (h *Histogram) grow() *histCells {
	hs := make(histCells, newStripeCount())
	if h.stripes.CompareAndSwap(nil, &hs) {
		return &hs
	}
	return h.stripes.Load()
}

// record adds n samples to bucket i and add to the sum, in the calling
// P's stripe.
func (hs histCells) record(i int, n uint64, add int64) {
	p := procPin()
	c := &hs[p&(len(hs)-1)]
	c.counts[i].Add(n)
	c.sum.Add(add)
	procUnpin()
}

// load returns the bucket counts and the sum since the Store was built,
// the base and every stripe. The sum is read after the buckets.
func (h *Histogram) load() (counts [nBuckets]uint64, sum int64) {
	hs := h.stripes.Load()
	for i := range h.counts {
		counts[i] = h.counts[i].Load()
		if hs != nil {
			for k := range *hs {
				counts[i] += (*hs)[k].counts[i].Load()
			}
		}
	}
	sum = h.sum.Load()
	if hs != nil {
		for k := range *hs {
			sum += (*hs)[k].sum.Load()
		}
	}
	return counts, sum
}

// loadFlushed returns the counts and the sum as of the last flush.
func (h *Histogram) loadFlushed() (counts [nBuckets]uint64, sum int64) {
	for i := range h.flushed {
		counts[i] = h.flushed[i].Load()
	}
	return counts, h.flushedSum.Load()
}

// flush hands each bucket's new samples and the sum of their durations to
// every push sink, and reports whether there were any. The sum is read
// after the buckets: a sample recorded between the two reads is in this
// flush's sum and the next flush's count.
func (h *Histogram) flush() bool {
	counts, sum := h.load()
	moved := false
	for i, n := range counts {
		d := n - h.flushed[i].Load()
		if d == 0 {
			continue
		}
		h.flushed[i].Store(n)
		moved = true
		if p := h.push; p != nil {
			for k := i; k < len(p.out); k += nBuckets {
				p.out[k].ReportSamples(int64(d))
			}
		}
	}
	flushedSum := h.flushedSum.Load()
	if !moved && sum == flushedSum {
		return false
	}
	h.flushedSum.Store(sum)
	if p := h.push; p != nil {
		for _, s := range p.sums {
			if s != nil {
				s.ReportSum(time.Duration(sum - flushedSum))
			}
		}
	}
	return true
}

// settled reports whether the histogram holds what the last flush read.
func (h *Histogram) settled() bool {
	counts, sum := h.load()
	flushed, flushedSum := h.loadFlushed()
	return counts == flushed && sum == flushedSum
}
