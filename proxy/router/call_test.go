package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/flags"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/retry"
	"github.com/sightline-proxy/sightline/proxy/upstream"
	"github.com/sightline-proxy/sightline/stats"
)

// testCluster builds a static cluster of n hosts (no pools: the router
// never dials) with a real stats store, and a function that reads a
// cluster stat's value from /stats as a user would.
func testCluster(t *testing.T, n int, cb config.CircuitBreakers) (*cluster.Cluster, func(string) int) {
	t.Helper()
	st, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Cluster{Name: "c", LBPolicy: "round_robin", CircuitBreakers: cb}
	for i := range n {
		cfg.Endpoints = append(cfg.Endpoints, config.Endpoint{Address: "127.0.0.1:" + strconv.Itoa(10000+i)})
	}
	c, err := cluster.New(cfg, cluster.Options{Stats: st.Cluster("c")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, func(name string) int {
		rec := httptest.NewRecorder()
		st.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/stats", nil))
		body, _ := io.ReadAll(rec.Body)
		for _, l := range strings.Split(string(body), "\n") {
			if k, v, ok := strings.Cut(l, ": "); ok && k == "cluster.c."+name {
				n, _ := strconv.Atoi(v)
				return n
			}
		}
		return 0
	}
}

func policy(t *testing.T, on string, n int) retry.Policy {
	t.Helper()
	p, err := retry.New(config.RetryPolicy{RetryOn: on, NumRetries: n})
	if err != nil {
		t.Fatal(err)
	}
	return *p
}

// TestCallCountsOnceAsEnvoy drives Call through whole calls and checks
// the stats a user reads afterwards.
func TestCallCountsOnceAsEnvoy(t *testing.T) {
	resp := func(code int) Outcome { return Outcome{Status: code, GRPCStatus: -1} }
	tests := []struct {
		name     string
		grpc     bool
		attempts []Outcome // every attempt but the last is offered for a retry
		final    Outcome   // how the call ended
		noHost   bool      // the call ends before any attempt (UH)
		on       string    // retry_on; "" means 5xx,unavailable
		want     map[string]int
		wantFlag flags.Flags
	}{
		{name: "one 200", final: resp(200),
			want: map[string]int{"upstream_rq_total": 1, "upstream_rq_200": 1, "upstream_rq_2xx": 1, "upstream_rq_completed": 1, "upstream_rq_retry": 0}},
		{name: "503 retried then 200", attempts: []Outcome{resp(503)}, final: resp(200),
			want: map[string]int{"upstream_rq_total": 2, "upstream_rq_200": 1, "upstream_rq_503": 0, "retry.upstream_rq_503": 1,
				"upstream_rq_retry": 1, "upstream_rq_retry_success": 1, "upstream_rq_completed": 1}},
		{name: "retries run out", attempts: []Outcome{resp(503), resp(503)}, final: resp(503), wantFlag: flags.UpstreamRetryLimit,
			want: map[string]int{"upstream_rq_total": 3, "upstream_rq_503": 1, "retry.upstream_rq_503": 2, "upstream_rq_retry": 2,
				"upstream_rq_retry_success": 0, "upstream_rq_retry_limit_exceeded": 1}},
		{name: "route timeout", final: Outcome{GRPCStatus: -1, End: EndTimeout},
			want: map[string]int{"upstream_rq_504": 1, "upstream_rq_timeout": 1, "upstream_rq_per_try_timeout": 0, "upstream_rq_completed": 1}},
		{name: "per-try timeout, not retried", on: "unavailable", final: Outcome{GRPCStatus: -1, End: EndPerTryTimeout},
			want: map[string]int{"upstream_rq_504": 1, "upstream_rq_timeout": 0, "upstream_rq_per_try_timeout": 1}},
		{name: "client went away", final: Outcome{GRPCStatus: -1, End: EndCancelled, TxReset: true},
			want: map[string]int{"upstream_rq_total": 1, "upstream_rq_cancelled": 1, "upstream_rq_completed": 0, "upstream_rq_tx_reset": 1, "upstream_rq_5xx": 0, "upstream_rq_4xx": 0}},
		{name: "no healthy upstream", noHost: true, final: Outcome{GRPCStatus: -1, End: EndNoHealthy},
			want: map[string]int{"upstream_rq_total": 0, "upstream_rq_503": 1, "upstream_cx_none_healthy": 1, "upstream_rq_completed": 1}},
		{name: "reset before headers", on: "unavailable", final: Outcome{GRPCStatus: -1, End: EndReset},
			want: map[string]int{"upstream_rq_503": 1, "upstream_rq_rx_reset": 1}},
		{name: "gRPC call retried on a trailers-only UNAVAILABLE counts once per method", grpc: true,
			attempts: []Outcome{{Status: 200, GRPCStatus: 14}}, final: Outcome{Status: 200, GRPCStatus: 0},
			want: map[string]int{"grpc.pkg.Svc.M.total": 1, "grpc.pkg.Svc.M.success": 1, "grpc.pkg.Svc.M.14": 0, "retry.upstream_rq_200": 1, "upstream_rq_200": 1}},
		{name: "gRPC retried UNAVAILABLE, limit hit: no retry success", grpc: true,
			attempts: []Outcome{{Status: 200, GRPCStatus: 14}, {Status: 200, GRPCStatus: 14}}, final: Outcome{Status: 200, GRPCStatus: 14},
			wantFlag: flags.UpstreamRetryLimit,
			want:     map[string]int{"grpc.pkg.Svc.M.total": 1, "grpc.pkg.Svc.M.14": 1, "upstream_rq_retry_success": 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl, stat := testCluster(t, 3, config.CircuitBreakers{})
			c := Call{GRPC: tt.grpc, Path: "/pkg.Svc/M"}
			c.Cluster = cl
			on := tt.on
			if on == "" {
				on = "5xx,unavailable"
			}
			c.Retry = policy(t, on, 2)
			if !c.TryRequest() {
				t.Fatal("TryRequest refused")
			}
			var flag flags.Flags
			if !tt.noHost {
				c.Begin(c.Pick())
				for i := range tt.attempts {
					o := tt.attempts[i]
					again, f := c.ShouldRetry(&o, false, true, time.Time{})
					if !again {
						t.Fatalf("attempt %d not retried (flag %v)", i+1, f)
					}
					c.Retried(&o)
					h := c.Pick()
					if h == nil {
						t.Fatal("no host for the retry")
					}
					for _, x := range c.tried {
						if x == h {
							t.Fatalf("retry %d went to %s, tried already", i+1, h.Address)
						}
					}
					c.Begin(h)
				}
				if again, f := c.ShouldRetry(&tt.final, false, true, time.Time{}); again {
					t.Fatal("the final outcome was retried")
				} else {
					flag |= f
				}
			}
			c.Finish(&tt.final)
			if flag != tt.wantFlag {
				t.Errorf("flags %v, want %v", flag, tt.wantFlag)
			}
			for k, want := range tt.want {
				if got := stat(k); got != want {
					t.Errorf("%s = %d, want %d", k, got, want)
				}
			}
			if got := stat("upstream_rq_active"); got != 0 {
				t.Errorf("upstream_rq_active = %d after the call", got)
			}
			if u := cl.Breakers.Snapshot(); u.Requests.Active != 0 || u.Retries.Active != 0 {
				t.Errorf("breaker slots held after the call: %+v", u)
			}
		})
	}
}

// TestRetryBreakerReleasesBeforeTaking: with max_retries 1, a call's
// second retry is allowed, since its first retry has ended (a call holds
// one retry slot at most); a second call's retry meanwhile is refused (UO).
func TestRetryBreakerReleasesBeforeTaking(t *testing.T) {
	cl, stat := testCluster(t, 3, config.CircuitBreakers{MaxRetries: 1})
	a, b := Call{}, Call{}
	for _, c := range []*Call{&a, &b} {
		c.Cluster = cl
		c.Retry = policy(t, "5xx", 3)
		c.TryRequest()
		c.Begin(c.Pick())
	}
	o := Outcome{Status: 503, GRPCStatus: -1}
	if ok, _ := a.ShouldRetry(&o, false, true, time.Time{}); !ok {
		t.Fatal("first retry refused")
	}
	a.Retried(&o)
	a.Begin(a.Pick())
	if ok, f := b.ShouldRetry(&o, false, true, time.Time{}); ok || f != flags.UpstreamOverflow {
		t.Fatalf("another call's retry while the slot is held: %v %v, want refused with UO", ok, f)
	}
	if ok, f := a.ShouldRetry(&o, false, true, time.Time{}); !ok {
		t.Fatalf("the call's second retry refused (%v) though its first has ended", f)
	}
	if got := stat("upstream_rq_retry_overflow"); got != 1 {
		t.Errorf("upstream_rq_retry_overflow = %d, want 1", got)
	}
}

// TestRetryNotPastDeadlineOrUnreplayable: an expired deadline or a body
// that could not be kept ends the call with the outcome it has.
func TestRetryNotPastDeadlineOrUnreplayable(t *testing.T) {
	cl, _ := testCluster(t, 2, config.CircuitBreakers{})
	c := Call{}
	c.Cluster = cl
	c.Retry = policy(t, "5xx", 3)
	c.Begin(c.Pick())
	o := Outcome{Status: 503, GRPCStatus: -1}
	if ok, _ := c.ShouldRetry(&o, false, true, time.Now().Add(-time.Millisecond)); ok {
		t.Error("retried past the deadline")
	}
	if ok, _ := c.ShouldRetry(&o, false, false, time.Time{}); ok {
		t.Error("retried a request whose body was not kept")
	}
	if d := c.BackoffWait(time.Now().Add(time.Millisecond)); d > time.Millisecond {
		t.Errorf("back-off %v runs past the deadline", d)
	}
	c.Finish(&o)
}

func TestHeaderPolicy(t *testing.T) {
	tests := []struct {
		name         string
		trust, owned bool
		want         bool
	}{
		{name: "Connection", want: true},
		{name: "keep-alive", want: true},
		{name: "Proxy-Authorization", want: true},
		{name: "x-sightline-max-retries", want: true},
		{name: "X-Sightline-Max-Retries", trust: true, want: false},
		{name: "x-request-id", owned: true, want: true},
		{name: "x-request-id", want: false},
		{name: "X-Forwarded-For", trust: true, want: true},
		{name: "content-type", want: false},
		{name: "x-sightline", want: false},
	}
	for _, tt := range tests {
		if got := DropRequestHeader(tt.name, tt.trust, tt.owned); got != tt.want {
			t.Errorf("DropRequestHeader(%q, trust %v, owned %v) = %v, want %v", tt.name, tt.trust, tt.owned, got, tt.want)
		}
	}
	for _, tt := range []struct{ prior, ip, want string }{
		{"", "10.0.0.1", "10.0.0.1"},
		{"192.0.2.7", "10.0.0.1", "192.0.2.7, 10.0.0.1"},
		{"192.0.2.7", "", "192.0.2.7"},
	} {
		if got := ForwardedFor(tt.prior, tt.ip); got != tt.want {
			t.Errorf("ForwardedFor(%q, %q) = %q, want %q", tt.prior, tt.ip, got, tt.want)
		}
	}
}

func BenchmarkCall(b *testing.B) {
	st, _ := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{})
	cl, _ := cluster.New(config.Cluster{Name: "c", LBPolicy: "round_robin", Endpoints: []config.Endpoint{{Address: "127.0.0.1:1"}}},
		cluster.Options{Stats: st.Cluster("c")})
	defer cl.Close()
	b.ReportAllocs()
	var c Call
	for b.Loop() {
		c.Reset()
		c.Cluster = cl
		c.TryRequest()
		c.Begin(c.Pick())
		c.Finish(&Outcome{Status: 200, GRPCStatus: -1})
	}
}

// TestRun drives the blocking codecs' loop with attempts made up here.
func TestRun(t *testing.T) {
	tests := []struct {
		name        string
		hosts       int
		outcomes    []Outcome // what each attempt returns, in turn
		deadline    time.Duration
		backoffBase time.Duration
		wantTries   int
		wantEnd     End
		wantReply   Reply
		wantBetween bool
		wantFlags   flags.Flags
	}{
		{name: "first attempt answers", hosts: 2, outcomes: []Outcome{{Status: 200, GRPCStatus: -1}}, wantTries: 1},
		{name: "503 then 200", hosts: 2, outcomes: []Outcome{{Status: 503, GRPCStatus: -1}, {Status: 200, GRPCStatus: -1}}, wantTries: 2},
		{name: "retries run out", hosts: 3, outcomes: []Outcome{{Status: 503, GRPCStatus: -1}, {Status: 503, GRPCStatus: -1}, {Status: 503, GRPCStatus: -1}},
			wantTries: 3, wantFlags: flags.UpstreamRetryLimit},
		{name: "deadline during the back-off", hosts: 2, outcomes: []Outcome{{Status: 503, GRPCStatus: -1}}, deadline: 20 * time.Millisecond, backoffBase: time.Hour,
			wantTries: 1, wantEnd: EndTimeout, wantReply: ReplyTimeout, wantBetween: true},
		{name: "the client leaves", hosts: 2, outcomes: []Outcome{{GRPCStatus: -1, End: EndCancelled}}, wantTries: 1, wantEnd: EndCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl, _ := testCluster(t, tt.hosts, config.CircuitBreakers{})
			var c Call
			c.Cluster = cl
			c.Retry = policy(t, "5xx", 2)
			c.Retry.BackoffBase, c.Retry.BackoffMax = time.Millisecond, time.Millisecond
			if tt.backoffBase > 0 {
				c.Retry.BackoffBase, c.Retry.BackoffMax = tt.backoffBase, 2*tt.backoffBase
			}
			var deadline time.Time
			if tt.deadline > 0 {
				deadline = time.Now().Add(tt.deadline)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if !deadline.IsZero() {
				ctx, cancel = context.WithDeadline(ctx, deadline)
				defer cancel()
			}
			first := c.Pick()
			c.Begin(first)
			n := 0
			seen := map[string]bool{}
			o, rp, between := c.Run(ctx, deadline, func() bool { return true }, first, func(h *host.Host) Outcome {
				if seen[h.Address] && len(seen) < tt.hosts {
					t.Errorf("attempt %d went to %s again while another host was untried", n+1, h.Address)
				}
				seen[h.Address] = true
				o := tt.outcomes[n]
				n++
				return o
			}, func(*Outcome) bool { return true })
			c.Finish(&o)
			if n != tt.wantTries || c.Tries != tt.wantTries {
				t.Errorf("%d attempts (Tries %d), want %d", n, c.Tries, tt.wantTries)
			}
			if o.End != tt.wantEnd || rp != tt.wantReply || between != tt.wantBetween || c.Flags != tt.wantFlags {
				t.Errorf("Run = end %d, reply %q, between %v, flags %v; want %d, %q, %v, %v",
					o.End, rp.Message, between, c.Flags, tt.wantEnd, tt.wantReply.Message, tt.wantBetween, tt.wantFlags)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	live := context.Background()
	for _, tt := range []struct {
		err          error
		ctx          context.Context
		gone, perTry bool
		want         End
	}{
		{err: errors.New("x"), ctx: live, perTry: true, want: EndPerTryTimeout},
		{err: errors.New("x"), ctx: done, gone: true, want: EndCancelled},
		{err: errors.New("x"), ctx: done, want: EndTimeout},
		{err: fmt.Errorf("%w: %w", upstream.ErrConnect, upstream.ErrOverflow), ctx: live, want: EndOverflow},
		{err: fmt.Errorf("%w: dialing", upstream.ErrConnect), ctx: live, want: EndConnectFailure},
		{err: io.ErrUnexpectedEOF, ctx: live, want: EndReset},
	} {
		if got := Classify(tt.err, tt.ctx, tt.gone, tt.perTry); got != tt.want {
			t.Errorf("Classify(%v, gone %v, perTry %v) = %d, want %d", tt.err, tt.gone, tt.perTry, got, tt.want)
		}
	}
}
