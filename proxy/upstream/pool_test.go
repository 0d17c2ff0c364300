package upstream

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/testnet"
)

// TestPoolConnectFailureIsErrConnect: a dial that fails says so with
// ErrConnect, so the router can tell a connect failure (UF, safe to
// retry) from a reset.
func TestPoolConnectFailureIsErrConnect(t *testing.T) {
	addr := testnet.ClosedPort(t)
	p := New(addr, Options{ConnectTimeout: time.Second})
	t.Cleanup(func() { p.Close() })
	req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://"+addr+"/", nil)
	if _, err := p.RoundTripH1(req); !errors.Is(err, ErrConnect) {
		t.Fatalf("RoundTripH1 to a closed port: %v, want ErrConnect", err)
	}
}

// TestPoolIdle: a pool is idle until it opens a connection, not while the
// connection is open (kept alive after its request), and idle again once
// it closed; its Transport is made by its first request only.
func TestPoolIdle(t *testing.T) {
	c := newCounted(t)
	addr, _ := startBackend(t)
	p := c.pool(t, addr, Options{})
	if !p.Idle() || p.h1.Load() != nil {
		t.Fatalf("a new pool: idle %v, transport made %v; want idle and none", p.Idle(), p.h1.Load() != nil)
	}
	if _, err := roundTrip(p, "http", addr); err != nil {
		t.Fatal(err)
	}
	if p.Idle() {
		t.Error("a pool with a kept-alive connection says it is idle")
	}
	c.wait(t, cxCounts{Total: 1, HTTP1: 1, Destroy: 1, DestroyLocal: 1, ConnectMs: 1, LengthMs: 1}, func() { p.transport().CloseIdleConnections() })
	if !p.Idle() {
		t.Error("a pool whose connection closed says it is not idle")
	}
}
