// Package accesslog writes Sightline's access logs and health-check event
// logs: one JSON object a line, batched in memory and written by a background
// goroutine, so the request path never waits for a disk or a pipe.
//
// A full batch whose writer is still busy drops lines rather than block; the
// drops are counted in accesslog.<name>.dropped. Lines are written at the
// latest one flush_interval after they were logged, and Close writes every
// buffered line, so a graceful shutdown loses nothing.
package accesslog

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/sightline-proxy/sightline/accesslog/envoyfmt"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/stats"
)

// Logger is one access_log entry of a listener. Its methods are safe for
// concurrent use.
type Logger struct {
	w      *batchWriter
	enc    zerolog.Logger // writes each event into w as one line
	text   []envoyfmt.Op  // format: a text format; nil for the JSON line
	json   []jsonKey      // json_format; nil for the JSON line
	filter filter
	st     *stats.AccessLog
}

// lineBuf holds a text or json_format line while it is rendered, and a
// json_format value while it is escaped.
type lineBuf struct{ line, scratch []byte }

// lineBufs keep the request path from allocating line buffers.
var lineBufs = sync.Pool{New: func() any { return &lineBuf{line: make([]byte, 0, 512), scratch: make([]byte, 0, 128)} }}

// filter is config.AccessLogFilter resolved for the request path.
type filter struct {
	statusMin      int
	durationMin    int64 // nanoseconds
	notHealthCheck bool
	sample         float64 // percent, 0..100
}

// New opens cfg.Path ("-" is stdout), or connects to cfg.OTLP's collector,
// and starts its writer. st receives the written, dropped and flushes
// counts; it may be nil. log is the proxy's own log, for write errors. Zero
// flush_interval and buffer_bytes take the defaults; an unset
// sample_percent means 100.
func New(cfg config.AccessLog, st *stats.AccessLog, log zerolog.Logger, opts ...Option) (*Logger, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case cfg.OTLP != nil:
		jsonLines := len(cfg.JSONFormat) > 0 || cfg.Format == "" || cfg.Format == "json"
		return newLogger(cfg, st, log, otlpOpener(cfg.OTLP, jsonLines, o.resource), false)
	case cfg.Path == "":
		return nil, errNoDestination
	}
	open, reopens := pathOpener(cfg.Path)
	return newLogger(cfg, st, log, open, reopens)
}

// Option is an optional setting of New.
type Option func(*options)

type options struct {
	resource *resource.Resource
}

// WithResource names the proxy on an OTLP access log's records: the
// resource its spans and metrics carry.
func WithResource(r *resource.Resource) Option {
	return func(o *options) { o.resource = r }
}

func newLogger(cfg config.AccessLog, st *stats.AccessLog, log zerolog.Logger, open opener, reopens bool) (*Logger, error) {
	if st == nil {
		st = &stats.AccessLog{}
	}
	sample := 100.0
	if p := cfg.Filter.SamplePercent; p != nil {
		sample = min(max(*p, 0), 100)
	}
	text, jsonKeys, err := compileFormat(cfg)
	if err != nil {
		return nil, err
	}
	w, err := newBatchWriter(describe(cfg), cfg.FlushInterval.D(), cfg.BufferBytes, st, log, open, reopens)
	if err != nil {
		return nil, err
	}
	return &Logger{
		w:    w,
		enc:  zerolog.New(w),
		text: text,
		json: jsonKeys,
		filter: filter{
			statusMin:      cfg.Filter.StatusMin,
			durationMin:    int64(cfg.Filter.DurationMin),
			notHealthCheck: cfg.Filter.NotHealthCheck,
			sample:         sample,
		},
		st: st,
	}, nil
}

// compileFormat parses cfg's format or json_format: the operators of a
// text format, or the keys of a json_format; neither for the JSON line.
func compileFormat(cfg config.AccessLog) ([]envoyfmt.Op, []jsonKey, error) {
	if len(cfg.JSONFormat) > 0 {
		fields, err := envoyfmt.JSON(cfg.JSONFormat)
		if err != nil {
			return nil, nil, fmt.Errorf("accesslog: json_format: %w", err)
		}
		return nil, compileJSON(fields), nil
	}
	if cfg.Format == "" || cfg.Format == "json" {
		return nil, nil, nil
	}
	ops, err := envoyfmt.Text(cfg.Format)
	if err != nil {
		return nil, nil, fmt.Errorf("accesslog: format: %w", err)
	}
	return ops, nil, nil
}

// Log writes e if the filter passes it. It is called on the request path from
// any goroutine: it never blocks on I/O and allocates nothing. It does not
// keep e.
func (l *Logger) Log(e *Entry) {
	if !l.filter.pass(e) {
		return
	}
	if l.text != nil || l.json != nil {
		lb := lineBufs.Get().(*lineBuf)
		if l.text != nil {
			lb.line = appendText(lb.line[:0], l.text, e)
		} else {
			lb.line, lb.scratch = appendJSON(lb.line[:0], lb.scratch, l.json, e)
		}
		_, _ = l.w.Write(lb.line)
		lineBufs.Put(lb)
		return
	}
	ev := l.enc.Log()
	if ev == nil {
		// zerolog's global level is "disabled"; say so in the stats rather
		// than lose the line without a trace.
		l.st.Dropped.Inc(1)
		return
	}
	e.encode(ev)
	ev.Send()
}

// pass reports whether e is to be logged. The cheap, deterministic tests come
// first; sampling last, so sample_percent is a share of what the rest passes.
// As in Envoy's status_code filter, a request with no response code (0, e.g.
// the client went away) is below any status_min greater than 0.
func (f *filter) pass(e *Entry) bool {
	if f.notHealthCheck && e.HealthCheck {
		return false
	}
	if e.ResponseCode < f.statusMin {
		return false
	}
	if int64(e.Duration) < f.durationMin {
		return false
	}
	if f.sample >= 100 {
		return true
	}
	return rand.Float64()*100 < f.sample
}

// Reopen closes and reopens the file, for logrotate's rename-then-reopen
// (admin /reopen_logs). Lines logged before the call end up in the renamed
// file, lines after it in the new one; none is lost. If the path cannot be
// opened, the error is returned and the old file is kept. It waits for the
// writer goroutine, so it may take as long as one write: it is for the admin
// path, not the request path. It does nothing for stdout and returns
// ErrClosed after Close.
func (l *Logger) Reopen() error { return l.w.Reopen() }

// Close stops taking lines, writes every buffered one and closes the file
// (never stdout). It returns when that is done or ctx ends, whichever is
// first; on SIGTERM the caller passes the drain deadline. Lines logged after
// Close are counted as dropped.
func (l *Logger) Close(ctx context.Context) error { return l.w.Close(ctx) }
