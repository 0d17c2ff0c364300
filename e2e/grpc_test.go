package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sightline-proxy/sightline/internal/testnet"
)

const (
	headerFlags       = "x-sightline-response-flags"
	headerServiceTime = "x-sightline-upstream-service-time"
)

// TestCallKinds sends the four kinds of gRPC call through the proxy and
// checks what comes back.
func TestCallKinds(t *testing.T) {
	b := startBackends(t, 1)[0]
	p := startProxy(t, simpleConfig("round_robin", b.Addr))
	client := testClient(t, p.listener("ingress"))

	t.Run("unary", func(t *testing.T) {
		tests := []struct {
			name              string
			reqSize, respSize int
		}{
			{name: "empty", reqSize: 0, respSize: 0},
			{name: "small", reqSize: 10, respSize: 20},
			{name: "large", reqSize: 271828, respSize: 314159},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := b.MethodCalls(testgrpc.TestService_UnaryCall_FullMethodName)
				resp, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{
					ResponseType: testgrpc.PayloadType_COMPRESSABLE,
					ResponseSize: int32(tt.respSize),
					Payload:      payload(tt.reqSize),
				})
				if err != nil {
					t.Fatalf("UnaryCall: %v", err)
				}
				checkPayload(t, resp.GetPayload(), tt.respSize)
				if got := b.MethodCalls(testgrpc.TestService_UnaryCall_FullMethodName) - before; got != 1 {
					t.Errorf("the backend served %d UnaryCalls, want 1", got)
				}
			})
		}
	})

	t.Run("server_streaming", func(t *testing.T) {
		// 1 MiB is more than an HTTP/2 stream's window on either side of the
		// proxy: it only arrives if flow control is handled on both.
		sizes := []int{1, 1000, 64 << 10, 1 << 20, 7, 0}
		params := make([]*testgrpc.ResponseParameters, len(sizes))
		for i, s := range sizes {
			params[i] = &testgrpc.ResponseParameters{Size: int32(s)}
		}
		stream, err := client.StreamingOutputCall(callCtx(t), &testgrpc.StreamingOutputCallRequest{
			ResponseType:       testgrpc.PayloadType_COMPRESSABLE,
			ResponseParameters: params,
		})
		if err != nil {
			t.Fatalf("StreamingOutputCall: %v", err)
		}
		for i, want := range sizes {
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("response %d of %d: %v", i+1, len(sizes), err)
			}
			checkPayload(t, resp.GetPayload(), want)
		}
		if _, err := stream.Recv(); err != io.EOF {
			t.Fatalf("after %d responses: got %v, want io.EOF", len(sizes), err)
		}
	})

	t.Run("client_streaming", func(t *testing.T) {
		sizes := []int{27182, 8, 1828, 45904, 1 << 20}
		stream, err := client.StreamingInputCall(callCtx(t))
		if err != nil {
			t.Fatalf("StreamingInputCall: %v", err)
		}
		sum := 0
		for _, s := range sizes {
			if err := stream.Send(&testgrpc.StreamingInputCallRequest{Payload: payload(s)}); err != nil {
				t.Fatalf("sending %d bytes: %v", s, err)
			}
			sum += s
		}
		resp, err := stream.CloseAndRecv()
		if err != nil {
			t.Fatalf("CloseAndRecv: %v", err)
		}
		if got := int(resp.GetAggregatedPayloadSize()); got != sum {
			t.Errorf("aggregated payload size = %d, want %d", got, sum)
		}
	})

	t.Run("bidi_ping_pong", func(t *testing.T) {
		reqSizes := []int{27182, 8, 1828, 45904, 1 << 20}
		respSizes := []int{31415, 9, 2653, 58979, 1 << 20}
		stream, err := client.FullDuplexCall(callCtx(t))
		if err != nil {
			t.Fatalf("FullDuplexCall: %v", err)
		}
		for i := range reqSizes {
			err := stream.Send(&testgrpc.StreamingOutputCallRequest{
				ResponseType:       testgrpc.PayloadType_COMPRESSABLE,
				ResponseParameters: []*testgrpc.ResponseParameters{{Size: int32(respSizes[i])}},
				Payload:            payload(reqSizes[i]),
			})
			if err != nil {
				t.Fatalf("ping %d: %v", i+1, err)
			}
			// The pong must arrive before the next ping is sent: the
			// proxy has to stream both directions at once, not buffer.
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("pong %d: %v", i+1, err)
			}
			checkPayload(t, resp.GetPayload(), respSizes[i])
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatalf("CloseSend: %v", err)
		}
		if _, err := stream.Recv(); err != io.EOF {
			t.Fatalf("after CloseSend: got %v, want io.EOF", err)
		}
	})
}

