package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sightline-proxy/sightline/internal/leakcheck"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/host"
)

// testCluster is the cluster name of every test Checker; upstreams insist
// on it as :authority.
const testCluster = "primary"

// wait bounds every wait for something a checker does; intervals in tests
// are tens of milliseconds, so reaching it means the thing never happens.
const wait = 5 * time.Second

// checkGoroutines fails t if any goroutine other than the testing
// package's and the runtime's is left once t's other cleanups ran: every
// checker, server and connection the test started must be gone. Call it
// first in a test so that its cleanup runs last.
func checkGoroutines(t *testing.T) {
	t.Helper()
	leakcheck.Check(t, wait)
}

// eventually polls cond until it holds or wait passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// hcConfig is a health check config with test-sized timings.
func hcConfig(kind string) config.HealthCheck {
	hc := config.HealthCheck{
		Interval:           config.Duration(50 * time.Millisecond),
		IntervalJitter:     config.Duration(10 * time.Millisecond),
		Timeout:            config.Duration(time.Second),
		HealthyThreshold:   2,
		UnhealthyThreshold: 2,
	}
	switch kind {
	case "grpc":
		hc.GRPC = &config.GRPCHealthCheck{}
	case "http":
		hc.HTTP = &config.HTTPHealthCheck{Path: "/healthz"}
	case "tcp":
		hc.TCP = &config.TCPHealthCheck{}
	}
	return hc
}

func newHost(addr string) *host.Host { return &host.Host{Address: addr, Weight: 1} }

// change is one OnChange call.
type change struct {
	h       *host.Host
	healthy bool
}

// changes records OnChange calls on a channel.
type changes chan change

func newChanges() changes { return make(changes, 64) }

func (c changes) onChange(h *host.Host, healthy bool) { c <- change{h, healthy} }

// next returns the next call, failing t after wait.
func (c changes) next(t *testing.T) change {
	t.Helper()
	select {
	case ch := <-c:
		return ch
	case <-time.After(wait):
		t.Fatal("timed out waiting for OnChange")
	}
	return change{}
}

// expect fails t unless the next call is (h, healthy).
func (c changes) expect(t *testing.T, h *host.Host, healthy bool) {
	t.Helper()
	if got := c.next(t); got.h != h || got.healthy != healthy {
		t.Fatalf("OnChange(%s, %v), want OnChange(%s, %v)", got.h.Address, got.healthy, h.Address, healthy)
	}
	if got := h.Flags()&host.FailedActiveHC == 0; got != healthy {
		t.Fatalf("host %s: OnChange said healthy=%v but the flag says %v", h.Address, healthy, got)
	}
}

// expectFirst fails t unless the next calls are the first checks' of
// hosts, in any order, each with its health as want says and no longer
// pending.
func (c changes) expectFirst(t *testing.T, want map[*host.Host]bool) {
	t.Helper()
	left := maps.Clone(want)
	for len(left) > 0 {
		got := c.next(t)
		healthy, ok := left[got.h]
		if !ok || got.healthy != healthy {
			t.Fatalf("OnChange(%s, %v), want one of the first checks' %v", got.h.Address, got.healthy, left)
		}
		if f := got.h.Flags(); f&host.PendingActiveHC != 0 || (f&host.FailedActiveHC == 0) != healthy {
			t.Fatalf("host %s after its first check: flags %s", got.h.Address, host.FlagString(f))
		}
		delete(left, got.h)
	}
}

// none fails t if OnChange is called within d.
func (c changes) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case ch := <-c:
		t.Fatalf("unexpected OnChange(%s, %v)", ch.h.Address, ch.healthy)
	case <-time.After(d):
	}
}

// deadAddr returns an address nothing listens on: a port that was just
// closed.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// tcpUpstream accepts and closes connections, counting them.
type tcpUpstream struct {
	addr    string
	accepts atomic.Int64
}

func startTCP(t *testing.T) *tcpUpstream {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &tcpUpstream{addr: l.Addr().String()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u.accepts.Add(1)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
	})
	return u
}

// grpcUpstream is a real grpc-go server.
type grpcUpstream struct {
	addr string
	srv  *grpc.Server
}

