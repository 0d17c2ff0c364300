package health

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sightline-proxy/sightline/accesslog"
	"github.com/sightline-proxy/sightline/proxy/config"
)

// TestProbe runs one check of each kind against real upstreams and checks
// the verdict: "" for a pass, else the failure type.
func TestProbe(t *testing.T) {
	checkGoroutines(t)
	grpcWith := func(service string, st healthpb.HealthCheckResponse_ServingStatus) func(t *testing.T) (string, *tls.Config) {
		return func(t *testing.T) (string, *tls.Config) {
			hs := health.NewServer()
			hs.SetServingStatus(service, st)
			return startGRPC(t, "127.0.0.1:0", hs).addr, nil
		}
	}
	httpWith := func(o httpOpts) func(t *testing.T) (string, *tls.Config) {
		return func(t *testing.T) (string, *tls.Config) {
			u := startHTTP(t, o)
			return u.addr, u.tls
		}
	}
	dead := func(t *testing.T) (string, *tls.Config) { return deadAddr(t), nil }
	tcpUp := func(t *testing.T) (string, *tls.Config) { return startTCP(t).addr, nil }
	withHTTP := func(path string, statuses ...int) func(*config.HealthCheck) {
		return func(hc *config.HealthCheck) {
			hc.HTTP = &config.HTTPHealthCheck{Path: path, ExpectedStatuses: statuses}
		}
	}

	tests := []struct {
		name     string
		kind     string
		edit     func(*config.HealthCheck) // nil: hcConfig(kind) as is
		protocol string
		upstream func(t *testing.T) (addr string, tc *tls.Config)
		want     string
	}{
		{name: "grpc serving", kind: "grpc", upstream: grpcWith("", healthpb.HealthCheckResponse_SERVING)},
		{name: "grpc not serving", kind: "grpc", upstream: grpcWith("", healthpb.HealthCheckResponse_NOT_SERVING),
			want: accesslog.FailureActive},
		{name: "grpc service serving", kind: "grpc", upstream: grpcWith("grpc.testing.TestService", healthpb.HealthCheckResponse_SERVING),
			edit: func(hc *config.HealthCheck) { hc.GRPC.ServiceName = "grpc.testing.TestService" }},
		{name: "grpc unknown service", kind: "grpc", upstream: grpcWith("", healthpb.HealthCheckResponse_SERVING),
			edit: func(hc *config.HealthCheck) { hc.GRPC.ServiceName = "no.such.Service" }, want: accesslog.FailureActive},
		{name: "grpc without health service", kind: "grpc", want: accesslog.FailureActive,
			upstream: func(t *testing.T) (string, *tls.Config) { return startGRPC(t, "127.0.0.1:0", nil).addr, nil }},
		{name: "grpc over tls", kind: "grpc", upstream: func(t *testing.T) (string, *tls.Config) {
			server, client := testCert(t)
			hs := health.NewServer()
			return startGRPCTLS(t, "127.0.0.1:0", hs, server).addr, client
		}},
		{name: "grpc tls to a plaintext server", kind: "grpc", want: accesslog.FailureNetwork,
			upstream: func(t *testing.T) (string, *tls.Config) {
				_, client := testCert(t)
				return startGRPC(t, "127.0.0.1:0", health.NewServer()).addr, client
			}},
		{name: "grpc nothing listening", kind: "grpc", upstream: dead, want: accesslog.FailureNetwork},
		{name: "grpc hangs", kind: "grpc", want: accesslog.FailureNetworkTimeout,
			upstream: func(t *testing.T) (string, *tls.Config) {
				return startGRPC(t, "127.0.0.1:0", hangingHealth{}).addr, nil
			}},

		{name: "http 200 by default", kind: "http", upstream: httpWith(httpOpts{code: 200, major: 2})},
		{name: "http 503 by default", kind: "http", upstream: httpWith(httpOpts{code: 503, major: 2}),
			want: accesslog.FailureActive},
		{name: "http expected 204", kind: "http", edit: withHTTP("/healthz", 200, 204),
			upstream: httpWith(httpOpts{code: 204, major: 2})},
		{name: "http 200 not expected", kind: "http", edit: withHTTP("/healthz", 204),
			upstream: httpWith(httpOpts{code: 200, major: 2}), want: accesslog.FailureActive},
		{name: "http redirect not followed", kind: "http", upstream: httpWith(httpOpts{code: 301, major: 2}),
			want: accesslog.FailureActive},
		{name: "http redirect expected", kind: "http", edit: withHTTP("/healthz", 301),
			upstream: httpWith(httpOpts{code: 301, major: 2})},
		{name: "http auto is h2c", kind: "http", protocol: "auto", upstream: httpWith(httpOpts{code: 200, major: 2})},
		{name: "http1", kind: "http", protocol: "http1", upstream: httpWith(httpOpts{code: 200, major: 1})},
		{name: "http h2 over tls", kind: "http", protocol: "http2", upstream: httpWith(httpOpts{code: 200, major: 2, tls: true})},
		{name: "http1 over tls", kind: "http", protocol: "http1", upstream: httpWith(httpOpts{code: 200, major: 1, tls: true})},
		{name: "http hangs", kind: "http", upstream: httpWith(httpOpts{hang: true}), want: accesslog.FailureNetworkTimeout},
		{name: "http nothing listening", kind: "http", upstream: dead, want: accesslog.FailureNetwork},

		{name: "tcp listening", kind: "tcp", upstream: tcpUp},
		{name: "tcp closed listener", kind: "tcp", upstream: dead, want: accesslog.FailureNetwork},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc := hcConfig(tt.kind)
			hc.Timeout = config.Duration(300 * time.Millisecond)
			if tt.edit != nil {
				tt.edit(&hc)
			}
			addr, tc := tt.upstream(t)
			c, err := New(Options{Cluster: testCluster, Config: hc, Protocol: tt.protocol, TLS: tc})
			if err != nil {
				t.Fatal(err)
			}
			p, err := c.newProber(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer p.close()
			ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
			defer cancel()
			start := time.Now()
			err = p.probe(ctx)
			got := ""
			if err != nil {
				got = classify(ctx, err)
			}
			if got != tt.want {
				t.Errorf("got %q (%v), want %q", got, err, tt.want)
			}
			if d := time.Since(start); d > c.timeout+time.Second {
				t.Errorf("check took %s with a %s timeout", d, c.timeout)
			}
		})
	}
}

