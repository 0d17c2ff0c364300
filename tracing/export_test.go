package tracing

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// receiver collects what an OTLP endpoint is sent, over either protocol.
// While stall is set, exports block until it is closed (or the request ends).
type receiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
	res   []*commonpb.KeyValue
	got   chan struct{}
	stall chan struct{}
	calls atomic.Int64
}

func newReceiver() *receiver { return &receiver{got: make(chan struct{}, 1024)} }

func (r *receiver) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.calls.Add(1)
	if r.stall != nil {
		select {
		case <-r.stall:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	r.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		r.res = rs.GetResource().GetAttributes()
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
	r.mu.Unlock()
	r.got <- struct{}{}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *receiver) waitSpans(t *testing.T, n int) []*tracepb.Span {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		if len(r.spans) >= n {
			s := append([]*tracepb.Span(nil), r.spans...)
			r.mu.Unlock()
			return s
		}
		r.mu.Unlock()
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("timed out waiting for %d spans", n)
		}
	}
}

// startGRPC serves OTLP/gRPC on 127.0.0.1 and returns its address.
func startGRPC(t *testing.T, r *receiver) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(s, r)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

// startHTTP serves OTLP/HTTP (binary protobuf on /v1/traces) on 127.0.0.1.
func startHTTP(t *testing.T, r *receiver) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if req.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "content-type "+req.Header.Get("Content-Type"), http.StatusUnsupportedMediaType)
			return
		}
		var in coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		out, err := r.Export(req.Context(), &in)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		b, _ := proto.Marshal(out)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(b)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func kvMap(kvs []*commonpb.KeyValue) map[string]any {
	m := map[string]any{}
	for _, kv := range kvs {
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.GetKey()] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			m[kv.GetKey()] = v.IntValue
		default:
			m[kv.GetKey()] = kv.GetValue().String()
		}
	}
	return m
}

func TestExportEndToEnd(t *testing.T) {
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) {
			r := newReceiver()
			addr := startGRPC
			if protocol == "http" {
				addr = startHTTP
			}
			tr, err := New(config.Tracing{
				Sampling:    0, // the sampled parent decides
				Propagation: []string{"tracecontext", "baggage", "b3"},
				OTLP:        &config.OTLP{Endpoint: addr(t, r), Protocol: protocol, Insecure: true},
				ServiceName: "edge",
			}, config.Node{ID: "node-7", Zone: "zone-b"}, WithBatchTimeout(50*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}

			// Downstream HTTP/2 request, as the engine decodes it.
			down := &HPACKCarrier{Fields: []hpack.HeaderField{
				{Name: ":method", Value: "POST"}, {Name: ":path", Value: "/pkg.Echo/Say"},
				{Name: "traceparent", Value: traceparent(true)},
			}}
			ctx, srv := tr.StartServer(context.Background(), down, Request{Method: "POST", Path: "/pkg.Echo/Say", Authority: "echo", GRPC: true, RequestID: "rid-1"})
			up := &HPACKCarrier{Fields: append([]hpack.HeaderField(nil), down.Fields...)}
			_, cli := tr.StartClient(ctx, up, Request{Method: "POST", Path: "/pkg.Echo/Say", Authority: "echo", GRPC: true, RequestID: "rid-1", Cluster: "primary", Host: "127.0.0.1:5101", Zone: "zone-b"})
			cli.End(Result{HTTPStatus: 200, HasGRPCStatus: true, GRPCStatus: 14, ResponseFlags: "UF"})
			srv.End(Result{HTTPStatus: 200, HasGRPCStatus: true, GRPCStatus: 14, ResponseFlags: "UF", Cluster: "primary"})

			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			spans := r.waitSpans(t, 2)
			if len(spans) != 2 {
				t.Fatalf("got %d spans", len(spans))
			}
			var s, c *tracepb.Span
			for _, sp := range spans {
				switch sp.GetKind() {
				case tracepb.Span_SPAN_KIND_SERVER:
					s = sp
				case tracepb.Span_SPAN_KIND_CLIENT:
					c = sp
				}
			}
			if s == nil || c == nil {
				t.Fatalf("want a server and a client span, got %v", spans)
			}
			wantTrace := "4bf92f3577b34da6a3ce929d0e0e4736"
			if hex.EncodeToString(s.GetTraceId()) != wantTrace || hex.EncodeToString(c.GetTraceId()) != wantTrace {
				t.Errorf("trace ids %x %x, want %s", s.GetTraceId(), c.GetTraceId(), wantTrace)
			}
			if hex.EncodeToString(s.GetParentSpanId()) != "00f067aa0ba902b7" {
				t.Errorf("server parent %x, want the downstream span", s.GetParentSpanId())
			}
			if !bytes.Equal(c.GetParentSpanId(), s.GetSpanId()) {
				t.Errorf("client parent %x, want server span %x", c.GetParentSpanId(), s.GetSpanId())
			}
			// The upstream carries the client span's context, once.
			wantTP := "00-" + wantTrace + "-" + hex.EncodeToString(c.GetSpanId()) + "-01"
			if got := up.Get("traceparent"); got != wantTP {
				t.Errorf("upstream traceparent %q, want %q", got, wantTP)
			}
			n := 0
			for _, f := range up.Fields {
				if f.Name == "traceparent" {
					n++
				}
			}
			if n != 1 || up.Get("b3") == "" {
				t.Errorf("upstream fields %v", up.Fields)
			}
			for _, sp := range []*tracepb.Span{s, c} {
				if sp.GetName() != "pkg.Echo/Say" || sp.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
					t.Errorf("%v span: name %q status %v", sp.GetKind(), sp.GetName(), sp.GetStatus())
				}
				a := kvMap(sp.GetAttributes())
				for k, v := range map[string]any{
					"rpc.system": "grpc", "rpc.service": "pkg.Echo", "rpc.method": "Say", "rpc.grpc.status_code": int64(14),
					"http.request.method": "POST", "http.response.status_code": int64(200), "url.path": "/pkg.Echo/Say",
					"request_id": "rid-1", "response_flags": "UF", "upstream_cluster": "primary",
				} {
					if a[k] != v {
						t.Errorf("%v span: %s = %v, want %v", sp.GetKind(), k, a[k], v)
					}
				}
			}
			// server.address: what the client asked for on the SERVER
			// span, the upstream host dialled on the CLIENT span.
			if a := kvMap(s.GetAttributes()); a["server.address"] != "echo" {
				t.Errorf("server span: server.address = %v, want echo", a["server.address"])
			}
			if a := kvMap(c.GetAttributes()); a["server.address"] != "127.0.0.1" || a["server.port"] != int64(5101) || a["network.peer.address"] != "127.0.0.1" {
				t.Errorf("client span: server.address %v port %v peer %v, want the upstream host 127.0.0.1:5101", a["server.address"], a["server.port"], a["network.peer.address"])
			}
			if a := kvMap(c.GetAttributes()); a["upstream_host"] != "127.0.0.1:5101" || a["upstream_zone"] != "zone-b" {
				t.Errorf("client upstream attributes %v", a)
			}
			r.mu.Lock()
			res := kvMap(r.res)
			r.mu.Unlock()
			if res["service.name"] != "edge" || res["service.instance.id"] != "node-7" || res["cloud.availability_zone"] != "zone-b" {
				t.Errorf("resource %v", res)
			}
		})
	}
}

