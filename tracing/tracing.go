// Package tracing gives Sightline its request IDs, trace-context propagation
// and spans: a SERVER span per downstream request and a CLIENT span per
// upstream attempt, exported over OTLP.
//
// It is built for the data path: when tracing is off every call is a no-op
// that allocates nothing, propagation works on the engine's own header
// representation through Carrier (no map per request), and the export queue
// never blocks a request — spans that do not fit are dropped and counted.
package tracing

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/sightline-proxy/sightline/internal/otelres"
	"github.com/sightline-proxy/sightline/proxy/config"
)

// instrumentationName names the otel tracer (the instrumentation scope).
const instrumentationName = "github.com/sightline-proxy/sightline/tracing"

// NewPropagator builds the composite propagator for the tracing.propagation
// list: tracecontext (W3C traceparent/tracestate), baggage (W3C baggage), b3
// (B3 single header "b3") and b3multi (X-B3-* headers).
//
// On inject every listed format is written. On extract each propagator runs
// in list order over the same context, so when a request carries several
// formats with different ids, the LAST listed format that is present wins.
// Both B3 propagators read both B3 encodings; they differ only in what they
// write.
func NewPropagator(names []string) (propagation.TextMapPropagator, error) {
	props := make([]propagation.TextMapPropagator, 0, len(names))
	for _, n := range names {
		switch n {
		case "tracecontext":
			props = append(props, propagation.TraceContext{})
		case "baggage":
			props = append(props, propagation.Baggage{})
		case "b3":
			props = append(props, b3.New(b3.WithInjectEncoding(b3.B3SingleHeader)))
		case "b3multi":
			props = append(props, b3.New(b3.WithInjectEncoding(b3.B3MultipleHeader)))
		default:
			return nil, fmt.Errorf("tracing: unknown propagation %q (allowed: tracecontext, baggage, b3, b3multi)", n)
		}
	}
	return propagation.NewCompositeTextMapPropagator(props...), nil
}

// NewSampler keeps percent (0–100) of new traces, chosen by trace id so every
// hop that uses the same rule agrees, and otherwise follows the parent: a
// sampled parent is always kept and an unsampled one never is, so Sightline
// does not cut holes in traces decided upstream.
func NewSampler(percent float64) sdktrace.Sampler {
	frac := percent / 100
	switch {
	case frac < 0 || frac != frac: // negative or NaN
		frac = 0
	case frac > 1:
		frac = 1
	}
	return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(frac))
}

// Option tunes a Tracer; the defaults suit production.
type Option func(*options)

type options struct {
	queueSize     int
	batchSize     int
	batchTimeout  time.Duration
	exportTimeout time.Duration
	onDrop        func(n uint64)
	exporter      sdktrace.SpanExporter
	log           zerolog.Logger
}

func defaultOptions() options {
	return options{
		queueSize:     2048,
		batchSize:     512,
		batchTimeout:  time.Second,
		exportTimeout: 10 * time.Second,
	}
}

// WithQueueSize bounds how many ended spans wait for export; beyond it spans
// are dropped and counted.
func WithQueueSize(n int) Option { return func(o *options) { o.queueSize = max(n, 1) } }

// WithBatchSize sets how many spans go in one export call.
func WithBatchSize(n int) Option { return func(o *options) { o.batchSize = max(n, 1) } }

// WithBatchTimeout sets how long a partial batch waits before it is sent.
func WithBatchTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.batchTimeout = d
		}
	}
}

// WithExportTimeout bounds one export call, retries included.
func WithExportTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.exportTimeout = d
		}
	}
}

// WithDropHook calls fn with the number of spans lost, so that the caller
// can count them in its own stats (tracing.spans_dropped): one at a time
// for a span dropped because the queue was full (on the request path: fn
// must be cheap and must not block), a batch at a time for spans the
// exporter failed to send (the collector down or refusing). Nil means no
// hook; Dropped and ExportFailed still count.
func WithDropHook(fn func(n uint64)) Option { return func(o *options) { o.onDrop = fn } }

