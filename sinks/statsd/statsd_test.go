package statsd

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/sinks/prometheus"
	"github.com/sightline-proxy/sightline/stats"
)

// agent is a statsd agent for tests: it receives over UDP or TCP and hands
// every line it gets to lines, and every UDP datagram to packets.
type agent struct {
	addr    string
	lines   chan string
	packets chan []byte
}

func newAgent(t *testing.T, network string) *agent {
	t.Helper()
	a := newAgentAt(t, network, "127.0.0.1:0")
	if a == nil {
		t.Fatalf("no %s port for the agent", network)
	}
	return a
}

// newAgentAt starts an agent on addr, or returns nil if it cannot listen
// there.
func newAgentAt(t *testing.T, network, addr string) *agent {
	t.Helper()
	a := &agent{lines: make(chan string, 100_000), packets: make(chan []byte, 10_000)}
	switch network {
	case "udp":
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Log(err)
			return nil
		}
		t.Cleanup(func() { _ = pc.Close() })
		a.addr = pc.LocalAddr().String()
		go func() {
			buf := make([]byte, 65536)
			for {
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pkt := append([]byte(nil), buf[:n]...)
				a.packets <- pkt
				for _, l := range strings.Split(strings.TrimSuffix(string(pkt), "\n"), "\n") {
					a.lines <- l
				}
			}
		}()
	case "tcp":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Log(err)
			return nil
		}
		t.Cleanup(func() { _ = ln.Close() })
		a.addr = ln.Addr().String()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { _ = c.Close() })
				go func() {
					sc := bufio.NewScanner(c)
					for sc.Scan() {
						a.lines <- sc.Text()
					}
				}()
			}
		}()
	}
	return a
}

// collect reads lines until done says it has enough or five seconds pass.
func (a *agent) collect(t *testing.T, done func(got []string) bool) []string {
	t.Helper()
	var got []string
	timeout := time.After(5 * time.Second)
	for !done(got) {
		select {
		case l := <-a.lines:
			got = append(got, l)
		case <-timeout:
			t.Fatalf("timed out; lines so far:\n%s", strings.Join(got, "\n"))
		}
	}
	return got
}

// sum adds up the values of the |c lines for name.
func sum(lines []string, name string) int64 {
	var n int64
	for _, l := range lines {
		v, ok := strings.CutPrefix(l, name+":")
		if !ok {
			continue
		}
		v, _, _ = strings.Cut(v, "|")
		i, _ := strconv.ParseInt(v, 10, 64)
		n += i
	}
	return n
}

func newStore(t *testing.T, sc config.StatsdSink, emitZeros bool) (*stats.Store, *Sink) {
	t.Helper()
	sink, err := New(sc, stats.SinkOptions{EmitZeros: emitZeros})
	if err != nil {
		t.Fatal(err)
	}
	s, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour), Exclude: []string{`^server\.`}},
		config.Node{ID: "edge-1", Zone: "zone-a"}, stats.Options{Sinks: []stats.Sink{sink}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Close(context.Background())
		// The sender goroutine must be gone once the sink is closed.
		if sink.started.Load() {
			select {
			case <-sink.done:
			case <-time.After(5 * time.Second):
				t.Error("the sender goroutine outlived Close")
			}
		}
	})
	return s, sink
}

