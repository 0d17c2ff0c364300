package sinks_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/sinks"
	"github.com/sightline-proxy/sightline/sinks/internal/otlptest"
	"github.com/sightline-proxy/sightline/stats"
)

// statsdAgent receives statsd datagrams and hands over their lines.
func statsdAgent(t *testing.T) (addr string, lines <-chan string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	ch := make(chan string, 10_000)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			for _, l := range strings.Split(strings.TrimSuffix(string(buf[:n]), "\n"), "\n") {
				ch <- l
			}
		}
	}()
	return pc.LocalAddr().String(), ch
}

// TestSinksAgree counts 1,000 requests through a running Store and checks
// that Prometheus, the sum of the statsd deltas, OTLP and /stats all say
// 1,000, and that an excluded stat is in none of them.
func TestSinksAgree(t *testing.T) {
	statsdAddr, lines := statsdAgent(t)
	collector := otlptest.GRPC(t)
	cfg := config.Stats{
		FlushInterval: config.Duration(10 * time.Millisecond),
		Exclude:       []string{`^cluster\..+\.upstream_rq_retry$`}, // [^.]+ would miss a dotted cluster name
		Sinks: []config.Sink{
			{Statsd: &config.StatsdSink{Address: statsdAddr, Prefix: "sightline", Protocol: "udp", Tags: "none"}},
			{OTLP: &config.OTLP{Endpoint: collector.Endpoint, Protocol: "grpc", Insecure: true}},
		},
		Prometheus: config.Prometheus{Namespace: "sightline"},
	}
	node := config.Node{ID: "edge-1", Zone: "zone-a"}
	set, err := sinks.Build(cfg, stats.SinkOptions{Node: node})
	if err != nil {
		t.Fatal(err)
	}
	st, err := stats.New(cfg, node, stats.Options{Sinks: set.All})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st.Start(ctx)

	// Ten rounds, each flushed, while the flush loop runs too: the statsd
	// deltas come in many pieces.
	up := st.Cluster("api.example.com").Upstream()
	for range 10 {
		for range 100 {
			up.RqTotal.Inc(1)
			up.RqRetry.Inc(1) // excluded: a no-op
		}
		st.Flush()
	}
	if err := st.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Prometheus.
	w := httptest.NewRecorder()
	set.Prometheus.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/stats/prometheus", nil))
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(w.Body.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if got := fams["sightline_cluster_upstream_rq_total"].GetMetric()[0].GetCounter().GetValue(); got != 1000 {
		t.Errorf("Prometheus: %v, want 1000", got)
	}
	if _, ok := fams["sightline_cluster_upstream_rq_retry_total"]; ok {
		t.Error("Prometheus has the excluded upstream_rq_retry")
	}

	// statsd: the deltas of every flush add up.
	var sum, deltas int64
	var all []string
	deadline := time.After(5 * time.Second)
	for sum < 1000 {
		select {
		case l := <-lines:
			all = append(all, l)
			if v, ok := strings.CutPrefix(l, "sightline.cluster.api.example.com.upstream_rq_total:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSuffix(v, "|c"), 10, 64)
				sum += n
				deltas++
			}
		case <-deadline:
			t.Fatalf("statsd deltas sum to %d, want 1000", sum)
		}
	}
	if sum != 1000 || deltas < 2 {
		t.Errorf("%d statsd deltas sum to %d, want 1000 in several", deltas, sum)
	}
	if strings.Contains(strings.Join(all, "\n"), "upstream_rq_retry:") {
		t.Error("statsd got the excluded upstream_rq_retry")
	}

	// OTLP: the last export holds the total.
	req := collector.Last(t)
	if got := otlptest.Metric(req, "cluster.upstream_rq_total").GetSum().GetDataPoints()[0].GetAsInt(); got != 1000 {
		t.Errorf("OTLP: %d, want 1000", got)
	}
	if otlptest.Metric(req, "cluster.upstream_rq_retry") != nil {
		t.Error("OTLP got the excluded upstream_rq_retry")
	}

	// /stats.
	w = httptest.NewRecorder()
	st.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/stats?filter=api", nil))
	body := w.Body.String()
	if !strings.Contains(body, "cluster.api.example.com.upstream_rq_total: 1000\n") || strings.Contains(body, "upstream_rq_retry:") {
		t.Errorf("/stats:\n%s", body)
	}
}

// promCounter scrapes the Prometheus sink and returns the counter's value
// for the cluster.
func promCounter(t *testing.T, set *sinks.Set, family, cluster string) float64 {
	t.Helper()
	w := httptest.NewRecorder()
	set.Prometheus.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/stats/prometheus", nil))
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(w.Body.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range fams[family].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "cluster_name" && l.GetValue() == cluster {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

// TestSinksAgreeAcrossCompaction counts on a cluster, lets its stats be
// compacted (compact_after), counts again, and checks that Prometheus, the
// statsd deltas, OTLP and /stats agree on the totals all along, and that
// the Prometheus counter never goes back.
func TestSinksAgreeAcrossCompaction(t *testing.T) {
	statsdAddr, lines := statsdAgent(t)
	collector := otlptest.GRPC(t)
	compact := config.Duration(time.Nanosecond)
	cfg := config.Stats{
		FlushInterval: config.Duration(time.Hour), // flushed by hand
		CompactAfter:  &compact,
		Sinks: []config.Sink{
			{Statsd: &config.StatsdSink{Address: statsdAddr, Prefix: "sightline", Protocol: "udp", Tags: "none"}},
			{OTLP: &config.OTLP{Endpoint: collector.Endpoint, Protocol: "grpc", Insecure: true}},
		},
		Prometheus: config.Prometheus{Namespace: "sightline"},
	}
	node := config.Node{ID: "edge-1", Zone: "zone-a"}
	set, err := sinks.Build(cfg, stats.SinkOptions{Node: node})
	if err != nil {
		t.Fatal(err)
	}
	st, err := stats.New(cfg, node, stats.Options{Sinks: set.All})
	if err != nil {
		t.Fatal(err)
	}
	cs := st.Cluster("api.example.com")
	const family = "sightline_cluster_upstream_rq_total"
	last := 0.0
	flush := func(want float64) {
		t.Helper()
		st.Flush()
		got := promCounter(t, set, family, "api.example.com")
		if got < last {
			t.Fatalf("Prometheus %s went back from %v to %v", family, last, got)
		}
		if got != want {
			t.Errorf("Prometheus %s = %v, want %v", family, got, want)
		}
		last = got
	}
	cs.Upstream().RqTotal.Inc(100)
	cs.GRPC("/grpc.testing.TestService/UnaryCall").Completed(0)
	for range 4 { // the family goes quiet, and is compacted
		flush(100)
	}
	cs.Upstream().RqTotal.Inc(50) // made again, from 100
	flush(150)
	flush(150)
	if err := st.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	var sum int64
	deadline := time.After(5 * time.Second)
	for sum < 150 {
		select {
		case l := <-lines:
			if v, ok := strings.CutPrefix(l, "sightline.cluster.api.example.com.upstream_rq_total:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSuffix(v, "|c"), 10, 64)
				sum += n
			}
		case <-deadline:
			t.Fatalf("statsd deltas sum to %d, want 150", sum)
		}
	}
	if sum != 150 {
		t.Errorf("statsd deltas sum to %d, want 150", sum)
	}
	req := collector.Last(t)
	if got := otlptest.Metric(req, "cluster.upstream_rq_total").GetSum().GetDataPoints()[0].GetAsInt(); got != 150 {
		t.Errorf("OTLP: %d, want 150", got)
	}
	if otlptest.Metric(req, "cluster.grpc.total") == nil {
		t.Error("OTLP lost the compacted gRPC method's stats")
	}
	w := httptest.NewRecorder()
	st.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/stats?filter=api", nil))
	for _, want := range []string{
		"cluster.api.example.com.upstream_rq_total: 150\n",
		"cluster.api.example.com.grpc.grpc.testing.TestService.UnaryCall.success: 1\n",
	} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("/stats lacks %q:\n%s", want, w.Body.String())
		}
	}
}

func TestBuildErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		give []config.Sink
	}{
		{"empty entry", []config.Sink{{}}},
		{"bad statsd after a good otlp", []config.Sink{
			{OTLP: &config.OTLP{Endpoint: "127.0.0.1:4317", Protocol: "grpc", Insecure: true}},
			{Statsd: &config.StatsdSink{Address: "127.0.0.1:8125", Protocol: "sctp", Tags: "none"}},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sinks.Build(config.Stats{Sinks: tt.give}, stats.SinkOptions{})
			if err == nil || !strings.Contains(err.Error(), "stats.sinks[") {
				t.Errorf("Build() error = %v, want one naming the sink", err)
			}
		})
	}
}

