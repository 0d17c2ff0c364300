package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/sightline-proxy/sightline/internal/testnet"
)

// TestUpstreamTLS checks a cluster whose hosts speak gRPC over TLS: the
// proxy verifies them against the cluster's ca_file (with the sni it names)
// and refuses a host it cannot verify.
func TestUpstreamTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := testnet.WriteCert(t, dir)
	creds, err := credentials.NewServerTLSFromFile(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(creds))
	testgrpc.RegisterTestServiceServer(srv, interop.NewTestServer())
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)

	// A second certificate the cluster does not trust.
	otherCA, _, _ := testnet.WriteCert(t, t.TempDir())

	p := startProxy(t, fmt.Sprintf(`listeners:
  - name: ingress
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - match: {prefix: /grpc.testing.TestService/UnaryCall}
            cluster: trusted
          - match: {prefix: /}
            cluster: untrusted
clusters:
  - name: trusted
    tls: {sni: localhost, ca_file: %q}
    endpoints: [{address: %s}]
  - name: untrusted
    tls: {sni: localhost, ca_file: %q}
    endpoints: [{address: %s}]
`, certFile, ln.Addr(), otherCA, ln.Addr()))
	client := testClient(t, p.listener("ingress"))

	resp, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{ResponseSize: 100})
	if err != nil {
		t.Fatalf("UnaryCall to a TLS upstream: %v", err)
	}
	checkPayload(t, resp.GetPayload(), 100)

	// A host whose certificate does not verify is a connect failure, never
	// a plaintext fallback.
	_, err = client.EmptyCall(callCtx(t), &testgrpc.Empty{})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("EmptyCall to an untrusted TLS upstream: %v, want Unavailable", err)
	}
}

// TestUpstreamTLSResumption: new connections to a TLS host resume its
// session instead of a full handshake (max_requests_per_connection: 1
// makes each call a new connection).
func TestUpstreamTLSResumption(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := testnet.WriteCert(t, dir)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var handshakes, resumed atomic.Int32
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, VerifyConnection: func(cs tls.ConnectionState) error {
		handshakes.Add(1)
		if cs.DidResume {
			resumed.Add(1)
		}
		return nil
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	testgrpc.RegisterTestServiceServer(srv, interop.NewTestServer())
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)

	p := startProxy(t, fmt.Sprintf(`listeners:
  - name: ingress
    address: 127.0.0.1:0
    virtual_hosts: [{name: all, domains: ['*'], routes: [{match: {prefix: /}, cluster: tls}]}]
clusters:
  - name: tls
    tls: {sni: localhost, ca_file: %q}
    max_requests_per_connection: 1
    endpoints: [{address: %s}]
`, certFile, ln.Addr()))
	client := testClient(t, p.listener("ingress"))
	const calls = 4
	for i := range calls {
		if _, err := client.EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if h, r := handshakes.Load(), resumed.Load(); h < calls || r < calls-1 {
		t.Errorf("%d handshakes, %d resumed; want %d connections, all but the first resumed", h, r, calls)
	}
}