// WithLog receives export failures as JSON lines: one when exports start
// failing, one when they work again, never one per batch. The zero Logger
// discards them.
func WithLog(l zerolog.Logger) Option { return func(o *options) { o.log = l } }

// WithExporter replaces the OTLP exporter, for tests.
func WithExporter(e sdktrace.SpanExporter) Option { return func(o *options) { o.exporter = e } }

// Tracer starts Sightline's spans. A nil *Tracer, or one built from a config
// without otlp, is disabled: every method is a cheap no-op.
type Tracer struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	proc   *queueProcessor
	// stale are the trace headers StartClient removes before it injects
	// the attempt's own (staleHeaders).
	stale []string
}

// staleHeaders lists the headers the configured propagators write, both
// B3 encodings when either is configured, and tracestate with
// traceparent. Removed from an upstream request before the proxy's own
// context is injected, none of the client's can travel beside the proxy's
// with another parent: x-b3-* headers next to a single b3 header (or the
// other way round), or a tracestate that belongs to the client's trace
// when the proxy started a new one or B3 won the extraction (inject writes
// tracestate only when the span's context has one). Baggage is the
// client's and is kept (the propagator writes it back as it read it).
func staleHeaders(names []string) []string {
	var keys []string
	b3seen := false
	for _, n := range names {
		switch n {
		case "tracecontext":
			keys = append(keys, "traceparent", "tracestate")
		case "b3", "b3multi":
			if !b3seen {
				b3seen = true
				keys = append(keys, "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags")
			}
		}
	}
	return keys
}

// New builds a Tracer from the tracing config and the node identity. It does
// no I/O: the OTLP exporters connect lazily on the first export. Without
// cfg.OTLP the Tracer is disabled.
func New(cfg config.Tracing, node config.Node, opts ...Option) (*Tracer, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if cfg.OTLP == nil && o.exporter == nil {
		return &Tracer{}, nil
	}
	prop, err := NewPropagator(cfg.Propagation)
	if err != nil {
		return nil, err
	}
	exp := o.exporter
	if exp == nil {
		if exp, err = newExporter(*cfg.OTLP); err != nil {
			return nil, err
		}
	}
	res, err := otelres.New(cfg.ServiceName, node)
	if err != nil {
		return nil, err
	}
	proc := newQueueProcessor(exp, o)
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(NewSampler(cfg.Sampling)),
		sdktrace.WithResource(res),
		sdktrace.WithSpanProcessor(proc),
	)
	return &Tracer{tp: tp, tracer: tp.Tracer(instrumentationName), prop: prop, proc: proc, stale: staleHeaders(cfg.Propagation)}, nil
}

func newExporter(c config.OTLP) (sdktrace.SpanExporter, error) {
	ctx := context.Background()
	hasScheme := strings.Contains(c.Endpoint, "://")
	switch c.Protocol {
	case "", "grpc":
		var opts []otlptracegrpc.Option
		if hasScheme {
			opts = append(opts, otlptracegrpc.WithEndpointURL(c.Endpoint))
		} else {
			opts = append(opts, otlptracegrpc.WithEndpoint(c.Endpoint))
		}
		if c.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		return otlptracegrpc.New(ctx, opts...)
	case "http":
		var opts []otlptracehttp.Option
		if hasScheme {
			opts = append(opts, otlptracehttp.WithEndpointURL(c.Endpoint))
		} else {
			opts = append(opts, otlptracehttp.WithEndpoint(c.Endpoint))
		}
		if c.Insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		return otlptracehttp.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("tracing: otlp.protocol %q: allowed grpc, http", c.Protocol)
	}
}

// Enabled reports whether spans are exported.
func (t *Tracer) Enabled() bool { return t != nil && t.tp != nil }

