package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sightline-proxy/sightline/internal/testnet"
)

// rateLimitServer is a conforming rate limit service
// (envoy.service.ratelimit.v3.RateLimitService) from go-control-plane's
// generated stubs: each distinct descriptor set of a domain gets limit
// requests, then OVER_LIMIT. It records what it was asked.
type rateLimitServer struct {
	rlsv3.UnimplementedRateLimitServiceServer
	limit uint32
	// hold, when set, keeps requests with a descriptor entry user=hold
	// waiting until it is closed.
	hold chan struct{}

	mu    sync.Mutex
	hits  map[string]uint32
	asked []string // "domain: [k=v,k=v] [k=v]" per request
}

func (s *rateLimitServer) ShouldRateLimit(_ context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	var b strings.Builder
	b.WriteString(req.GetDomain() + ":")
	for _, d := range req.GetDescriptors() {
		var kv []string
		for _, e := range d.GetEntries() {
			kv = append(kv, e.GetKey()+"="+e.GetValue())
		}
		b.WriteString(" [" + strings.Join(kv, ",") + "]")
	}
	key := b.String()
	if s.hold != nil && strings.Contains(key, "user=hold") {
		<-s.hold
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked = append(s.asked, key)
	s.hits[key]++
	n := s.hits[key]
	resp := &rlsv3.RateLimitResponse{
		OverallCode:          rlsv3.RateLimitResponse_OK,
		ResponseHeadersToAdd: []*corev3.HeaderValue{{Key: "x-rls-hits", Value: fmt.Sprint(n)}},
	}
	remaining := uint32(0)
	if n <= s.limit {
		remaining = s.limit - n
	} else {
		resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
	}
	for range req.GetDescriptors() {
		resp.Statuses = append(resp.Statuses, &rlsv3.RateLimitResponse_DescriptorStatus{
			Code:               resp.OverallCode,
			CurrentLimit:       &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: s.limit, Unit: rlsv3.RateLimitResponse_RateLimit_MINUTE},
			LimitRemaining:     remaining,
			DurationUntilReset: durationpb.New(42e9),
		})
	}
	return resp, nil
}

func (s *rateLimitServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.asked)
}

func startRateLimitServer(t *testing.T, limit uint32) (*rateLimitServer, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rateLimitServer{limit: limit, hits: map[string]uint32{}, hold: make(chan struct{})}
	srv := grpc.NewServer()
	rlsv3.RegisterRateLimitServiceServer(srv, s)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return s, ln.Addr().String()
}

// globalRateLimitConfig: listener "ingress" asks the service at rlsAddr;
// "allow" and "deny" ask one at a closed port, the first letting requests
// through (the default), the second refusing them (failure_mode_deny).
func globalRateLimitConfig(grpcAddr, webAddr, rlsAddr, downAddr string) string {
	routes := `
        routes:
          - match: {path: /grpc.testing.TestService/EmptyCall, grpc: true}
            cluster: grpc
            timeout: 1s
            rate_limits: [{actions: [{request_headers: {header_name: x-user, descriptor_key: user}}]}]
          - match: {prefix: /grpc.testing.TestService/, grpc: true}
            cluster: grpc
            rate_limits:
              - actions: [{generic_key: {descriptor_value: api}}, {remote_address: {}}]
              - actions: [{request_headers: {header_name: x-user, descriptor_key: user}}]
          - match: {prefix: /h1}
            cluster: web1
            rate_limits: [{actions: [{header_value_match: {descriptor_value: tagged, headers: [{name: x-tag, present: true}]}}]}]
          - match: {prefix: /}
            cluster: web
            rate_limits: [{actions: [{request_headers: {header_name: x-user, descriptor_key: user}}]}]`
	return fmt.Sprintf(`node: {id: e2e, zone: zone-a}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    rate_limit: {domain: e2e, cluster: ratelimit, timeout: 10s, enable_x_ratelimit_headers: DRAFT_VERSION_03}
    virtual_hosts:
      - name: all
        domains: ['*']%[1]s
  - name: allow
    address: 127.0.0.1:0
    rate_limit: {domain: e2e, cluster: ratelimit_down, timeout: 10s}
    virtual_hosts:
      - name: all
        domains: ['*']%[1]s
  - name: deny
    address: 127.0.0.1:0
    rate_limit: {domain: e2e, cluster: ratelimit_down, timeout: 10s, failure_mode_deny: true}
    virtual_hosts:
      - name: all
        domains: ['*']%[1]s
clusters:
  - name: grpc
    endpoints: [{address: %[2]s}]
  - name: web
    protocol: auto
    endpoints: [{address: %[3]s}]
  - name: web1
    protocol: http1
    endpoints: [{address: %[3]s}]
  - name: ratelimit
    endpoints: [{address: %[4]s}]
  - name: ratelimit_down
    endpoints: [{address: %[5]s}]
`, routes, grpcAddr, webAddr, rlsAddr, downAddr)
}

