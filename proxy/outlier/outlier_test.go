package outlier

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/accesslog"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/stats"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// lockedBuffer is a log destination that sweeps on another goroutine may
// write to while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSpace(b.buf.String()), "\n")
}

// fixture is a detector over n hosts with a fake clock, real stats and a
// count of OnChange calls.
type fixture struct {
	d       *Detector
	hosts   []*host.Host
	clock   *fakeClock
	stats   *stats.OutlierDetection
	changes atomic.Int64
	log     *lockedBuffer
}

func newFixture(t *testing.T, n int, cfg config.OutlierDetection) *fixture {
	t.Helper()
	st, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{clock: newFakeClock(), stats: st.Cluster("c").OutlierDetection(), log: &lockedBuffer{}}
	for i := range n {
		f.hosts = append(f.hosts, &host.Host{Address: fmt.Sprintf("10.0.0.%d:80", i+1), Weight: 1})
	}
	f.d = New(cfg, Options{
		Cluster:  "c",
		Stats:    f.stats,
		OnChange: func() { f.changes.Add(1) },
		Log:      zerolog.New(f.log),
		Now:      f.clock.Now,
	})
	f.d.Set(f.hosts)
	t.Cleanup(f.d.Close)
	return f
}

// fail reports n failures of h.
func (f *fixture) fail(h *host.Host, n int) {
	for range n {
		f.d.Report(h, Error)
	}
}

func ejected(h *host.Host) bool { return h.Flags()&host.FailedOutlierCheck != 0 }

func (f *fixture) ejectedCount() int {
	n := 0
	for _, h := range f.hosts {
		if ejected(h) {
			n++
		}
	}
	return n
}

// cfg is a config with every field set, so that tests do not depend on
// defaults.
func cfg(consecutive, percent int) config.OutlierDetection {
	return config.OutlierDetection{
		Consecutive5xx:     consecutive,
		Interval:           config.Duration(10 * time.Second),
		BaseEjectionTime:   config.Duration(30 * time.Second),
		MaxEjectionPercent: percent,
	}
}

func TestReportConsecutive(t *testing.T) {
	const (
		S = Success
		E = Error
		G = GatewayFailure
	)
	tests := []struct {
		name      string
		threshold int
		give      []Result
		want      bool // ejected
	}{
		{name: "five errors", threshold: 5, give: []Result{E, E, E, E, E}, want: true},
		{name: "four errors", threshold: 5, give: []Result{E, E, E, E}, want: false},
		{name: "gateway failures count", threshold: 5, give: []Result{G, G, G, G, G}, want: true},
		{name: "errors and gateway failures mix", threshold: 5, give: []Result{E, G, E, G, E}, want: true},
		{name: "a success starts over", threshold: 5, give: []Result{E, E, E, E, S, E, E, E, E}, want: false},
		{name: "a success then a full run", threshold: 5, give: []Result{E, E, S, E, E, E, E, E}, want: true},
		{name: "threshold one", threshold: 1, give: []Result{G}, want: true},
		{name: "only successes", threshold: 1, give: []Result{S, S, S}, want: false},
		{name: "zero threshold takes the default of five", threshold: 0, give: []Result{E, E, E, E, E}, want: true},
		{name: "zero threshold, four errors", threshold: 0, give: []Result{E, E, E, E}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 10, cfg(tt.threshold, 100))
			h := f.hosts[3]
			for _, r := range tt.give {
				f.d.Report(h, r)
			}
			if got := ejected(h); got != tt.want {
				t.Fatalf("ejected = %t, want %t", got, tt.want)
			}
			wantN := int64(0)
			if tt.want {
				wantN = 1
			}
			if got := f.stats.EjectionsEnforced.Value(); got != wantN {
				t.Errorf("ejections_enforced_total = %d, want %d", got, wantN)
			}
			if got := f.stats.EjectionsActive.Value(); got != wantN {
				t.Errorf("ejections_active = %d, want %d", got, wantN)
			}
			if got := f.changes.Load(); got != wantN {
				t.Errorf("OnChange called %d times, want %d", got, wantN)
			}
			if got := h.Outlier.Ejections.Load(); got != uint64(wantN) {
				t.Errorf("host ejections = %d, want %d", got, wantN)
			}
			if f.ejectedCount() != int(wantN) {
				t.Errorf("%d hosts ejected, want %d", f.ejectedCount(), wantN)
			}
		})
	}
}

func TestEjectionLogsOneLine(t *testing.T) {
	f := newFixture(t, 4, cfg(2, 100))
	f.fail(f.hosts[0], 2)
	lines := f.log.lines()
	if len(lines) != 1 {
		t.Fatalf("got %d log lines, want 1:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for _, want := range []string{`"address":"10.0.0.1:80"`, `"cluster":"c"`, `"level":"warn"`, `host ejected`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("log line %s lacks %s", lines[0], want)
		}
	}
}

