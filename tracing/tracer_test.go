package tracing

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sightline-proxy/sightline/proxy/config"
)

func newTestTracer(t testing.TB, sampling float64, exp sdktrace.SpanExporter, opts ...Option) *Tracer {
	t.Helper()
	tr, err := New(config.Tracing{
		Sampling:    sampling,
		Propagation: []string{"tracecontext", "baggage"},
		ServiceName: "sightline-test",
	}, config.Node{ID: "node-1", Zone: "zone-a"}, append([]Option{WithExporter(exp)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown(context.Background()) })
	return tr
}

func traceparent(sampled bool) string {
	if sampled {
		return "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	}
	return "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
}

func TestSampling(t *testing.T) {
	tests := []struct {
		name     string
		sampling float64
		parent   string // traceparent header; "" for a new trace
		want     bool
	}{
		{"new trace at 0%", 0, "", false},
		{"new trace at 100%", 100, "", true},
		{"sampled parent at 0%", 0, traceparent(true), true},
		{"unsampled parent at 100%", 100, traceparent(false), false},
		{"sampled parent at 100%", 100, traceparent(true), true},
		{"unsampled parent at 0%", 0, traceparent(false), false},
		{"out of range clamps to 100%", 250, "", true},
		{"negative clamps to 0%", -5, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp := tracetest.NewInMemoryExporter()
			tr := newTestTracer(t, tt.sampling, exp)
			h := http.Header{}
			if tt.parent != "" {
				h.Set("traceparent", tt.parent)
			}
			ctx, srv := tr.StartServer(context.Background(), HTTPHeader(h), Request{Method: "GET", Path: "/"})
			up := http.Header{}
			_, cli := tr.StartClient(ctx, HTTPHeader(up), Request{Method: "GET", Path: "/"})
			if srv.Recording() != tt.want || cli.Recording() != tt.want {
				t.Errorf("recording server %v client %v, want %v", srv.Recording(), cli.Recording(), tt.want)
			}
			cli.End(Result{HTTPStatus: 200})
			srv.End(Result{HTTPStatus: 200})
			// The decision travels upstream either way.
			sc := trace.SpanContextFromContext(tr.Propagator().Extract(context.Background(), HTTPHeader(up)))
			if !sc.IsValid() || sc.IsSampled() != tt.want {
				t.Errorf("upstream traceparent %q: sampled %v, want %v", up.Get("traceparent"), sc.IsSampled(), tt.want)
			}
			if tt.parent != "" && sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
				t.Errorf("upstream trace id %s does not continue the parent", sc.TraceID())
			}
			if err := tr.ForceFlush(context.Background()); err != nil {
				t.Fatal(err)
			}
			n := len(exp.GetSpans())
			if (n == 2) != tt.want || (n != 0 && n != 2) {
				t.Errorf("exported %d spans, sampled %v", n, tt.want)
			}
		})
	}
}

// TestSamplingRatio checks that the percentage is honoured on new traces.
func TestSamplingRatio(t *testing.T) {
	s := NewSampler(25)
	gen := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer gen.Shutdown(context.Background())
	kept := 0
	const n = 4000
	for range n {
		_, sp := gen.Tracer("").Start(context.Background(), "x")
		res := s.ShouldSample(sdktrace.SamplingParameters{ParentContext: context.Background(), TraceID: sp.SpanContext().TraceID()})
		if res.Decision == sdktrace.RecordAndSample {
			kept++
		}
	}
	if kept < n*20/100 || kept > n*30/100 {
		t.Errorf("kept %d of %d at 25%%", kept, n)
	}
}

