package ratelimit

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// fakeService answers every request with resp (or err) and records the
// requests.
type fakeService struct {
	rlsv3.UnimplementedRateLimitServiceServer
	mu   sync.Mutex
	resp *rlsv3.RateLimitResponse
	err  error
	got  []*rlsv3.RateLimitRequest
}

func (f *fakeService) ShouldRateLimit(_ context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, req)
	return f.resp, f.err
}

func (f *fakeService) set(resp *rlsv3.RateLimitResponse, err error) {
	f.mu.Lock()
	f.resp, f.err = resp, err
	f.mu.Unlock()
}

func startFake(t testing.TB) (*fakeService, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeService{}
	srv := grpc.NewServer()
	rlsv3.RegisterRateLimitServiceServer(srv, f)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return f, ln.Addr().String()
}

func newGlobal(t testing.TB, addr string) (*Global, *Services) {
	t.Helper()
	svcs := NewServices()
	t.Cleanup(svcs.Close)
	svc, err := svcs.Get(&config.Cluster{Name: "rls", Type: "static", Endpoints: []config.Endpoint{{Address: addr}}})
	if err != nil {
		t.Fatal(err)
	}
	return &Global{Service: svc, Domain: "edge", Timeout: 10 * time.Second}, svcs
}

func status3(code rlsv3.RateLimitResponse_Code, limit, remaining uint32, reset time.Duration) *rlsv3.RateLimitResponse_DescriptorStatus {
	return &rlsv3.RateLimitResponse_DescriptorStatus{Code: code, LimitRemaining: remaining, DurationUntilReset: durationpb.New(reset),
		CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: limit, Unit: rlsv3.RateLimitResponse_RateLimit_SECOND}}
}

func TestGlobalCheck(t *testing.T) {
	f, addr := startFake(t)
	g, _ := newGlobal(t, addr)
	tests := []struct {
		name    string
		resp    *rlsv3.RateLimitResponse
		err     error
		want    Decision
		wantErr string
	}{
		{
			name: "ok, the most restrictive status describes the limit",
			resp: &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
				status3(rlsv3.RateLimitResponse_OK, 100, 60, time.Second), status3(rlsv3.RateLimitResponse_OK, 10, 2, 3*time.Second), {Code: rlsv3.RateLimitResponse_OK},
			}},
			want: Decision{HasLimit: true, Limit: 10, Remaining: 2, Reset: 3 * time.Second},
		},
		{
			name: "over limit, with the service's valid headers",
			resp: &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT,
				ResponseHeadersToAdd: []*corev3.HeaderValue{{Key: "x-a", Value: "1"}, {Key: "x-b", RawValue: []byte("raw")},
					{Key: ":status", Value: "200"}, {Key: "x c", Value: "1"}, {Key: "x-d", Value: "a\nb"}}},
			want: Decision{OverLimit: true, ResponseHeaders: []Entry{{"x-a", "1"}, {"x-b", "raw"}}},
		},
		{
			name:    "an UNKNOWN answer is a failed check",
			resp:    &rlsv3.RateLimitResponse{},
			wantErr: "rate limit service answered UNKNOWN",
		},
		{
			name:    "an error status is a failed check",
			err:     status.Error(codes.Internal, "redis is down"),
			wantErr: "redis is down",
		},
	}
	var ds Descriptors
	d := ds.Next()
	d.Add("generic_key", "api")
	d.Add("remote_address", "10.0.0.1")
	ds.Commit()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.set(tt.resp, tt.err)
			got, err := g.Check(context.Background(), ds.All())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.OverLimit != tt.want.OverLimit || got.HasLimit != tt.want.HasLimit || got.Limit != tt.want.Limit ||
				got.Remaining != tt.want.Remaining || got.Reset != tt.want.Reset || len(got.ResponseHeaders) != len(tt.want.ResponseHeaders) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got.ResponseHeaders {
				if got.ResponseHeaders[i] != tt.want.ResponseHeaders[i] {
					t.Errorf("header %d: %v, want %v", i, got.ResponseHeaders[i], tt.want.ResponseHeaders[i])
				}
			}
		})
	}
	f.mu.Lock()
	req := f.got[0]
	f.mu.Unlock()
	if req.GetDomain() != "edge" || len(req.GetDescriptors()) != 1 || len(req.GetDescriptors()[0].GetEntries()) != 2 ||
		req.GetDescriptors()[0].GetEntries()[1].GetValue() != "10.0.0.1" {
		t.Errorf("the service got %v", req)
	}
}

func TestGlobalServiceDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	g, _ := newGlobal(t, addr)
	var ds Descriptors
	ds.Next().Add("k", "v")
	ds.Commit()
	if _, err := g.Check(context.Background(), ds.All()); status.Code(err) != codes.Unavailable {
		t.Errorf("err = %v, want UNAVAILABLE", err)
	}
}

func TestServicesShareAndClose(t *testing.T) {
	svcs := NewServices()
	a := &config.Cluster{Name: "rls", Endpoints: []config.Endpoint{{Address: "127.0.0.1:1"}}}
	s1, _ := svcs.Get(a)
	s2, _ := svcs.Get(&config.Cluster{Name: "rls", Endpoints: []config.Endpoint{{Address: "127.0.0.1:1"}}})
	s3, _ := svcs.Get(&config.Cluster{Name: "rls", Endpoints: []config.Endpoint{{Address: "127.0.0.1:2"}}})
	if s1 != s2 || s1 == s3 {
		t.Errorf("same cluster: shared %v; other endpoints: new %v", s1 == s2, s1 != s3)
	}
	svcs.Close()
	if _, err := svcs.Get(a); !errors.Is(err, errClosed) {
		t.Errorf("Get after Close: %v", err)
	}
}

// BenchmarkGlobalCheck is one check against a rate limit service on
// loopback that answers OK at once: the proxy's side of a global check
// (request building, the gRPC round trip, the answer) per call.
func BenchmarkGlobalCheck(b *testing.B) {
	f, addr := startFake(b)
	f.set(&rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK,
		Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{status3(rlsv3.RateLimitResponse_OK, 100, 50, time.Second)}}, nil)
	f.got = nil
	g, _ := newGlobal(b, addr)
	var ds Descriptors
	d := ds.Next()
	d.Add("generic_key", "api")
	d.Add("remote_address", "10.0.0.1")
	ds.Commit()
	ctx := context.Background()
	if _, err := g.Check(ctx, ds.All()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.Check(ctx, ds.All()); err != nil {
			b.Fatal(err)
		}
		f.mu.Lock()
		f.got = f.got[:0]
		f.mu.Unlock()
	}
}
