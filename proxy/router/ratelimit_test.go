package router

import (
	"fmt"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/flags"
	"github.com/sightline-proxy/sightline/proxy/grpcproto"
	"github.com/sightline-proxy/sightline/proxy/route"
	"github.com/sightline-proxy/sightline/stats"
)

type stepClock struct{ now time.Duration }

func (c *stepClock) read() time.Duration { return c.now }

func bucket(max, perFill uint32, every time.Duration) *config.TokenBucket {
	return &config.TokenBucket{MaxTokens: max, TokensPerFill: perFill, FillInterval: config.Duration(every)}
}

func ptrTo[T any](v T) *T { return &v }

// limitedTable builds a listener with a listener-wide limit, a virtual
// host with its own, and routes: /own with its own per-client limit, /vh
// inheriting the virtual host's, and a second virtual host inheriting the
// listener's.
func limitedTable(t testing.TB, clk *stepClock, st *stats.Store) *route.Table {
	t.Helper()
	c, err := cluster.New(config.Cluster{Name: "c", LBPolicy: "round_robin", Endpoints: []config.Endpoint{{Address: "127.0.0.1:1"}}},
		cluster.Options{Stats: st.Cluster("c")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	lc := &config.Listener{
		Name: "l",
		LocalRateLimit: &config.LocalRateLimit{StatPrefix: "listener", TokenBucket: bucket(1, 1, time.Second),
			EnableXRateLimitHeaders: config.XRateLimitDraft03},
		VirtualHosts: []config.VirtualHost{
			{
				Name: "api", Domains: []string{"api"},
				LocalRateLimit: &config.LocalRateLimit{StatPrefix: "vh", TokenBucket: bucket(3, 3, time.Second),
					RateLimitedAsResourceExhausted: ptrTo(false)},
				Routes: []config.Route{
					{
						Match: config.RouteMatch{Prefix: "/own"}, Cluster: "c",
						LocalRateLimit: &config.LocalRateLimit{
							StatPrefix: "per_client", Status: 503,
							Descriptors: []config.LocalRateLimitDescriptor{
								{Entries: []config.RateLimitEntry{{Key: "remote_address"}, {Key: "tier", Value: "free"}}, TokenBucket: *bucket(2, 1, time.Second)},
							},
							EnableXRateLimitHeaders: config.XRateLimitDraft03,
						},
						RateLimits: []config.RateLimitPolicy{{Actions: []config.RateLimitAction{
							{RemoteAddress: &config.RemoteAddressAction{}},
							{RequestHeaders: &config.RequestHeadersAction{HeaderName: "x-tier", DescriptorKey: "tier"}},
						}}},
					},
					{Match: config.RouteMatch{Prefix: "/vh"}, Cluster: "c"},
				},
			},
			{Name: "other", Domains: []string{"*"}, Routes: []config.Route{{Match: config.RouteMatch{Prefix: "/"}, Cluster: "c"}}},
		},
	}
	tbl, err := route.New(lc.VirtualHosts, map[string]*cluster.Cluster{"c": c}, route.WithListener(lc), route.WithStats(st), route.WithClock(clk.read))
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

func TestDecideLocalRateLimit(t *testing.T) {
	type give struct {
		authority, path, remote, tier string
		grpc                          bool
	}
	type want struct {
		admitted bool
		reply    Reply
		headers  RateLimitHeaders
	}
	listenerRefusal := Reply{Flag: flags.RateLimited, Status: 429, GRPC: grpcproto.ResourceExhausted, Message: "local_rate_limited",
		RateLimit: RateLimitHeaders{Set: true, Limit: 1, Remaining: 0, Reset: 600 * time.Millisecond}}
	type step struct {
		give give
		want want
	}
	type test struct {
		name  string
		steps []step
	}
	var tests []test
	add := func(name string, steps ...any) {
		tt := test{name: name}
		for i := 0; i < len(steps); i += 2 {
			tt.steps = append(tt.steps, step{steps[i].(give), steps[i+1].(want)})
		}
		tests = append(tests, tt)
	}
	add("the listener's limit covers virtual hosts without one, and requests with no route",
		give{authority: "x", path: "/"}, want{admitted: true, headers: RateLimitHeaders{Set: true, Limit: 1, Remaining: 0, Reset: 600 * time.Millisecond}},
		give{authority: "x", path: "/"}, want{reply: listenerRefusal},
	)
	add("a virtual host's limit replaces the listener's; gRPC gets UNAVAILABLE when asked",
		give{authority: "api", path: "/vh"}, want{admitted: true},
		give{authority: "api", path: "/vh"}, want{admitted: true},
		give{authority: "api", path: "/vh", grpc: true}, want{admitted: true},
		give{authority: "api", path: "/vh", grpc: true}, want{reply: Reply{Flag: flags.RateLimited, Status: 429, GRPC: grpcproto.Unavailable, Message: "local_rate_limited"}},
	)
	perClient := func(remaining uint32) RateLimitHeaders {
		return RateLimitHeaders{Set: true, Limit: 2, Remaining: remaining, Reset: 600 * time.Millisecond}
	}
	add("a route's per-client descriptor: a bucket per address, other requests unlimited (no default bucket)",
		give{authority: "api", path: "/own", remote: "10.0.0.1:5000", tier: "free"}, want{admitted: true, headers: perClient(1)},
		give{authority: "api", path: "/own", remote: "10.0.0.1:5001", tier: "free"}, want{admitted: true, headers: perClient(0)},
		give{authority: "api", path: "/own", remote: "10.0.0.1:5002", tier: "free"}, want{reply: Reply{Flag: flags.RateLimited, Status: 503, GRPC: grpcproto.ResourceExhausted, Message: "local_rate_limited", RateLimit: perClient(0)}},
		give{authority: "api", path: "/own", remote: "[::1]:5000", tier: "free"}, want{admitted: true, headers: perClient(1)},
		give{authority: "api", path: "/own", remote: "10.0.0.1:5003", tier: "paid"}, want{admitted: true},
		give{authority: "api", path: "/own", remote: "10.0.0.1:5003"}, want{admitted: true},
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &stepClock{}
			tbl := limitedTable(t, clk, stats.Nop())
			clk.now = 400 * time.Millisecond // fills count from the table's build
			for i, s := range tt.steps {
				h := mapHeaders{}
				if s.give.tier != "" {
					h["x-tier"] = s.give.tier
				}
				req := Request{Authority: s.give.authority, Path: s.give.path, Headers: h, GRPC: s.give.grpc, RemoteAddr: s.give.remote, Method: "GET"}
				var p Plan
				rp, ok := Decide(tbl, &req, &p)
				if s.want.admitted {
					if !ok {
						t.Fatalf("step %d: refused with %+v", i, rp)
					}
					if p.RateLimit != s.want.headers {
						t.Errorf("step %d: headers %+v, want %+v", i, p.RateLimit, s.want.headers)
					}
					continue
				}
				if ok || rp != s.want.reply {
					t.Errorf("step %d: got %+v %v, want %+v", i, rp, ok, s.want.reply)
				}
			}
		})
	}
}

// TestDecideLocalRateLimitWindows counts admitted and refused requests
// over fixed windows of the injected clock, and the stats.
func TestDecideLocalRateLimitWindows(t *testing.T) {
	st, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clk := &stepClock{}
	tbl := limitedTable(t, clk, st)
	windows := []struct {
		at       time.Duration
		send     int
		admitted int
	}{
		{0, 10, 3},
		{500 * time.Millisecond, 10, 0},
		{time.Second, 10, 3},
		{5 * time.Second, 2, 2},
		{5 * time.Second, 2, 1},
	}
	total, admitted := 0, 0
	for _, w := range windows {
		clk.now = w.at
		got := 0
		for range w.send {
			req := Request{Authority: "api", Path: "/vh", Headers: mapHeaders{}}
			var p Plan
			if _, ok := Decide(tbl, &req, &p); ok {
				got++
			}
		}
		if got != w.admitted {
			t.Errorf("at %s: admitted %d of %d, want %d", w.at, got, w.send, w.admitted)
		}
		total += w.send
		admitted += got
	}
	vh := st.LocalRateLimit("vh")
	if vh.Enabled.Value() != int64(total) || vh.OK.Value() != int64(admitted) ||
		vh.RateLimited.Value() != int64(total-admitted) || vh.Enforced.Value() != int64(total-admitted) {
		t.Errorf("vh stats: enabled %d ok %d rate_limited %d enforced %d; want %d %d %d %d",
			vh.Enabled.Value(), vh.OK.Value(), vh.RateLimited.Value(), vh.Enforced.Value(), total, admitted, total-admitted, total-admitted)
	}
	if n := st.LocalRateLimit("listener").Enabled.Value(); n != 0 {
		t.Errorf("the listener's limit checked %d requests of a virtual host with its own", n)
	}
}

func TestDecideLocalRateLimitAllocatesNothing(t *testing.T) {
	clk := &stepClock{}
	tbl := limitedTable(t, clk, stats.Nop())
	h := mapHeaders{"x-tier": "free"}
	for _, path := range []string{"/own", "/vh"} {
		n := testing.AllocsPerRun(200, func() {
			req := Request{Authority: "api", Path: path, Headers: h, RemoteAddr: "10.0.0.9:1234"}
			var p Plan
			Decide(tbl, &req, &p)
		})
		if n != 0 {
			t.Errorf("Decide on %s allocates %v times, want 0", path, n)
		}
	}
}

func BenchmarkDecideLocalRateLimit(b *testing.B) {
	clk := &stepClock{}
	tbl := limitedTable(b, clk, stats.Nop())
	h := mapHeaders{"x-tier": "free"}
	for _, path := range []string{"/vh", "/own"} {
		b.Run(fmt.Sprintf("path=%s", path), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := Request{Authority: "api", Path: path, Headers: h, RemoteAddr: "10.0.0.9:1234"}
				var p Plan
				Decide(tbl, &req, &p)
			}
		})
	}
}
