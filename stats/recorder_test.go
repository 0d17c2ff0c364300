package stats

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uber-go/tally/v4"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// recorder is a sink that remembers what it was given, keyed by the stat's
// tagged name and tags ("cluster.upstream_rq_total{cluster_name=a}").
type recorder struct {
	mu      sync.Mutex
	series  map[string]*recorded
	flushes chan struct{} // a value per Flush, dropped when full
	closed  bool
}

// recorded is one series; its fields are guarded by the recorder's mu.
type recorded struct {
	mu      *sync.Mutex
	kind    Kind
	total   int64 // counter: sum of deltas
	deltas  []int64
	gauge   float64
	gauges  int // ReportGauge calls
	buckets map[time.Duration]int64
	sum     time.Duration
	// released: the Store handed the series back (a compacted family);
	// allocating it again takes up where it left off, as a statsd agent
	// adds a new series' deltas to the old.
	released  bool
	allocated int // times allocated
}

func newRecorder() *recorder {
	return &recorder{series: map[string]*recorded{}, flushes: make(chan struct{}, 1)}
}

func seriesKey(name string, tags map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		parts = append(parts, k+"="+tags[k])
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

func (r *recorder) add(name string, tags map[string]string, kind Kind) *recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := seriesKey(name, tags)
	if rec, dup := r.series[k]; dup {
		if !rec.released {
			panic("allocated twice: " + k)
		}
		rec.released = false
		rec.allocated++
		return rec
	}
	rec := &recorded{mu: &r.mu, kind: kind, buckets: map[time.Duration]int64{}, allocated: 1}
	r.series[k] = rec
	return rec
}

// Release implements Releaser.
func (r *recorder) Release(h any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := h.(*recorded)
	if rec.released {
		panic("released twice")
	}
	rec.released = true
}

// get returns a copy of the series, nil when it was never allocated.
func (r *recorder) get(key string) *recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.series[key]
	if !ok {
		return nil
	}
	c := *rec
	c.deltas = slices.Clone(rec.deltas)
	c.buckets = maps.Clone(rec.buckets)
	return &c
}

func (r *recorder) has(substr string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.series {
		if strings.Contains(k, substr) {
			return true
		}
	}
	return false
}

func (r *recorder) Capabilities() tally.Capabilities { return r }
func (r *recorder) Reporting() bool                  { return true }
func (r *recorder) Tagging() bool                    { return true }

func (r *recorder) Close(context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return nil
}

func (r *recorder) Flush() {
	select {
	case r.flushes <- struct{}{}:
	default:
	}
}

func (r *recorder) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

func (r *recorder) AllocateCounter(name string, tags map[string]string) tally.CachedCount {
	return r.add(name, tags, KindCounter)
}

func (r *recorder) AllocateGauge(name string, tags map[string]string) tally.CachedGauge {
	return r.add(name, tags, KindGauge)
}

func (r *recorder) AllocateTimer(string, map[string]string) tally.CachedTimer { return Discard }

func (r *recorder) AllocateHistogram(name string, tags map[string]string, _ tally.Buckets) tally.CachedHistogram {
	return r.add(name, tags, KindHistogram)
}

func (c *recorded) ReportCount(v int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total += v
	c.deltas = append(c.deltas, v)
}

func (c *recorded) ReportGauge(v float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gauge = v
	c.gauges++
}

func (c *recorded) ReportSum(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sum += d
}
func (c *recorded) ValueBucket(float64, float64) tally.CachedHistogramBucket {
	return Discard
}

func (c *recorded) DurationBucket(_, upper time.Duration) tally.CachedHistogramBucket {
	return bucketRecorder{c, upper}
}

type bucketRecorder struct {
	c     *recorded
	upper time.Duration
}

func (b bucketRecorder) ReportSamples(n int64) {
	b.c.mu.Lock()
	defer b.c.mu.Unlock()
	b.c.buckets[b.upper] += n
}

func (c *recorded) String() string {
	return fmt.Sprintf("%v total=%d gauge=%v buckets=%v sum=%v", c.kind, c.total, c.gauge, c.buckets, c.sum)
}

// newStore builds a Store for a test, recording into a recorder, and closes
// it when the test ends, checking no goroutine outlives it.
func newStore(t testing.TB, cfg config.Stats, opts Options) (*Store, *recorder) {
	t.Helper()
	noLeaks(t)
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = config.Duration(time.Hour) // tests flush by hand
	}
	rec := newRecorder()
	opts.Sinks = append(opts.Sinks, rec)
	s, err := New(cfg, config.Node{ID: "edge-1", Zone: "zone-a"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return s, rec
}

// noLeaks fails the test when, once it and its cleanups are done, more
// goroutines run than before it began (waiting up to a second for them to
// exit).
func noLeaks(t testing.TB) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(time.Second)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Errorf("%d goroutines before the test, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
				return
			}
			<-tick.C
		}
	})
}
