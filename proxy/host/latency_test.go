package host

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLatencyIndex(t *testing.T) {
	tests := []struct {
		name string
		give time.Duration
		want int
	}{
		{name: "negative", give: -time.Second, want: 0},
		{name: "zero", give: 0, want: 0},
		{name: "below the first bound", give: 8191, want: 0},
		{name: "first bound", give: 8192, want: 1},
		{name: "just below 1.5x", give: 12287, want: 1},
		{name: "1.5x", give: 12288, want: 2},
		{name: "next octave", give: 16384, want: 3},
		{name: "1ms", give: time.Millisecond, want: 14}, // 1.5·2^19 ≤ 1e6 < 2^20
		{name: "last finite bucket", give: 1<<36 - 1, want: LatencyBuckets - 2},
		{name: "overflow", give: 1 << 36, want: LatencyBuckets - 1},
		{name: "huge", give: 1<<63 - 1, want: LatencyBuckets - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := latencyIndex(tt.give); got != tt.want {
				t.Errorf("latencyIndex(%v) = %d, want %d", tt.give, got, tt.want)
			}
		})
	}
}

// TestLatencyBounds checks that the buckets tile the line: each starts where
// the one before ends, and every duration falls in the bucket whose bounds
// hold it.
func TestLatencyBounds(t *testing.T) {
	prevUpper := time.Duration(0)
	for i := 0; i < LatencyBuckets; i++ {
		lo, hi := LatencyBounds(i)
		if lo != prevUpper {
			t.Fatalf("bucket %d starts at %v, want %v (where bucket %d ends)", i, lo, prevUpper, i-1)
		}
		if i < LatencyBuckets-1 && hi <= lo {
			t.Fatalf("bucket %d is [%v, %v)", i, lo, hi)
		}
		for _, d := range []time.Duration{lo, hi - 1} {
			if i == LatencyBuckets-1 {
				d = lo
			}
			if got := latencyIndex(d); got != i {
				t.Errorf("latencyIndex(%v) = %d, want %d (bucket [%v, %v))", d, got, i, lo, hi)
			}
		}
		prevUpper = hi
	}
}

func TestLatencyQuantile(t *testing.T) {
	var empty [LatencyBuckets]uint64
	if _, ok := LatencyQuantile(&empty, 0.5); ok {
		t.Error("LatencyQuantile of no requests reported a value")
	}

	// 100 requests in the 1ms bucket [786.432µs, 1.048576ms).
	var one [LatencyBuckets]uint64
	one[latencyIndex(time.Millisecond)] = 100
	lo, hi := LatencyBounds(latencyIndex(time.Millisecond))
	for _, q := range []float64{0.01, 0.5, 0.99, 1} {
		got, ok := LatencyQuantile(&one, q)
		if !ok || got < lo || got > hi {
			t.Errorf("q%v = %v (ok %v), want within [%v, %v]", q, got, ok, lo, hi)
		}
	}
	if got, _ := LatencyQuantile(&one, 0.5); got != lo+(hi-lo)/2 {
		t.Errorf("median of one bucket = %v, want its middle %v", got, lo+(hi-lo)/2)
	}

	// 90 fast requests and 10 slow ones: p50 is fast, p99 slow.
	var l Latency
	for i := 0; i < 90; i++ {
		l.Record(200 * time.Microsecond)
	}
	for i := 0; i < 10; i++ {
		l.Record(300 * time.Millisecond)
	}
	var c [LatencyBuckets]uint64
	l.take(&c, func() bool { return true })
	p50, _ := LatencyQuantile(&c, 0.5)
	p99, _ := LatencyQuantile(&c, 0.99)
	if p50 < 130*time.Microsecond || p50 > 270*time.Microsecond {
		t.Errorf("p50 = %v, want about 200µs", p50)
	}
	if p99 < 200*time.Millisecond || p99 > 400*time.Millisecond {
		t.Errorf("p99 = %v, want about 300ms", p99)
	}
	// A quantile in the overflow bucket is its lower bound.
	var over [LatencyBuckets]uint64
	over[LatencyBuckets-1] = 3
	if got, _ := LatencyQuantile(&over, 0.99); got != 1<<36 {
		t.Errorf("quantile in the overflow bucket = %v, want %v", got, time.Duration(1<<36))
	}
}

func TestLatencyRecordConcurrent(t *testing.T) {
	var l Latency
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				l.Record(time.Duration(i) * time.Microsecond)
			}
		}()
	}
	wg.Wait()
	var c [LatencyBuckets]uint64
	l.take(&c, func() bool { return true })
	var total uint64
	for _, n := range c {
		total += n
	}
	if total != 8000 {
		t.Errorf("recorded %d requests, want 8000", total)
	}
}

func TestLatencyRecordAllocs(t *testing.T) {
	var l Latency
	if n := testing.AllocsPerRun(1000, func() { l.Record(1234 * time.Microsecond) }); n != 0 {
		t.Errorf("Record allocates %v times per call, want 0", n)
	}
}

func BenchmarkLatencyRecord(b *testing.B) {
	var l Latency
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		d := 250 * time.Microsecond
		for pb.Next() {
			l.Record(d)
		}
	})
}

// TestLatencyTake: what take gives, taken while requests are recorded from
// other goroutines, adds up to every request; a take that finds nothing
// while no request is recorded leaves the host no array, and the next
// Record makes one.
func TestLatencyTake(t *testing.T) {
	var l Latency
	var wg sync.WaitGroup
	var writing atomic.Int64 // as a host's Active: up while a Record may run
	idle := func() bool { return writing.Load() == 0 }
	stop := make(chan struct{})
	for range 4 {
		writing.Add(1)
		wg.Go(func() {
			defer writing.Add(-1)
			for i := 0; i < 20000; i++ {
				l.Record(time.Duration(i) * time.Microsecond)
			}
		})
	}
	var taken uint64
	var c [LatencyBuckets]uint64
	go func() { wg.Wait(); close(stop) }()
	for done := false; !done; {
		select {
		case <-stop:
			done = true
		default:
		}
		l.take(&c, idle)
		for _, n := range c {
			taken += n
		}
	}
	for range 2 { // the last counts, then none: the arrays go
		l.take(&c, idle)
		for _, n := range c {
			taken += n
		}
	}
	if taken != 4*20000 {
		t.Errorf("took %d requests, want %d", taken, 4*20000)
	}
	if l.cur.Load() != nil || l.spare != nil {
		t.Error("a Take that found nothing left the arrays")
	}
	l.Record(time.Millisecond)
	if !l.take(&c, idle) || c[latencyIndex(time.Millisecond)] != 1 {
		t.Errorf("after a new request: %v", c)
	}
}
