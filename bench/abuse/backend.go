package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the codec rawCodec falls back on
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The backend's methods besides grpc.testing.TestService/EmptyCall (the
// victim's call). Any request body is accepted and none is parsed.
const (
	// pathBig streams bigMessages messages of bigMessageSize bytes (2 MiB).
	pathBig = "/abuse.Abuse/Big"
	// pathTiny streams empty messages (5 bytes on the wire each) until the
	// call ends.
	pathTiny = "/abuse.Abuse/Tiny"
	// pathStall never reads its request and never answers until the call
	// ends.
	pathStall = "/abuse.Abuse/Stall"
	// pathSlow answers OK after slowFor, or when the call ends.
	pathSlow = "/abuse.Abuse/Slow"
	// pathEmpty is the victim's call.
	pathEmpty = "/grpc.testing.TestService/EmptyCall"
	// pathEvilWindow and pathEvilRST are routed to the malicious upstreams
	// that the attack process itself serves.
	pathEvilWindow = "/evil.Window/Call"
	pathEvilRST    = "/evil.RST/Call"

	bigMessages    = 32
	bigMessageSize = 64 << 10
	slowFor        = 10 * time.Minute
)

type emptyServer struct {
	testgrpc.UnimplementedTestServiceServer
}

func (emptyServer) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	return &testgrpc.Empty{}, nil
}

// abuseHandler serves the /abuse.Abuse/ methods through grpc-go's unknown
// service hook, so they need no generated code.
func abuseHandler(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	ctx := ss.Context()
	switch method {
	case pathBig:
		for range bigMessages {
			if err := ss.SendMsg(bigMessage); err != nil {
				return err
			}
		}
		return nil
	case pathTiny:
		msg := &emptypb.Empty{}
		for ctx.Err() == nil {
			if err := ss.SendMsg(msg); err != nil {
				return err
			}
		}
		return status.FromContextError(ctx.Err()).Err()
	case pathStall:
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	case pathSlow:
		t := time.NewTimer(slowFor)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	return status.Errorf(codes.Unimplemented, "no method %s", method)
}

// bigMessage is pathBig's message, encoded once: a wrapperspb.BytesValue
// of bigMessageSize zero bytes.
var bigMessage = func() preEncoded {
	b, err := encoding.GetCodecV2("proto").Marshal(&wrapperspb.BytesValue{Value: make([]byte, bigMessageSize)})
	if err != nil {
		panic(err)
	}
	return preEncoded(b.Materialize())
}()

// preEncoded is a message already in its wire form, which rawCodec sends
// as it is.
type preEncoded []byte

// rawCodec sends a preEncoded message without encoding or copying it, and
// is grpc-go's proto codec for every other message. With proto each
// stream of pathBig would encode its own copies of the message:
// zero-window's 400 streams starting at once made the backend allocate
// and fill 50 MB in the attack's first tenth of a second, on the core it
// shares with the proxy and the victim, which stalled the victim's calls
// whatever was in front of the backend (directly too).
type rawCodec struct{ encoding.CodecV2 }

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(preEncoded); ok {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return c.CodecV2.Marshal(v)
}

func runBackend(args []string) error {
	ln, err := listenOn("backend", "127.0.0.1:50061", "listen address (h2c gRPC)", args)
	if err != nil {
		return err
	}
	// Fixed 64 KiB windows: grpc-go would otherwise grow a stream's window
	// (BDP estimation, up to 16 MiB) while /abuse.Abuse/Stall never reads,
	// and the stall would not reach the proxy.
	srv := grpc.NewServer(
		grpc.UnknownServiceHandler(abuseHandler),
		grpc.ForceServerCodecV2(rawCodec{encoding.GetCodecV2("proto")}),
		grpc.InitialWindowSize(65535),
		grpc.InitialConnWindowSize(65535),
	)
	testgrpc.RegisterTestServiceServer(srv, emptyServer{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		srv.Stop()
	}()
	fmt.Fprintf(os.Stderr, "backend listening on %s\n", ln.Addr())
	return srv.Serve(ln)
}
