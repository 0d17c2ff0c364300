// Package otlptest runs OTLP metrics receivers for tests: the collector's
// gRPC MetricsService on a grpc-go server, and OTLP/HTTP on an httptest
// server decoding the protobuf body.
package otlptest

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Receiver hands every export it gets to Requests.
type Receiver struct {
	// Endpoint is host:port, as the sink config wants it.
	Endpoint string
	Requests chan *collectormetrics.ExportMetricsServiceRequest
}

// GRPC starts a gRPC receiver, stopped when the test ends.
func GRPC(t testing.TB) *Receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Receiver{Endpoint: ln.Addr().String(), Requests: make(chan *collectormetrics.ExportMetricsServiceRequest, 100)}
	srv := grpc.NewServer()
	collectormetrics.RegisterMetricsServiceServer(srv, &service{r: r})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return r
}

type service struct {
	collectormetrics.UnimplementedMetricsServiceServer
	r *Receiver
}

func (s *service) Export(_ context.Context, req *collectormetrics.ExportMetricsServiceRequest) (*collectormetrics.ExportMetricsServiceResponse, error) {
	s.r.Requests <- req
	return &collectormetrics.ExportMetricsServiceResponse{}, nil
}

// HTTP starts an OTLP/HTTP receiver at /v1/metrics, stopped when the test
// ends.
func HTTP(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{Requests: make(chan *collectormetrics.ExportMetricsServiceRequest, 100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/v1/metrics" || req.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want a protobuf POST to /v1/metrics", http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var export collectormetrics.ExportMetricsServiceRequest
		if err := proto.Unmarshal(body, &export); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Requests <- &export
		resp, _ := proto.Marshal(&collectormetrics.ExportMetricsServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(resp)
	}))
	t.Cleanup(srv.Close)
	r.Endpoint = srv.Listener.Addr().String()
	return r
}

// Last drains the exports received so far, waiting up to five seconds for
// the first, and returns the newest: with cumulative temporality it holds
// every total.
func (r *Receiver) Last(t testing.TB) *collectormetrics.ExportMetricsServiceRequest {
	t.Helper()
	var last *collectormetrics.ExportMetricsServiceRequest
	select {
	case last = <-r.Requests:
	case <-time.After(5 * time.Second):
		t.Fatal("no OTLP export arrived")
	}
	for {
		select {
		case req := <-r.Requests:
			last = req
		default:
			return last
		}
	}
}

// Metric returns the named metric of an export, nil when absent.
func Metric(req *collectormetrics.ExportMetricsServiceRequest, name string) *metricspb.Metric {
	for _, rm := range req.ResourceMetrics {
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if m.Name == name {
					return m
				}
			}
		}
	}
	return nil
}

// Attrs returns attributes as a map of their string values.
func Attrs(kvs []*commonpb.KeyValue) map[string]string {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		out[kv.Key] = kv.Value.GetStringValue()
	}
	return out
}