func TestGlobalRateLimit(t *testing.T) {
	b := startBackends(t, 1)[0]
	web := startEchoBackend(t)
	rls, rlsAddr := startRateLimitServer(t, 3)
	down := testnet.ClosedPort(t)
	p := startProxy(t, globalRateLimitConfig(b.Addr, web, rlsAddr, down))
	addr := p.listener("ingress")

	t.Run("grpc: the service's OVER_LIMIT is RESOURCE_EXHAUSTED, flag RL", func(t *testing.T) {
		client := testClient(t, addr)
		var got []codes.Code
		var flags, hits []string
		for range 5 {
			var hdr, trl metadata.MD
			_, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}, grpc.Header(&hdr), grpc.Trailer(&trl))
			got = append(got, status.Code(err))
			flags = append(flags, mdValue(hdr, trl, headerFlags))
			hits = append(hits, mdValue(hdr, trl, "x-rls-hits"))
		}
		if want := []codes.Code{codes.OK, codes.OK, codes.OK, codes.ResourceExhausted, codes.ResourceExhausted}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("codes %v, want %v", got, want)
		}
		if fmt.Sprint(flags) != "[   RL RL]" || fmt.Sprint(hits) != "[1 2 3 4 5]" {
			t.Errorf("flags %q, x-rls-hits %q; want RL on the last two, hits 1 to 5", flags, hits)
		}
		if n := b.MethodCalls(testgrpc.TestService_UnaryCall_FullMethodName); n != 3 {
			t.Errorf("the backend served %d calls, want 3", n)
		}
		// No x-user header: the second rate_limits entry made no
		// descriptor, and the service was asked about the first only.
		asked := rls.requests()
		if len(asked) != 5 || asked[0] != "e2e: [generic_key=api,remote_address=127.0.0.1]" {
			t.Errorf("the service was asked %q, want 5 times about [generic_key=api,remote_address=127.0.0.1]", asked)
		}
	})

	t.Run("grpc: streamed request messages wait for the check, then all arrive", func(t *testing.T) {
		client := testClient(t, addr)
		ctx := metadata.AppendToOutgoingContext(callCtx(t), "x-user", "streamer")
		stream, err := client.StreamingInputCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, n := range []int{10, 70000, 1, 0, 300} {
			if err := stream.Send(&testgrpc.StreamingInputCallRequest{Payload: payload(n)}); err != nil {
				t.Fatalf("Send: %v", err)
			}
			total += n
		}
		resp, err := stream.CloseAndRecv()
		if err != nil {
			t.Fatalf("CloseAndRecv: %v", err)
		}
		if int(resp.GetAggregatedPayloadSize()) != total {
			t.Errorf("the backend got %d bytes, want %d", resp.GetAggregatedPayloadSize(), total)
		}
		// A ping-pong: the client waits for each answer before sending
		// the next message, so the first must pass the gate alone.
		bidi, err := client.FullDuplexCall(metadata.AppendToOutgoingContext(callCtx(t), "x-user", "pingpong"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := bidi.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 7}}}); err != nil {
				t.Fatalf("ping %d: %v", i, err)
			}
			r, err := bidi.Recv()
			if err != nil {
				t.Fatalf("pong %d: %v", i, err)
			}
			checkPayload(t, r.GetPayload(), 7)
		}
		bidi.CloseSend()
		if _, err := bidi.Recv(); err != io.EOF {
			t.Errorf("after the last pong: %v, want EOF", err)
		}
	})

	type answer struct {
		status                             int
		hits, limit, remaining, reset, flg string
		body                               string
	}
	send := func(c *http.Client, method, url, user, body string) answer {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		if user != "" {
			req.Header.Set("X-User", user)
			req.Header.Set("X-Tag", "yes")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		return answer{status: resp.StatusCode, hits: resp.Header.Get("X-Rls-Hits"), limit: resp.Header.Get("X-Ratelimit-Limit"),
			remaining: resp.Header.Get("X-Ratelimit-Remaining"), reset: resp.Header.Get("X-Ratelimit-Reset"),
			flg: resp.Header.Get(headerFlags), body: string(got)}
	}

	t.Run("http: 429 from the service, its headers and x-ratelimit on every answer", func(t *testing.T) {
		var got []answer
		for _, c := range []*http.Client{h1Client(), h2cClient(), h1Client(), h2cClient()} {
			got = append(got, send(c, http.MethodGet, "http://"+addr+"/web", "ann", ""))
		}
		for i, a := range got {
			wantStatus, wantRemaining := http.StatusOK, fmt.Sprint(2-i)
			if i == 3 {
				wantStatus, wantRemaining = http.StatusTooManyRequests, "0"
			}
			if a.status != wantStatus || a.hits != fmt.Sprint(i+1) || a.limit != "3" || a.remaining != wantRemaining || a.reset != "42" {
				t.Errorf("request %d: %+v; want status %d, hits %d, limit 3, remaining %s, reset 42", i, a, wantStatus, i+1, wantRemaining)
			}
		}
		if a := got[3]; a.flg != "RL" || a.body != "rate_limited\n" {
			t.Errorf("refusal: flags %q, body %q; want RL, rate_limited", a.flg, a.body)
		}
		// No x-user: no descriptor, the service is not asked.
		before := len(rls.requests())
		if a := send(h1Client(), http.MethodGet, "http://"+addr+"/web", "", ""); a.status != http.StatusOK || a.hits != "" {
			t.Errorf("without a descriptor: %+v, want 200 and no x-rls-hits", a)
		}
		if n := len(rls.requests()) - before; n != 0 {
			t.Errorf("the service was asked %d times about a request with no descriptor", n)
		}
	})

	t.Run("h2c to an HTTP/1.1 cluster: the body waits for the check", func(t *testing.T) {
		body := strings.Repeat("sightline ", 20000)
		a := send(h2cClient(), http.MethodPost, "http://"+addr+"/h1", "bob", body)
		if a.status != http.StatusOK || !strings.Contains(a.body, `"body":"sightline sightline`) || len(a.body) < len(body) {
			t.Errorf("POST through the gate: status %d, %d bytes back, want 200 with the %d-byte body echoed", a.status, len(a.body), len(body))
		}
	})

	t.Run("service down: let through and counted, or refused with RLSE", func(t *testing.T) {
		allow, deny := p.listener("allow"), p.listener("deny")
		for i := range 2 {
			if a := send(h1Client(), http.MethodGet, "http://"+allow+"/web", "ann", ""); a.status != http.StatusOK {
				t.Errorf("allow %d: status %d, want 200", i, a.status)
			}
		}
		if a := send(h2cClient(), http.MethodGet, "http://"+deny+"/web", "ann", ""); a.status != http.StatusInternalServerError || a.flg != "RLSE" {
			t.Errorf("deny: status %d flags %q, want 500 RLSE", a.status, a.flg)
		}
		client := testClient(t, deny)
		var hdr, trl metadata.MD
		_, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}, grpc.Header(&hdr), grpc.Trailer(&trl))
		if status.Code(err) != codes.Unavailable || mdValue(hdr, trl, headerFlags) != "RLSE" {
			t.Errorf("deny, gRPC: %v flags %q, want UNAVAILABLE, RLSE", err, mdValue(hdr, trl, headerFlags))
		}
	})

	t.Run("grpc: the route's timeout ends a call whose check is slow; it never goes upstream", func(t *testing.T) {
		client := testClient(t, addr)
		ctx := metadata.AppendToOutgoingContext(callCtx(t), "x-user", "hold")
		var hdr, trl metadata.MD
		_, err := client.EmptyCall(ctx, &testgrpc.Empty{}, grpc.Header(&hdr), grpc.Trailer(&trl))
		if status.Code(err) != codes.DeadlineExceeded || mdValue(hdr, trl, headerFlags) != "UT" {
			t.Errorf("EmptyCall: %v, flags %q; want DEADLINE_EXCEEDED, UT", err, mdValue(hdr, trl, headerFlags))
		}
		// The service answers OK after the client has its answer: the
		// proxy counts it and sends nothing upstream.
		okBefore := p.counter("cluster.grpc.ratelimit.ok")
		close(rls.hold)
		if err := eventually(10*time.Second, func() error {
			if n := p.counter("cluster.grpc.ratelimit.ok"); n != okBefore+1 {
				return fmt.Errorf("cluster.grpc.ratelimit.ok = %d, want %d", n, okBefore+1)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		// A call allowed at once goes through; by the time it is back, a
		// wrongly sent first call would have reached the backend too.
		ctx = metadata.AppendToOutgoingContext(callCtx(t), "x-user", "prompt")
		if _, err := client.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
			t.Fatalf("EmptyCall allowed at once: %v", err)
		}
		if n := b.MethodCalls(testgrpc.TestService_EmptyCall_FullMethodName); n != 1 {
			t.Errorf("the backend served %d EmptyCalls, want 1 (the one allowed at once)", n)
		}
	})

	t.Run("stats", func(t *testing.T) {
		m, _ := statsText(t, p, "")
		for _, c := range []struct {
			name string
			want int64
		}{
			{"cluster.grpc.ratelimit.ok", 3 + 2 + 2}, // three unary calls, two streams, the slow check, the prompt one
			{"cluster.grpc.ratelimit.over_limit", 2},
			{"cluster.web.ratelimit.ok", 3},
			{"cluster.web.ratelimit.over_limit", 1},
			{"cluster.web1.ratelimit.ok", 1},
			{"cluster.web.ratelimit.error", 3},
			{"cluster.web.ratelimit.failure_mode_allowed", 2},
			{"cluster.grpc.ratelimit.error", 1},
			// Refusals are charged to the cluster's answers, as Envoy does.
			{"cluster.grpc.upstream_rq_429", 2},
			{"cluster.web.upstream_rq_429", 1},
		} {
			if got, _ := statsInt(t, m, c.name); got != c.want {
				t.Errorf("%s = %d, want %d", c.name, got, c.want)
			}
		}
	})
}
