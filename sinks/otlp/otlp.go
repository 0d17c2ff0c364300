// Package otlp pushes Sightline's stats to an OpenTelemetry collector as
// OTLP metrics, over gRPC or HTTP/protobuf.
//
// Values are cumulative since the process started (counters as monotonic
// sums, histograms with the stats buckets in milliseconds and their exact
// sum), so a lost export costs nothing: the next one carries the totals.
// Metrics are named by the stats' tagged names ("cluster.upstream_rq_total")
// with the tags as attributes; the resource says service.name,
// service.instance.id (the node id) and cloud.availability_zone (the node
// zone).
//
// The sink is a pull sink: at each flush it reads every stat from the Store
// (stats.Store.Collect), keeping nothing per stat, builds the export itself
// and hands it to the exporter (otlpmetricgrpc or otlpmetrichttp)
// directly, rather than feeding OpenTelemetry SDK instruments: those take
// one sample at a time, and replaying bucket counts into them would lose
// the exact sums.
// Exports run on a goroutine of the sink's own; when one is still running
// at the next flush, the newer totals replace the waiting ones.
package otlp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/sightline-proxy/sightline/internal/otelres"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/stats"
)

const (
	// exportTimeout bounds one export; the exporters' own retries are off,
	// since the next flush resends the totals anyway.
	exportTimeout = 10 * time.Second
	// scopeName is the instrumentation scope of every metric.
	scopeName = "github.com/sightline-proxy/sightline/stats"
)

// Sink is an OTLP push sink. Pass it to stats.New among Options.Sinks: the
// Store binds itself to it and calls Flush.
type Sink struct {
	store     *stats.Store // set once by BindStats, before the first flush
	exp       sdkmetric.Exporter
	res       *resource.Resource
	start     time.Time
	emitZeros bool
	log       zerolog.Logger
	name      string           // in its own stats
	st        *stats.SinkStats // its own stats, once BindStats ran; nil counts nothing
	bounds    []float64
	// deltas, for temporality: delta, turns each cumulative export into
	// the changes since the last one the collector took; nil: cumulative.
	deltas *deltas

	// pending holds the newest export waiting for the sender.
	pending   chan *metricdata.ResourceMetrics
	ctx       context.Context // exports; cancelled when Close gives up
	cancel    context.CancelFunc
	startOnce sync.Once
	started   atomic.Bool
	closeOnce sync.Once
	done      chan struct{}
}

