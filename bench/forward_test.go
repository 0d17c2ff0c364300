// Package bench measures the cost of a proxied gRPC call in-process: the
// same calls straight to a grpc-go backend and through Sightline, so that
// the difference is what the proxy adds (time, bytes and allocations; the
// client's and backend's share is in both).
//
//	go test ./bench -run '^$' -bench . -benchmem
package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/sightline-proxy/sightline/internal/backend"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/server"
)

// setup starts n backends and a proxy in front of them, and returns a
// client connection straight to the first backend and one through the
// proxy.
func setup(b *testing.B, n int) (direct, proxied *grpc.ClientConn) {
	b.Helper()
	var eps string
	for i := range n {
		be, err := backend.Start("127.0.0.1:0", fmt.Sprintf("b%d", i), "")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(be.Stop)
		eps += fmt.Sprintf("      - {address: %s}\n", be.Addr)
		if i == 0 {
			direct = dial(b, be.Addr)
		}
	}
	path := filepath.Join(b.TempDir(), "bench.yaml")
	yaml := `admin: {address: 127.0.0.1:0}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - match: {prefix: /}
            cluster: backends
clusters:
  - name: backends
    endpoints:
` + eps
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := server.New(cfg, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Shutdown(context.Background()) })
	return direct, dial(b, srv.ListenerAddr("ingress"))
}

func dial(b *testing.B, addr string) *grpc.ClientConn {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cc.Close() })
	return cc
}

// BenchmarkUnary is one EmptyCall after another on one connection.
func BenchmarkUnary(b *testing.B) {
	direct, proxied := setup(b, 4)
	for _, tc := range []struct {
		name string
		cc   *grpc.ClientConn
	}{{"direct", direct}, {"proxied", proxied}} {
		b.Run(tc.name, func(b *testing.B) {
			c := testgrpc.NewTestServiceClient(tc.cc)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUnaryParallel runs EmptyCalls from many goroutines over one
// connection: a shared lock on the request path would show up here as a
// gap that grows with -cpu.
func BenchmarkUnaryParallel(b *testing.B) {
	direct, proxied := setup(b, 4)
	for _, tc := range []struct {
		name string
		cc   *grpc.ClientConn
	}{{"direct", direct}, {"proxied", proxied}} {
		b.Run(tc.name, func(b *testing.B) {
			c := testgrpc.NewTestServiceClient(tc.cc)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if _, err := c.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