// Propagator returns the configured propagator, or nil when disabled.
func (t *Tracer) Propagator() propagation.TextMapPropagator {
	if !t.Enabled() {
		return nil
	}
	return t.prop
}

// Dropped is how many sampled spans were dropped because the export queue
// was full (or ended after Shutdown).
func (t *Tracer) Dropped() uint64 {
	if !t.Enabled() {
		return 0
	}
	return t.proc.dropped.Load()
}

// ExportFailed is how many spans the exporter failed to send.
func (t *Tracer) ExportFailed() uint64 {
	if !t.Enabled() {
		return 0
	}
	return t.proc.failed.Load()
}

// ForceFlush exports every span ended so far.
func (t *Tracer) ForceFlush(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	return t.tp.ForceFlush(ctx)
}

// Shutdown exports what is queued, bounded by ctx, and stops the exporter.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

// Request describes a downstream request or an upstream attempt, in the
// proxy's own terms; the span attributes are derived from it only when the
// span is sampled.
type Request struct {
	Method    string // :method
	Path      string // :path, query included
	Authority string // :authority or Host
	GRPC      bool   // content-type application/grpc*
	RequestID string
	Scheme    string // http or https: :scheme, or the listener's TLS

	// Upstream, for a client span (and for a server span once routed).
	Cluster string
	Host    string // ip:port dialled
	Zone    string
	// Attempt numbers a client span's attempt: 1 for the first, more for
	// a retry (http.request.resend_count is Attempt-1).
	Attempt int
}

// Result is how a request or attempt ended.
type Result struct {
	HTTPStatus    int // 0 when no response was received
	GRPCStatus    int
	HasGRPCStatus bool   // GRPCStatus is meaningful (trailer or Trailers-Only)
	ResponseFlags string // Envoy-style flags, comma-joined
	Err           error  // a transport failure (reset, connect failure, timeout)

	// Upstream, for a server span: known only after routing and picking.
	Cluster string
	Host    string
	Zone    string

	// The downstream request, for a server span: what the access-log
	// entry knows by the end.
	Route         string // the route's name: http.route
	UserAgent     string
	ClientAddress string // ip:port of the downstream peer
	Protocol      string // "HTTP/1.1", "HTTP/2"
}

// Start options built once: passing a fresh option per span would allocate
// on every request.
var (
	serverOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	clientOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
)

// Span is one Sightline span. The zero Span is a no-op.
type Span struct {
	s      trace.Span
	client bool // a CLIENT span: the error rule differs
}

// StartServer extracts the trace context from the downstream request and
// starts its SERVER span. Disabled, it returns ctx and a no-op Span.
func (t *Tracer) StartServer(ctx context.Context, c Carrier, r Request) (context.Context, Span) {
	if !t.Enabled() {
		return ctx, Span{}
	}
	ctx = t.prop.Extract(ctx, c)
	ctx, s := t.tracer.Start(ctx, spanName(r), serverOpts...)
	if s.IsRecording() {
		s.SetAttributes(requestAttrs(r, false)...)
	}
	return ctx, Span{s: s}
}

// StartClient starts the CLIENT span of one upstream attempt, as a child of
// the span in ctx, and injects its context into the attempt's headers c.
// Disabled, it injects nothing: the downstream trace headers are forwarded
// untouched, so tracing still works across a proxy that does not trace.
func (t *Tracer) StartClient(ctx context.Context, c Carrier, r Request) (context.Context, Span) {
	if !t.Enabled() {
		return ctx, Span{}
	}
	ctx, s := t.tracer.Start(ctx, spanName(r), clientOpts...)
	if s.IsRecording() {
		s.SetAttributes(requestAttrs(r, true)...)
	}
	if d, ok := c.(deleter); ok {
		for _, k := range t.stale {
			d.Del(k)
		}
	}
	t.prop.Inject(ctx, c)
	return ctx, Span{s: s, client: true}
}

// Recording reports whether the span is sampled and recording; callers can
// skip building optional data when it is not.
func (s Span) Recording() bool { return s.s != nil && s.s.IsRecording() }