func payload(n int) *testgrpc.Payload {
	body := make([]byte, n)
	for i := range body {
		body[i] = byte(i)
	}
	return &testgrpc.Payload{Type: testgrpc.PayloadType_COMPRESSABLE, Body: body}
}

// checkPayload checks a payload from the interop server: n zero bytes.
func checkPayload(t *testing.T, p *testgrpc.Payload, n int) {
	t.Helper()
	if p.GetType() != testgrpc.PayloadType_COMPRESSABLE {
		t.Errorf("payload type = %v, want COMPRESSABLE", p.GetType())
	}
	if got := len(p.GetBody()); got != n {
		t.Errorf("payload is %d bytes, want %d", got, n)
		return
	}
	if !bytes.Equal(p.GetBody(), make([]byte, n)) {
		t.Errorf("payload of %d bytes is not all zeros, as the interop server sends it", n)
	}
}

// TestMetadataAndTrailers checks that metadata goes through the proxy both
// ways, binary metadata included, and that statuses set by the backend reach
// the client exactly.
func TestMetadataAndTrailers(t *testing.T) {
	b := startBackends(t, 1)[0]
	p := startProxy(t, simpleConfig("round_robin", b.Addr))
	client := testClient(t, p.listener("ingress"))

	const (
		echoInitialKey  = "x-grpc-test-echo-initial"
		echoTrailingKey = "x-grpc-test-echo-trailing-bin"
		echoInitialVal  = "test_initial_metadata_value"
	)
	binVal := string([]byte{0x00, 0x01, 0xab, 0xfe, 0xff})
	trailingVal := string([]byte{0xab, 0xab, 0xab})
	outgoing := func(t *testing.T) context.Context {
		return metadata.AppendToOutgoingContext(callCtx(t),
			"x-custom-ascii", "hello, world",
			"x-custom-bin", binVal,
			echoInitialKey, echoInitialVal,
			echoTrailingKey, trailingVal,
			// An override header on a listener that does not trust them: it
			// must be stripped, and must not time the call out.
			"x-sightline-upstream-rq-timeout-ms", "1",
		)
	}
	checkUpstreamMD := func(t *testing.T) {
		t.Helper()
		md := b.LastMetadata()
		for _, c := range []struct{ key, want string }{
			{"x-custom-ascii", "hello, world"},
			{"x-custom-bin", binVal},
			{"x-forwarded-for", "127.0.0.1"},
		} {
			if got := md.Get(c.key); len(got) != 1 || got[0] != c.want {
				t.Errorf("the backend got %s = %q, want [%q]", c.key, got, c.want)
			}
		}
		if got := md.Get("x-sightline-upstream-rq-timeout-ms"); len(got) > 0 {
			t.Errorf("the backend got x-sightline-upstream-rq-timeout-ms = %q from an untrusted listener, want it stripped", got)
		}
	}
	checkEchoes := func(t *testing.T, hdr, trl metadata.MD) {
		t.Helper()
		if got := hdr.Get(echoInitialKey); len(got) != 1 || got[0] != echoInitialVal {
			t.Errorf("response header %s = %q, want [%q]", echoInitialKey, got, echoInitialVal)
		}
		if got := trl.Get(echoTrailingKey); len(got) != 1 || got[0] != trailingVal {
			t.Errorf("response trailer %s = %q, want [%q]", echoTrailingKey, got, trailingVal)
		}
		if got := hdr.Get(headerServiceTime); len(got) != 1 {
			t.Errorf("response header %s = %q, want one value", headerServiceTime, got)
		} else if ms, err := strconv.Atoi(got[0]); err != nil || ms < 0 {
			t.Errorf("response header %s = %q, want milliseconds", headerServiceTime, got[0])
		}
	}

	t.Run("unary", func(t *testing.T) {
		var hdr, trl metadata.MD
		_, err := client.UnaryCall(outgoing(t), &testgrpc.SimpleRequest{ResponseSize: 10}, grpc.Header(&hdr), grpc.Trailer(&trl))
		if err != nil {
			t.Fatalf("UnaryCall: %v", err)
		}
		checkUpstreamMD(t)
		checkEchoes(t, hdr, trl)
	})

	t.Run("bidi", func(t *testing.T) {
		stream, err := client.FullDuplexCall(outgoing(t))
		if err != nil {
			t.Fatalf("FullDuplexCall: %v", err)
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 5}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		hdr, err := stream.Header()
		if err != nil {
			t.Fatal(err)
		}
		stream.CloseSend()
		if _, err := stream.Recv(); err != io.EOF {
			t.Fatalf("after CloseSend: got %v, want io.EOF", err)
		}
		checkUpstreamMD(t)
		checkEchoes(t, hdr, stream.Trailer())
	})

	// The interop server returns ResponseStatus as the call's status. A
	// unary call with no echoed header fails trailers-only (one HEADERS
	// frame); with an echoed header, or on a stream after a response, the
	// status comes in real trailers after headers and data.
	statuses := []struct {
		name string
		code codes.Code
		msg  string
	}{
		{name: "unknown", code: codes.Unknown, msg: "test status message"},
		{name: "non-ascii", code: codes.Unknown, msg: "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"},
		{name: "percent", code: codes.InvalidArgument, msg: "100% wrong: %41 is not A"},
		{name: "permission-denied", code: codes.PermissionDenied, msg: "nope"},
		{name: "unavailable", code: codes.Unavailable, msg: "the backend says it is unavailable"},
	}
	for _, st := range statuses {
		t.Run("status/"+st.name, func(t *testing.T) {
			rs := &testgrpc.EchoStatus{Code: int32(st.code), Message: st.msg}
			check := func(t *testing.T, kind string, err error, hdr, trl metadata.MD) {
				t.Helper()
				s, _ := status.FromError(err)
				if s.Code() != st.code || s.Message() != st.msg {
					t.Errorf("%s: got status %v %q, want %v %q", kind, s.Code(), s.Message(), st.code, st.msg)
				}
				if f := mdValue(hdr, trl, headerFlags); f != "" {
					t.Errorf("%s: %s = %q on a status the backend set, want none (the proxy did not fail)", kind, headerFlags, f)
				}
			}

			var hdr, trl metadata.MD
			_, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{ResponseStatus: rs}, grpc.Header(&hdr), grpc.Trailer(&trl))
			check(t, "trailers-only unary", err, hdr, trl)

			ctx := metadata.AppendToOutgoingContext(callCtx(t), echoInitialKey, echoInitialVal)
			hdr, trl = nil, nil
			_, err = client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: rs}, grpc.Header(&hdr), grpc.Trailer(&trl))
			check(t, "unary after headers", err, hdr, trl)

			stream, err := client.FullDuplexCall(callCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 3}}}); err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Recv(); err != nil {
				t.Fatalf("first response: %v", err)
			}
			if err := stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseStatus: rs}); err != nil {
				t.Fatal(err)
			}
			_, err = stream.Recv()
			hdr, _ = stream.Header()
			check(t, "stream after data", err, hdr, stream.Trailer())
		})
	}
}