// BenchmarkClusterMemory reports what a cluster costs with every sink
// attached: idle, and once a request went through.
func BenchmarkClusterMemory(b *testing.B) {
	const clusters = 10_000
	cfg := config.Stats{
		FlushInterval: config.Duration(time.Hour),
		Sinks: []config.Sink{
			{Statsd: &config.StatsdSink{Address: "127.0.0.1:8125", Prefix: "sightline", Protocol: "udp", Tags: "none"}},
			{OTLP: &config.OTLP{Endpoint: "127.0.0.1:4317", Protocol: "grpc", Insecure: true}},
		},
		Prometheus: config.Prometheus{Namespace: "sightline"},
	}
	node := config.Node{ID: "edge-1", Zone: "zone-a"}
	for b.Loop() {
		set, err := sinks.Build(cfg, stats.SinkOptions{Node: node})
		if err != nil {
			b.Fatal(err)
		}
		st, err := stats.New(cfg, node, stats.Options{Sinks: set.All})
		if err != nil {
			b.Fatal(err)
		}
		base := heap()
		cs := make([]*stats.Cluster, clusters)
		for i := range cs {
			cs[i] = st.Cluster("cluster-" + strconv.Itoa(i))
		}
		idle := heap()
		for _, c := range cs {
			up := c.Upstream()
			up.RqTotal.Inc(1)
			up.RqCompleted(200)
			up.RqTime.RecordDuration(time.Millisecond)
		}
		used := heap()
		b.ReportMetric(float64(idle-base)/clusters, "B/idle-cluster")
		b.ReportMetric(float64(used-idle)/clusters, "B/used-cluster")
		runtime.KeepAlive(cs)
		// Nothing was flushed: closing sends nothing anywhere.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = st.Close(ctx)
		cancel()
	}
}

func heap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