// TraceID is the hex trace id for the access log, or "" without a trace.
func (s Span) TraceID() string {
	if s.s == nil {
		return ""
	}
	sc := s.s.SpanContext()
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

// Sampled returns the span's trace id when its trace is sampled (exported),
// else the zero id: the trace a latency histogram keeps as an exemplar.
func (s Span) Sampled() trace.TraceID {
	if s.s == nil {
		return trace.TraceID{}
	}
	sc := s.s.SpanContext()
	if !sc.IsSampled() {
		return trace.TraceID{}
	}
	return sc.TraceID()
}

// End records the outcome and ends the span. A gRPC status other than OK, an
// HTTP 5xx or a transport error marks the span as an error; anything else
// leaves the status unset, as the semantic conventions ask.
func (s Span) End(r Result) {
	if s.s == nil {
		return
	}
	if s.s.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 14)
		if r.HTTPStatus != 0 {
			attrs = append(attrs, attribute.Int("http.response.status_code", r.HTTPStatus))
		}
		if r.HasGRPCStatus {
			attrs = append(attrs, attribute.Int("rpc.grpc.status_code", r.GRPCStatus))
		}
		if r.ResponseFlags != "" {
			attrs = append(attrs, attribute.String("response_flags", r.ResponseFlags))
		}
		if !s.client {
			attrs = appendDownstream(attrs, r)
		}
		attrs = appendUpstream(attrs, r.Cluster, r.Host, r.Zone)
		if failed, errType, desc := s.failure(r); failed {
			attrs = append(attrs, attribute.String("error.type", errType))
			s.s.SetStatus(codes.Error, desc)
		}
		s.s.SetAttributes(attrs...)
	}
	s.s.End()
}

// failure applies the semantic conventions' status rules: a SERVER span is
// an error only for what the server is to blame for (HTTP 5xx; gRPC
// UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
// DATA_LOSS), a CLIENT span for any 4xx or 5xx and any gRPC status but OK;
// both for a transport failure. errType is error.type: the gRPC or HTTP
// status code, or the proxy's response flags for a failure with neither.
func (s Span) failure(r Result) (failed bool, errType, desc string) {
	switch {
	case r.HasGRPCStatus && r.GRPCStatus != 0:
		if s.client || grpcServerFault(r.GRPCStatus) {
			return true, itoa(r.GRPCStatus), "grpc status " + itoa(r.GRPCStatus)
		}
	case r.HTTPStatus >= 500 || (s.client && r.HTTPStatus >= 400):
		return true, itoa(r.HTTPStatus), "http status " + itoa(r.HTTPStatus)
	}
	if r.Err != nil {
		t := r.ResponseFlags
		if t == "" {
			t = "_OTHER"
		}
		return true, t, r.Err.Error()
	}
	return false, "", ""
}

// grpcServerFault reports the gRPC codes the conventions count as a
// server's error on a SERVER span.
func grpcServerFault(code int) bool {
	switch code {
	case 2, 4, 12, 13, 14, 15:
		return true
	}
	return false
}

// spanName follows the semantic conventions: "package.Service/Method" for
// gRPC, the HTTP method otherwise (a path would make names unbounded).
func spanName(r Request) string {
	if r.GRPC && len(r.Path) > 1 {
		return r.Path[1:]
	}
	if r.Method == "" {
		return "HTTP"
	}
	return r.Method
}

