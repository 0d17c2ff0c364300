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

// Latency is a histogram of a host's request durations since its reader
// last took them: a fixed array of atomic counters, one per log-scale
// bucket. Record takes no lock and allocates nothing while the host is in
// use; the one reader, the admin server's status page sampler, takes the
// counts every second (Host.TakeLatency), each time swapping in a second
// array. A host that served nothing since the last take, and has no
// attempt in flight, holds no array at all: a host that served a burst
// gives its 768 bytes back a second or two after it, and one that never
// served never had any. The zero value is ready to
// use.
type Latency struct {
	cur atomic.Pointer[latencyCounts]
	// spare is the array Take swaps in next; only Take touches it.
	spare *latencyCounts
}

type latencyCounts [LatencyBuckets]atomic.Uint64

// Record counts one request that took d. It is safe for concurrent use and
// is called on the request path, once per completed upstream request.
func (l *Latency) Record(d time.Duration) {
	b := l.cur.Load()
	if b == nil {
		b = l.make()
	}
	b[latencyIndex(d)].Add(1)
}

// make installs an array, or returns the one a concurrent Record did.
func (l *Latency) make() *latencyCounts {
	b := new(latencyCounts)
	if l.cur.CompareAndSwap(nil, b) {
		return b
	}
	return l.cur.Load()
}

// take moves the counts recorded since the last take into dst, and
// reports whether there were any. Only one goroutine may call it. idle
// reports whether no Record can be under way (Host.TakeLatency: the host
// has no attempt in flight, and an attempt records before it ends). A
// Record that loaded the array just before take swapped it out lands in
// it after, and is taken when it is swapped back in. An array a take
// finds empty while the host is idle is dropped, with the spare: a host
// that serves nothing holds none.
func (l *Latency) take(dst *[LatencyBuckets]uint64, idle func() bool) bool {
	*dst = [LatencyBuckets]uint64{}
	b := l.cur.Load()
	if b == nil {
		if l.spare != nil && idle() {
			drain(l.spare, dst)
			l.spare = nil
		}
		return *dst != [LatencyBuckets]uint64{}
	}
	empty := true
	for i := range b {
		if b[i].Load() != 0 {
			empty = false
			break
		}
	}
	if empty {
		if idle() && l.cur.CompareAndSwap(b, nil) {
			if idle() {
				// No Record was under way when b left: none can
				// land in it, nor in the spare.
				some := drain(b, dst)
				if l.spare != nil {
					some = drain(l.spare, dst) || some
				}
				l.spare = nil
				return some
			}
			// An attempt began meanwhile: b stays, as the array or as
			// the spare.
			if !l.cur.CompareAndSwap(nil, b) && l.spare == nil {
				l.spare = b
			}
		}
		return false
	}
	next := l.spare
	if next == nil {
		next = new(latencyCounts)
	}
	l.cur.Store(next)
	drain(b, dst)
	l.spare = b
	return true
}

// drain adds b's counts to dst, leaving b's at zero, and reports whether
// there were any.
func drain(b *latencyCounts, dst *[LatencyBuckets]uint64) bool {
	some := false
	for i := range b {
		if n := b[i].Swap(0); n != 0 {
			dst[i] += n
			some = true
		}
	}
	return some
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
