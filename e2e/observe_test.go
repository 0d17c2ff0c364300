package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/sightline-proxy/sightline/internal/jsonlines"
)

// traceReceiver is a real OTLP/gRPC TraceService collecting every span it
// is sent.
type traceReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	addr string

	mu    sync.Mutex
	spans []*tracepb.Span
}

func startTraceReceiver(t *testing.T) *traceReceiver {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &traceReceiver{addr: lis.Addr().String()}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, r)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return r
}

func (r *traceReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			r.spans = append(r.spans, ss.Spans...)
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *traceReceiver) all() []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...)
}

// accessLogKeys are the keys every access-log line carries (the contract's
// list), null when a value is not known.
var accessLogKeys = []string{
	"start_time", "method", "authority", "path", "protocol", "response_code",
	"grpc_status", "response_flags", "bytes_received", "bytes_sent",
	"duration_ms", "upstream_service_time_ms", "upstream_host",
	"upstream_cluster", "upstream_zone", "route_name", "attempts",
	"request_id", "trace_id", "downstream_remote_address", "x_forwarded_for",
	"user_agent",
}

// readAccessLog parses every line of path, failing on a line that is not a
// JSON object with every contract key.
func readAccessLog(t *testing.T, path string) []map[string]any {
	t.Helper()
	out := jsonlines.Read(t, path)
	for i, m := range out {
		for _, k := range accessLogKeys {
			if _, ok := m[k]; !ok {
				t.Fatalf("access log line %d lacks %q: %v", i+1, k, m)
			}
		}
	}
	return out
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// traceparentIDs splits a W3C traceparent into its trace id and parent id.
func traceparentIDs(v string) (traceID, parentID string, ok bool) {
	parts := strings.Split(v, "-")
	if len(parts) != 4 || len(parts[1]) != 32 || len(parts[2]) != 16 {
		return "", "", false
	}
	return parts[1], parts[2], true
}

// TestTracingRequestIDsAndAccessLog is the zero-code observability promise
// end to end: 200 calls through the real binary, half of them with the
// caller's own sampled traceparent, to recording backends, with spans
// exported to a real OTLP receiver and an access log on disk. SIGTERM comes
// right after the last call.
func TestTracingRequestIDsAndAccessLog(t *testing.T) {
	recv := startTraceReceiver(t)
	backends := startBackends(t, 2)
	for _, b := range backends {
		b.KeepMetadata()
	}
	logPath := filepath.Join(t.TempDir(), "access.log")
	cfg := routedConfig{
		top: fmt.Sprintf(`server: {drain_time: 50ms}
tracing:
  sampling: 100
  propagation: [tracecontext, baggage]
  otlp: {endpoint: %q, protocol: grpc, insecure: true}
  service_name: sightline-e2e`, recv.addr),
		listener: fmt.Sprintf("access_log: [{path: %q, flush_interval: 200ms}]", logPath),
		route:    "name: everything",
		cluster:  "endpoints: " + endpoints(addrsOf(backends)...),
	}.String()
	p := startProxy(t, cfg)
	client := testClient(t, p.listener("ingress"))

	const calls = 200
	callerSpans := map[string]string{} // caller trace id -> caller span id
	respIDs := map[string]bool{}       // x-request-id on the responses
	for i := range calls {
		ctx := callCtx(t)
		if i%2 == 0 {
			tid, sid := randomHex(t, 16), randomHex(t, 8)
			callerSpans[tid] = sid
			ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", "00-"+tid+"-"+sid+"-01")
		}
		var hdr metadata.MD
		if _, err := client.EmptyCall(ctx, &testgrpc.Empty{}, grpc.Header(&hdr)); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		id := mdValue(hdr, nil, "x-request-id")
		if len(id) != 36 {
			t.Fatalf("call %d: response x-request-id = %q, want a UUID", i, id)
		}
		respIDs[id] = true
	}
	if code, _ := p.stop(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\n%s", code, tail(p.output.String(), 3000))
	}

	// The access log: exactly one line per call, every key, written by the
	// time the process exited.
	lines := readAccessLog(t, logPath)
	if len(lines) != calls {
		t.Fatalf("access log has %d lines, want %d", len(lines), calls)
	}
	logIDs := map[string]bool{}
	logTraces := map[string]string{} // request id -> trace id
	for i, l := range lines {
		for k, want := range map[string]any{
			"method": "POST", "path": "/grpc.testing.TestService/EmptyCall", "protocol": "HTTP/2",
			"response_code": 200.0, "grpc_status": 0.0, "response_flags": nil, "upstream_cluster": "upstream",
			"route_name": "everything", "attempts": 1.0,
		} {
			if l[k] != want {
				t.Fatalf("line %d: %s = %v, want %v", i+1, k, l[k], want)
			}
		}
		if l["upstream_host"] == nil || l["downstream_remote_address"] == nil || l["user_agent"] == nil ||
			l["x_forwarded_for"] != "127.0.0.1" || l["upstream_service_time_ms"] == nil {
			t.Fatalf("line %d lacks upstream or client details: %v", i+1, l)
		}
		id, _ := l["request_id"].(string)
		logIDs[id] = true
		tr, _ := l["trace_id"].(string)
		logTraces[id] = tr
	}

	// The request ids the backends received are the ones logged and sent
	// back to the callers; every backend call carried the proxy's trace
	// context.
	backendIDs := map[string]bool{}
	backendParents := map[string]string{} // backend-seen parent span id -> trace id
	for _, b := range backends {
		for _, md := range b.AllMetadata() {
			ids := md.Get("x-request-id")
			if len(ids) != 1 {
				t.Fatalf("a backend got x-request-id %q, want one", ids)
			}
			backendIDs[ids[0]] = true
			tps := md.Get("traceparent")
			if len(tps) != 1 {
				t.Fatalf("a backend got traceparent %q, want one", tps)
			}
			tid, pid, ok := traceparentIDs(tps[0])
			if !ok {
				t.Fatalf("malformed traceparent %q reached a backend", tps[0])
			}
			if logTraces[ids[0]] != tid {
				t.Fatalf("request %s: backend trace id %s, access log %s", ids[0], tid, logTraces[ids[0]])
			}
			backendParents[pid] = tid
		}
	}
	if len(backendIDs) != calls || !sameSet(backendIDs, logIDs) || !sameSet(logIDs, respIDs) {
		t.Fatalf("request ids differ: %d at the backends, %d logged, %d in responses", len(backendIDs), len(logIDs), len(respIDs))
	}

	// Spans: the proxy's SERVER span is the caller's child; each backend's
	// parent is a CLIENT span of the proxy, the child of that SERVER span.
	var spans []*tracepb.Span
	if err := eventually(10*time.Second, func() error {
		spans = recv.all()
		if len(spans) < 2*calls {
			return fmt.Errorf("%d spans received, want %d", len(spans), 2*calls)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	byID := map[string]*tracepb.Span{}
	for _, s := range spans {
		byID[hex.EncodeToString(s.SpanId)] = s
	}
	joined := 0
	for _, s := range spans {
		if s.Kind != tracepb.Span_SPAN_KIND_SERVER {
			continue
		}
		tid := hex.EncodeToString(s.TraceId)
		if want, ok := callerSpans[tid]; ok {
			joined++
			if got := hex.EncodeToString(s.ParentSpanId); got != want {
				t.Fatalf("SERVER span of trace %s has parent %s, want the caller's span %s", tid, got, want)
			}
		}
	}
	if joined != calls/2 {
		t.Fatalf("%d SERVER spans joined a caller's trace, want %d", joined, calls/2)
	}
	for pid, tid := range backendParents {
		cs := byID[pid]
		if cs == nil || cs.Kind != tracepb.Span_SPAN_KIND_CLIENT {
			t.Fatalf("backend parent span %s is not a CLIENT span the proxy exported", pid)
		}
		if hex.EncodeToString(cs.TraceId) != tid {
			t.Fatalf("CLIENT span %s is in trace %x, the backend saw %s", pid, cs.TraceId, tid)
		}
		ss := byID[hex.EncodeToString(cs.ParentSpanId)]
		if ss == nil || ss.Kind != tracepb.Span_SPAN_KIND_SERVER {
			t.Fatalf("CLIENT span %s's parent is not the proxy's SERVER span", pid)
		}
		if !hasAttr(cs, "upstream_cluster", "upstream") || !hasAttr(cs, "rpc.system", "grpc") ||
			!hasAttr(cs, "rpc.service", "grpc.testing.TestService") || !hasAttr(cs, "rpc.method", "EmptyCall") {
			t.Fatalf("CLIENT span %s lacks its attributes: %v", pid, cs.Attributes)
		}
		// OpenTelemetry's conventions: the CLIENT span names the upstream
		// host it dialled; the SERVER span the downstream peer, the route
		// and the protocol.
		upHost, upPort := attrValue(cs, "server.address"), attrValue(cs, "server.port")
		if !slices.Contains(addrsOf(backends), fmt.Sprintf("%s:%s", upHost, upPort)) ||
			attrValue(cs, "network.peer.address") != upHost {
			t.Fatalf("CLIENT span %s: server.address %q server.port %q, want a backend: %v", pid, upHost, upPort, cs.Attributes)
		}
		for k, want := range map[string]string{
			"http.route": "everything", "network.protocol.version": "2", "client.address": "127.0.0.1",
			"rpc.grpc.status_code": "0", "url.scheme": "http",
		} {
			if got := attrValue(ss, k); got != want {
				t.Fatalf("SERVER span: %s = %q, want %q: %v", k, got, want, ss.Attributes)
			}
		}
		if !strings.HasPrefix(attrValue(ss, "user_agent.original"), "grpc-go/") {
			t.Fatalf("SERVER span: user_agent.original = %q, want grpc-go's", attrValue(ss, "user_agent.original"))
		}
	}
}

// attrValue is the value of attribute key, as text ("" when absent).
func attrValue(s *tracepb.Span, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			switch v := kv.Value.Value.(type) {
			case *commonpb.AnyValue_StringValue:
				return v.StringValue
			case *commonpb.AnyValue_IntValue:
				return strconv.FormatInt(v.IntValue, 10)
			}
		}
	}
	return ""
}

func hasAttr(s *tracepb.Span, key, value string) bool {
	for _, kv := range s.Attributes {
		if kv.Key == key && kv.Value.GetStringValue() == value {
			return true
		}
	}
	return false
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// TestAccessLogReopenAndHTTP1 renames the access log as logrotate does,
// POSTs /reopen_logs and checks that no line is lost and that new lines go
// to the new file; it also covers the HTTP/1.1 path's lines, request ids
// and response flags.
func TestAccessLogReopenAndHTTP1(t *testing.T) {
	backends := startBackends(t, 1)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "access.log")
	cfg := fmt.Sprintf(`node: {id: e2e, zone: zone-a}
server: {drain_time: 50ms}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    request_id: {preserve_external: true}
    access_log:
      - path: %q
        flush_interval: 100ms
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - match: {prefix: /grpc.}
            cluster: upstream
clusters:
  - name: upstream
    endpoints: %s
`, logPath, endpoints(addrsOf(backends)...))
	p := startProxy(t, cfg)
	client := testClient(t, p.listener("ingress"))
	for i := range 10 {
		if _, err := client.EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	// An HTTP/1.1 request with no route, carrying its own request id.
	req, _ := http.NewRequest("GET", "http://"+p.listener("ingress")+"/nowhere", nil)
	req.Header.Set("X-Request-Id", "caller-chosen-id")
	req.Header.Set("User-Agent", "e2e-http1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 || resp.Header.Get("X-Request-Id") != "caller-chosen-id" ||
		resp.Header.Get("X-Sightline-Response-Flags") != "NR" {
		t.Fatalf("HTTP/1.1 no-route answer: %d, x-request-id %q, flags %q", resp.StatusCode,
			resp.Header.Get("X-Request-Id"), resp.Header.Get("X-Sightline-Response-Flags"))
	}
	if err := eventually(5*time.Second, func() error {
		if n := len(readAccessLog(t, logPath)); n != 11 {
			return fmt.Errorf("%d lines written, want 11", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if code, body := p.adminGet("/stats"); code != 200 || !strings.Contains(body, "accesslog.ingress.written") {
		t.Fatalf("/stats lacks accesslog.ingress.written (%d):\n%s", code, tail(body, 2000))
	}

	rotated := logPath + ".1"
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	if code, body := p.adminPost("/reopen_logs"); code != 200 {
		t.Fatalf("POST /reopen_logs = %d %s", code, body)
	}
	for i := range 5 {
		if _, err := client.EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
			t.Fatalf("call %d after reopen: %v", i, err)
		}
	}
	if code, _ := p.stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	old, cur := readAccessLog(t, rotated), readAccessLog(t, logPath)
	if len(old) != 11 || len(cur) != 5 {
		t.Fatalf("rotated file has %d lines (want 11), new file %d (want 5)", len(old), len(cur))
	}
	var h1 map[string]any
	for _, l := range old {
		if l["protocol"] == "HTTP/1.1" {
			h1 = l
		}
	}
	for k, want := range map[string]any{
		"protocol": "HTTP/1.1", "response_code": 404.0, "response_flags": "NR", "request_id": "caller-chosen-id",
		"user_agent": "e2e-http1", "upstream_cluster": nil, "attempts": 0.0, "grpc_status": nil,
	} {
		if h1[k] != want {
			t.Fatalf("HTTP/1.1 line: %s = %v, want %v (%v)", k, h1[k], want, h1)
		}
	}
}