// startGRPC serves hs (nil: none, so Check is Unimplemented) on addr,
// retrying a while if the port is still held by a server just stopped.
// Every call must carry the health check's user-agent and the cluster as
// :authority (over TLS, the IP the certificate is verified against), or it
// fails with PermissionDenied, which the checker counts as an unhealthy
// answer.
func startGRPC(t *testing.T, addr string, hs healthpb.HealthServer) *grpcUpstream {
	t.Helper()
	return startGRPCTLS(t, addr, hs, nil)
}

// testCert returns a certificate for 127.0.0.1 and a client config that
// trusts it (and names no server, as a cluster's tls: {ca_file} does).
func testCert(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS() // only for its certificate
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return &tls.Config{Certificates: srv.TLS.Certificates, MinVersion: tls.VersionTLS12},
		&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// startGRPCTLS is startGRPC serving TLS with tc when tc is not nil.
func startGRPCTLS(t *testing.T, addr string, hs healthpb.HealthServer, tc *tls.Config) *grpcUpstream {
	t.Helper()
	var l net.Listener
	var err error
	deadline := time.Now().Add(wait)
	for {
		if l, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listening on %s: %v", addr, err)
	}
	var opts []grpc.ServerOption
	wantAuthority := testCluster
	if tc != nil {
		wantAuthority = "127.0.0.1" // the name the certificate is verified against
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	srv := grpc.NewServer(append(opts, grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if ua := strings.Join(md.Get("user-agent"), ","); !strings.HasPrefix(ua, UserAgent+" grpc-go/") {
			return nil, status.Errorf(codes.PermissionDenied, "user-agent %q", ua)
		}
		if a := strings.Join(md.Get(":authority"), ","); a != wantAuthority {
			return nil, status.Errorf(codes.PermissionDenied, ":authority %q", a)
		}
		return h(ctx, req)
	}))...)
	u := &grpcUpstream{addr: l.Addr().String(), srv: srv}
	if hs != nil {
		healthpb.RegisterHealthServer(srv, hs)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return u
}

// hangingHealth answers no Check until the caller gives up.
type hangingHealth struct {
	healthpb.UnimplementedHealthServer
}

func (hangingHealth) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// httpUpstream is a real net/http server whose handler answers code, after
// checking what a health check must send: GET of the configured path, the
// user-agent, the cluster as Host and the HTTP version the cluster's
// protocol asks for. A request that misses any of these gets 400.
type httpUpstream struct {
	addr  string
	tls   *tls.Config // for the checker; nil in plaintext
	hits  atomic.Int64
	conns atomic.Int64 // connections accepted
}

type httpOpts struct {
	code  int
	major int  // the HTTP major version checks must arrive with
	tls   bool // serve h2 and http/1.1 over TLS
	hang  bool // answer nothing until the client gives up
}

func startHTTP(t *testing.T, o httpOpts) *httpUpstream {
	t.Helper()
	u := &httpUpstream{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		if o.hang {
			<-r.Context().Done()
			return
		}
		var problems []string
		if r.Method != http.MethodGet || r.URL.Path != "/healthz" {
			problems = append(problems, fmt.Sprintf("request %s %s", r.Method, r.URL.Path))
		}
		if ua := r.Header.Get("User-Agent"); ua != UserAgent {
			problems = append(problems, fmt.Sprintf("user-agent %q", ua))
		}
		if r.Host != testCluster {
			problems = append(problems, fmt.Sprintf("host %q", r.Host))
		}
		if r.ProtoMajor != o.major {
			problems = append(problems, fmt.Sprintf("protocol %s", r.Proto))
		}
		if len(problems) > 0 {
			http.Error(w, strings.Join(problems, "; "), http.StatusBadRequest)
			return
		}
		if o.code == http.StatusMovedPermanently {
			http.Redirect(w, r, "/elsewhere", o.code)
			return
		}
		w.WriteHeader(o.code)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			u.conns.Add(1)
		}
	}
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	if o.tls {
		srv.EnableHTTP2 = true
		srv.StartTLS()
		pool := x509.NewCertPool()
		pool.AddCert(srv.Certificate())
		u.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	} else {
		protos.SetUnencryptedHTTP2(true)
		srv.Config.Protocols = protos
		srv.Start()
	}
	u.addr = srv.Listener.Addr().String()
	t.Cleanup(srv.Close)
	return u
}