// New returns a sink for cfg (defaults applied). It does no I/O: the
// exporters connect on the first export.
func New(cfg config.OTLP, o stats.SinkOptions) (*Sink, error) {
	exp, err := newExporter(cfg)
	if err != nil {
		return nil, fmt.Errorf("otlp %s: %w", cfg.Endpoint, err)
	}
	res, err := otelres.New(o.ServiceName, o.Node)
	if err != nil {
		return nil, fmt.Errorf("otlp %s: resource: %w", cfg.Endpoint, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	start := time.Now()
	var d *deltas
	switch cfg.Temporality {
	case "", "cumulative":
	case "delta":
		d = newDeltas(start)
	default:
		cancel()
		return nil, fmt.Errorf("otlp %s: temporality %q: want cumulative or delta", cfg.Endpoint, cfg.Temporality)
	}
	return &Sink{
		deltas:    d,
		exp:       exp,
		res:       res,
		start:     start,
		emitZeros: o.EmitZeros,
		log:       o.Log.With().Str("sink", "otlp").Str("endpoint", cfg.Endpoint).Logger(),
		name:      cmp.Or(o.Name, "otlp"),
		bounds:    boundsSeconds(),
		pending:   make(chan *metricdata.ResourceMetrics, 1),
		ctx:       ctx,
		cancel:    cancel,
		done:      make(chan struct{}),
	}, nil
}

// newExporter builds the exporter of cfg.Protocol. An endpoint with a
// scheme is a URL (the HTTP path included); without, host:port.
func newExporter(cfg config.OTLP) (sdkmetric.Exporter, error) {
	url := strings.Contains(cfg.Endpoint, "://")
	// The exporters keep nothing of this context: they dial lazily.
	ctx := context.Background()
	switch cfg.Protocol {
	case "grpc":
		opts := []otlpmetricgrpc.Option{
			otlpmetricgrpc.WithTimeout(exportTimeout),
			otlpmetricgrpc.WithRetry(otlpmetricgrpc.RetryConfig{Enabled: false}),
		}
		if url {
			opts = append(opts, otlpmetricgrpc.WithEndpointURL(cfg.Endpoint))
		} else {
			opts = append(opts, otlpmetricgrpc.WithEndpoint(cfg.Endpoint))
		}
		if cfg.Insecure {
			opts = append(opts, otlpmetricgrpc.WithInsecure())
		}
		return otlpmetricgrpc.New(ctx, opts...)
	case "http":
		opts := []otlpmetrichttp.Option{
			otlpmetrichttp.WithTimeout(exportTimeout),
			otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{Enabled: false}),
		}
		if url {
			opts = append(opts, otlpmetrichttp.WithEndpointURL(cfg.Endpoint))
		} else {
			opts = append(opts, otlpmetrichttp.WithEndpoint(cfg.Endpoint))
		}
		if cfg.Insecure {
			opts = append(opts, otlpmetrichttp.WithInsecure())
		}
		return otlpmetrichttp.New(ctx, opts...)
	}
	return nil, fmt.Errorf("protocol %q: want grpc or http", cfg.Protocol)
}

// attributes builds a series' attribute set, at each export: the sink keeps
// nothing per stat.
func attributes(d *stats.Def, values []string) attribute.Set {
	kvs := make([]attribute.KeyValue, len(values))
	for i, k := range d.TagKeys() {
		kvs[i] = attribute.String(k, values[i])
	}
	return attribute.NewSet(kvs...)
}

// Flush builds an export of every series touched since start (every series
// with emit_zeros) and hands it to the sender, replacing an export still
// waiting: it carries older totals of the same series. The Store calls it
// at the end of each of its flushes.
func (s *Sink) Flush() {
	if s.store == nil {
		return
	}
	rm := s.collect(time.Now())
	if len(rm.ScopeMetrics[0].Metrics) == 0 {
		return
	}
	s.startOnce.Do(func() {
		s.started.Store(true)
		go s.send()
	})
	for {
		select {
		case s.pending <- rm:
			return
		default:
		}
		select {
		case <-s.pending:
		default:
		}
	}
}

// points gathers one metric's data points.
type points struct {
	def    *stats.Def
	sums   []metricdata.DataPoint[int64]
	gauges []metricdata.DataPoint[int64]
	hists  []metricdata.HistogramDataPoint[float64]
}

func (s *Sink) collect(now time.Time) *metricdata.ResourceMetrics {
	byDef := map[*stats.Def]*points{}
	var order []*points
	s.store.Collect(func(x *stats.Point) {
		if !s.emitZeros && !x.Used {
			return
		}
		p := byDef[x.Def]
		if p == nil {
			p = &points{def: x.Def}
			byDef[x.Def] = p
			order = append(order, p)
		}
		attrs := attributes(x.Def, x.Values)
		switch x.Def.Kind() {
		case stats.KindCounter:
			p.sums = append(p.sums, metricdata.DataPoint[int64]{Attributes: attrs, StartTime: s.start, Time: now, Value: x.Value})
		case stats.KindGauge:
			p.gauges = append(p.gauges, metricdata.DataPoint[int64]{Attributes: attrs, Time: now, Value: x.Value})
		case stats.KindHistogram:
			p.hists = append(p.hists, metricdata.HistogramDataPoint[float64]{
				Attributes: attrs, StartTime: s.start, Time: now,
				Count: x.Count(), Bounds: s.bounds, BucketCounts: x.Buckets, Sum: x.Sum.Seconds(),
			})
		}
	})
	metrics := make([]metricdata.Metrics, len(order))
	for i, p := range order {
		m := metricdata.Metrics{Name: p.def.Name(), Description: p.def.Help(), Unit: unit(p.def)}
		switch p.def.Kind() {
		case stats.KindCounter:
			m.Data = metricdata.Sum[int64]{DataPoints: p.sums, Temporality: metricdata.CumulativeTemporality, IsMonotonic: true}
		case stats.KindGauge:
			m.Data = metricdata.Gauge[int64]{DataPoints: p.gauges}
		case stats.KindHistogram:
			m.Data = metricdata.Histogram[float64]{DataPoints: p.hists, Temporality: metricdata.CumulativeTemporality}
		}
		metrics[i] = m
	}
	return &metricdata.ResourceMetrics{
		Resource:     s.res,
		ScopeMetrics: []metricdata.ScopeMetrics{{Scope: instrumentation.Scope{Name: scopeName}, Metrics: metrics}},
	}
}

// BindStats takes the Store the sink reads, and its own stats there; the
// Store calls it once, before the first flush.
func (s *Sink) BindStats(st *stats.Store) {
	s.store = st
	s.st = st.SinkStats(s.name)
}

// send exports until Close.
func (s *Sink) send() {
	defer close(s.done)
	failing := false
	for rm := range s.pending {
		if s.deltas != nil {
			s.deltas.convert(rm)
		}
		ctx, cancel := context.WithTimeout(s.ctx, exportTimeout)
		err := s.exp.Export(ctx, rm)
		cancel()
		if err == nil && s.deltas != nil {
			s.deltas.commit()
		}
		switch {
		case err != nil:
			if s.st != nil {
				s.st.BatchesDropped.Inc(1)
			}
			if !failing {
				s.log.Warn().Err(err).Msg("exporting stats failed; trying again every flush")
			}
		case failing:
			s.log.Info().Msg("exporting stats again")
			if s.st != nil {
				s.st.Reconnects.Inc(1)
			}
		}
		failing = err != nil
	}
}

// Close lets the sender deliver the export of the last flush, waiting until
// ctx is done at most, then shuts the exporter down. The Store calls it
// once, after the last Flush.
func (s *Sink) Close(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		close(s.pending)
		if s.started.Load() {
			select {
			case <-s.done:
			case <-ctx.Done():
				s.cancel()
				err = fmt.Errorf("otlp: the last export was not sent: %w", ctx.Err())
			}
		}
		s.cancel()
		err = errors.Join(err, s.exp.Shutdown(ctx))
	})
	return err
}

// boundsSeconds are the histogram bucket bounds in seconds: OpenTelemetry's
// semantic conventions measure durations in seconds (unit "s", as
// http.server.request.duration), where the stats keep milliseconds.
func boundsSeconds() []float64 {
	ms := stats.BoundsMillis()
	s := make([]float64, len(ms))
	for i, b := range ms {
		s[i] = b / 1000
	}
	return s
}

// unit is a metric's unit by the semantic conventions: seconds for the
// durations (every histogram), By for bytes, and for counts the
// annotation of what is counted: {request} or {connection}, as Envoy's
// rq and cx name them.
func unit(d *stats.Def) string {
	if d.Kind() == stats.KindHistogram {
		return "s"
	}
	if u := d.Unit(); u != "" {
		return u
	}
	name := d.Name()
	switch {
	case strings.Contains(name, "_rq") || strings.HasPrefix(name[strings.LastIndexByte(name, '.')+1:], "rq_"):
		return "{request}"
	case strings.Contains(name, "_cx") || strings.HasPrefix(name[strings.LastIndexByte(name, '.')+1:], "cx_"):
		return "{connection}"
	}
	return ""
}