func attrMap(kvs []attribute.KeyValue) map[string]attribute.Value {
	m := map[string]attribute.Value{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

func TestSpanAttributesAndStatus(t *testing.T) {
	tests := []struct {
		name       string
		client     bool // a CLIENT span (else SERVER)
		req        Request
		res        Result
		wantName   string
		wantStatus codes.Code
		wantAttrs  map[string]any
	}{
		{
			name:       "grpc ok",
			req:        Request{Method: "POST", Path: "/pkg.Echo/Say", Authority: "echo:80", GRPC: true, RequestID: "rid"},
			res:        Result{HTTPStatus: 200, HasGRPCStatus: true, GRPCStatus: 0, Cluster: "primary", Host: "10.0.0.1:5101", Zone: "zone-a"},
			wantName:   "pkg.Echo/Say",
			wantStatus: codes.Unset,
			wantAttrs: map[string]any{
				"rpc.system": "grpc", "rpc.service": "pkg.Echo", "rpc.method": "Say", "rpc.grpc.status_code": int64(0),
				"http.request.method": "POST", "http.response.status_code": int64(200), "server.address": "echo", "server.port": int64(80),
				"url.path": "/pkg.Echo/Say", "request_id": "rid", "upstream_cluster": "primary",
				"upstream_host": "10.0.0.1:5101", "upstream_zone": "zone-a",
			},
		},
		{
			name:       "grpc unavailable",
			req:        Request{Method: "POST", Path: "/pkg.Echo/Say", GRPC: true},
			res:        Result{HTTPStatus: 200, HasGRPCStatus: true, GRPCStatus: 14, ResponseFlags: "UH"},
			wantName:   "pkg.Echo/Say",
			wantStatus: codes.Error,
			wantAttrs:  map[string]any{"rpc.grpc.status_code": int64(14), "response_flags": "UH"},
		},
		{
			name:       "http 503",
			req:        Request{Method: "GET", Path: "/a/b?q=1"},
			res:        Result{HTTPStatus: 503, ResponseFlags: "UF,URX"},
			wantName:   "GET",
			wantStatus: codes.Error,
			wantAttrs:  map[string]any{"url.path": "/a/b", "http.response.status_code": int64(503), "response_flags": "UF,URX"},
		},
		{
			name:       "http 404 is not an error",
			req:        Request{Method: "GET", Path: "/"},
			res:        Result{HTTPStatus: 404},
			wantName:   "GET",
			wantStatus: codes.Unset,
			wantAttrs:  map[string]any{"http.response.status_code": int64(404)},
		},
		{
			name:       "transport error",
			req:        Request{Method: "GET", Path: "/"},
			res:        Result{Err: errors.New("upstream reset"), ResponseFlags: "UC"},
			wantName:   "GET",
			wantStatus: codes.Error,
			wantAttrs:  map[string]any{"error.type": "UC"},
		},
		{
			name: "server span: the downstream request",
			req:  Request{Method: "GET", Path: "/a?q=1", Authority: "[::1]:8443", Scheme: "https"},
			res: Result{HTTPStatus: 200, Route: "home", UserAgent: "curl/8.5.0",
				ClientAddress: "10.1.2.3:50123", Protocol: "HTTP/1.1"},
			wantName:   "GET",
			wantStatus: codes.Unset,
			wantAttrs: map[string]any{
				"url.scheme": "https", "server.address": "::1", "server.port": int64(8443), "http.route": "home",
				"user_agent.original": "curl/8.5.0", "client.address": "10.1.2.3", "client.port": int64(50123),
				"network.peer.address": "10.1.2.3", "network.peer.port": int64(50123), "network.protocol.version": "1.1",
			},
		},
		{
			name:       "server span: gRPC NOT_FOUND is the client's fault",
			req:        Request{Method: "POST", Path: "/pkg.Echo/Say", GRPC: true},
			res:        Result{HTTPStatus: 200, HasGRPCStatus: true, GRPCStatus: 5},
			wantName:   "pkg.Echo/Say",
			wantStatus: codes.Unset,
			wantAttrs:  map[string]any{"rpc.grpc.status_code": int64(5)},
		},
		{
			name:       "server span: gRPC DEADLINE_EXCEEDED is the server's",
			req:        Request{Method: "POST", Path: "/pkg.Echo/Say", GRPC: true},
			res:        Result{HTTPStatus: 200, HasGRPCStatus: true, GRPCStatus: 4, ResponseFlags: "UT"},
			wantName:   "pkg.Echo/Say",
			wantStatus: codes.Error,
			wantAttrs:  map[string]any{"error.type": "4"},
		},
		{
			name:       "client span: gRPC NOT_FOUND is an error",
			client:     true,
			req:        Request{Method: "POST", Path: "/pkg.Echo/Say", GRPC: true, Authority: "echo", Host: "10.0.0.1:5101", Attempt: 1},
			res:        Result{HTTPStatus: 200, HasGRPCStatus: true, GRPCStatus: 5},
			wantName:   "pkg.Echo/Say",
			wantStatus: codes.Error,
			wantAttrs:  map[string]any{"error.type": "5", "server.address": "10.0.0.1", "server.port": int64(5101)},
		},
		{
			name:       "client span: a retry's 404",
			client:     true,
			req:        Request{Method: "GET", Path: "/", Host: "10.0.0.2:80", Attempt: 3},
			res:        Result{HTTPStatus: 404},
			wantName:   "GET",
			wantStatus: codes.Error,
			wantAttrs:  map[string]any{"error.type": "404", "http.request.resend_count": int64(2), "network.peer.address": "10.0.0.2", "network.peer.port": int64(80)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp := tracetest.NewInMemoryExporter()
			tr := newTestTracer(t, 100, exp)
			start, kind := tr.StartServer, trace.SpanKindServer
			if tt.client {
				start, kind = tr.StartClient, trace.SpanKindClient
			}
			_, sp := start(context.Background(), HTTPHeader(http.Header{}), tt.req)
			sp.End(tt.res)
			tr.ForceFlush(context.Background())
			spans := exp.GetSpans()
			if len(spans) != 1 {
				t.Fatalf("%d spans", len(spans))
			}
			s := spans[0]
			if s.Name != tt.wantName || s.SpanKind != kind || s.Status.Code != tt.wantStatus {
				t.Errorf("name %q kind %v status %v, want %q %v %v", s.Name, s.SpanKind, s.Status.Code, tt.wantName, kind, tt.wantStatus)
			}
			got := attrMap(s.Attributes)
			for k, v := range tt.wantAttrs {
				if g, ok := got[k]; !ok || g.AsInterface() != v {
					t.Errorf("attribute %s = %v, want %v", k, g.AsInterface(), v)
				}
			}
			res := attrMap(s.Resource.Attributes())
			if res["service.name"].AsString() != "sightline-test" || res["service.instance.id"].AsString() != "node-1" || res["cloud.availability_zone"].AsString() != "zone-a" {
				t.Errorf("resource %v", s.Resource)
			}
		})
	}
}

func TestDisabled(t *testing.T) {
	for name, tr := range map[string]*Tracer{"nil": nil, "no otlp": mustNew(t, config.Tracing{Sampling: 100})} {
		t.Run(name, func(t *testing.T) {
			h := http.Header{"Traceparent": {traceparent(true)}}
			up := http.Header{}
			allocs := testing.AllocsPerRun(100, func() {
				ctx, srv := tr.StartServer(context.Background(), HTTPHeader(h), Request{Method: "GET"})
				_, cli := tr.StartClient(ctx, HTTPHeader(up), Request{Method: "GET"})
				cli.End(Result{HTTPStatus: 200})
				srv.End(Result{HTTPStatus: 200})
			})
			if allocs != 0 {
				t.Errorf("%v allocs per request when disabled", allocs)
			}
			if len(up) != 0 || tr.Enabled() || tr.Dropped() != 0 || tr.Shutdown(context.Background()) != nil {
				t.Errorf("disabled tracer did something: upstream headers %v", up)
			}
		})
	}
}

func mustNew(t *testing.T, cfg config.Tracing) *Tracer {
	tr, err := New(cfg, config.Node{})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestNewErrors(t *testing.T) {
	for _, cfg := range []config.Tracing{
		{Propagation: []string{"zipkin"}, OTLP: &config.OTLP{Endpoint: "127.0.0.1:4317"}},
		{OTLP: &config.OTLP{Endpoint: "127.0.0.1:4317", Protocol: "thrift"}},
	} {
		if _, err := New(cfg, config.Node{}); err == nil {
			t.Errorf("New(%+v): want an error", cfg)
		}
	}
}

func benchmarkPair(b *testing.B, tr *Tracer, parent string) {
	h := http.Header{}
	if parent != "" {
		h.Set("traceparent", parent)
	}
	up := http.Header{}
	req := Request{Method: "POST", Path: "/pkg.Echo/Say", Authority: "echo", GRPC: true, RequestID: "rid", Cluster: "primary", Host: "10.0.0.1:5101", Zone: "zone-a"}
	res := Result{HTTPStatus: 200, HasGRPCStatus: true}
	b.ReportAllocs()
	for b.Loop() {
		ctx, srv := tr.StartServer(context.Background(), HTTPHeader(h), req)
		_, cli := tr.StartClient(ctx, HTTPHeader(up), req)
		cli.End(res)
		srv.End(res)
	}
}

// BenchmarkSpanPair measures a server span plus one client span, the cost
// tracing adds to a proxied request.
func BenchmarkSpanPair(b *testing.B) {
	b.Run("sampled", func(b *testing.B) {
		benchmarkPair(b, newTestTracer(b, 100, tracetest.NewNoopExporter(), WithQueueSize(1<<16)), "")
	})
	b.Run("sampled-parent", func(b *testing.B) {
		benchmarkPair(b, newTestTracer(b, 0, tracetest.NewNoopExporter(), WithQueueSize(1<<16)), traceparent(true))
	})
	b.Run("unsampled", func(b *testing.B) {
		benchmarkPair(b, newTestTracer(b, 0, tracetest.NewNoopExporter()), "")
	})
	b.Run("disabled", func(b *testing.B) {
		benchmarkPair(b, nil, "")
	})
}