func requestAttrs(r Request, client bool) []attribute.KeyValue {
	path := r.Path
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	attrs := make([]attribute.KeyValue, 0, 14)
	attrs = append(attrs,
		attribute.String("http.request.method", r.Method),
		attribute.String("url.path", path),
	)
	if r.Scheme != "" {
		attrs = append(attrs, attribute.String("url.scheme", r.Scheme))
	}
	// server.address is the server the span's side talks to: the
	// authority the client asked for on a SERVER span, the upstream host
	// dialled on a CLIENT span (also its network peer).
	addr := r.Authority
	if client && r.Host != "" {
		addr = r.Host
	}
	attrs = appendHostPort(attrs, "server.address", "server.port", addr)
	if client {
		attrs = appendHostPort(attrs, "network.peer.address", "network.peer.port", r.Host)
		if r.Attempt > 1 {
			attrs = append(attrs, attribute.Int("http.request.resend_count", r.Attempt-1))
		}
	}
	if r.GRPC {
		attrs = append(attrs, attribute.String("rpc.system", "grpc"))
		if svc, m, ok := splitGRPCPath(path); ok {
			attrs = append(attrs, attribute.String("rpc.service", svc), attribute.String("rpc.method", m))
		}
	}
	if r.RequestID != "" {
		attrs = append(attrs, attribute.String("request_id", r.RequestID))
	}
	return appendUpstream(attrs, r.Cluster, r.Host, r.Zone)
}

// appendDownstream adds what a SERVER span learns by the end of its
// request.
func appendDownstream(attrs []attribute.KeyValue, r Result) []attribute.KeyValue {
	if r.Route != "" {
		attrs = append(attrs, attribute.String("http.route", r.Route))
	}
	if r.UserAgent != "" {
		attrs = append(attrs, attribute.String("user_agent.original", r.UserAgent))
	}
	if r.ClientAddress != "" {
		host, port := splitHostPort(r.ClientAddress)
		attrs = append(attrs, attribute.String("client.address", host), attribute.String("network.peer.address", host))
		if port > 0 {
			attrs = append(attrs, attribute.Int("client.port", port), attribute.Int("network.peer.port", port))
		}
	}
	switch r.Protocol {
	case "HTTP/2", "HTTP/2.0":
		attrs = append(attrs, attribute.String("network.protocol.version", "2"))
	case "HTTP/1.1":
		attrs = append(attrs, attribute.String("network.protocol.version", "1.1"))
	case "HTTP/1.0":
		attrs = append(attrs, attribute.String("network.protocol.version", "1.0"))
	}
	return attrs
}

// appendHostPort adds hostport split into its address and port keys.
func appendHostPort(attrs []attribute.KeyValue, addrKey, portKey, hostport string) []attribute.KeyValue {
	if hostport == "" {
		return attrs
	}
	host, port := splitHostPort(hostport)
	attrs = append(attrs, attribute.String(addrKey, host))
	if port > 0 {
		attrs = append(attrs, attribute.Int(portKey, port))
	}
	return attrs
}

// splitHostPort splits "host:port", "[v6]:port" or a bare host, without
// allocating; port is 0 when absent.
func splitHostPort(hp string) (host string, port int) {
	i := strings.LastIndexByte(hp, ':')
	if i < 0 || strings.IndexByte(hp[i:], ']') >= 0 {
		return strings.Trim(hp, "[]"), 0
	}
	p, err := strconv.Atoi(hp[i+1:])
	if err != nil {
		return hp, 0
	}
	return strings.Trim(hp[:i], "[]"), p
}

func appendUpstream(attrs []attribute.KeyValue, cluster, host, zone string) []attribute.KeyValue {
	if cluster != "" {
		attrs = append(attrs, attribute.String("upstream_cluster", cluster))
	}
	if host != "" {
		attrs = append(attrs, attribute.String("upstream_host", host))
	}
	if zone != "" {
		attrs = append(attrs, attribute.String("upstream_zone", zone))
	}
	return attrs
}

// splitGRPCPath splits "/pkg.Service/Method".
func splitGRPCPath(p string) (service, method string, ok bool) {
	if len(p) < 2 || p[0] != '/' {
		return "", "", false
	}
	i := strings.LastIndexByte(p, '/')
	if i <= 1 || i == len(p)-1 {
		return "", "", false
	}
	return p[1:i], p[i+1:], true
}

func itoa(n int) string { return strconv.Itoa(n) }