func TestSend(t *testing.T) {
	const (
		flat   = "sightline.cluster.api.example.com.upstream_rq_time"
		tagged = "sightline.cluster.upstream_rq_time"
		tag    = "|#cluster_name:api.example.com"
	)
	tests := []struct {
		network    string
		tags       string
		constant   map[string]string // constant_tags
		histType   string            // histogram_type
		histograms string            // histograms
		wantTotal  string            // the counter's name on the wire
		wantGauge  string            // a whole gauge line
		wantHist   []string          // whole histogram lines: samples of 0.6 and 0.9 ms
		// wantUntagged is the whole line of a stat without tags of its own;
		// with DogStatsD it still carries the constant tags.
		wantUntagged string
	}{
		{
			network:   "udp",
			tags:      "none",
			wantTotal: "sightline.cluster.api.example.com.upstream_rq_total",
			wantGauge: "sightline.cluster.api.example.com.upstream_rq_active:1|g",
			wantHist:  []string{flat + ":0.6|ms", flat + ":0.9|ms"},
		},
		{
			network:   "tcp",
			tags:      "none",
			wantTotal: "sightline.cluster.api.example.com.upstream_rq_total",
			wantGauge: "sightline.cluster.api.example.com.upstream_rq_active:1|g",
			wantHist:  []string{flat + ":0.6|ms", flat + ":0.9|ms"},
		},
		{
			network:    "udp",
			tags:       "none",
			histograms: "buckets", // both in (0.5 ms, 1 ms]
			wantTotal:  "sightline.cluster.api.example.com.upstream_rq_total",
			wantGauge:  "sightline.cluster.api.example.com.upstream_rq_active:1|g",
			wantHist:   []string{flat + ":0.75|ms|@0.5"},
		},
		{
			network:   "udp",
			tags:      "dogstatsd",
			wantTotal: "sightline.cluster.upstream_rq_total",
			wantGauge: "sightline.cluster.upstream_rq_active:1|g" + tag,
			wantHist:  []string{tagged + ":0.6|ms" + tag, tagged + ":0.9|ms" + tag},
		},
		{
			network:   "tcp",
			tags:      "dogstatsd",
			histType:  "d",
			wantTotal: "sightline.cluster.upstream_rq_total",
			wantGauge: "sightline.cluster.upstream_rq_active:1|g" + tag,
			wantHist:  []string{tagged + ":0.6|d" + tag, tagged + ":0.9|d" + tag},
		},
		{
			network:   "udp",
			tags:      "dogstatsd",
			constant:  map[string]string{"zone": "us-east-1a", "env": "prod", "node": "a"},
			histType:  "h",
			wantTotal: "sightline.cluster.upstream_rq_total",
			wantGauge: "sightline.cluster.upstream_rq_active:1|g" + tag + ",env:prod,node:a,zone:us-east-1a",
			wantHist: []string{
				tagged + ":0.6|h" + tag + ",env:prod,node:a,zone:us-east-1a",
				tagged + ":0.9|h" + tag + ",env:prod,node:a,zone:us-east-1a",
			},
			wantUntagged: "sightline.overload.reset_high_memory_stream.count:1|c|#env:prod,node:a,zone:us-east-1a",
		},
		{
			network:    "udp",
			tags:       "dogstatsd",
			histType:   "d",
			histograms: "buckets",
			wantTotal:  "sightline.cluster.upstream_rq_total",
			wantGauge:  "sightline.cluster.upstream_rq_active:1|g" + tag,
			wantHist:   []string{tagged + ":0.75|d|@0.5" + tag},
		},
	}
	for _, tt := range tests {
		t.Run(tt.network+"/"+tt.tags+"/"+constantTags(tt.constant)+"/"+tt.histType+"/"+tt.histograms, func(t *testing.T) {
			a := newAgent(t, tt.network)
			s, _ := newStore(t, config.StatsdSink{Address: a.addr, Prefix: "sightline", Protocol: tt.network, Tags: tt.tags,
				ConstantTags: tt.constant, HistogramType: tt.histType, Histograms: tt.histograms}, false)
			up := s.Cluster("api.example.com").Upstream()
			up.RqActive.Inc()
			s.Overload().ResetStreams.Inc(1)
			up.RqTime.RecordDuration(600 * time.Microsecond)
			up.RqTime.RecordDuration(900 * time.Microsecond)
			for range 4 {
				for range 250 {
					up.RqTotal.Inc(1)
				}
				s.Flush()
			}
			if err := s.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := a.collect(t, func(got []string) bool { return sum(got, tt.wantTotal) >= 1000 })
			// Give stragglers a moment, then check nothing more arrived.
			select {
			case l := <-a.lines:
				got = append(got, l)
			case <-time.After(50 * time.Millisecond):
			}
			if n := sum(got, tt.wantTotal); n != 1000 {
				t.Errorf("counter deltas sum to %d, want 1000", n)
			}
			all := strings.Join(got, "\n")
			untagged := cmp.Or(tt.wantUntagged, "sightline.overload.reset_high_memory_stream.count:1|c")
			for _, want := range []string{tt.wantGauge, untagged} {
				if !slices.Contains(got, want) {
					t.Errorf("no line %q in:\n%s", want, all)
				}
			}
			var hist []string
			for _, l := range got {
				if strings.Contains(l, "upstream_rq_time:") {
					hist = append(hist, l)
				}
			}
			slices.Sort(hist)
			if !slices.Equal(hist, tt.wantHist) {
				t.Errorf("histogram lines:\n%s\nwant:\n%s", strings.Join(hist, "\n"), strings.Join(tt.wantHist, "\n"))
			}
			if strings.Contains(all, "upstream_rq_retry") {
				t.Errorf("a counter never touched was sent:\n%s", all)
			}
		})
	}
}

