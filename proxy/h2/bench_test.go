package h2

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/sightline-proxy/sightline/accesslog"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/observe"
	"github.com/sightline-proxy/sightline/tracing"
)

// The benchmarks put the engine between two lean frame-level endpoints
// that allocate nothing per call themselves, so that allocs/op is the
// proxy's. A call is gRPC-shaped: request HEADERS + a 5-byte DATA message
// with END_STREAM; response HEADERS, a 5-byte DATA message, trailers.
//
//	go test ./proxy/h2 -run '^$' -bench 'BenchmarkProxy' -benchmem -cpu 1,2

// benchPeer is the shared frame loop of the benchmark endpoints.
type benchPeer struct {
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	fr     *http2.Framer
	dec    *hpack.Decoder
	enc    *hpack.Encoder
	encBuf bytes.Buffer
	buf    []byte
	wmu    sync.Mutex
	recv   int // DATA bytes not yet returned with a connection WINDOW_UPDATE
	// pingData makes the peer answer each DATA frame as a grpc-go
	// endpoint does: a connection WINDOW_UPDATE for it and a PING (the
	// bandwidth estimator's, sent once its last PING is answered).
	pingData bool
}

func newBenchPeer(c net.Conn) *benchPeer {
	p := &benchPeer{c: c, br: bufio.NewReaderSize(c, 32<<10), bw: bufio.NewWriterSize(c, 32<<10), buf: make([]byte, 1<<20)}
	p.fr = http2.NewFramer(p.bw, p.br)
	p.dec = hpack.NewDecoder(4096, nil)
	p.dec.SetEmitEnabled(false)
	p.enc = hpack.NewEncoder(&p.encBuf)
	return p
}

// settings writes SETTINGS with large windows and a connection
// WINDOW_UPDATE to match.
func (p *benchPeer) settings() {
	p.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	p.fr.WriteWindowUpdate(0, 1<<30)
	p.bw.Flush()
}

func (p *benchPeer) block(fields ...string) []byte {
	p.encBuf.Reset()
	for i := 0; i < len(fields); i += 2 {
		p.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return p.encBuf.Bytes()
}

// loop reads frames and calls onEnd for every stream that ends (END_STREAM
// on HEADERS or DATA). It answers SETTINGS and PING and returns the
// connection window. Writes happen under wmu.
func (p *benchPeer) loop(onEnd func(id uint32)) {
	for {
		fh, err := p.fr.ReadFrameHeader()
		if err != nil {
			return
		}
		payload := p.buf[:fh.Length]
		if _, err := io.ReadFull(p.br, payload); err != nil {
			return
		}
		switch fh.Type {
		case http2.FrameHeaders:
			p.dec.Write(payload)
			p.dec.Close()
			if fh.Flags.Has(http2.FlagHeadersEndStream) {
				onEnd(fh.StreamID)
			}
		case http2.FrameData:
			if p.pingData && fh.Length > 0 {
				p.wmu.Lock()
				p.fr.WriteWindowUpdate(0, fh.Length)
				p.fr.WritePing(false, [8]byte{1})
				p.bw.Flush()
				p.wmu.Unlock()
			} else if p.recv += int(fh.Length); p.recv > 1<<20 {
				p.wmu.Lock()
				p.fr.WriteWindowUpdate(0, uint32(p.recv))
				p.bw.Flush()
				p.wmu.Unlock()
				p.recv = 0
			}
			if fh.Flags.Has(http2.FlagDataEndStream) {
				onEnd(fh.StreamID)
			}
		case http2.FrameSettings:
			if !fh.Flags.Has(http2.FlagSettingsAck) {
				p.wmu.Lock()
				p.fr.WriteSettingsAck()
				p.bw.Flush()
				p.wmu.Unlock()
			}
		case http2.FramePing:
			if !fh.Flags.Has(http2.FlagPingAck) {
				var d [8]byte
				copy(d[:], payload)
				p.wmu.Lock()
				p.fr.WritePing(true, d)
				p.bw.Flush()
				p.wmu.Unlock()
			}
		}
	}
}

var grpcMessage = []byte{0, 0, 0, 0, 0} // an empty protobuf message

// startBenchUpstream serves gRPC-shaped answers to every call.
func startBenchUpstream(b *testing.B) string {
	return startBenchUpstreamPinging(b, false)
}

// startBenchUpstreamPinging is startBenchUpstream whose connections answer
// DATA as grpc-go does when pingData is set.
func startBenchUpstreamPinging(b *testing.B, pingData bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				p := newBenchPeer(c)
				p.pingData = pingData
				if _, err := io.ReadFull(p.br, make([]byte, len(http2.ClientPreface))); err != nil {
					return
				}
				p.settings()
				p.loop(func(id uint32) {
					p.wmu.Lock()
					p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true,
						BlockFragment: p.block(":status", "200", "content-type", "application/grpc")})
					p.fr.WriteData(id, false, grpcMessage)
					p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, EndStream: true,
						BlockFragment: p.block("grpc-status", "0", "grpc-message", "")})
					if p.br.Buffered() == 0 {
						p.bw.Flush()
					}
					p.wmu.Unlock()
				})
			}()
		}
	}()
	return ln.Addr().String()
}