func TestMaxEjectionPercent(t *testing.T) {
	tests := []struct {
		name    string
		hosts   int
		percent int
		failing int
		want    int
	}{
		{name: "the first host of a small cluster is always ejected", hosts: 3, percent: 10, failing: 3, want: 1},
		{name: "one host of one", hosts: 1, percent: 10, failing: 1, want: 1},
		{name: "zero percent still ejects one", hosts: 5, percent: 0, failing: 2, want: 1},
		{name: "ten percent of twenty", hosts: 20, percent: 10, failing: 5, want: 2},
		{name: "ten percent of ten", hosts: 10, percent: 10, failing: 3, want: 1},
		{name: "a second would pass ten percent of fifteen", hosts: 15, percent: 10, failing: 3, want: 1},
		{name: "half of four", hosts: 4, percent: 50, failing: 4, want: 2},
		{name: "all of them", hosts: 4, percent: 100, failing: 4, want: 4},
		{name: "fewer failing than allowed", hosts: 10, percent: 50, failing: 2, want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.hosts, cfg(3, tt.percent))
			// Twice the threshold each: a refused host must not slip in
			// on its second run either.
			for _, h := range f.hosts[:tt.failing] {
				f.fail(h, 6)
			}
			if got := f.ejectedCount(); got != tt.want {
				t.Errorf("%d hosts ejected, want %d", got, tt.want)
			}
			if got := f.stats.EjectionsActive.Value(); got != int64(tt.want) {
				t.Errorf("ejections_active = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestEjectionTimeGrowsAndDecays(t *testing.T) {
	const base = 30 * time.Second
	f := newFixture(t, 10, cfg(1, 100))
	h := f.hosts[0]

	// returnsAfter ejects h and checks that it is out until exactly d has
	// passed, sweeping a second before and at d.
	returnsAfter := func(d time.Duration) {
		t.Helper()
		f.d.Report(h, Error)
		if !ejected(h) {
			t.Fatal("not ejected")
		}
		f.clock.Advance(d - time.Second)
		f.d.sweep()
		if !ejected(h) {
			t.Fatalf("returned before %s", d)
		}
		f.clock.Advance(time.Second)
		f.d.sweep()
		if ejected(h) {
			t.Fatalf("still ejected after %s", d)
		}
	}

	returnsAfter(base)
	if got := f.stats.EjectionsActive.Value(); got != 0 {
		t.Errorf("ejections_active = %d after the return, want 0", got)
	}
	if got := f.changes.Load(); got != 2 {
		t.Errorf("OnChange called %d times, want 2 (ejection, return)", got)
	}
	returnsAfter(2 * base)
	returnsAfter(3 * base)

	// Three intervals in service bring the multiplier from 3 back to 0;
	// the next ejection then lasts one base time again.
	for want := uint32(2); ; want-- {
		f.clock.Advance(10 * time.Second)
		f.d.sweep()
		if got := h.Outlier.Multiplier.Load(); got != want {
			t.Fatalf("multiplier = %d, want %d", got, want)
		}
		if want == 0 {
			break
		}
	}
	f.d.sweep()
	if got := h.Outlier.Multiplier.Load(); got != 0 {
		t.Fatalf("multiplier went below zero: %d", got)
	}
	returnsAfter(base)
}

func TestEjectionTimeCapped(t *testing.T) {
	f := newFixture(t, 10, cfg(1, 100))
	h := f.hosts[0]
	for i := range 30 {
		f.d.Report(h, Error)
		if !ejected(h) {
			t.Fatalf("ejection %d did not happen", i+1)
		}
		f.clock.Advance(maxEjectionTime)
		f.d.sweep()
		if ejected(h) {
			t.Fatalf("ejection %d lasted longer than %s", i+1, maxEjectionTime)
		}
	}
	if got, want := h.Outlier.Multiplier.Load(), uint32(maxEjectionTime/(30*time.Second)); got != want {
		t.Errorf("multiplier = %d, want it capped at %d", got, want)
	}
	if got := h.Outlier.Ejections.Load(); got != 30 {
		t.Errorf("ejections = %d, want 30", got)
	}
}

func TestReportOnRemovedHost(t *testing.T) {
	f := newFixture(t, 3, cfg(2, 100))
	gone := f.hosts[2]
	f.d.Set(f.hosts[:2])
	f.fail(gone, 2)
	if ejected(gone) {
		t.Error("a host no longer in the cluster was ejected")
	}
	if f.changes.Load() != 0 {
		t.Error("OnChange called for a host no longer in the cluster")
	}
}

func TestReportOnEjectedHost(t *testing.T) {
	f := newFixture(t, 3, cfg(2, 100))
	h := f.hosts[0]
	f.fail(h, 2)
	f.fail(h, 10) // a balancer in panic mode still sends to it
	if got := f.stats.EjectionsEnforced.Value(); got != 1 {
		t.Errorf("ejections_enforced_total = %d, want 1", got)
	}
	if got := h.Outlier.Multiplier.Load(); got != 1 {
		t.Errorf("multiplier = %d, want 1", got)
	}
}

func TestSetAdoptsEjectedHosts(t *testing.T) {
	f := newFixture(t, 4, cfg(1, 100))
	h := f.hosts[1]
	f.d.Report(h, GatewayFailure)
	f.d.Close()

	// A reload: a new detector over the same hosts.
	next := New(cfg(1, 25), Options{Stats: f.stats, Now: f.clock.Now, OnChange: func() { f.changes.Add(1) }})
	defer next.Close()
	next.Set(f.hosts)
	if got := f.stats.EjectionsActive.Value(); got != 1 {
		t.Errorf("ejections_active = %d, want 1", got)
	}
	// The adopted ejection counts toward max_ejection_percent: 2 of 4
	// would pass 25%.
	next.Report(f.hosts[2], Error)
	if ejected(f.hosts[2]) {
		t.Error("a second host was ejected past max_ejection_percent")
	}
	f.clock.Advance(30 * time.Second)
	next.sweep()
	if ejected(h) {
		t.Error("the adopted host was not returned on time")
	}
	if got := f.stats.EjectionsActive.Value(); got != 0 {
		t.Errorf("ejections_active = %d, want 0", got)
	}
}

func TestClosedDetectorDoesNotEject(t *testing.T) {
	f := newFixture(t, 4, cfg(1, 100))
	f.d.Close()
	f.d.Close() // idempotent
	f.d.Report(f.hosts[0], Error)
	if ejected(f.hosts[0]) {
		t.Error("a closed detector ejected a host: nothing would return it")
	}
}

func TestNilDetector(t *testing.T) {
	var d *Detector
	h := &host.Host{}
	d.Report(h, Error)
	d.Set([]*host.Host{h})
	d.Start(context.Background())
	d.Close()
	if got := h.Outlier.Consecutive5xx.Load(); got != 0 {
		t.Errorf("a nil detector counted: %d", got)
	}
}

func TestConcurrentReportsEjectOnce(t *testing.T) {
	const goroutines, each = 8, 1000
	f := newFixture(t, 10, cfg(5, 100))
	h := f.hosts[0]
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				f.d.Report(h, Error)
			}
		})
	}
	wg.Wait()
	if got := f.stats.EjectionsEnforced.Value(); got != 1 {
		t.Errorf("ejections_enforced_total = %d, want 1", got)
	}
	if got := f.changes.Load(); got != 1 {
		t.Errorf("OnChange called %d times, want 1", got)
	}
}

