package forward

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/testnet"
	"github.com/sightline-proxy/sightline/proxy/overload"
)

// TestOverloadStopsRequests: while the overload manager's
// stop_accepting_requests is on, the HTTP/1.1 listener answers new
// requests 503 with flag OM, counted in downstream_rq_overload_close, as
// the HTTP/2 engine does, and nothing goes upstream.
func TestOverloadStopsRequests(t *testing.T) {
	var upstream atomic.Int32
	backend := testnet.Serve(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { upstream.Add(1) }), testnet.HTTP1)
	p := startProxy(t, []testCluster{{name: "b", protocol: "http1", addrs: []string{backend}}}, []testRoute{{prefix: "/", cluster: "b"}})
	m := overload.New(overload.Config{MaxBufferedBytes: 1, ResetStreams: 10, StopConnections: 10, RefreshInterval: time.Hour},
		overload.Engine{Buffered: func() int64 { return 2 }}, nil)
	m.Start()
	defer m.Stop()
	p.handler.Overload = m
	resp, err := h1Client(t).Get("http://" + p.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get(headerResponseFlags) != "OM" {
		t.Errorf("got %d %q, want 503 OM", resp.StatusCode, resp.Header.Get(headerResponseFlags))
	}
	if n := p.stats.DownstreamRqOverloadClose.Value(); n != 1 {
		t.Errorf("downstream_rq_overload_close = %d, want 1", n)
	}
	if n := upstream.Load(); n != 0 {
		t.Errorf("the upstream got %d requests, want none", n)
	}
}
