// Package backend runs sample gRPC backends: grpc.testing.TestService (the
// gRPC interop service) plus grpc.health.v1 and server reflection, counting
// the calls each serves.
// The demo runs them, and the end-to-end tests use them as real upstreams.
package backend

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
)

// Backend is one running gRPC server.
type Backend struct {
	Name string
	Zone string
	Addr string

	calls  atomic.Int64
	srv    *grpc.Server
	health *health.Server
	lis    net.Listener

	mu       sync.Mutex
	byMethod map[string]int64
	// lastMD is the metadata of the most recent call, for tests that check
	// what the proxy sent upstream.
	lastMD metadata.MD
	// allMD holds the metadata of every call once KeepMetadata is called.
	keepAll bool
	allMD   []metadata.MD
}

// Start listens on addr ("127.0.0.1:0" for any port) and serves until Stop.
func Start(addr, name, zone string) (*Backend, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("backend %s: listening on %s: %w", name, addr, err)
	}
	b := &Backend{Name: name, Zone: zone, Addr: lis.Addr().String(), lis: lis, byMethod: map[string]int64{}}
	b.srv = grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			b.record(ctx, info.FullMethod)
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			b.record(ss.Context(), info.FullMethod)
			return h(srv, ss)
		}),
	)
	testgrpc.RegisterTestServiceServer(b.srv, interop.NewTestServer())
	b.health = health.NewServer()
	healthpb.RegisterHealthServer(b.srv, b.health)
	reflection.Register(b.srv) // so that grpcurl can list and describe through the proxy
	go b.srv.Serve(lis)
	return b, nil
}

func (b *Backend) record(ctx context.Context, method string) {
	if method == healthpb.Health_Check_FullMethodName || method == healthpb.Health_Watch_FullMethodName ||
		strings.HasPrefix(method, "/grpc.reflection.") {
		return
	}
	b.calls.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	b.mu.Lock()
	b.byMethod[method]++
	b.lastMD = md
	if b.keepAll {
		b.allMD = append(b.allMD, md)
	}
	b.mu.Unlock()
}

// KeepMetadata makes the backend keep the metadata of every call from now
// on, for tests that check what each call carried.
func (b *Backend) KeepMetadata() {
	b.mu.Lock()
	b.keepAll = true
	b.mu.Unlock()
}

// AllMetadata returns the metadata of every call since KeepMetadata.
func (b *Backend) AllMetadata() []metadata.MD {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]metadata.MD, len(b.allMD))
	for i, md := range b.allMD {
		out[i] = md.Copy()
	}
	return out
}

// Calls returns how many calls (health checks excluded) the backend served.
func (b *Backend) Calls() int64 { return b.calls.Load() }

// MethodCalls returns how many calls of one full method name it served.
func (b *Backend) MethodCalls(fullMethod string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.byMethod[fullMethod]
}

// LastMetadata returns the metadata of the most recent call.
func (b *Backend) LastMetadata() metadata.MD {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastMD.Copy()
}

// SetServing flips the overall grpc.health.v1 status.
func (b *Backend) SetServing(ok bool) {
	st := healthpb.HealthCheckResponse_SERVING
	if !ok {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	b.health.SetServingStatus("", st)
}

// Stop closes the listener and every connection at once.
func (b *Backend) Stop() { b.srv.Stop() }