func TestEmitZeros(t *testing.T) {
	a := newAgent(t, "udp")
	s, _ := newStore(t, config.StatsdSink{Address: a.addr, Protocol: "udp", Tags: "none"}, true)
	s.Cluster("primary").Upstream()
	s.Flush()
	// Untouched counters and gauges are sent as zeros; collect times out
	// if they are not.
	a.collect(t, func(got []string) bool {
		all := strings.Join(got, "\n")
		return strings.Contains(all, "cluster.primary.upstream_rq_pending_active:0|g") &&
			strings.Contains(all, "cluster.primary.upstream_rq_retry:0|c")
	})
}

// TestPackets checks that datagrams stay under the MTU and hold whole lines,
// and that a listener address keeps no separator of the protocol.
func TestPackets(t *testing.T) {
	a := newAgent(t, "udp")
	s, _ := newStore(t, config.StatsdSink{Address: a.addr, Prefix: "sightline", Protocol: "udp", Tags: "none"}, false)
	const clusters = 300
	for i := range clusters {
		s.Cluster("cluster-" + strconv.Itoa(i)).Upstream().RqTotal.Inc(1)
	}
	s.Listener("[::1]:10000").DownstreamCxTotal.Inc(1)
	s.Flush()
	got := a.collect(t, func(got []string) bool { return len(got) >= clusters+1 })
	if !strings.Contains(strings.Join(got, "\n"), "sightline.listener.[__1]_10000.downstream_cx_total:1|c") {
		t.Errorf("listener line not sanitized:\n%s", strings.Join(got, "\n"))
	}
	var packets int
	for len(a.packets) > 0 {
		pkt := <-a.packets
		packets++
		if len(pkt) > MTU {
			t.Errorf("a %d-byte datagram, over the %d-byte MTU", len(pkt), MTU)
		}
		if pkt[len(pkt)-1] != '\n' {
			t.Errorf("a datagram ends mid-line: %q", pkt[len(pkt)-20:])
		}
	}
	if packets < 2 {
		t.Errorf("%d datagrams for %d lines: lines are not batched under the MTU", packets, len(got))
	}
	if packets > clusters/10 {
		t.Errorf("%d datagrams for %d lines: lines are not batched", packets, len(got))
	}
}