func TestConcurrentEjectionsRespectLimit(t *testing.T) {
	f := newFixture(t, 20, cfg(3, 25))
	var wg sync.WaitGroup
	for _, h := range f.hosts {
		wg.Go(func() { f.fail(h, 30) })
	}
	wg.Wait()
	if got := f.ejectedCount(); got != 5 {
		t.Errorf("%d hosts ejected, want 5 (25%% of 20)", got)
	}
	if got := f.stats.EjectionsActive.Value(); got != 5 {
		t.Errorf("ejections_active = %d, want 5", got)
	}
}

func TestStartSweeps(t *testing.T) {
	noLeaks(t)
	f := newFixture(t, 4, config.OutlierDetection{
		Consecutive5xx: 1, Interval: config.Duration(time.Millisecond),
		BaseEjectionTime: config.Duration(time.Minute), MaxEjectionPercent: 100,
	})
	returned := make(chan struct{}, 1)
	f.d.onChange = func() {
		if !ejected(f.hosts[0]) {
			select {
			case returned <- struct{}{}:
			default:
			}
		}
	}
	f.d.Start(context.Background())
	f.d.Start(context.Background()) // a second Start does nothing
	f.d.Report(f.hosts[0], Error)
	f.clock.Advance(time.Minute)
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("the host was not returned by the sweeps")
	}
	f.d.Close()
}

func TestStartStopsWithContext(t *testing.T) {
	noLeaks(t)
	f := newFixture(t, 1, config.OutlierDetection{Interval: config.Duration(time.Millisecond)})
	ctx, cancel := context.WithCancel(context.Background())
	f.d.Start(ctx)
	cancel()
	select {
	case <-f.d.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the sweep goroutine did not exit when its context was done")
	}
}

func TestCloseBeforeStart(t *testing.T) {
	noLeaks(t)
	d := New(config.OutlierDetection{}, Options{})
	d.Close()
	d.Start(context.Background()) // after Close: must not start a goroutine
}

