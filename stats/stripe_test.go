package stats

import (
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// TestStripedValue checks a striped value before and after it has stripes:
// adds land in the base, then in the stripes, and reads and stores see the
// whole.
func TestStripedValue(t *testing.T) {
	var s striped
	s.add(5)
	if s.cells.Load() != nil || s.load() != 5 {
		t.Fatalf("uncontended: cells %v, value %d; want none and 5", s.cells.Load(), s.load())
	}
	s.grow()
	s.add(3)
	s.add(-1)
	if got := s.base.Load(); got != 5 {
		t.Errorf("base = %d after the stripes came: adds should go to the stripes", got)
	}
	if got := s.load(); got != 7 {
		t.Errorf("value = %d, want 7", got)
	}
	s.store(42)
	if got := s.load(); got != 42 {
		t.Errorf("value after store(42) = %d", got)
	}
	if n := len(*s.cells.Load()); n&(n-1) != 0 {
		t.Errorf("%d stripes: not a power of two", n)
	}
}

// TestStripedExact counts from many goroutines at once, flushing as they
// go: every sink gets each counter increment, gauge move and histogram
// sample exactly once, never a negative delta, whether or not the stats
// were contended enough to be striped.
func TestStripedExact(t *testing.T) {
	for _, striped := range []bool{false, true} {
		t.Run(map[bool]string{false: "as it comes", true: "striped"}[striped], func(t *testing.T) {
			testStripedExact(t, striped)
		})
	}
}

// testStripedExact is TestStripedExact, with the stats striped from the
// start when striped is set: whether contention strikes on its own is the
// machine's to decide.
func testStripedExact(t *testing.T, striped bool) {
	s, rec := newStore(t, config.Stats{}, Options{})
	c := s.Cluster("primary")
	up := c.Upstream()
	if striped {
		up.RqTotal.v.grow()
		up.RqActive.v.grow()
		up.RqTime.grow()
	}
	const workers, each = 8, 5000
	durations := []time.Duration{300 * time.Microsecond, 7 * time.Millisecond, 2 * time.Second}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	flushed := make(chan struct{})
	go func() { // flushes while the workers count
		defer close(flushed)
		for {
			select {
			case <-stop:
				return
			default:
				s.Flush()
			}
		}
	}()
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				up.RqTotal.Inc(1)
				up.RqActive.Inc()
				up.RqTime.RecordDuration(durations[(w+i)%len(durations)])
				up.RqActive.Dec()
			}
			up.RqActive.Inc() // one left in flight per worker
		})
	}
	wg.Wait()
	close(stop)
	<-flushed
	s.Flush()

	t.Logf("striped: upstream_rq_total %v, upstream_rq_active %v, upstream_rq_time %v",
		up.RqTotal.v.cells.Load() != nil, up.RqActive.v.cells.Load() != nil, up.RqTime.stripes.Load() != nil)
	total := rec.get("cluster.upstream_rq_total{cluster_name=primary}")
	if total.total != workers*each {
		t.Errorf("upstream_rq_total = %d, want %d", total.total, workers*each)
	}
	for _, d := range total.deltas {
		if d < 0 {
			t.Errorf("a flush reported %d: counters only go up", d)
		}
	}
	if g := rec.get("cluster.upstream_rq_active{cluster_name=primary}"); g.gauge != workers || up.RqActive.Value() != workers {
		t.Errorf("upstream_rq_active = %v in the sink, %d in the Store; want %d", g.gauge, up.RqActive.Value(), workers)
	}
	h := rec.get("cluster.upstream_rq_time{cluster_name=primary}")
	want := map[time.Duration]int64{}
	var sum time.Duration
	for w := range workers {
		for i := range each {
			d := durations[(w+i)%len(durations)]
			want[bounds[BucketIndex(d)]]++
			sum += d
		}
	}
	if !maps.Equal(h.buckets, want) || h.sum != sum {
		t.Errorf("upstream_rq_time: buckets %v summing to %v, want %v summing to %v", h.buckets, h.sum, want, sum)
	}
}

// BenchmarkCounterIncParallel is one counter counted from every core.
func BenchmarkCounterIncParallel(b *testing.B) {
	s, _ := newStore(b, config.Stats{}, Options{})
	c := s.Cluster("primary").Upstream().RqTotal
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Inc(1)
		}
	})
}
