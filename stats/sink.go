package stats

import (
	"context"
	"time"

	"github.com/rs/zerolog"
	"github.com/uber-go/tally/v4"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// Sink is what the Store flushes into. Every sink's Flush is called at the
// end of each flush, on the flush goroutine, once the Store has read every
// stat; Close(ctx), if the sink has it, once, after the last Flush; and
// BindStats(*Store), if the sink has it, once, when the Store is built.
//
// A sink is one of two kinds:
//
//   - A pull sink (Prometheus, OTLP) reads the Store itself, with Collect:
//     at a scrape, or in its Flush. It sees each stat as of the last flush,
//     so that every sink shows the same numbers, and keeps nothing per
//     stat: the Store holds each value once, however many such sinks read
//     it. It gets the Store from BindStats.
//   - A push sink (statsd) is a tally.CachedStatsReporter (see Reporter):
//     it is handed each stat's changes at each flush and keeps what it
//     needs per stat.
type Sink interface {
	Flush()
}

// Reporter is a push sink: a tally.CachedStatsReporter. The Store calls it
// in this order:
//
//   - AllocateCounter, AllocateGauge or AllocateHistogram (then one
//     DurationBucket per bucket) once per stat, when the stat is created
//     (or, after a compaction, made again: see Releaser): from any
//     goroutine, under the Store's creation lock, possibly while a flush
//     runs. name is the Def's tagged name (Resolve gives the Def) and tags
//     hold every tag key of the Def. The map is the sink's for the call
//     only: read it, never keep or modify it.
//   - at each flush, on the flush goroutine: ReportCount with the increase
//     since the last flush, ReportGauge with a changed value, ReportSamples
//     with a bucket's new samples, ReportSum (see SumReporter), then Flush.
//     Stats that did not change are not reported.
//   - Close(ctx), if the sink has it, once, after the last Flush.
//
// Sightline never allocates timers or value histograms; Discard is there
// for the methods tally's interface requires for them.
type Reporter = tally.CachedStatsReporter

// Releaser is implemented by a push sink that can forget a stat. When the
// Store compacts an idle family of stats (stats.compact_after), it hands
// each of the family's handles back, after the flush that reported the
// family's last change; should the family be used again, the Store
// allocates its stats anew and reports only changes from then on. The sink
// may drop what it keeps for the handle once it has sent what the handle
// was reported. Release is called on the flush goroutine.
type Releaser interface {
	Release(handle any)
}

// ExemplarKeeper is implemented by a sink that shows exemplars (the
// Prometheus exposition in OpenMetrics): the Store then keeps, beside each
// histogram bucket, the last sampled call recorded in it, and Collect
// hands them over (Point.Exemplar).
type ExemplarKeeper interface {
	KeepsExemplars() bool
}

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