func TestSweepSurvivesPanic(t *testing.T) {
	f := newFixture(t, 2, cfg(1, 100))
	f.d.Report(f.hosts[0], Error)
	f.d.onChange = func() { panic("boom") }
	f.clock.Advance(time.Hour)
	f.d.safeSweep()
	if !strings.Contains(strings.Join(f.log.lines(), "\n"), "outlier sweep panicked") {
		t.Error("the panic was not logged")
	}
}

func TestUneject(t *testing.T) {
	f := newFixture(t, 3, cfg(1, 100))
	f.d.Report(f.hosts[0], Error)
	f.d.Report(f.hosts[1], Error)
	if f.ejectedCount() != 2 {
		t.Fatalf("%d hosts ejected, want 2", f.ejectedCount())
	}
	if !Uneject(f.hosts) {
		t.Fatal("Uneject reported no change")
	}
	if n := f.ejectedCount(); n != 0 {
		t.Errorf("%d hosts still ejected", n)
	}
	for _, h := range f.hosts {
		if h.Outlier.Multiplier.Load() != 0 {
			t.Errorf("%s: multiplier not cleared", h.Address)
		}
	}
	if Uneject(f.hosts) {
		t.Error("a second Uneject reported a change")
	}
}

func TestReportAllocs(t *testing.T) {
	f := newFixture(t, 2, cfg(1<<30, 100))
	h := f.hosts[0]
	for _, r := range []Result{Success, Error, GatewayFailure} {
		if n := testing.AllocsPerRun(1000, func() { f.d.Report(h, r) }); n != 0 {
			t.Errorf("Report(%s) allocates %v times", r, n)
		}
	}
}

func BenchmarkReport(b *testing.B) {
	for _, r := range []Result{Success, Error} {
		b.Run(r.String(), func(b *testing.B) {
			d := New(cfg(1<<30, 100), Options{})
			h := &host.Host{Address: "10.0.0.1:80"}
			d.Set([]*host.Host{h})
			b.ReportAllocs()
			for b.Loop() {
				d.Report(h, r)
			}
		})
	}
	b.Run("mixed_parallel", func(b *testing.B) {
		d := New(cfg(1<<30, 100), Options{})
		h := &host.Host{Address: "10.0.0.1:80"}
		d.Set([]*host.Host{h})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				r := Success
				if i%16 == 0 {
					r = Error
				}
				d.Report(h, r)
				i++
			}
		})
	})
}

func BenchmarkClassify(b *testing.B) {
	b.ReportAllocs()
	var r Result
	for b.Loop() {
		r += Classify(200, 14, false, false)
	}
	_ = r
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

// TestEventLog: every ejection and return is a line of the event log in
// Envoy's OutlierDetectionEvent JSON, with the time since the host's last
// action from its second event on.
func TestEventLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outlier.log")
	l, err := accesslog.NewOutlierLog(path, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	st, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	h := &host.Host{Address: "10.0.0.1:80", Weight: 1}
	d := New(cfg(1, 100), Options{Cluster: "c", Stats: st.Cluster("c").OutlierDetection(), Now: clock.Now, Events: l})
	d.Set([]*host.Host{h, {Address: "10.0.0.2:80", Weight: 1}})
	t.Cleanup(d.Close)

	d.Report(h, Error) // ejected for 30 s
	clock.Advance(30 * time.Second)
	d.sweep() // back
	clock.Advance(5 * time.Second)
	d.Report(h, Error) // ejected again, for 60 s
	d.HealthCheckPassed(h)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	ts := func(d time.Duration) string {
		return epoch.Add(time.Duration(clock.Now().Sub(epoch)) - d).UTC().Format("2006-01-02T15:04:05.000Z")
	}
	want := []string{
		`{"type":"CONSECUTIVE_5XX","timestamp":"` + ts(35*time.Second) + `","cluster_name":"c","upstream_url":"10.0.0.1:80","action":"EJECT","num_ejections":1,"enforced":true,"eject_consecutive_event":{}}`,
		`{"type":"CONSECUTIVE_5XX","timestamp":"` + ts(5*time.Second) + `","secs_since_last_action":"30","cluster_name":"c","upstream_url":"10.0.0.1:80","action":"UNEJECT","num_ejections":1,"enforced":false}`,
		`{"type":"CONSECUTIVE_5XX","timestamp":"` + ts(0) + `","secs_since_last_action":"5","cluster_name":"c","upstream_url":"10.0.0.1:80","action":"EJECT","num_ejections":2,"enforced":true,"eject_consecutive_event":{}}`,
		`{"type":"CONSECUTIVE_5XX","timestamp":"` + ts(0) + `","secs_since_last_action":"0","cluster_name":"c","upstream_url":"10.0.0.1:80","action":"UNEJECT","num_ejections":2,"enforced":false}`,
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), b)
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d:\ngot  %s\nwant %s", i+1, lines[i], want[i])
		}
	}
}
