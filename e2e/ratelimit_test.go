package e2e

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// localRateLimitConfig has buckets that never refill within a test (fill
// interval one hour), so that the counts are exact however slow the
// machine: gRPC calls share 3 tokens, plain requests 4 (with
// x-ratelimit-* headers), and /per-user gives each x-user value 2.
func localRateLimitConfig(grpcAddr, webAddr, accessLog string, grpcTokens int) string {
	return fmt.Sprintf(`node: {id: e2e, zone: zone-a}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    stat_prefix: ingress
    access_log: [{path: %q}]
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - name: grpc
            match: {prefix: /grpc.testing.TestService/, grpc: true}
            cluster: grpc
            local_rate_limit:
              stat_prefix: grpc_rl
              token_bucket: {max_tokens: %d, tokens_per_fill: 1, fill_interval: 1h}
          - name: per-user
            match: {prefix: /per-user}
            cluster: web
            rate_limits: [{actions: [{request_headers: {header_name: x-user, descriptor_key: user}}]}]
            local_rate_limit:
              stat_prefix: per_user
              descriptors: [{entries: [{key: user}], token_bucket: {max_tokens: 2, fill_interval: 1h}}]
              enable_x_ratelimit_headers: DRAFT_VERSION_03
          - name: web
            match: {prefix: /}
            cluster: web
            local_rate_limit:
              stat_prefix: web_rl
              token_bucket: {max_tokens: 4, tokens_per_fill: 4, fill_interval: 1h}
              enable_x_ratelimit_headers: DRAFT_VERSION_03
clusters:
  - name: grpc
    endpoints: [{address: %s}]
  - name: web
    protocol: auto
    endpoints: [{address: %s}]
`, accessLog, grpcTokens, grpcAddr, webAddr)
}