func TestIsHealthCheck(t *testing.T) {
	tests := []struct {
		give string
		want bool
	}{
		{"Sightline/HC", true},
		{"Sightline/HC grpc-go/1.85.0", true},
		{"Sightline/HCX", false},
		{"curl/8.0", false},
		{"", false},
		{"grpc-go/1.85.0 Sightline/HC", false},
	}
	for _, tt := range tests {
		if got := IsHealthCheck(tt.give); got != tt.want {
			t.Errorf("IsHealthCheck(%q) = %v, want %v", tt.give, got, tt.want)
		}
	}
}

// TestClassify covers the mapping without I/O: what the host answered is
// ACTIVE even when it answered late, a deadline is NETWORK_TIMEOUT, and
// anything else is NETWORK.
func TestClassify(t *testing.T) {
	expired, cancel := context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	live := context.Background()
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want string
	}{
		{"answered", live, errUnhealthy, accesslog.FailureActive},
		{"answered as the deadline passed", expired, errUnhealthy, accesslog.FailureActive},
		{"deadline", expired, context.DeadlineExceeded, accesslog.FailureNetworkTimeout},
		{"error after the deadline", expired, io.ErrUnexpectedEOF, accesslog.FailureNetworkTimeout},
		{"i/o timeout", live, &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, accesslog.FailureNetworkTimeout},
		{"connection refused", live, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, accesslog.FailureNetwork},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.ctx, tt.err); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