// TestDeadlines checks the client's deadline and the route's timeout.
func TestDeadlines(t *testing.T) {
	b := startBackends(t, 1)[0]
	p := startProxy(t, fmt.Sprintf(`node: {id: e2e, zone: zone-a}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - match: {prefix: /, headers: [{name: x-route, exact: timeout}]}
            cluster: upstream
            timeout: 200ms
          - match: {prefix: /}
            cluster: upstream
clusters:
  - name: upstream
    endpoints: %s
`, endpoints(b.Addr)))
	client := testClient(t, p.listener("ingress"))
	const slow = int32(3 * time.Second / time.Microsecond) // an interval the calls never wait out

	// noDeadline returns a context without a deadline (so no grpc-timeout
	// header): the route's timeout is the only bound. It is still cancelled
	// after a while so that a broken proxy cannot hang the test.
	noDeadline := func(t *testing.T, md ...string) context.Context {
		ctx, cancel := context.WithCancel(context.Background())
		stop := time.AfterFunc(callTimeout, cancel)
		t.Cleanup(func() { stop.Stop(); cancel() })
		return metadata.AppendToOutgoingContext(ctx, md...)
	}

	t.Run("client deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{
			ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1, IntervalUs: slow}},
		})
		if err == nil {
			_, err = stream.Recv()
		}
		if got := status.Code(err); got != codes.DeadlineExceeded {
			t.Fatalf("got %v, want DeadlineExceeded", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("the call took %v, want about 100ms", took)
		}
	})

	tests := []struct {
		name string
		// call makes a call the backend answers too slowly and returns the
		// response header and trailer and the call's error.
		call func(t *testing.T) (hdr, trl metadata.MD, err error)
	}{
		{
			// The backend sends nothing, not even headers, before the
			// timeout: the proxy answers with its own status.
			name: "before response headers",
			call: func(t *testing.T) (metadata.MD, metadata.MD, error) {
				stream, err := client.StreamingOutputCall(noDeadline(t, "x-route", "timeout"), &testgrpc.StreamingOutputCallRequest{
					ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1, IntervalUs: slow}},
				})
				if err != nil {
					return nil, nil, err
				}
				_, err = stream.Recv()
				hdr, _ := stream.Header()
				return hdr, stream.Trailer(), err
			},
		},
		{
			// The backend has sent headers and a message: the proxy must
			// end the stream with a status in trailers.
			name: "mid-stream server-streaming",
			call: func(t *testing.T) (metadata.MD, metadata.MD, error) {
				stream, err := client.StreamingOutputCall(noDeadline(t, "x-route", "timeout"), &testgrpc.StreamingOutputCallRequest{
					ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}, {Size: 10, IntervalUs: slow}},
				})
				if err != nil {
					return nil, nil, err
				}
				if _, err := stream.Recv(); err != nil {
					t.Fatalf("the first response, sent at once, failed: %v", err)
				}
				_, err = stream.Recv()
				hdr, _ := stream.Header()
				return hdr, stream.Trailer(), err
			},
		},
		{
			// The same on a bidi stream whose client has not half-closed:
			// the request body is still open when the timeout strikes.
			name: "mid-stream bidi",
			call: func(t *testing.T) (metadata.MD, metadata.MD, error) {
				stream, err := client.FullDuplexCall(noDeadline(t, "x-route", "timeout"))
				if err != nil {
					return nil, nil, err
				}
				err = stream.Send(&testgrpc.StreamingOutputCallRequest{
					ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}, {Size: 10, IntervalUs: slow}},
				})
				if err != nil {
					return nil, nil, err
				}
				if _, err := stream.Recv(); err != nil {
					t.Fatalf("the first response, sent at once, failed: %v", err)
				}
				_, err = stream.Recv()
				hdr, _ := stream.Header()
				return hdr, stream.Trailer(), err
			},
		},
	}
	for _, tt := range tests {
		t.Run("route timeout "+tt.name, func(t *testing.T) {
			start := time.Now()
			hdr, trl, err := tt.call(t)
			took := time.Since(start)
			if got := status.Code(err); got != codes.DeadlineExceeded {
				t.Fatalf("after %v: got %v, want DeadlineExceeded from the route's 200ms timeout", took.Round(time.Millisecond), err)
			}
			if f := mdValue(hdr, trl, headerFlags); f != "UT" {
				t.Errorf("%s = %q (header %v, trailer %v), want UT", headerFlags, f, hdr, trl)
			}
			if took < 190*time.Millisecond || took > 2*time.Second {
				t.Errorf("the call ended after %v, want about 200ms", took)
			}
		})
	}

	t.Run("still serving", func(t *testing.T) {
		for _, md := range [][]string{nil, {"x-route", "timeout"}} {
			ctx := metadata.AppendToOutgoingContext(callCtx(t), md...)
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 100}); err != nil {
				t.Errorf("UnaryCall with metadata %q after the timeouts: %v", md, err)
			}
		}
	})
}

