package stats

import (
	"context"
	"time"

	"github.com/rs/zerolog"
	"github.com/uber-go/tally/v4"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// Sink is what the Store flushes into: a tally.CachedStatsReporter. The
// Store calls it in this order:
//
//   - AllocateCounter, AllocateGauge or AllocateHistogram (then one
//     DurationBucket per bucket) once per stat, when the stat is created:
//     from any goroutine, under the Store's creation lock, possibly while a
//     flush runs. name is the Def's tagged name (Resolve gives the Def) and
//     tags hold every tag key of the Def. The map is shared by every stat
//     with those labels, in every sink: read it, never modify it.
//   - at each flush, on the flush goroutine: ReportCount with the increase
//     since the last flush, ReportGauge with a changed value, ReportSamples
//     with a bucket's new samples, ReportSum (see SumReporter), then Flush.
//     Stats that did not change are not reported.
//   - Close(ctx), if the sink has it, once, after the last Flush.
//
// Sightline never allocates timers or value histograms; Discard is there
// for the methods tally's interface requires for them.
type Sink = tally.CachedStatsReporter

// SumReporter is implemented by a sink's tally.CachedHistogram that wants
// the exact sum of the durations recorded. tally's interface carries only
// bucket counts, which is why tally's own Prometheus reporter gets _sum
// wrong; the Store adds this call after the buckets of each flush.
type SumReporter interface {
	// ReportSum is given the sum of the durations recorded since the last
	// flush.
	ReportSum(delta time.Duration)
}

// SampleRecorder is implemented by a sink's tally.CachedHistogram that wants
// every sample as it is recorded, not bucket counts at the flush: statsd
// sends each sample as its own line, as Envoy does, so that the agent's
// mean and percentiles are exact. RecordSample is called on the request
// path, from any goroutine, once per sample: it must be safe for
// concurrent use, must not block for long, and should not allocate.
type SampleRecorder interface {
	RecordSample(d time.Duration)
}

// TraceID is the W3C trace id of a sampled call, as OTLP and traceparent
// carry it.
type TraceID [16]byte

// ExemplarRecorder is implemented by a sink's tally.CachedHistogram that
// keeps exemplars: the trace of a sampled call beside the bucket its
// duration fell in, so a latency spike on a dashboard links to a trace.
// RecordExemplar is called on the request path, from any goroutine, once
// per sampled call, after the sample is counted.
type ExemplarRecorder interface {
	RecordExemplar(d time.Duration, trace TraceID)
}

// Discard drops whatever it is reported. It is the timer and the value
// bucket the tally interface makes sinks return, which Sightline never
// reports to.
var Discard discard

type discard struct{}

// ReportTimer does nothing.
func (discard) ReportTimer(time.Duration) {}

// ReportSamples does nothing.
func (discard) ReportSamples(int64) {}

var (
	_ tally.CachedTimer           = Discard
	_ tally.CachedHistogramBucket = Discard
)

// SinkOptions is what a push sink is told besides its own config.
type SinkOptions struct {
	// Node names this proxy in OTLP resource attributes.
	Node config.Node
	// ServiceName is OTLP's service.name; "sightline" when empty.
	ServiceName string
	// EmitZeros makes push sinks send stats never touched since start
	// (config stats.emit_zeros).
	EmitZeros bool
	// Log receives the sink's send failures; the zero Logger discards them.
	Log zerolog.Logger
	// Name names a push sink in its own stats (sink.<name>.*): its kind,
	// with _<n> for the n-th of a kind after the first.
	Name string
}

// closer is the optional part of a sink: Close is called once, after the
// final flush, and should deliver what that flush handed over before ctx
// is done.
type closer interface {
	Close(ctx context.Context) error
}
