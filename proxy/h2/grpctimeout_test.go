package h2

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// deadlineServer is a grpc-go backend whose UnaryCall reports the
// deadline it saw (what was left of the grpc-timeout it got); with
// hangFirst the first call waits for its deadline instead of answering.
type deadlineServer struct {
	testgrpc.UnimplementedTestServiceServer
	seen      chan time.Duration
	hangFirst atomic.Bool
	// stallFirst makes the first call answer nothing, its deadline
	// passed or not, until the proxy resets it (or the test ends).
	stallFirst atomic.Bool
	stop       chan struct{}
}

func (s *deadlineServer) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	left := time.Duration(-1)
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	s.seen <- left
	if s.hangFirst.CompareAndSwap(true, false) {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if s.stallFirst.CompareAndSwap(true, false) {
		<-s.stop
		return nil, status.Error(codes.Unavailable, "stalled")
	}
	return &testgrpc.SimpleResponse{}, nil
}

func startDeadlineServer(t *testing.T) (*deadlineServer, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ds := &deadlineServer{seen: make(chan time.Duration, 4), stop: make(chan struct{})}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, ds)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	t.Cleanup(func() { close(ds.stop) })
	return ds, ln.Addr().String()
}

// TestGRPCTimeoutPerAttempt: each attempt's grpc-timeout is the time it
// really has, per-try timeout included, and the retry after a per-try
// timeout gets its own, not the client's.
func TestGRPCTimeoutPerAttempt(t *testing.T) {
	const perTry = 300 * time.Millisecond
	ds, addr := startDeadlineServer(t)
	// The first attempt gets no answer, so that the proxy's per-try
	// timeout ends it. (An upstream that honours the grpc-timeout it was
	// given answers DEADLINE_EXCEEDED at the same moment, a response
	// that retry_on 5xx does not retry, as in Envoy.)
	ds.stallFirst.Store(true)
	p := startProxy(t, []testCluster{{name: "g", addrs: []string{addr}}},
		[]testRoute{{prefix: "/", cluster: "g", retry: &config.RetryPolicy{RetryOn: "5xx", NumRetries: 1, PerTryTimeout: config.Duration(perTry)}}}, proxyOpts{})
	c := dialProxy(t, p.addr)
	ctx, cancel := context.WithTimeout(ctxT(t), 10*time.Second)
	defer cancel()
	if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("call: %v", err)
	}
	for i := range 2 {
		left := waitSignal(t, (<-chan time.Duration)(ds.seen), "an attempt upstream")
		if left <= 0 || left > perTry {
			t.Errorf("attempt %d saw a deadline %v away, want at most the %v per-try timeout", i+1, left, perTry)
		}
	}
	waitIdle(t, p)
}

// TestGRPCTimeoutMax: max_grpc_timeout caps the client's grpc-timeout,
// and the upstream is told the capped value.
func TestGRPCTimeoutMax(t *testing.T) {
	const maxT = 500 * time.Millisecond
	ds, addr := startDeadlineServer(t)
	p := startProxy(t, []testCluster{{name: "g", addrs: []string{addr}}},
		[]testRoute{{prefix: "/", cluster: "g", edit: func(r *config.Route) {
			d := config.Duration(maxT)
			r.MaxGRPCTimeout = &d
		}}}, proxyOpts{})
	c := dialProxy(t, p.addr)
	ctx, cancel := context.WithTimeout(ctxT(t), 10*time.Second)
	defer cancel()
	if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("call: %v", err)
	}
	if left := waitSignal(t, (<-chan time.Duration)(ds.seen), "the call upstream"); left <= 0 || left > maxT {
		t.Errorf("upstream saw a deadline %v away, want at most max_grpc_timeout %v", left, maxT)
	}
	// A call without a deadline gets max_grpc_timeout as its timeout.
	ds.hangFirst.Store(true)
	_, err := c.UnaryCall(ctxT(t), &testgrpc.SimpleRequest{})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("call without deadline: %v, want DeadlineExceeded after max_grpc_timeout", err)
	}
	if left := waitSignal(t, (<-chan time.Duration)(ds.seen), "the call upstream"); left <= 0 || left > maxT {
		t.Errorf("upstream saw a deadline %v away, want at most max_grpc_timeout %v", left, maxT)
	}
	waitIdle(t, p)
}
