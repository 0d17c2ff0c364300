package accesslog

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/sightline-proxy/sightline/internal/otelres"
	"github.com/sightline-proxy/sightline/proxy/config"
)

// logsReceiver is an OTLP logs collector on 127.0.0.1: the gRPC
// LogsService or OTLP/HTTP's /v1/logs. It keeps every record it is sent.
type logsReceiver struct {
	endpoint string
	mu       sync.Mutex
	reqs     []*collogs.ExportLogsServiceRequest
	headers  []string // the api-key header of each export
}

func (r *logsReceiver) add(req *collogs.ExportLogsServiceRequest, key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req)
	r.headers = append(r.headers, key)
}

// records returns every record received, with its resource.
func (r *logsReceiver) records() (recs []*logspb.LogRecord, res []map[string]string, scopes []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, req := range r.reqs {
		for _, rl := range req.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				for _, lr := range sl.LogRecords {
					recs = append(recs, lr)
					res = append(res, attrs(rl.Resource.Attributes))
					scopes = append(scopes, sl.Scope.GetName())
				}
			}
		}
	}
	return recs, res, scopes
}

type logsService struct {
	collogs.UnimplementedLogsServiceServer
	r *logsReceiver
}

func (s *logsService) Export(ctx context.Context, req *collogs.ExportLogsServiceRequest) (*collogs.ExportLogsServiceResponse, error) {
	key := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("api-key")) > 0 {
		key = md.Get("api-key")[0]
	}
	s.r.add(req, key)
	return &collogs.ExportLogsServiceResponse{}, nil
}

func startLogsGRPC(t *testing.T) *logsReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &logsReceiver{endpoint: ln.Addr().String()}
	srv := grpc.NewServer()
	collogs.RegisterLogsServiceServer(srv, &logsService{r: r})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return r
}

