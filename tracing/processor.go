package tracing

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/sightline-proxy/sightline/internal/tick"
)

// queueProcessor is a batching span processor with a bounded queue that
// never blocks the request path. It replaces otel's BatchSpanProcessor, which
// also drops when full but does not say how many: Sightline must count every
// dropped span (the tracing.spans_dropped stat), so a stalled collector shows
// up in the stats instead of as silently missing traces.
//
// One goroutine owns the batch and calls the exporter; OnEnd only does a
// non-blocking channel send.
type queueProcessor struct {
	exp           sdktrace.SpanExporter
	queue         chan sdktrace.ReadOnlySpan
	batchSize     int
	interval      time.Duration
	exportTimeout time.Duration
	onDrop        func(n uint64)
	log           zerolog.Logger
	failing       bool // run-owned: the last export failed

	dropped atomic.Uint64 // queue full, or ended after shutdown
	failed  atomic.Uint64 // the exporter returned an error for them

	flushReq chan chan struct{}
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	stopped  atomic.Bool
}

func newQueueProcessor(exp sdktrace.SpanExporter, o options) *queueProcessor {
	p := &queueProcessor{
		exp:           exp,
		queue:         make(chan sdktrace.ReadOnlySpan, o.queueSize),
		batchSize:     o.batchSize,
		interval:      o.batchTimeout,
		exportTimeout: o.exportTimeout,
		onDrop:        o.onDrop,
		log:           o.log,
		flushReq:      make(chan chan struct{}),
		stop:          make(chan struct{}),
		done:          make(chan struct{}),
	}
	go p.run()
	return p
}

// OnStart does nothing: spans are only of interest once ended.
func (p *queueProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd queues a sampled span for export, or counts it as dropped when the
// queue is full. It never blocks.
func (p *queueProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	if p.stopped.Load() {
		p.drop()
		return
	}
	select {
	case p.queue <- s:
	default:
		p.drop()
	}
}

func (p *queueProcessor) drop() {
	p.dropped.Add(1)
	if p.onDrop != nil {
		p.onDrop(1)
	}
}

func (p *queueProcessor) run() {
	defer close(p.done)
	batch := make([]sdktrace.ReadOnlySpan, 0, p.batchSize)
	t := tick.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case s := <-p.queue:
			batch = append(batch, s)
			if len(batch) >= p.batchSize {
				batch = p.export(batch)
			}
		case <-t.C:
			batch = p.export(batch)
		case ch := <-p.flushReq:
			batch = p.export(p.drain(batch))
			close(ch)
		case <-p.stop:
			p.export(p.drain(batch))
			return
		}
	}
}

// drain moves everything queued now into batch, exporting full batches.
func (p *queueProcessor) drain(batch []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	for {
		select {
		case s := <-p.queue:
			batch = append(batch, s)
			if len(batch) >= p.batchSize {
				batch = p.export(batch)
			}
		default:
			return batch
		}
	}
}

// export sends batch and returns it emptied for reuse; the exporter does not
// keep the slice after ExportSpans returns.
func (p *queueProcessor) export(batch []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	if len(batch) == 0 {
		return batch
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.exportTimeout)
	err := p.exp.ExportSpans(ctx, batch)
	cancel()
	switch {
	case err != nil:
		n := uint64(len(batch))
		p.failed.Add(n)
		if p.onDrop != nil {
			p.onDrop(n)
		}
		if !p.failing {
			p.log.Warn().Err(err).Msg("exporting spans failed; the spans of each failed batch are dropped and counted")
		}
		p.failing = true
	case p.failing:
		p.log.Info().Msg("exporting spans again")
		p.failing = false
	}
	clear(batch)
	return batch[:0]
}

// ForceFlush exports everything queued so far.
func (p *queueProcessor) ForceFlush(ctx context.Context) error {
	if p.stopped.Load() {
		return nil
	}
	ch := make(chan struct{})
	select {
	case p.flushReq <- ch:
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what is queued, then shuts the exporter down. Spans ended
// afterwards are counted as dropped. Safe to call more than once.
func (p *queueProcessor) Shutdown(ctx context.Context) error {
	var err error
	p.stopOnce.Do(func() {
		p.stopped.Store(true)
		close(p.stop)
		select {
		case <-p.done:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if e := p.exp.Shutdown(ctx); err == nil {
			err = e
		}
	})
	return err
}