// TestNoRoute checks the answers to requests no route matches.
func TestNoRoute(t *testing.T) {
	b := startBackends(t, 1)[0]
	p := startProxy(t, fmt.Sprintf(`node: {id: e2e, zone: zone-a}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - match: {prefix: /grpc.testing.TestService/}
            cluster: upstream
clusters:
  - name: upstream
    endpoints: %s
`, endpoints(b.Addr)))
	addr := p.listener("ingress")
	conn, _ := dialGRPC(t, addr)

	t.Run("grpc", func(t *testing.T) {
		var hdr, trl metadata.MD
		_, err := healthpb.NewHealthClient(conn).Check(callCtx(t), &healthpb.HealthCheckRequest{}, grpc.Header(&hdr), grpc.Trailer(&trl))
		if got := status.Code(err); got != codes.Unimplemented {
			t.Fatalf("Health/Check with no route: got %v, want Unimplemented", err)
		}
		if f := mdValue(hdr, trl, headerFlags); f != "NR" {
			t.Errorf("%s = %q, want NR", headerFlags, f)
		}
		// The matched route still works on the same connection.
		if _, err := testgrpc.NewTestServiceClient(conn).EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
			t.Errorf("EmptyCall on the routed prefix: %v", err)
		}
	})

	t.Run("http1", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/not/routed")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET /not/routed: status %d, want 404 (body %q)", resp.StatusCode, body)
		}
		if f := resp.Header.Get(headerFlags); f != "NR" {
			t.Errorf("GET /not/routed: %s = %q, want NR", headerFlags, f)
		}
		if resp.ProtoMajor != 1 {
			t.Errorf("the response came over %s, want HTTP/1.1", resp.Proto)
		}
	})
}