// TestQueueFullDropsAndCounts stalls the receiver with a one-span queue: the
// exporter is stuck on the first batch, the queue fills, and every further
// span must be dropped and counted while Start and End stay fast.
func TestQueueFullDropsAndCounts(t *testing.T) {
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) {
			r := newReceiver()
			r.stall = make(chan struct{})
			addr := startGRPC
			if protocol == "http" {
				addr = startHTTP
			}
			var hooked atomic.Uint64
			tr, err := New(config.Tracing{
				Sampling:    100,
				Propagation: []string{"tracecontext"},
				OTLP:        &config.OTLP{Endpoint: addr(t, r), Protocol: protocol, Insecure: true},
			}, config.Node{}, WithQueueSize(1), WithBatchSize(1), WithExportTimeout(30*time.Second),
				WithDropHook(func(n uint64) { hooked.Add(n) }))
			if err != nil {
				t.Fatal(err)
			}
			end := func() {
				up := http.Header{}
				ctx, srv := tr.StartServer(context.Background(), HTTPHeader(http.Header{}), Request{Method: "GET", Path: "/"})
				_, cli := tr.StartClient(ctx, HTTPHeader(up), Request{Method: "GET", Path: "/"})
				cli.End(Result{HTTPStatus: 200})
				srv.End(Result{HTTPStatus: 200})
			}
			// Wait until the exporter is stuck in the receiver.
			deadline := time.Now().Add(10 * time.Second)
			for r.calls.Load() == 0 {
				if time.Now().After(deadline) {
					t.Fatal("exporter never reached the receiver")
				}
				end()
				time.Sleep(5 * time.Millisecond)
			}
			before := tr.Dropped()
			const n = 200
			start := time.Now()
			for range n {
				end()
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("%d span pairs took %v with a stalled collector: the request path blocked", n, d)
			}
			// The queue holds one span; all but at most one of the 2n are dropped.
			if got := tr.Dropped() - before; got < 2*n-1 {
				t.Errorf("dropped %d of %d spans, want at least %d", got, 2*n, 2*n-1)
			}
			if hooked.Load() != tr.Dropped() {
				t.Errorf("drop hook saw %d, Dropped() = %d", hooked.Load(), tr.Dropped())
			}
			close(r.stall)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tr.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCollectorDownCountsSpans: with no collector listening, every sampled
// span is lost; each is counted through the drop hook, and the failure is
// one JSON log line, not one per batch.
func TestCollectorDownCountsSpans(t *testing.T) {
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			var hooked atomic.Uint64
			var log lockedLog
			tr, err := New(config.Tracing{
				Sampling:    100,
				Propagation: []string{"tracecontext"},
				OTLP:        &config.OTLP{Endpoint: addr, Protocol: protocol, Insecure: true},
			}, config.Node{}, WithBatchSize(2), WithExportTimeout(200*time.Millisecond),
				WithDropHook(func(n uint64) { hooked.Add(n) }), WithLog(zerolog.New(&log)))
			if err != nil {
				t.Fatal(err)
			}
			const pairs = 5
			for range pairs {
				ctx, srv := tr.StartServer(context.Background(), HTTPHeader(http.Header{}), Request{Method: "GET", Path: "/"})
				_, cli := tr.StartClient(ctx, HTTPHeader(http.Header{}), Request{Method: "GET", Path: "/"})
				cli.End(Result{HTTPStatus: 200})
				srv.End(Result{HTTPStatus: 200})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			tr.Shutdown(ctx) // the last batch fails too
			if got := hooked.Load(); got != 2*pairs {
				t.Errorf("spans_dropped hook counted %d, want %d (every span was lost)", got, 2*pairs)
			}
			out := log.String()
			if n := strings.Count(out, "exporting spans failed"); n != 1 {
				t.Errorf("the failure was logged %d times, want once:\n%s", n, out)
			}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if !json.Valid([]byte(line)) {
					t.Errorf("log line is not JSON: %s", line)
				}
			}
		})
	}
}

// lockedLog is a log sink safe for the exporter goroutine and the test.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
