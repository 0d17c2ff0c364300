package h2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sightline-proxy/sightline/internal/backend"
)

// startBackends starts n grpc-go interop backends.
func startBackends(t testing.TB, n int) []*backend.Backend {
	t.Helper()
	var bs []*backend.Backend
	for i := range n {
		b, err := backend.Start("127.0.0.1:0", fmt.Sprintf("b%d", i), "zone-a")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Stop)
		bs = append(bs, b)
	}
	return bs
}

func addrsOf(bs []*backend.Backend) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Addr
	}
	return out
}

// dialProxy opens one grpc-go client connection to the proxy.
func dialProxy(t testing.TB, addr string, opts ...grpc.DialOption) testgrpc.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testgrpc.NewTestServiceClient(cc)
}

// grpcProxy starts backends and a proxy routing every path to them.
func grpcProxy(t testing.TB, n int, r testRoute) (*testProxy, []*backend.Backend, testgrpc.TestServiceClient) {
	t.Helper()
	bs := startBackends(t, n)
	r.cluster = "grpc"
	if r.prefix == "" {
		r.prefix = "/"
	}
	p := startProxy(t, []testCluster{{name: "grpc", addrs: addrsOf(bs)}}, []testRoute{r}, proxyOpts{})
	return p, bs, dialProxy(t, p.addr)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitIdle waits until the proxy holds no stream and no buffered byte, so
// that a test ends with nothing leaked.
func waitIdle(t testing.TB, p *testProxy) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := p.srv.Stats()
		up := 0
		p.mu.Lock()
		for _, u := range p.pools {
			up += u.H2.Stats().Streams
		}
		p.mu.Unlock()
		// A call is finished, and its access-log entry written, a moment
		// after its last frame: its cluster's request slot goes last.
		calls := int64(0)
		for _, c := range p.clusters {
			calls += c.Breakers.Snapshot().Requests.Active
		}
		if st.Streams == 0 && up == 0 && p.bufferedBytes() == 0 && calls == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy not idle: downstream %+v, upstream streams %d, buffered %d, calls %d", st, up, p.bufferedBytes(), calls)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestGRPCUnary(t *testing.T) {
	p, bs, c := grpcProxy(t, 1, testRoute{})
	ctx := ctxT(t)
	if _, err := c.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
		t.Fatalf("EmptyCall: %v", err)
	}
	resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 100, Payload: &testgrpc.Payload{Body: make([]byte, 200)}})
	if err != nil {
		t.Fatalf("UnaryCall: %v", err)
	}
	if n := len(resp.GetPayload().GetBody()); n != 100 {
		t.Errorf("response payload %d bytes, want 100", n)
	}
	if got := bs[0].Calls(); got != 2 {
		t.Errorf("backend served %d calls, want 2", got)
	}
	waitIdle(t, p)
}

func TestGRPCLargeMessages(t *testing.T) {
	p, _, c := grpcProxy(t, 1, testRoute{})
	ctx := ctxT(t)
	body := bytes.Repeat([]byte{0xa5}, 1<<20)
	for range 3 {
		resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 1 << 20, Payload: &testgrpc.Payload{Body: body}})
		if err != nil {
			t.Fatalf("UnaryCall 1 MiB: %v", err)
		}
		if n := len(resp.GetPayload().GetBody()); n != 1<<20 {
			t.Fatalf("response payload %d bytes, want 1 MiB", n)
		}
	}
	waitIdle(t, p)
}

