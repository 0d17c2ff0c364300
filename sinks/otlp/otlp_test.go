package otlp

import (
	"context"
	"maps"
	"math"
	"net"
	"slices"
	"testing"
	"time"

	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/sinks/internal/otlptest"
	"github.com/sightline-proxy/sightline/stats"
)

func newStore(t *testing.T, cfg config.OTLP, emitZeros bool) (*stats.Store, *Sink) {
	t.Helper()
	node := config.Node{ID: "edge-1", Zone: "zone-a"}
	sink, err := New(cfg, stats.SinkOptions{Node: node, EmitZeros: emitZeros})
	if err != nil {
		t.Fatal(err)
	}
	s, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour), Exclude: []string{`^server\.`}}, node,
		stats.Options{Sinks: []stats.Sink{sink}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Close(context.Background())
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

func TestExport(t *testing.T) {
	for _, tt := range []struct {
		protocol string
		receiver func(testing.TB) *otlptest.Receiver
	}{
		{"grpc", otlptest.GRPC},
		{"http", otlptest.HTTP},
	} {
		t.Run(tt.protocol, func(t *testing.T) {
			r := tt.receiver(t)
			s, _ := newStore(t, config.OTLP{Endpoint: r.Endpoint, Protocol: tt.protocol, Insecure: true}, false)
			up := s.Cluster("api.example.com").Upstream()
			up.RqActive.Set(4)
			up.RqTime.RecordDuration(600 * time.Microsecond)
			up.RqTime.RecordDuration(70 * time.Millisecond)
			for range 4 {
				for range 250 {
					up.RqTotal.Inc(1)
				}
				s.Flush()
			}
			if err := s.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			req := r.Last(t)

			res := otlptest.Attrs(req.ResourceMetrics[0].Resource.Attributes)
			for k, want := range map[string]string{"service.name": "sightline", "service.instance.id": "edge-1", "cloud.availability_zone": "zone-a"} {
				if res[k] != want {
					t.Errorf("resource %s = %q, want %q", k, res[k], want)
				}
			}
			wantAttrs := map[string]string{stats.TagCluster: "api.example.com"}

			total := otlptest.Metric(req, "cluster.upstream_rq_total").GetSum()
			if total == nil || !total.IsMonotonic || total.AggregationTemporality != metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE {
				t.Fatalf("upstream_rq_total is not a cumulative monotonic sum: %v", total)
			}
			if p := total.DataPoints[0]; p.GetAsInt() != 1000 || !maps.Equal(otlptest.Attrs(p.Attributes), wantAttrs) {
				t.Errorf("upstream_rq_total = %d %v, want 1000 %v", p.GetAsInt(), otlptest.Attrs(p.Attributes), wantAttrs)
			}

			if g := otlptest.Metric(req, "cluster.upstream_rq_active").GetGauge(); g == nil || g.DataPoints[0].GetAsInt() != 4 {
				t.Errorf("upstream_rq_active = %v, want 4", g)
			}

			m := otlptest.Metric(req, "cluster.upstream_rq_time")
			h := m.GetHistogram()
			// Durations in seconds, as OpenTelemetry's semantic conventions
			// measure them (the stats keep milliseconds).
			if h == nil || m.Unit != "s" || h.AggregationTemporality != metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE {
				t.Fatalf("upstream_rq_time is not a cumulative histogram in seconds: %v", m)
			}
			p := h.DataPoints[0]
			if p.Count != 2 || math.Abs(p.GetSum()-0.0706) > 1e-12 || !slices.Equal(p.ExplicitBounds, boundsSeconds()) {
				t.Errorf("upstream_rq_time count %d sum %v bounds %v, want 2, 0.0706, %v", p.Count, p.GetSum(), p.ExplicitBounds, boundsSeconds())
			}
			if b := boundsSeconds(); b[3] != stats.BoundsMillis()[3]/1000 {
				t.Errorf("bound %v, want the ms bound in seconds", b[3])
			}
			for name, want := range map[string]string{"cluster.upstream_rq_total": "{request}", "cluster.upstream_rq_active": "{request}"} {
				if got := otlptest.Metric(req, name).GetUnit(); got != want {
					t.Errorf("%s unit %q, want %q", name, got, want)
				}
			}
			if len(p.BucketCounts) != len(p.ExplicitBounds)+1 || p.BucketCounts[3] != 1 || p.BucketCounts[9] != 1 {
				t.Errorf("upstream_rq_time buckets %v, want one in le 1 and one in le 100", p.BucketCounts)
			}

			if otlptest.Metric(req, "cluster.upstream_rq_retry") != nil {
				t.Error("a counter never touched was exported")
			}
		})
	}
}

func TestEmitZeros(t *testing.T) {
	r := otlptest.GRPC(t)
	s, _ := newStore(t, config.OTLP{Endpoint: r.Endpoint, Protocol: "grpc", Insecure: true}, true)
	s.Cluster("primary").Upstream()
	s.Flush()
	req := r.Last(t)
	if p := otlptest.Metric(req, "cluster.upstream_rq_retry").GetSum().GetDataPoints(); len(p) != 1 || p[0].GetAsInt() != 0 {
		t.Errorf("emit_zeros: upstream_rq_retry = %v, want a zero", p)
	}
	if p := otlptest.Metric(req, "cluster.upstream_rq_time").GetHistogram().GetDataPoints(); len(p) != 1 || p[0].Count != 0 {
		t.Errorf("emit_zeros: upstream_rq_time = %v, want an empty histogram", p)
	}
}

// TestDeadCollector checks that a collector that is not there never holds
// up a flush, and that Close gives up when its context ends.
func TestDeadCollector(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) {
			s, _ := newStore(t, config.OTLP{Endpoint: dead, Protocol: protocol, Insecure: true}, false)
			total := s.Cluster("primary").Upstream().RqTotal
			for range 20 {
				total.Inc(1)
				// A flush hands its metrics to the exporter and never
				// waits for the collector: one that waited would take the
				// export timeout (10 s). The bound only tells that from a
				// busy machine.
				start := time.Now()
				s.Flush()
				if d := time.Since(start); d > 5*time.Second {
					t.Fatalf("a flush took %v: it waited for the collector", d)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			_ = s.Close(ctx)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Close took %v with a 200ms context", d)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(config.OTLP{Endpoint: "127.0.0.1:4317", Protocol: "thrift"}, stats.SinkOptions{}); err == nil {
		t.Error("New accepted protocol thrift")
	}
}

// TestDeltaTemporality: with temporality: delta each export carries what
// changed since the last one the collector took, and starts where that one
// ended; gauges are unchanged.
func TestDeltaTemporality(t *testing.T) {
	for _, tt := range []struct {
		protocol string
		receiver func(testing.TB) *otlptest.Receiver
	}{
		{"grpc", otlptest.GRPC},
		{"http", otlptest.HTTP},
	} {
		t.Run(tt.protocol, func(t *testing.T) {
			r := tt.receiver(t)
			s, _ := newStore(t, config.OTLP{Endpoint: r.Endpoint, Protocol: tt.protocol, Insecure: true, Temporality: "delta"}, false)
			up := s.Cluster("primary").Upstream()
			up.RqActive.Set(3)
			up.RqTotal.Inc(7)
			up.RqTime.RecordDuration(2 * time.Millisecond)
			s.Flush()
			first := r.Last(t)
			up.RqTotal.Inc(5)
			up.RqTime.RecordDuration(40 * time.Millisecond)
			up.RqTime.RecordDuration(40 * time.Millisecond)
			s.Flush()
			second := r.Last(t)

			for i, want := range []int64{7, 5} {
				req := []*collectormetrics.ExportMetricsServiceRequest{first, second}[i]
				sum := otlptest.Metric(req, "cluster.upstream_rq_total").GetSum()
				if sum == nil || sum.AggregationTemporality != metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA || !sum.IsMonotonic {
					t.Fatalf("export %d: upstream_rq_total is not a delta monotonic sum: %v", i+1, sum)
				}
				if got := sum.DataPoints[0].GetAsInt(); got != want {
					t.Errorf("export %d: upstream_rq_total = %d, want %d", i+1, got, want)
				}
			}
			p1 := otlptest.Metric(first, "cluster.upstream_rq_total").GetSum().DataPoints[0]
			p2 := otlptest.Metric(second, "cluster.upstream_rq_total").GetSum().DataPoints[0]
			if p2.StartTimeUnixNano != p1.TimeUnixNano {
				t.Errorf("the second export starts at %d, want where the first ended, %d", p2.StartTimeUnixNano, p1.TimeUnixNano)
			}
			h := otlptest.Metric(second, "cluster.upstream_rq_time").GetHistogram()
			if h == nil || h.AggregationTemporality != metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA {
				t.Fatalf("upstream_rq_time is not a delta histogram: %v", h)
			}
			if p := h.DataPoints[0]; p.Count != 2 || math.Abs(p.GetSum()-0.08) > 1e-12 {
				t.Errorf("second export's upstream_rq_time: count %d sum %v s, want 2 and 0.08", p.Count, p.GetSum())
			}
			if g := otlptest.Metric(second, "cluster.upstream_rq_active").GetGauge(); g == nil || g.DataPoints[0].GetAsInt() != 3 {
				t.Errorf("upstream_rq_active = %v, want the gauge's value, 3", g)
			}
		})
	}
}

// TestSinkStatsCountFailures: an export the collector does not take counts
// in sink.<name>.batches_dropped.
func TestSinkStatsCountFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	sink, err := New(config.OTLP{Endpoint: addr, Protocol: "http", Insecure: true}, stats.SinkOptions{Name: "otlp_1"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{Sinks: []stats.Sink{sink}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	s.Cluster("primary").Upstream().RqTotal.Inc(1)
	s.Flush()
	dropped := s.SinkStats("otlp_1").BatchesDropped
	for deadline := time.Now().Add(10 * time.Second); dropped.Value() != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("batches_dropped = %d, want 1", dropped.Value())
		}
		time.Sleep(time.Millisecond)
	}
}
