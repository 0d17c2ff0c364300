package host

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// The latency histogram's buckets are log-scale, two to an octave: every
// power of two from 2^13 ns (8.192µs) to 2^36 ns (68.7s) starts a bucket,
// and 1.5 times it starts another, so a bucket is at most 50% wider than
// where it starts and a quantile interpolated inside it is off by less than
// that. Bucket 0 holds everything faster than 8.192µs, the last bucket
// everything slower than 68.7s.
const (
	latencyMinShift = 13
	latencyOctaves  = 23
	// LatencyBuckets is the number of buckets of a Latency.
	LatencyBuckets = 2*latencyOctaves + 2
)

// Latency is a histogram of a host's request durations: a fixed array of
// atomic counters, one per log-scale bucket, made on the first Record (a
// host that serves nothing, as most of a large config's do, costs a
// pointer rather than 384 bytes). Record takes no lock and allocates
// nothing after the first; readers copy the counters with Load and work on
// the copies (the admin server keeps a minute of them to show
// percentiles). The zero value is ready to use.
type Latency struct {
	b atomic.Pointer[[LatencyBuckets]atomic.Uint64]
}

// Record counts one request that took d. It is safe for concurrent use and
// is called on the request path, once per completed upstream request.
func (l *Latency) Record(d time.Duration) {
	b := l.b.Load()
	if b == nil {
		b = l.make()
	}
	b[latencyIndex(d)].Add(1)
}

// make installs the buckets, or returns those a concurrent Record did.
func (l *Latency) make() *[LatencyBuckets]atomic.Uint64 {
	b := new([LatencyBuckets]atomic.Uint64)
	if l.b.CompareAndSwap(nil, b) {
		return b
	}
	return l.b.Load()
}

// Load copies the counts of every bucket into dst. The copy is not one
// atomic snapshot: requests recorded while it runs may be in some buckets
// and not in others, which a reader comparing copies a second apart never
// notices.
func (l *Latency) Load(dst *[LatencyBuckets]uint64) {
	b := l.b.Load()
	if b == nil {
		*dst = [LatencyBuckets]uint64{}
		return
	}
	for i := range b {
		dst[i] = b[i].Load()
	}
}

// latencyIndex returns the bucket d falls in.
func latencyIndex(d time.Duration) int {
	if d < 1<<latencyMinShift {
		return 0 // negative durations too
	}
	n := uint64(d)
	k := bits.Len64(n) - 1 // 2^k ≤ n < 2^(k+1)
	if k >= latencyMinShift+latencyOctaves {
		return LatencyBuckets - 1
	}
	upperHalf := int(n>>(k-1)) & 1 // n ≥ 1.5·2^k
	return 1 + 2*(k-latencyMinShift) + upperHalf
}

// LatencyBounds returns the range [lower, upper) of bucket i. The last
// bucket has no upper bound: upper is returned equal to lower.
func LatencyBounds(i int) (lower, upper time.Duration) {
	switch {
	case i <= 0:
		return 0, 1 << latencyMinShift
	case i >= LatencyBuckets-1:
		lower = 1 << (latencyMinShift + latencyOctaves)
		return lower, lower
	}
	octave := time.Duration(1) << (latencyMinShift + (i-1)/2)
	if (i-1)%2 == 0 {
		return octave, octave + octave/2
	}
	return octave + octave/2, 2 * octave
}

// LatencyQuantile returns the q-quantile (0 < q ≤ 1) of the requests counted
// in counts, interpolating linearly inside the bucket it falls in, and false
// when counts holds no request. A quantile in the last bucket is that
// bucket's lower bound.
func LatencyQuantile(counts *[LatencyBuckets]uint64, q float64) (time.Duration, bool) {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0, false
	}
	q = min(max(q, 0), 1)
	rank := q * float64(total)
	var below uint64
	for i, c := range counts {
		if c == 0 {
			continue
		}
		if float64(below+c) >= rank {
			lo, hi := LatencyBounds(i)
			frac := (rank - float64(below)) / float64(c)
			return lo + time.Duration(frac*float64(hi-lo)), true
		}
		below += c
	}
	lo, _ := LatencyBounds(LatencyBuckets - 1)
	return lo, true // not reached: rank ≤ total
}