func TestGRPCStreaming(t *testing.T) {
	p, _, c := grpcProxy(t, 1, testRoute{})
	ctx := ctxT(t)

	t.Run("server", func(t *testing.T) {
		req := &testgrpc.StreamingOutputCallRequest{}
		for _, n := range []int32{1, 10, 1000, 100000, 0} {
			req.ResponseParameters = append(req.ResponseParameters, &testgrpc.ResponseParameters{Size: n})
		}
		s, err := c.StreamingOutputCall(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range req.ResponseParameters {
			resp, err := s.Recv()
			if err != nil {
				t.Fatalf("Recv %d: %v", i, err)
			}
			if got := len(resp.GetPayload().GetBody()); got != int(p.Size) {
				t.Errorf("response %d: %d bytes, want %d", i, got, p.Size)
			}
		}
		if _, err := s.Recv(); err != io.EOF {
			t.Errorf("end of stream: %v, want EOF", err)
		}
	})

	t.Run("client", func(t *testing.T) {
		s, err := c.StreamingInputCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, n := range []int{27182, 8, 1828, 45904} {
			total += n
			if err := s.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: make([]byte, n)}}); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := s.CloseAndRecv()
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.GetAggregatedPayloadSize(); int(got) != total {
			t.Errorf("aggregated %d, want %d", got, total)
		}
	})

	t.Run("bidi", func(t *testing.T) {
		s, err := c.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range []int32{31415, 9, 2653, 58979} {
			if err := s.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: n}}}); err != nil {
				t.Fatal(err)
			}
			resp, err := s.Recv()
			if err != nil {
				t.Fatalf("Recv %d: %v", i, err)
			}
			if got := len(resp.GetPayload().GetBody()); got != int(n) {
				t.Errorf("response %d: %d bytes, want %d", i, got, n)
			}
		}
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != io.EOF {
			t.Errorf("end of stream: %v, want EOF", err)
		}
	})
	waitIdle(t, p)
}

func TestGRPCMetadata(t *testing.T) {
	p, bs, c := grpcProxy(t, 1, testRoute{})
	bin := []byte{0, 1, 2, 0xff, 0xfe}
	ctx := metadata.AppendToOutgoingContext(ctxT(t),
		"x-user", "alice",
		"x-blob-bin", string(bin),
		"x-grpc-test-echo-initial", "initial-value",
		"x-grpc-test-echo-trailing-bin", string(bin),
		"x-sightline-upstream-rq-timeout-ms", "5")
	var header, trailer metadata.MD
	if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.Header(&header), grpc.Trailer(&trailer)); err != nil {
		t.Fatal(err)
	}
	md := bs[0].LastMetadata()
	for _, tt := range []struct{ key, want string }{
		{"x-user", "alice"},
		{"x-blob-bin", string(bin)},
		{"x-forwarded-proto", "http"},
		{"x-forwarded-for", "127.0.0.1"},
	} {
		if got := md.Get(tt.key); len(got) != 1 || got[0] != tt.want {
			t.Errorf("upstream metadata %s = %q, want %q", tt.key, got, tt.want)
		}
	}
	if got := md.Get("x-sightline-upstream-rq-timeout-ms"); len(got) != 0 {
		t.Errorf("untrusted override header reached the upstream: %q", got)
	}
	if got := header.Get("x-grpc-test-echo-initial"); len(got) != 1 || got[0] != "initial-value" {
		t.Errorf("response header echo = %q", got)
	}
	if got := header.Get("x-sightline-upstream-service-time"); len(got) != 1 {
		t.Errorf("x-sightline-upstream-service-time = %q, want one value", got)
	}
	if got := trailer.Get("x-grpc-test-echo-trailing-bin"); len(got) != 1 || got[0] != string(bin) {
		t.Errorf("trailer echo = %q, want %q", got, bin)
	}
	waitIdle(t, p)
}

func TestGRPCStatus(t *testing.T) {
	p, _, c := grpcProxy(t, 1, testRoute{})
	ctx := ctxT(t)
	msg := "bad thing: 100% broken ünïcode"
	// Trailers-only: the backend fails before sending a message.
	_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.FailedPrecondition), Message: msg}})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || st.Message() != msg {
		t.Errorf("trailers-only error = %v, want FailedPrecondition %q", err, msg)
	}
	// Error in trailers after a message.
	s, err := c.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}}})
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	s.Send(&testgrpc.StreamingOutputCallRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.Aborted), Message: "later"}})
	if _, err := s.Recv(); status.Code(err) != codes.Aborted {
		t.Errorf("trailer error = %v, want Aborted", err)
	}
	waitIdle(t, p)
}

// slowCall is a server-streaming call whose first message comes after d.
func slowCall(d time.Duration) *testgrpc.StreamingOutputCallRequest {
	return &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1, IntervalUs: int32(d / time.Microsecond)}}}
}