func TestLocalRateLimit(t *testing.T) {
	b := startBackends(t, 1)[0]
	web := startEchoBackend(t)
	logPath := filepath.Join(t.TempDir(), "access.log")
	p := startProxy(t, localRateLimitConfig(b.Addr, web, logPath, 3))
	addr := p.listener("ingress")

	t.Run("grpc: RESOURCE_EXHAUSTED with flag RL past the bucket", func(t *testing.T) {
		client := testClient(t, addr)
		var codesGot []codes.Code
		var flags []string
		for range 5 {
			var hdr, trl metadata.MD
			_, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}, grpc.Header(&hdr), grpc.Trailer(&trl))
			codesGot = append(codesGot, status.Code(err))
			flags = append(flags, mdValue(hdr, trl, headerFlags))
		}
		want := []codes.Code{codes.OK, codes.OK, codes.OK, codes.ResourceExhausted, codes.ResourceExhausted}
		if fmt.Sprint(codesGot) != fmt.Sprint(want) {
			t.Errorf("codes %v, want %v", codesGot, want)
		}
		if fmt.Sprint(flags) != "[   RL RL]" {
			t.Errorf("response flags %q, want none, none, none, RL, RL", flags)
		}
		if n := b.MethodCalls(testgrpc.TestService_UnaryCall_FullMethodName); n != 3 {
			t.Errorf("the backend served %d calls, want 3", n)
		}
	})

	t.Run("http: HTTP/1.1 and h2c share the route's bucket; 429 with x-ratelimit headers", func(t *testing.T) {
		type result struct {
			status                   int
			limit, remaining, reset  string
			flags, body, backendSeen string
		}
		get := func(c *http.Client) result {
			resp, err := c.Get("http://" + addr + "/web")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			r := result{status: resp.StatusCode, limit: resp.Header.Get("X-Ratelimit-Limit"),
				remaining: resp.Header.Get("X-Ratelimit-Remaining"), reset: resp.Header.Get("X-Ratelimit-Reset"),
				flags: resp.Header.Get(headerFlags), backendSeen: resp.Header.Get("X-Backend")}
			if resp.StatusCode != http.StatusOK {
				r.body = string(body)
			}
			return r
		}
		h1, h2 := h1Client(), h2cClient()
		var got []result
		for _, c := range []*http.Client{h1, h2, h1, h2, h1, h2} {
			got = append(got, get(c))
		}
		for i, r := range got {
			wantStatus, wantRemaining := http.StatusOK, strconv.Itoa(3-i)
			if i >= 4 {
				wantStatus, wantRemaining = http.StatusTooManyRequests, "0"
			}
			if r.status != wantStatus || r.limit != "4" || r.remaining != wantRemaining {
				t.Errorf("request %d: status %d, x-ratelimit-limit %q, -remaining %q; want %d, 4, %s", i, r.status, r.limit, r.remaining, wantStatus, wantRemaining)
			}
			// The bucket refills in an hour: the reset is in whole
			// seconds, at most 3600.
			if n, err := strconv.Atoi(r.reset); err != nil || n < 1 || n > 3600 {
				t.Errorf("request %d: x-ratelimit-reset %q, want 1 to 3600", i, r.reset)
			}
			if i >= 4 && (r.flags != "RL" || r.body != "local_rate_limited\n" || r.backendSeen != "") {
				t.Errorf("request %d: refusal with flags %q, body %q, from backend %q; want RL, local_rate_limited, none", i, r.flags, r.body, r.backendSeen)
			}
		}
	})

	t.Run("http: a bucket per x-user value; no header, no descriptor, no limit", func(t *testing.T) {
		c := h1Client()
		send := func(user string) int {
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/per-user", nil)
			if user != "" {
				req.Header.Set("X-User", user)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		}
		var got []int
		for _, u := range []string{"ann", "ann", "ann", "bob", "", "", "", "bob", "bob"} {
			got = append(got, send(u))
		}
		want := []int{200, 200, 429, 200, 200, 200, 200, 200, 429}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("statuses %v, want %v", got, want)
		}
	})

	t.Run("stats per stat_prefix", func(t *testing.T) {
		m, _ := statsText(t, p, "")
		for _, c := range []struct {
			name string
			want int64
		}{
			{"grpc_rl.http_local_rate_limit.enabled", 5},
			{"grpc_rl.http_local_rate_limit.ok", 3},
			{"grpc_rl.http_local_rate_limit.rate_limited", 2},
			{"grpc_rl.http_local_rate_limit.enforced", 2},
			{"web_rl.http_local_rate_limit.enabled", 6},
			{"web_rl.http_local_rate_limit.ok", 4},
			{"web_rl.http_local_rate_limit.enforced", 2},
			{"per_user.http_local_rate_limit.enabled", 9},
			{"per_user.http_local_rate_limit.ok", 7},
			{"per_user.http_local_rate_limit.enforced", 2},
		} {
			if got, _ := statsInt(t, m, c.name); got != c.want {
				t.Errorf("%s = %d, want %d", c.name, got, c.want)
			}
		}
		// Prometheus shows the values of the last flush.
		if err := eventually(10*time.Second, func() error {
			fams, _ := statsPromScrape(t, p, "")
			if v, ok := statsPromValue(fams, "sightline_http_local_rate_limit_enforced_total", map[string]string{"local_http_ratelimit_prefix": "web_rl"}); !ok || v != 2 {
				return fmt.Errorf("sightline_http_local_rate_limit_enforced_total{local_http_ratelimit_prefix=web_rl} = %v (%v), want 2", v, ok)
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
	})

	t.Run("a reload builds the buckets anew from the new config", func(t *testing.T) {
		p.rewrite(localRateLimitConfig(b.Addr, web, logPath, 1))
		p.sighup()
		if err := eventually(10*time.Second, func() error {
			if n := p.counter("server.config_reload"); n != 1 {
				return fmt.Errorf("server.config_reload = %d", n)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		client := testClient(t, addr)
		var got []codes.Code
		for range 3 {
			_, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
			got = append(got, status.Code(err))
		}
		if want := []codes.Code{codes.OK, codes.ResourceExhausted, codes.ResourceExhausted}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("after the reload to max_tokens 1: codes %v, want %v", got, want)
		}
	})

	// Every refusal is in the access log with flag RL, once the proxy has
	// flushed it on exit.
	if code, _ := p.stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	refused := map[string]int{}
	for _, e := range readAccessLog(t, logPath) {
		if strings.Contains(fmt.Sprint(e["response_flags"]), "RL") {
			refused[fmt.Sprint(e["route_name"])]++
		}
	}
	if want := map[string]int{"grpc": 4, "web": 2, "per-user": 2}; fmt.Sprint(refused) != fmt.Sprint(want) {
		t.Errorf("access log lines with RL by route: %v, want %v", refused, want)
	}
}

// TestLoadSheddingConcurrencyBudget: with overload.max_active_requests 2
// and two calls held open, the next request is refused at once on
// either protocol (503, or UNAVAILABLE for gRPC, flag OM) and counted;
// once a call ends there is room again.
func TestLoadSheddingConcurrencyBudget(t *testing.T) {
	b := startBackends(t, 1)[0]
	web := startEchoBackend(t)
	// stop_accepting_connections above 1: never, so that the budget's
	// pressure does not close the HTTP/1.1 client's new connection.
	p := startProxy(t, fmt.Sprintf(`node: {id: e2e, zone: zone-a}
overload: {max_active_requests: 2, actions: {stop_accepting_connections: 2}}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    stat_prefix: ingress
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - {match: {prefix: /grpc.testing.TestService/, grpc: true}, cluster: grpc}
          - {match: {prefix: /}, cluster: web}
clusters:
  - {name: grpc, endpoints: [{address: %s}]}
  - {name: web, protocol: auto, endpoints: [{address: %s}]}
`, b.Addr, web))
	addr := p.listener("ingress")
	client := testClient(t, addr)

	// Two bidi calls held open, each proven through with a ping-pong.
	var held []testgrpc.TestService_FullDuplexCallClient
	for i := range 2 {
		s, err := client.FullDuplexCall(callCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}}}); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		held = append(held, s)
	}

	var hdr, trl metadata.MD
	_, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}, grpc.Header(&hdr), grpc.Trailer(&trl))
	if status.Code(err) != codes.Unavailable || mdValue(hdr, trl, headerFlags) != "OM" {
		t.Errorf("gRPC past the budget: %v, flags %q; want UNAVAILABLE, OM", err, mdValue(hdr, trl, headerFlags))
	}
	resp, err := h1Client().Get("http://" + addr + "/x")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(headerFlags) != "OM" {
		t.Errorf("HTTP/1.1 past the budget: %d, flags %q; want 503, OM", resp.StatusCode, resp.Header.Get(headerFlags))
	}
	if n := b.MethodCalls(testgrpc.TestService_UnaryCall_FullMethodName); n != 0 {
		t.Errorf("the backend served %d refused calls", n)
	}

	// One call ends: there is room again (once the proxy has finished
	// it, and the monitor has read the pressure back down).
	held[0].CloseSend()
	if _, err := held[0].Recv(); err != io.EOF {
		t.Fatalf("closing a held call: %v", err)
	}
	if err := eventually(10*time.Second, func() error {
		_, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
		return err
	}); err != nil {
		t.Errorf("after a held call ended: %v", err)
	}
	held[1].CloseSend()
	held[1].Recv()

	m, _ := statsText(t, p, "")
	if n, _ := statsInt(t, m, "http.ingress.downstream_rq_overload_close"); n < 2 {
		t.Errorf("http.ingress.downstream_rq_overload_close = %d, want at least the 2 refusals", n)
	}
}
