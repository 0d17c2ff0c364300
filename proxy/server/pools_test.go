package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/sightline-proxy/sightline/internal/backend"
	"github.com/sightline-proxy/sightline/proxy/h2"
)

// TestIdlePoolReleased: once idle_timeout has closed a host's connection,
// two sweeps drop its pools (one to see it quiet, one to drop it) and a
// third closes them; the next call makes new pools and is served.
func TestIdlePoolReleased(t *testing.T) {
	b, err := backend.Start("127.0.0.1:0", "b", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	s := started(t, load(t, fmt.Sprintf(`admin: {address: 127.0.0.1:0}
server: {drain_time: 10ms}
listeners:
  - name: in
    address: 127.0.0.1:0
    virtual_hosts: [{name: all, domains: ['*'], routes: [{match: {prefix: /}, cluster: a}]}]
clusters:
  - {name: a, idle_timeout: 50ms, endpoints: [{address: %s}]}
`, b.Addr)))
	conn, err := grpc.NewClient(s.ListenerAddr("in"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	call := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := testgrpc.NewTestServiceClient(conn).EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	call()
	c := s.Clusters()[0]
	h := c.Hosts()[0]
	pools, _ := h.MadeUpstream().(*h2.Upstream)
	if pools == nil {
		t.Fatal("the host served a call without pools")
	}
	// idle_timeout closes the connection.
	deadline := time.Now().Add(5 * time.Second)
	for !upstreamIdle(pools) {
		if time.Now().After(deadline) {
			t.Fatalf("the host's connection is still open %v after idle_timeout", 5*time.Second)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.ReleaseIdlePools()
	if h.MadeUpstream() == nil {
		t.Fatal("the first sweep to see the pools dropped them")
	}
	c.ReleaseIdlePools()
	if h.MadeUpstream() != nil {
		t.Fatal("the second quiet sweep kept the idle pools")
	}
	c.ReleaseIdlePools() // closes the dropped pools
	call()
	if again, _ := h.MadeUpstream().(*h2.Upstream); again == nil || again == pools {
		t.Errorf("the call after the release used pools %p, want new ones (the old were %p)", again, pools)
	}
	if b.Calls() != 2 {
		t.Errorf("the backend served %d calls, want 2", b.Calls())
	}
}