func TestGRPCDeadlines(t *testing.T) {
	t.Run("grpc-timeout", func(t *testing.T) {
		p, _, c := grpcProxy(t, 1, testRoute{})
		ctx, cancel := context.WithTimeout(ctxT(t), 100*time.Millisecond)
		defer cancel()
		s, err := c.StreamingOutputCall(ctx, slowCall(2*time.Second))
		if err == nil {
			_, err = s.Recv()
		}
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("err = %v, want DeadlineExceeded", err)
		}
		waitIdle(t, p)
	})
	t.Run("route timeout before headers", func(t *testing.T) {
		p, _, c := grpcProxy(t, 1, testRoute{timeout: 100 * time.Millisecond})
		var trailer metadata.MD
		start := time.Now()
		s, err := c.StreamingOutputCall(ctxT(t), slowCall(2*time.Second), grpc.Trailer(&trailer))
		if err == nil {
			_, err = s.Recv()
		}
		st := status.Convert(err)
		if st.Code() != codes.DeadlineExceeded || st.Message() != "upstream request timeout" {
			t.Errorf("err = %v, want DeadlineExceeded \"upstream request timeout\"", err)
		}
		if el := time.Since(start); el > time.Second {
			t.Errorf("took %v, want about 100ms", el)
		}
		if got := trailer.Get("x-sightline-response-flags"); len(got) != 1 || got[0] != "UT" {
			t.Errorf("flags = %q, want UT", got)
		}
		waitIdle(t, p)
	})
	t.Run("route timeout after headers", func(t *testing.T) {
		p, _, c := grpcProxy(t, 1, testRoute{timeout: 300 * time.Millisecond})
		req := &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 5}, {Size: 5, IntervalUs: 3e6}}}
		s, err := c.StreamingOutputCall(ctxT(t), req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
		_, err = s.Recv()
		if st := status.Convert(err); st.Code() != codes.DeadlineExceeded || st.Message() != "upstream request timeout" {
			t.Errorf("err = %v, want DeadlineExceeded in trailers", err)
		}
		waitIdle(t, p)
	})
	t.Run("grpc-timeout smaller than route timeout", func(t *testing.T) {
		p, _, c := grpcProxy(t, 1, testRoute{timeout: 10 * time.Second})
		// The client's deadline is 150ms, so grpc-timeout wins; the
		// proxy cancels upstream then, not 10s later.
		ctx, cancel := context.WithTimeout(ctxT(t), 150*time.Millisecond)
		defer cancel()
		s, err := c.StreamingOutputCall(ctx, slowCall(time.Second))
		if err == nil {
			_, err = s.Recv()
		}
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("err = %v, want DeadlineExceeded", err)
		}
		waitIdle(t, p)
	})
}

func TestGRPCCancel(t *testing.T) {
	p, _, c := grpcProxy(t, 1, testRoute{})
	ctx, cancel := context.WithCancel(ctxT(t))
	s, err := c.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}}})
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	if st := p.srv.Stats(); st.Streams != 1 {
		t.Errorf("downstream streams = %d, want 1", st.Streams)
	}
	cancel()
	if _, err := s.Recv(); status.Code(err) != codes.Canceled {
		t.Errorf("after cancel: %v, want Canceled", err)
	}
	waitIdle(t, p) // the upstream stream was reset too
}

func TestGRPCNoRoute(t *testing.T) {
	bs := startBackends(t, 1)
	p := startProxy(t, []testCluster{{name: "grpc", addrs: addrsOf(bs)}},
		[]testRoute{{prefix: "/grpc.testing.TestService/", cluster: "grpc"}}, proxyOpts{})
	cc, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var trailer metadata.MD
	_, err = healthpb.NewHealthClient(cc).Check(ctxT(t), &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
	st := status.Convert(err)
	if st.Code() != codes.Unimplemented || st.Message() != "no route for /grpc.health.v1.Health/Check" {
		t.Errorf("err = %v, want Unimplemented no route", err)
	}
	if got := trailer.Get("x-sightline-response-flags"); len(got) != 1 || got[0] != "NR" {
		t.Errorf("flags = %q, want NR", got)
	}
}

func TestGRPCUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p := startProxy(t, []testCluster{{name: "grpc", addrs: []string{dead}}}, []testRoute{{prefix: "/", cluster: "grpc"}}, proxyOpts{})
	c := dialProxy(t, p.addr)
	var trailer metadata.MD
	_, err = c.EmptyCall(ctxT(t), &testgrpc.Empty{}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("err = %v, want Unavailable", err)
	}
	if got := trailer.Get("x-sightline-response-flags"); len(got) != 1 || got[0] != "UF" {
		t.Errorf("flags = %q, want UF", got)
	}
	// The call is settled when both its halves are done, which may be
	// just after the client has its answer.
	waitIdle(t, p)
	h := p.clusters["grpc"].Hosts()[0]
	deadline := time.Now().Add(2 * time.Second)
	for h.Active.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if h.RqError.Load() != 1 || h.RqTotal.Load() != 1 || h.Active.Load() != 0 {
		t.Errorf("host counters: total %d error %d active %d, want 1 1 0", h.RqTotal.Load(), h.RqError.Load(), h.Active.Load())
	}
}

