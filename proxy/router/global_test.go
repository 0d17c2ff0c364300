package router

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/flags"
	"github.com/sightline-proxy/sightline/proxy/grpcproto"
	"github.com/sightline-proxy/sightline/proxy/ratelimit"
	"github.com/sightline-proxy/sightline/proxy/route"
	"github.com/sightline-proxy/sightline/stats"
)

// scriptedService answers with what the test sets.
type scriptedService struct {
	rlsv3.UnimplementedRateLimitServiceServer
	mu   sync.Mutex
	code rlsv3.RateLimitResponse_Code
	err  error
	n    int
}

func (s *scriptedService) ShouldRateLimit(context.Context, *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	if s.err != nil {
		return nil, s.err
	}
	return &rlsv3.RateLimitResponse{OverallCode: s.code,
		Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{Code: s.code, LimitRemaining: 4,
			CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 9, Unit: rlsv3.RateLimitResponse_RateLimit_MINUTE}}}}, nil
}

func (s *scriptedService) set(code rlsv3.RateLimitResponse_Code, err error) {
	s.mu.Lock()
	s.code, s.err = code, err
	s.mu.Unlock()
}

func TestGlobalCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &scriptedService{}
	srv := grpc.NewServer()
	rlsv3.RegisterRateLimitServiceServer(srv, svc)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)

	st, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clusters := map[string]*cluster.Cluster{}
	for name, addr := range map[string]string{"c": "127.0.0.1:1", "rls": ln.Addr().String()} {
		c, err := cluster.New(config.Cluster{Name: name, LBPolicy: "round_robin", Endpoints: []config.Endpoint{{Address: addr}}},
			cluster.Options{Stats: st.Cluster(name)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		clusters[name] = c
	}
	services := ratelimit.NewServices()
	t.Cleanup(services.Close)
	table := func(deny bool) *route.Table {
		lc := &config.Listener{
			RateLimit: &config.RateLimitService{Domain: "d", Cluster: "rls", Timeout: config.Duration(10 * time.Second),
				FailureModeDeny: deny, EnableXRateLimitHeaders: config.XRateLimitDraft03},
			VirtualHosts: []config.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []config.Route{
				{Match: config.RouteMatch{Prefix: "/limited"}, Cluster: "c",
					RateLimits: []config.RateLimitPolicy{{Actions: []config.RateLimitAction{{RequestHeaders: &config.RequestHeadersAction{HeaderName: "x-user", DescriptorKey: "user"}}}}}},
				{Match: config.RouteMatch{Prefix: "/"}, Cluster: "c"},
			}}},
		}
		tbl, err := route.New(lc.VirtualHosts, clusters, route.WithListener(lc), route.WithServices(services), route.WithStats(st))
		if err != nil {
			t.Fatal(err)
		}
		return tbl
	}
	allow, deny := table(false), table(true)
	rl, up := st.Cluster("c").RateLimit(), st.Cluster("c").Upstream()
	counts := func() [5]int64 {
		return [5]int64{rl.OK.Value(), rl.OverLimit.Value(), rl.Error.Value(), rl.FailureModeAllowed.Value(), up.RqFinished.Value()}
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	limitHeaders := RateLimitHeaders{Set: true, Limit: 9, Remaining: 4}
	tests := []struct {
		name      string
		tbl       *route.Table
		path      string
		user      string
		ctx       context.Context
		code      rlsv3.RateLimitResponse_Code
		err       error
		wantCheck bool
		want      GlobalResult
		wantDelta [5]int64 // ok, over_limit, error, failure_mode_allowed, upstream_rq_completed
	}{
		{name: "a route without rate_limits: no check", tbl: allow, path: "/other", user: "ann"},
		{name: "no descriptor made: no check", tbl: allow, path: "/limited"},
		{name: "ok", tbl: allow, path: "/limited", user: "ann", code: rlsv3.RateLimitResponse_OK, wantCheck: true,
			want: GlobalResult{RateLimit: limitHeaders}, wantDelta: [5]int64{1, 0, 0, 0, 0}},
		{name: "over limit", tbl: allow, path: "/limited", user: "ann", code: rlsv3.RateLimitResponse_OVER_LIMIT, wantCheck: true,
			want:      GlobalResult{Refused: true, Reply: Reply{Flag: flags.RateLimited, Status: 429, GRPC: grpcproto.ResourceExhausted, Message: "rate_limited", RateLimit: limitHeaders}},
			wantDelta: [5]int64{0, 1, 0, 0, 1}},
		{name: "service error, failure mode allow", tbl: allow, path: "/limited", user: "ann", err: status.Error(codes.Internal, "x"), wantCheck: true,
			wantDelta: [5]int64{0, 0, 1, 1, 0}},
		{name: "service error, failure_mode_deny", tbl: deny, path: "/limited", user: "ann", err: status.Error(codes.Internal, "x"), wantCheck: true,
			want:      GlobalResult{Refused: true, Reply: Reply{Flag: flags.RateLimitServiceError, Status: 500, GRPC: grpcproto.Unavailable, Message: "rate limit service error"}},
			wantDelta: [5]int64{0, 0, 1, 0, 0}},
		{name: "the client went away: nothing counted", tbl: deny, path: "/limited", user: "ann", ctx: cancelled, code: rlsv3.RateLimitResponse_OK, wantCheck: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc.set(tt.code, tt.err)
			h := mapHeaders{}
			if tt.user != "" {
				h["x-user"] = tt.user
			}
			req := Request{Authority: "a", Path: tt.path, Headers: h}
			var p Plan
			if _, ok := Decide(tt.tbl, &req, &p); !ok {
				t.Fatal("Decide refused")
			}
			gc := NewGlobalCheck(&req, &p)
			if (gc != nil) != tt.wantCheck {
				t.Fatalf("check made: %v, want %v", gc != nil, tt.wantCheck)
			}
			if gc == nil {
				return
			}
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			before := counts()
			got := gc.Run(ctx)
			if got.Refused != tt.want.Refused || got.Reply != tt.want.Reply || got.RateLimit != tt.want.RateLimit {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			after := counts()
			for i := range after {
				if d := after[i] - before[i]; d != tt.wantDelta[i] {
					t.Errorf("stat %d (ok, over_limit, error, failure_mode_allowed, upstream_rq_completed) moved by %d, want %d", i, d, tt.wantDelta[i])
				}
			}
		})
	}
}