// TestUpstreamDown checks calls to upstreams that are not there, or go away.
func TestUpstreamDown(t *testing.T) {
	a := startBackend(t, "127.0.0.1:0", "a")
	b := startBackend(t, "127.0.0.1:0", "b")
	dead := testnet.ClosedPort(t)
	later := freeAddr(t) // a backend is started there during the test
	p := startProxy(t, fmt.Sprintf(`node: {id: e2e, zone: zone-a}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - match: {prefix: /, headers: [{name: x-target, exact: dead}]}
            cluster: dead
          - match: {prefix: /, headers: [{name: x-target, exact: a}]}
            cluster: a
          - match: {prefix: /, headers: [{name: x-target, exact: later}]}
            cluster: later
          - match: {prefix: /}
            cluster: b
clusters:
  - {name: dead, connect_timeout: 1s, endpoints: %s}
  - {name: a, endpoints: %s}
  - {name: later, endpoints: %s}
  - {name: b, endpoints: %s}
`, endpoints(dead), endpoints(a.Addr), endpoints(later), endpoints(b.Addr)))
	addr := p.listener("ingress")
	client := testClient(t, addr)

	call := func(t *testing.T, target string) (flags string, err error) {
		t.Helper()
		var hdr, trl metadata.MD
		ctx := callCtx(t)
		if target != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-target", target)
		}
		_, err = client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 8}, grpc.Header(&hdr), grpc.Trailer(&trl))
		return mdValue(hdr, trl, headerFlags), err
	}
	wantUnavailable := func(t *testing.T, target, wantFlags string) {
		t.Helper()
		flags, err := call(t, target)
		if got := status.Code(err); got != codes.Unavailable {
			t.Errorf("call to %s: got %v, want Unavailable", target, err)
		}
		if wantFlags != "" && flags != wantFlags {
			t.Errorf("call to %s: %s = %q, want %s", target, headerFlags, flags, wantFlags)
		}
	}
	wantOK := func(t *testing.T, target string) {
		t.Helper()
		if _, err := call(t, target); err != nil {
			t.Errorf("call to %s: %v", target, err)
		}
	}

	t.Run("closed port", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			wantUnavailable(t, "dead", "UF")
		}
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		req.Header.Set("X-Target", "dead")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(headerFlags) != "UF" {
			t.Errorf("HTTP/1.1 GET to the dead cluster: status %d, %s %q; want 503, UF", resp.StatusCode, headerFlags, resp.Header.Get(headerFlags))
		}
		wantOK(t, "") // the proxy still serves the other cluster
	})

	t.Run("backend stopped", func(t *testing.T) {
		wantOK(t, "a")
		a.Stop()
		// The proxy may learn that the connection is gone a moment after
		// the backend closed it; from then on every call fails.
		err := eventually(5*time.Second, func() error {
			if _, err := call(t, "a"); err == nil {
				return errors.New("calls to the stopped backend still succeed")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			wantUnavailable(t, "a", "")
			wantOK(t, "")
		}
	})

	t.Run("backend on another port", func(t *testing.T) {
		wantUnavailable(t, "later", "UF")
		nb := startBackend(t, later, "later")
		if err := eventually(5*time.Second, func() error { _, err := call(t, "later"); return err }); err != nil {
			t.Fatalf("calls to the new backend on %s still fail: %v", later, err)
		}
		for i := 0; i < 5; i++ {
			wantOK(t, "later")
		}
		if nb.Calls() < 6 {
			t.Errorf("the new backend served %d calls, want at least 6", nb.Calls())
		}
	})

	t.Run("backend restarted on the same port", func(t *testing.T) {
		ra := startBackend(t, a.Addr, "a-again")
		if err := eventually(5*time.Second, func() error { _, err := call(t, "a"); return err }); err != nil {
			t.Fatalf("calls to the restarted backend on %s still fail: %v", a.Addr, err)
		}
		wantOK(t, "a")
		if ra.Calls() < 2 {
			t.Errorf("the restarted backend served %d calls, want at least 2", ra.Calls())
		}
	})
}

// TestManyRequestsOneConnection sends 3,000 calls one after another over one
// client connection: none may fail, and the proxy must not make the client
// reconnect (no per-connection request cap by default).
func TestManyRequestsOneConnection(t *testing.T) {
	b := startBackends(t, 1)[0]
	p := startProxy(t, simpleConfig("round_robin", b.Addr))
	conn, dials := dialGRPC(t, p.listener("ingress"))
	client := testgrpc.NewTestServiceClient(conn)
	const calls = 3000
	before := b.Calls()
	for i := 0; i < calls; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 32})
		cancel()
		if err != nil {
			t.Fatalf("call %d of %d: %v", i+1, calls, err)
		}
	}
	if got := b.Calls() - before; got != calls {
		t.Errorf("the backend served %d calls, want %d", got, calls)
	}
	if n := dials.n.Load(); n != 1 {
		t.Errorf("the client connected %d times, want once", n)
	}
}
