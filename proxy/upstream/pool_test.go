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