// TestDeadAgent checks that an agent that never reads, or is not there,
// never holds up a flush, and that Close gives up when its context ends.
func TestDeadAgent(t *testing.T) {
	// A TCP agent that accepts and never reads: the sender's writes block
	// once the socket buffers fill.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := closed.Addr().String()
	closed.Close()

	for _, tt := range []struct {
		name string
		cfg  config.StatsdSink
	}{
		{"tcp not reading", config.StatsdSink{Address: ln.Addr().String(), Protocol: "tcp", Tags: "none"}},
		{"tcp refused", config.StatsdSink{Address: deadAddr, Protocol: "tcp", Tags: "none"}},
		{"udp nobody listening", config.StatsdSink{Address: deadAddr, Protocol: "udp", Tags: "none"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, sink := newStore(t, tt.cfg, false)
			var hs []*stats.Histogram
			for i := range 2000 {
				hs = append(hs, s.Cluster("cluster-"+strconv.Itoa(i)).Upstream().RqTime)
			}
			busy := 0
			for range 200 {
				for _, h := range hs {
					h.RecordDuration(time.Millisecond)
				}
				if len(sink.batches) == cap(sink.batches) {
					busy++
				}
				// A flush hands its batch to the sender and never waits
				// for the network: one that waited here would wait for
				// ever. The bound only tells that from a busy machine.
				start := time.Now()
				s.Flush()
				if d := time.Since(start); d > 5*time.Second {
					t.Fatalf("a flush took %v: it waited for the agent", d)
				}
			}
			t.Logf("the sender was busy at %d of 200 flushes", busy)
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			_ = s.Close(ctx) // may or may not have delivered: the agent is dead
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Close took %v with a 100ms context: it waited for the agent", d)
			}
		})
	}
}

// TestAgentDownAndBack: while the agent is down every flush is counted in
// sink.statsd.batches_dropped (shown by /stats and Prometheus like any
// stat) and the failure is logged once, not per flush; when the agent
// comes back on its address the lines flow again, and the recovery is
// logged once and counted in sink.statsd.reconnects.
func TestAgentDownAndBack(t *testing.T) {
	const down = 6 // flushes while the agent is down
	for _, tt := range []struct {
		network string
		// minDropped is the least batches_dropped after the down flushes:
		// over UDP the first datagram to a closed port seems to go out, its
		// refusal failing the next send, and the last one's refusal may not
		// have come back yet.
		minDropped int64
	}{
		{"tcp", down},
		{"udp", down - 2},
	} {
		t.Run(tt.network, func(t *testing.T) {
			addr := closedPort(t, tt.network)
			var log syncBuffer
			sink, err := New(config.StatsdSink{Address: addr, Protocol: tt.network, Tags: "none"},
				stats.SinkOptions{Name: "statsd", Log: zerolog.New(&log)})
			if err != nil {
				t.Fatal(err)
			}
			prom := prometheus.New(config.Prometheus{Namespace: "sightline"})
			s, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{},
				stats.Options{Sinks: []stats.Sink{sink, prom}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close(context.Background()) })
			own := s.SinkStats("statsd")
			total := s.Cluster("primary").Upstream().RqTotal
			flush := func() {
				t.Helper()
				total.Inc(1)
				s.Flush()
				// The sender takes the batch before the next flush, so that
				// every flush sends one.
				waitFor(t, "the sender to take the batch", func() bool { return len(sink.batches) == 0 })
			}

			for range down {
				flush()
			}
			waitFor(t, "batches_dropped to count the flushes", func() bool { return own.BatchesDropped.Value() >= tt.minDropped })
			if n := own.BatchesDropped.Value(); n > down {
				t.Errorf("batches_dropped = %d after %d flushes", n, down)
			}
			if n := strings.Count(log.String(), "sending stats failed"); n != 1 {
				t.Errorf("the failure was logged %d times in %d flushes, want once:\n%s", n, down, log.String())
			}
			if strings.Contains(log.String(), "sending stats again") || own.Reconnects.Value() != 0 {
				t.Errorf("a recovery while the agent stayed down (reconnects %d):\n%s", own.Reconnects.Value(), log.String())
			}
			// The count is shown like any stat; a batch still in flight may
			// add to it while it is read.
			checkShown(t, "/stats", s.Handler(), "sink.statsd.batches_dropped: ", own.BatchesDropped)
			checkShown(t, "/stats/prometheus", flushed{s, prom}, `sightline_sink_batches_dropped_total{sink_name="statsd"} `, own.BatchesDropped)

			a := reopenAgent(t, tt.network, addr)
			waitFor(t, "the recovery", func() bool {
				flush()
				return strings.Contains(log.String(), "sending stats again")
			})
			a.collect(t, func(got []string) bool { return sum(got, "cluster.primary.upstream_rq_total") > 0 })
			for range 3 {
				flush()
			}
			if err := s.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			out := log.String()
			if n := strings.Count(out, "sending stats again"); n != 1 {
				t.Errorf("the recovery was logged %d times, want once:\n%s", n, out)
			}
			if n := strings.Count(out, "sending stats failed"); n != 1 {
				t.Errorf("the failure was logged %d times, want once:\n%s", n, out)
			}
			if n := own.Reconnects.Value(); n != 1 {
				t.Errorf("reconnects = %d, want 1", n)
			}
		})
	}
}

