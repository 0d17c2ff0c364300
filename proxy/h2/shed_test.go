package h2

import (
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/sightline-proxy/sightline/proxy/overload"
)

// TestConcurrencyBudgetHeldUntilFinish: a call holds its place in the
// overload manager's concurrency budget from its HEADERS until it
// finishes, however it ends (a response, a client reset); past the budget
// a request gets 503 with flag OM at once; and every place comes back.
func TestConcurrencyBudgetHeldUntilFinish(t *testing.T) {
	m := overload.New(overload.Config{MaxActiveRequests: 3, ResetStreams: 10, StopRequests: 10, StopConnections: 10,
		RefreshInterval: time.Hour}, overload.Engine{}, nil)
	release := make(chan struct{})
	p := okProxy(t, blockingHandler(release), proxyOpts{overload: m})
	c := dialRaw(t, p.addr, true)
	waitActive := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for m.ActiveRequests() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d requests held against the budget, want %d", m.ActiveRequests(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}

	c.request(1, true)
	c.request(3, true)
	c.request(5, false) // its body never ends: the client resets it below
	waitActive(3)
	c.request(7, true)
	if status, fields, _ := c.response(7); status != "503" || field(fields, "x-sightline-response-flags") != "OM" {
		t.Errorf("past the budget: %s flags %q, want 503 OM", status, field(fields, "x-sightline-response-flags"))
	}
	if err := c.fr.WriteRSTStream(5, http2.ErrCodeCancel); err != nil {
		t.Fatal(err)
	}
	waitActive(2)
	close(release)
	for _, id := range []uint32{1, 3} {
		if status, _, _ := c.response(id); status != "200" {
			t.Errorf("stream %d: %s, want 200", id, status)
		}
	}
	waitActive(0)
	c.request(9, true)
	if status, _, _ := c.response(9); status != "200" {
		t.Errorf("with room again: %s, want 200", status)
	}
	waitActive(0)
}