// serveLogsHTTP serves OTLP/HTTP logs on ln.
func serveLogsHTTP(t *testing.T, ln net.Listener) *logsReceiver {
	t.Helper()
	r := &logsReceiver{endpoint: ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var export collogs.ExportLogsServiceRequest
		if req.URL.Path != "/v1/logs" || req.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(body, &export) != nil {
			http.Error(w, "want a protobuf POST to /v1/logs", http.StatusBadRequest)
			return
		}
		r.add(&export, req.Header.Get("Api-Key"))
		resp, _ := proto.Marshal(&collogs.ExportLogsServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(resp)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return r
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	out := map[string]string{}
	for _, kv := range kvs {
		switch v := kv.Value.Value.(type) {
		case *commonpb.AnyValue_StringValue:
			out[kv.Key] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			out[kv.Key] = strconv.FormatInt(v.IntValue, 10)
		default:
			out[kv.Key] = kv.Value.String()
		}
	}
	return out
}

// TestOTLPAccessLog sends access-log lines to a real OTLP logs receiver,
// over gRPC and over HTTP, in the default JSON layout and in Envoy's text
// line: each line is one record, with the line's keys as attributes (or
// the line as body), its trace and start time, the proxy's resource and a
// header the config names.
func TestOTLPAccessLog(t *testing.T) {
	res, err := otelres.New("edge-proxy", config.Node{ID: "edge-1", Zone: "zone-a"})
	if err != nil {
		t.Fatal(err)
	}
	for _, proto := range []string{"grpc", "http"} {
		for _, format := range []string{"", "envoy"} {
			t.Run(proto+"/"+map[string]string{"": "json", "envoy": "envoy"}[format], func(t *testing.T) {
				var r *logsReceiver
				if proto == "grpc" {
					r = startLogsGRPC(t)
				} else {
					ln, err := net.Listen("tcp", "127.0.0.1:0")
					if err != nil {
						t.Fatal(err)
					}
					r = serveLogsHTTP(t, ln)
				}
				st := newStats()
				cfg := config.AccessLog{Format: format, FlushInterval: config.Duration(time.Hour),
					OTLP: &config.AccessLogOTLP{Endpoint: r.endpoint, Protocol: proto, Insecure: true,
						Headers: map[string]string{"api-key": "k3y"}, Timeout: config.Duration(5 * time.Second)}}
				l, err := New(cfg, st, zerolog.Nop(), WithResource(res))
				if err != nil {
					t.Fatal(err)
				}
				e := fullEntry()
				l.Log(e)
				e.TraceID = ""
				e.ResponseFlags = ""
				l.Log(e)
				closeLogger(t, l)

				if w, d := st.Written.Value(), st.Dropped.Value(); w != 2 || d != 0 {
					t.Errorf("written %d dropped %d, want 2 and 0", w, d)
				}
				recs, resAttrs, scopes := r.records()
				if len(recs) != 2 {
					t.Fatalf("%d records, want 2", len(recs))
				}
				if resAttrs[0]["service.name"] != "edge-proxy" || resAttrs[0]["service.instance.id"] != "edge-1" || resAttrs[0]["service.version"] == "" || scopes[0] != "sightline" {
					t.Errorf("resource %v scope %q: want the proxy's (service edge-proxy, instance edge-1, a version) and scope sightline", resAttrs[0], scopes[0])
				}
				if r.headers[0] != "k3y" {
					t.Errorf("api-key header %q, want k3y", r.headers[0])
				}
				want := fullEntry()
				if format == "envoy" {
					body := recs[0].Body.GetStringValue()
					if !strings.HasPrefix(body, "[2026-11-23T20:30:05.123Z] \"POST /grpc.testing.TestService/UnaryCall HTTP/2\" 200 UH,URX") || strings.HasSuffix(body, "\n") {
						t.Errorf("body %q, want Envoy's default line without its newline", body)
					}
					return
				}
				a := attrs(recs[0].Attributes)
				if a["method"] != "POST" || a["path"] != want.Path || a["response_flags"] != "UH,URX" || a["response_code"] != "200" {
					t.Errorf("attributes %v, want the JSON line's keys", a)
				}
				if got := hex.EncodeToString(recs[0].TraceId); got != want.TraceID {
					t.Errorf("trace id %s, want %s", got, want.TraceID)
				}
				if got := time.Unix(0, int64(recs[0].TimeUnixNano)); !got.Equal(want.StartTime.Truncate(time.Millisecond)) {
					t.Errorf("time %v, want the request's start %v", got, want.StartTime)
				}
				if len(recs[1].TraceId) != 0 {
					t.Errorf("a line without a trace has trace id %x", recs[1].TraceId)
				}
				if _, ok := attrs(recs[1].Attributes)["response_flags"]; ok {
					t.Error("a null key became an attribute")
				}
			})
		}
	}
}

// TestOTLPAccessLogCollectorDown: while the collector is down the lines
// are dropped and counted, and the failure logged; when it is back, the
// lines flow again and the recovery is logged once.
func TestOTLPAccessLogCollectorDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // down
	var logBuf syncBuffer
	st := newStats()
	cfg := config.AccessLog{FlushInterval: config.Duration(20 * time.Millisecond),
		OTLP: &config.AccessLogOTLP{Endpoint: addr, Protocol: "http", Insecure: true, Timeout: config.Duration(2 * time.Second)}}
	l, err := New(cfg, st, zerolog.New(&logBuf))
	if err != nil {
		t.Fatal(err)
	}
	defer closeLogger(t, l)
	for range 3 {
		l.Log(fullEntry())
	}
	if !waitFor(10*time.Second, func() bool { return st.Dropped.Value() == 3 }) {
		t.Fatalf("dropped %d while the collector was down, want 3", st.Dropped.Value())
	}
	if st.Written.Value() != 0 || !strings.Contains(string(logBuf.Bytes()), "access log write failed") {
		t.Fatalf("collector down: written %d, log %q; want 0 and the failure logged", st.Written.Value(), logBuf.Bytes())
	}

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the collector's port was taken meanwhile: %v", err)
	}
	r := serveLogsHTTP(t, ln)
	for range 2 {
		l.Log(fullEntry())
	}
	if !waitFor(10*time.Second, func() bool { return st.Written.Value() == 2 }) {
		t.Fatalf("written %d after the collector came back, want 2", st.Written.Value())
	}
	if recs, _, _ := r.records(); len(recs) != 2 {
		t.Errorf("%d records after the collector came back, want 2", len(recs))
	}
	if n := strings.Count(string(logBuf.Bytes()), "access log writes recovered"); n != 1 {
		t.Errorf("recovery logged %d times, want once:\n%s", n, logBuf.Bytes())
	}
}