// benchClient is one client connection to the proxy.
type benchClient struct {
	*benchPeer
	next uint32
	done chan struct{}
}

func dialBenchClient(b *testing.B, addr string) *benchClient {
	return dialBenchClientPinging(b, addr, false)
}

// dialBenchClientPinging is dialBenchClient whose connection answers DATA
// as grpc-go does when pingData is set.
func dialBenchClientPinging(b *testing.B, addr string, pingData bool) *benchClient {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	bc := &benchClient{benchPeer: newBenchPeer(c), next: 1, done: make(chan struct{}, 1024)}
	bc.pingData = pingData
	bc.bw.WriteString(http2.ClientPreface)
	bc.settings()
	go bc.loop(func(uint32) { bc.done <- struct{}{} })
	return bc
}

// send writes one call; flush says whether to flush now.
func (bc *benchClient) send(flush bool) {
	bc.wmu.Lock()
	id := bc.next
	bc.next += 2
	bc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, BlockFragment: bc.block(
		":method", "POST", ":scheme", "http", ":authority", "bench", ":path", "/grpc.testing.TestService/EmptyCall",
		"content-type", "application/grpc", "te", "trailers")})
	bc.fr.WriteData(id, true, grpcMessage)
	if flush {
		bc.bw.Flush()
	}
	bc.wmu.Unlock()
}

func benchProxy(b *testing.B, obs *observe.Observer) *testProxy {
	up := startBenchUpstream(b)
	return startProxy(b, []testCluster{{name: "bench", addrs: []string{up}}}, []testRoute{{prefix: "/", cluster: "bench"}}, proxyOpts{obs: obs})
}

// BenchmarkProxyUnary pipelines calls on one client connection, 100 in
// flight (h2load -c 1 -m 100).
func BenchmarkProxyUnary(b *testing.B) {
	benchPipelined(b, benchProxy(b, nil))
}

// discardExporter takes spans and sends them nowhere, so that the
// benchmarks measure making spans, not a collector.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkProxyObserved is BenchmarkProxyUnary with request IDs, tracing
// (sampled and not) and an access log on a file, each alone and all
// together, against all off: the cost per call of observing it.
func BenchmarkProxyObserved(b *testing.B) {
	tracer := func(sampling float64) *tracing.Tracer {
		tr, err := tracing.New(config.Tracing{Sampling: sampling, Propagation: []string{"tracecontext"}}, config.Node{},
			tracing.WithExporter(discardExporter{}), tracing.WithQueueSize(1<<16))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { tr.Shutdown(context.Background()) })
		return tr
	}
	accessLog := func() []*accesslog.Logger {
		l, err := accesslog.New(config.AccessLog{Path: filepath.Join(b.TempDir(), "access.log"), FlushInterval: config.Duration(time.Second), BufferBytes: 64 << 10}, nil, zerolog.Nop())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close(context.Background()) })
		return []*accesslog.Logger{l}
	}
	off := false
	noID := config.RequestID{Generate: &off, PreserveExternal: &off, SetInResponse: &off}
	for _, tt := range []struct {
		name string
		obs  func() *observe.Observer
	}{
		{"off", func() *observe.Observer { return nil }},
		{"request_id", func() *observe.Observer { return observe.New(config.RequestID{}, nil, nil) }},
		{"access_log", func() *observe.Observer { return observe.New(noID, nil, accessLog()) }},
		{"trace_unsampled", func() *observe.Observer { return observe.New(noID, tracer(0), nil) }},
		{"trace_sampled", func() *observe.Observer { return observe.New(noID, tracer(100), nil) }},
		{"all_sampled", func() *observe.Observer { return observe.New(config.RequestID{}, tracer(100), accessLog()) }},
	} {
		b.Run(tt.name, func(b *testing.B) { benchPipelined(b, benchProxy(b, tt.obs())) })
	}
}

