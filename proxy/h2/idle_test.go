package h2

import (
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/sightline-proxy/sightline/internal/testnet"
	"github.com/sightline-proxy/sightline/proxy/config"
)

// idleRoute is a route to cluster with a stream idle timeout of d.
func idleRoute(cluster string, d time.Duration) testRoute {
	return testRoute{prefix: "/", cluster: cluster, edit: func(r *config.Route) {
		v := config.Duration(d)
		r.IdleTimeout = &v
	}}
}

// TestStreamIdleTimeout: a call with no activity either way for the
// route's idle_timeout is ended, flag SI, counted in
// downstream_rq_idle_timeout: 504 when the request was whole and the
// upstream never answered, 408 when the client stopped mid-request, a
// reset once the response had begun, DEADLINE_EXCEEDED for gRPC. A call
// whose bytes keep flowing is not ended, however long it lasts.
func TestStreamIdleTimeout(t *testing.T) {
	const idle = 100 * time.Millisecond
	release := make(chan struct{})
	defer close(release)
	addr := testnet.Serve(t, testnet.Stall(release), testnet.HTTP1|testnet.H2C)
	p := startProxy(t, []testCluster{{name: "b", addrs: []string{addr}}}, []testRoute{idleRoute("b", idle)}, proxyOpts{})
	tests := []struct {
		name       string
		send       func(c *rawPeer)
		wantStatus string // "" : a reset
		wantGRPC   string
	}{
		{"no answer", func(c *rawPeer) { c.send(1, "GET", "/silent", true) }, "504", ""},
		{"client stops sending", func(c *rawPeer) { c.send(1, "POST", "/silent", false) }, "408", ""},
		{"gRPC", func(c *rawPeer) { c.send(1, "POST", "/silent", true, "content-type", "application/grpc") }, "200", "4"},
		{"response begun", func(c *rawPeer) { c.send(1, "GET", "/headers", true) }, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, saddr := statsServer(t, p, proxyOpts{})
			c := dialRaw(t, saddr, true)
			tt.send(c)
			if tt.wantStatus == "" {
				c.wantRST(1, http2.ErrCodeCancel)
			} else {
				status, fields, _ := c.response(1)
				if status != tt.wantStatus || field(fields, "x-sightline-response-flags") != "SI" {
					t.Errorf("got %s flags %q, want %s SI", status, field(fields, "x-sightline-response-flags"), tt.wantStatus)
				}
				if tt.wantGRPC != "" && field(fields, "grpc-status") != tt.wantGRPC {
					t.Errorf("grpc-status %q, want %s", field(fields, "grpc-status"), tt.wantGRPC)
				}
			}
			if n := st.DownstreamRqIdleTimeout.Value(); n != 1 {
				t.Errorf("downstream_rq_idle_timeout = %d, want 1", n)
			}
		})
	}
	t.Run("bytes flowing", func(t *testing.T) {
		// Longer than the idle timeout of 400 ms, by far; no gap is near
		// it, even on a busy machine.
		slow := startProxy(t, []testCluster{{name: "b", addrs: []string{addr}}}, []testRoute{idleRoute("b", 4*idle)}, proxyOpts{})
		st, saddr := statsServer(t, slow, proxyOpts{})
		c := dialRaw(t, saddr, true)
		c.send(1, "GET", "/trickle", true)
		status, _, body := c.response(1)
		if status != "200" || len(body) != 40 {
			t.Errorf("got %s with %d bytes, want 200 and 40", status, len(body))
		}
		if n := st.DownstreamRqIdleTimeout.Value(); n != 0 {
			t.Errorf("downstream_rq_idle_timeout = %d, want 0", n)
		}
	})
}

// send writes a request's HEADERS frame: method, path, whether it ends the
// stream, and extra fields.
func (p *rawPeer) send(id uint32, method, path string, end bool, extra ...string) {
	p.t.Helper()
	fields := append([]string{":method", method, ":scheme", "http", ":authority", "example.com", ":path", path}, extra...)
	if err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.block(fields...), EndStream: end, EndHeaders: true}); err != nil {
		p.t.Fatal(err)
	}
}