// closedPort returns an address on 127.0.0.1 where nothing listens.
func closedPort(t *testing.T, network string) string {
	t.Helper()
	if network == "tcp" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

// reopenAgent starts an agent on addr, which was closed: the agent coming
// back. The test is skipped if another process took the port meanwhile.
func reopenAgent(t *testing.T, network, addr string) *agent {
	t.Helper()
	a := newAgentAt(t, network, addr)
	if a == nil {
		t.Skipf("%s port %s was taken meanwhile", network, addr)
	}
	return a
}

// waitFor polls cond until it holds, failing the test after five seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkShown checks that h serves a line prefix+N with N the value of c,
// read before and after the request.
func checkShown(t *testing.T, what string, h http.Handler, prefix string, c *stats.Counter) {
	t.Helper()
	before := c.Value()
	body := get(t, h)
	after := c.Value()
	_, rest, ok := strings.Cut(body, "\n"+prefix)
	v, _, _ := strings.Cut(rest, "\n")
	n, err := strconv.ParseInt(v, 10, 64)
	if !ok || err != nil || n < before || n > after {
		t.Errorf("%s: want a line %s%d (up to %d), got:\n%s", what, prefix, before, after, body)
	}
}

// flushed serves the Prometheus sink after a flush of the Store, since it
// shows the values of the last flush.
type flushed struct {
	s    *stats.Store
	prom *prometheus.Sink
}

func (f flushed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.s.Flush()
	f.prom.ServeHTTP(w, r)
}

// get returns the body h serves to GET /.
func get(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// syncBuffer is a bytes.Buffer safe for the sender and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestNewErrors(t *testing.T) {
	for _, cfg := range []config.StatsdSink{
		{Address: "127.0.0.1:8125", Protocol: "sctp", Tags: "none"},
		{Address: "127.0.0.1:8125", Protocol: "udp", Tags: "influx"},
	} {
		if _, err := New(cfg, stats.SinkOptions{}); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

// histLines parses the lines of histogram name into the samples they stand
// for: each line's value, counted 1/rate times.
func histLines(t *testing.T, lines []string, name string) (n, sum float64) {
	t.Helper()
	for _, l := range lines {
		v, ok := strings.CutPrefix(l, name+":")
		if !ok {
			continue
		}
		fields := strings.Split(v, "|")
		x, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		weight := 1.0
		if len(fields) > 2 {
			r, err := strconv.ParseFloat(strings.TrimPrefix(fields[2], "@"), 64)
			if err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			weight = 1 / r
		}
		n += weight
		sum += weight * x
	}
	return n, sum
}

// TestSamplesMean: with histograms: samples the agent gets every sample, so
// the count and mean it computes are the recorded ones; with buckets the
// mean is the buckets' midpoints'.
func TestSamplesMean(t *testing.T) {
	// Latencies near the low end of their buckets, as real ones are.
	give := []time.Duration{1100 * time.Microsecond, 1200 * time.Microsecond, 2600 * time.Microsecond,
		5300 * time.Microsecond, 11 * time.Millisecond, 27 * time.Millisecond}
	var total time.Duration
	for _, d := range give {
		total += d
	}
	wantMean := stats.Millis(total) / float64(len(give))
	for _, tt := range []struct {
		histograms string
		exact      bool
	}{{"samples", true}, {"buckets", false}} {
		t.Run(tt.histograms, func(t *testing.T) {
			a := newAgent(t, "tcp")
			s, _ := newStore(t, config.StatsdSink{Address: a.addr, Protocol: "tcp", Tags: "none", Histograms: tt.histograms}, false)
			h := s.Cluster("primary").Upstream().RqTime
			for _, d := range give {
				h.RecordDuration(d)
			}
			s.Flush()
			const name = "cluster.primary.upstream_rq_time"
			got := a.collect(t, func(got []string) bool {
				n, _ := histLines(t, got, name)
				return n >= float64(len(give))
			})
			n, sum := histLines(t, got, name)
			if n != float64(len(give)) {
				t.Fatalf("the lines stand for %v samples, want %d:\n%s", n, len(give), strings.Join(got, "\n"))
			}
			mean := sum / n
			if exact := math.Abs(mean-wantMean) < 1e-9; exact != tt.exact {
				t.Errorf("mean %.4f ms, recorded %.4f ms (exact: %v, want %v)", mean, wantMean, exact, tt.exact)
			}
		})
	}
}

// TestSamplesBounded: past maxSamples in one interval a histogram sends
// maxSamples lines whose rate counts every sample recorded, and the next
// interval starts afresh.
func TestSamplesBounded(t *testing.T) {
	a := newAgent(t, "tcp")
	s, _ := newStore(t, config.StatsdSink{Address: a.addr, Protocol: "tcp", Tags: "none"}, false)
	h := s.Cluster("primary").Upstream().RqTime
	const recorded = 3 * maxSamples
	for i := range recorded {
		h.RecordDuration(time.Duration(1+i%2) * time.Millisecond) // 1 ms and 2 ms alike
	}
	s.Flush()
	const name = "cluster.primary.upstream_rq_time"
	isHist := func(l string) bool { return strings.HasPrefix(l, name+":") }
	got := a.collect(t, func(got []string) bool { return len(got) >= maxSamples })
	wantRate := "|@" + strconv.FormatFloat(float64(maxSamples)/recorded, 'g', -1, 64)
	for _, l := range got {
		if isHist(l) && !strings.HasSuffix(l, wantRate) {
			t.Fatalf("line %q lacks the rate %s", l, wantRate)
		}
	}
	n, sum := histLines(t, got, name)
	if math.Abs(n-recorded) > 1e-6*recorded {
		t.Errorf("the lines stand for %v samples, want %d", n, recorded)
	}
	// A uniform sample of half 1 ms and half 2 ms: its mean is 1.5 ms
	// within a few standard errors (0.5/sqrt(8192) = 0.0055 ms).
	if mean := sum / n; math.Abs(mean-1.5) > 0.03 {
		t.Errorf("mean %.4f ms, want 1.5", mean)
	}
	// The next interval has its one sample, at rate 1.
	h.RecordDuration(3 * time.Millisecond)
	s.Flush()
	a.collect(t, func(got []string) bool { return slices.Contains(got, name+":3|ms") })
}

// TestRecordSampleAllocs: with histograms: samples, the request path
// allocates nothing for a sample once a histogram's buffers have grown to
// their bound, within it and past it, and neither does the flush's take.
func TestRecordSampleAllocs(t *testing.T) {
	s, sink := newStore(t, config.StatsdSink{Address: "127.0.0.1:8125", Protocol: "udp", Tags: "none"}, false)
	h := s.Cluster("primary").Upstream().RqTime
	var buf *sampleBuffer
	for _, x := range sink.series {
		if strings.HasSuffix(string(x.name), "upstream_rq_time") {
			buf = x.recorded
		}
	}
	// One whole interval per run, taken as a flush does (without sending,
	// so that no other goroutine allocates meanwhile); the warm-up run and
	// the first one grow both of the buffer's slices.
	interval := func() {
		for range 2 * maxSamples {
			h.RecordDuration(time.Millisecond)
		}
		buf.take()
	}
	interval()
	if n := testing.AllocsPerRun(3, interval); n != 0 {
		t.Errorf("%v allocations per interval of %d samples, want 0", n, 2*maxSamples)
	}
}