// BenchmarkProxyUnarySerial sends one call at a time on one client
// connection: light load, where nothing batches and each call pays its
// own wake-ups (run with -cpu 1 for the cost on one core).
func BenchmarkProxyUnarySerial(b *testing.B) {
	bc := dialBenchClient(b, benchProxy(b, nil).addr)
	for range 1000 {
		bc.send(true)
		<-bc.done
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		bc.send(true)
		<-bc.done
	}
}

// BenchmarkProxyUnaryPinged is BenchmarkProxyUnarySerial with both
// endpoints answering each DATA frame with a WINDOW_UPDATE and a PING, as
// grpc-go's do: the control frames each call brings at light load.
func BenchmarkProxyUnaryPinged(b *testing.B) {
	up := startBenchUpstreamPinging(b, true)
	p := startProxy(b, []testCluster{{name: "bench", addrs: []string{up}}}, []testRoute{{prefix: "/", cluster: "bench"}}, proxyOpts{})
	bc := dialBenchClientPinging(b, p.addr, true)
	for range 1000 {
		bc.send(true)
		<-bc.done
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		bc.send(true)
		<-bc.done
	}
}

// benchPipelined pipelines calls through p on one client connection, 100
// in flight.
func benchPipelined(b *testing.B, p *testProxy) {
	bc := dialBenchClient(b, p.addr)
	for range 1000 { // warm up: connections, HPACK tables, pools
		bc.send(true)
		<-bc.done
	}
	const inFlight = 100
	b.ReportAllocs()
	b.ResetTimer()
	sent, got := 0, 0
	for got < b.N {
		for sent < b.N && sent-got < inFlight {
			sent++
			bc.send(sent == b.N || sent-got == inFlight)
		}
		<-bc.done
		got++
	}
}

// BenchmarkProxyUnaryParallel runs one client connection per goroutine
// (16 per core), each with one call in flight: throughput grows with
// cores only if the connections share no lock.
func BenchmarkProxyUnaryParallel(b *testing.B) {
	p := benchProxy(b, nil)
	var mu sync.Mutex
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		bc := dialBenchClient(b, p.addr)
		mu.Unlock()
		for pb.Next() {
			bc.send(true)
			<-bc.done
		}
	})
}

// BenchmarkGRPCEmptyCall measures a real grpc-go client and server,
// direct and through the engine; the difference is the proxy's share.
func BenchmarkGRPCEmptyCall(b *testing.B) {
	bs := startBackends(b, 1)
	p := startProxy(b, []testCluster{{name: "grpc", addrs: addrsOf(bs)}}, []testRoute{{prefix: "/", cluster: "grpc"}}, proxyOpts{})
	for _, tt := range []struct{ name, addr string }{{"direct", bs[0].Addr}, {"proxied", p.addr}} {
		b.Run(tt.name, func(b *testing.B) {
			cc, err := grpc.NewClient(tt.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
			c := testgrpc.NewTestServiceClient(cc)
			ctx := context.Background()
			for range 100 {
				c.EmptyCall(ctx, &testgrpc.Empty{})
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
