package router

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/host"
)

// deadlineUpstream is a host's pool that answers every request 200 at
// once and notes the deadline of its context.
type deadlineUpstream struct {
	deadlines chan time.Time
}

func (u *deadlineUpstream) RoundTrip(req *http.Request, _ bool) (*http.Response, error) {
	dl, ok := req.Context().Deadline()
	if !ok {
		dl = time.Time{}
	}
	u.deadlines <- dl
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("discarded")), Header: http.Header{}}, nil
}

func (u *deadlineUpstream) Close() error { return nil }

// mirrorCluster is a one-host cluster whose pool is u.
func mirrorCluster(t *testing.T, u *deadlineUpstream, cb config.CircuitBreakers) *cluster.Cluster {
	t.Helper()
	cfg := config.Cluster{Name: "shadow", LBPolicy: "round_robin", CircuitBreakers: cb,
		Endpoints: []config.Endpoint{{Address: "127.0.0.1:10000"}}}
	c, err := cluster.New(cfg, cluster.Options{NewUpstream: func(*cluster.Cluster, *host.Host) host.Upstream { return u }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestMirrorLifetime: a copy lasts the timeout of the call it copies, cut
// to maxMirrorTimeout, and maxMirrorTimeout when the call has none; the
// slot TryMirror claimed is given back once it is done.
func TestMirrorLifetime(t *testing.T) {
	tests := []struct {
		name string
		give time.Duration // the copied call's timeout
		want time.Duration // the copy's
	}{
		{name: "route timeout", give: 2 * time.Second, want: 2 * time.Second},
		{name: "no timeout", give: 0, want: maxMirrorTimeout},
		{name: "long timeout cut", give: time.Hour, want: maxMirrorTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := &deadlineUpstream{deadlines: make(chan time.Time, 1)}
			c := mirrorCluster(t, u, config.CircuitBreakers{MaxRequests: 1})
			if !TryMirror(c, false, "/") {
				t.Fatal("TryMirror refused with max_requests free")
			}
			m := &Mirror{Cluster: c, Method: "POST", Authority: "svc", PathQuery: "/", Path: "/",
				Header: http.Header{}, Body: []byte("hi"), Timeout: tt.give}
			before := time.Now()
			m.Send()
			after := time.Now()
			dl := <-u.deadlines
			if dl.IsZero() {
				t.Fatal("the copy had no deadline")
			}
			// Send set the deadline between before and after.
			if dl.Sub(before) < tt.want || dl.Sub(after) > tt.want {
				t.Fatalf("the copy's deadline is %v to %v away, want %v", dl.Sub(after), dl.Sub(before), tt.want)
			}
			if got := c.Breakers.Snapshot().Requests.Active; got != 0 {
				t.Fatalf("%d max_requests slots held after Send, want 0", got)
			}
		})
	}
}

// TestTryMirrorRefused: a refusal is counted in the mirror cluster's
// upstream_rq_pending_overflow and allocates nothing; a released slot
// is taken again.
func TestTryMirrorRefused(t *testing.T) {
	c, stat := testCluster(t, 1, config.CircuitBreakers{MaxRequests: 1})
	if !TryMirror(c, false, "/") {
		t.Fatal("TryMirror refused with max_requests free")
	}
	const runs = 100
	for _, grpc := range []bool{false, true} {
		if n := testing.AllocsPerRun(runs, func() {
			if TryMirror(c, grpc, "/pkg.Service/Method") {
				t.Fatal("TryMirror admitted past max_requests")
			}
		}); n != 0 {
			t.Errorf("a refused mirror (grpc %v) allocates %v times, want 0", grpc, n)
		}
	}
	// AllocsPerRun makes one warm-up run more.
	if got, want := stat("upstream_rq_pending_overflow"), 2*(runs+1); got != want {
		t.Errorf("upstream_rq_pending_overflow = %d, want %d", got, want)
	}
	ReleaseMirror(c)
	if got := c.Breakers.Snapshot().Requests.Active; got != 0 {
		t.Fatalf("%d slots held after ReleaseMirror, want 0", got)
	}
	if !TryMirror(c, false, "/") {
		t.Fatal("TryMirror refused after the slot was released")
	}
	ReleaseMirror(c)
}
