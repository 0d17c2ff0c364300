package e2e

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// logsCollector is an OTLP logs collector: the gRPC LogsService on
// 127.0.0.1, keeping every record with its resource's service.name.
type logsCollector struct {
	collogs.UnimplementedLogsServiceServer
	addr    string
	mu      sync.Mutex
	records []*logspb.LogRecord
	service []string
}

func (c *logsCollector) Export(_ context.Context, req *collogs.ExportLogsServiceRequest) (*collogs.ExportLogsServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rl := range req.ResourceLogs {
		name := ""
		for _, kv := range rl.Resource.GetAttributes() {
			if kv.Key == "service.name" {
				name = kv.Value.GetStringValue()
			}
		}
		for _, sl := range rl.ScopeLogs {
			for _, r := range sl.LogRecords {
				c.records = append(c.records, r)
				c.service = append(c.service, name)
			}
		}
	}
	return &collogs.ExportLogsServiceResponse{}, nil
}

func startLogsCollector(t *testing.T) *logsCollector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &logsCollector{addr: ln.Addr().String()}
	srv := grpc.NewServer()
	collogs.RegisterLogsServiceServer(srv, c)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return c
}

// TestAccessLogToCollector runs the binary with a listener whose access
// log goes to a file and to an OTLP collector: after a graceful stop the
// collector has one record per call, as the file has one line, with the
// same request ids, and each record carries the caller's trace.
func TestAccessLogToCollector(t *testing.T) {
	backends := startBackends(t, 1)
	col := startLogsCollector(t)
	logPath := filepath.Join(t.TempDir(), "access.log")
	p := startProxy(t, fmt.Sprintf(`node: {id: e2e, zone: zone-a}
server: {drain_time: 50ms}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    access_log:
      - {path: %q, flush_interval: 100ms}
      - {otlp: {endpoint: %q, protocol: grpc, insecure: true}, flush_interval: 100ms}
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - match: {prefix: /grpc.}
            cluster: upstream
clusters:
  - name: upstream
    endpoints: %s
`, logPath, col.addr, endpoints(addrsOf(backends)...)))
	client := testClient(t, p.listener("ingress"))
	const calls = 10
	traces := map[string]bool{}
	for i := range calls {
		trace := fmt.Sprintf("%032x", 0xabc000+i)
		traces[trace] = true
		ctx := metadata.AppendToOutgoingContext(callCtx(t), "traceparent", "00-"+trace+"-00f067aa0ba902b7-01")
		if _, err := client.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if code, _ := p.stop(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}

	lines := readAccessLog(t, logPath)
	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.records) != calls || len(lines) != calls {
		t.Fatalf("%d records at the collector and %d lines in the file, want %d of each", len(col.records), len(lines), calls)
	}
	fileIDs := map[string]bool{}
	for _, l := range lines {
		fileIDs[fmt.Sprint(l["request_id"])] = true
	}
	for i, r := range col.records {
		attrs := map[string]string{}
		for _, kv := range r.Attributes {
			attrs[kv.Key] = kv.Value.GetStringValue()
		}
		if !fileIDs[attrs["request_id"]] || attrs["upstream_cluster"] != "upstream" {
			t.Errorf("record %d: request_id %q cluster %q: want a call the file logged, to cluster upstream", i, attrs["request_id"], attrs["upstream_cluster"])
		}
		if id := hex.EncodeToString(r.TraceId); !traces[id] {
			t.Errorf("record %d: trace id %q, not one the calls carried", i, id)
		}
		if col.service[i] != "sightline" {
			t.Errorf("record %d: service.name %q, want sightline", i, col.service[i])
		}
	}
}