// TestGRPCBalancing checks per-call balancing over one client connection:
// 4,000 calls over 4 round-robin backends land within 5% of 1,000 each.
func TestGRPCBalancing(t *testing.T) {
	p, bs, c := grpcProxy(t, 4, testRoute{})
	ctx := ctxT(t)
	const calls = 4000
	errs := make(chan error, 16)
	for w := range 16 {
		go func() {
			for i := w; i < calls; i += 16 {
				if _, err := c.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range bs {
		if n := b.Calls(); n < 950 || n > 1050 {
			t.Errorf("backend %s served %d calls, want 1000 ± 5%%", b.Name, n)
		}
	}
	waitIdle(t, p)
	for _, h := range p.clusters["grpc"].Hosts() {
		deadline := time.Now().Add(2 * time.Second)
		for h.Active.Load() != 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if h.Active.Load() != 0 || h.RqError.Load() != 0 {
			t.Errorf("host %s: active %d, errors %d", h.Address, h.Active.Load(), h.RqError.Load())
		}
	}
}

// TestGRPCHashPolicy: with ring_hash and the route's hash header, calls
// carrying the same header value go to the same backend.
func TestGRPCHashPolicy(t *testing.T) {
	bs := startBackends(t, 4)
	p := startProxy(t, []testCluster{{name: "grpc", lb: "ring_hash", addrs: addrsOf(bs)}},
		[]testRoute{{prefix: "/", cluster: "grpc", hash: "x-user-id"}}, proxyOpts{})
	c := dialProxy(t, p.addr)
	for _, user := range []string{"alice", "bob", "carol"} {
		before := make([]int64, len(bs))
		for i, b := range bs {
			before[i] = b.Calls()
		}
		ctx := metadata.AppendToOutgoingContext(ctxT(t), "x-user-id", user)
		for range 20 {
			if _, err := c.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
				t.Fatal(err)
			}
		}
		hit := 0
		for i, b := range bs {
			if b.Calls() != before[i] {
				hit++
			}
		}
		if hit != 1 {
			t.Errorf("user %s: calls spread over %d backends, want 1", user, hit)
		}
	}
}

// TestGRPCBackPressure streams 100 MiB from the backend to a client that
// reads slowly: the proxy must push back on the backend rather than
// buffer, so what it holds stays under a bound (the most the upstream
// stream window grows to, as the client keeps reading, plus a frame or two
// in flight).
func TestGRPCBackPressure(t *testing.T) {
	bs := startBackends(t, 1)
	p := startProxy(t, []testCluster{{name: "grpc", addrs: addrsOf(bs)}}, []testRoute{{prefix: "/", cluster: "grpc"}}, proxyOpts{})
	// A fixed 64 KiB client window (no BDP growth) makes the client slow.
	c := dialProxy(t, p.addr, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(2<<20)))
	req := &testgrpc.StreamingOutputCallRequest{}
	for range 100 {
		req.ResponseParameters = append(req.ResponseParameters, &testgrpc.ResponseParameters{Size: 1 << 20})
	}
	s, err := c.StreamingOutputCall(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	const bound = maxStreamWindow + 2*maxFrameSize
	var peak int64
	for i := range 100 {
		if i < 10 {
			// Slow phase: the backend could send 100 MiB meanwhile.
			time.Sleep(50 * time.Millisecond)
			peak = max(peak, p.bufferedBytes())
		}
		resp, err := s.Recv()
		if err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
		if len(resp.GetPayload().GetBody()) != 1<<20 {
			t.Fatalf("message %d: %d bytes", i, len(resp.GetPayload().GetBody()))
		}
		peak = max(peak, p.bufferedBytes())
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("end: %v", err)
	}
	t.Logf("peak buffered: %d bytes (bound %d)", peak, bound)
	if peak > bound {
		t.Errorf("proxy buffered %d bytes, want at most %d", peak, bound)
	}
	if peak == 0 {
		t.Errorf("proxy never buffered anything: the test did not exercise back-pressure")
	}
	waitIdle(t, p)
}
