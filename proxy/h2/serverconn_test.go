package h2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http2"

	"github.com/sightline-proxy/sightline/internal/testnet"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/router"
)

// okProxy is a proxy in front of an HTTP backend running h.
func okProxy(t testing.TB, h http.Handler, o proxyOpts) *testProxy {
	t.Helper()
	addr := testnet.Serve(t, h, testnet.HTTP1|testnet.H2C)
	return startProxy(t, []testCluster{{name: "ok", addrs: []string{addr}}}, []testRoute{{prefix: "/", cluster: "ok"}}, o)
}

// blockingHandler answers only when release is closed, so that streams
// stay open.
func blockingHandler(release <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.Write([]byte("late"))
	})
}

// TestPrefaceErrors: each connection error is a GOAWAY and one
// downstream_cx_protocol_error. A plaintext bad preface never reaches the
// engine (sniffing closes it) and is not counted; over TLS it is (see
// TestDownstreamProtocolErrorTLS).
func TestPrefaceErrors(t *testing.T) {
	p := okProxy(t, okHandler, proxyOpts{})
	t.Run("bad preface", func(t *testing.T) {
		st, addr := statsServer(t, p, proxyOpts{})
		c := dialRaw(t, addr, false)
		c.write([]byte("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"))
		if f := c.next(); f != nil {
			t.Fatalf("got %v, want the connection closed", f.Header())
		}
		wantCounts(t, st, 0, 0)
	})
	t.Run("first frame not SETTINGS", func(t *testing.T) {
		st, addr := statsServer(t, p, proxyOpts{})
		c := dialRaw(t, addr, false)
		c.write([]byte(http2.ClientPreface))
		c.fr.WritePing(false, [8]byte{})
		c.wantGoAway(http2.ErrCodeProtocol)
		wantCounts(t, st, 1, 0)
	})
	t.Run("SETTINGS ACK first", func(t *testing.T) {
		st, addr := statsServer(t, p, proxyOpts{})
		c := dialRaw(t, addr, false)
		c.write([]byte(http2.ClientPreface))
		c.fr.WriteSettingsAck()
		c.wantGoAway(http2.ErrCodeProtocol)
		wantCounts(t, st, 1, 0)
	})
	t.Run("garbage after the preface", func(t *testing.T) {
		st, addr := statsServer(t, p, proxyOpts{})
		c := dialRaw(t, addr, false)
		c.write([]byte(http2.ClientPreface))
		c.write([]byte("garbage, not a frame header")) // length 0x676172
		c.wantGoAway(http2.ErrCodeFrameSize)
		wantCounts(t, st, 1, 0)
	})
}

// TestConnectionErrors sends one bad thing per case and expects GOAWAY
// with a code, then the connection closed, and one
// downstream_cx_protocol_error.
func TestConnectionErrors(t *testing.T) {
	p := okProxy(t, okHandler, proxyOpts{})
	tests := []struct {
		name string
		give func(c *rawPeer)
		want http2.ErrCode
	}{
		{"even stream ID", func(c *rawPeer) { c.request(2, true) }, http2.ErrCodeProtocol},
		{"stream ID going down", func(c *rawPeer) { c.request(5, true); c.request(3, true) }, http2.ErrCodeProtocol},
		{"DATA on idle stream", func(c *rawPeer) { c.fr.WriteData(1, true, []byte("x")) }, http2.ErrCodeProtocol},
		{"RST_STREAM on idle stream", func(c *rawPeer) { c.fr.WriteRSTStream(1, http2.ErrCodeCancel) }, http2.ErrCodeProtocol},
		{"WINDOW_UPDATE on idle stream", func(c *rawPeer) { c.fr.WriteWindowUpdate(1, 1) }, http2.ErrCodeProtocol},
		{"unsolicited SETTINGS ACK", func(c *rawPeer) { c.fr.WriteSettingsAck(); c.fr.WriteSettingsAck() }, http2.ErrCodeProtocol},
		{"INITIAL_WINDOW_SIZE too large", func(c *rawPeer) {
			c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31})
		}, http2.ErrCodeFlowControl},
		{"MAX_FRAME_SIZE too small", func(c *rawPeer) {
			c.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 100})
		}, http2.ErrCodeProtocol},
		{"connection window overflow", func(c *rawPeer) {
			c.fr.WriteWindowUpdate(0, 1<<31-1)
			c.fr.WriteWindowUpdate(0, 1<<31-1)
		}, http2.ErrCodeFlowControl},
		{"frame too large", func(c *rawPeer) {
			c.post(1)
			c.fr.WriteData(1, false, make([]byte, maxFrameSize+1))
		}, http2.ErrCodeFrameSize},
		{"HEADERS interrupted", func(c *rawPeer) {
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block(":method", "GET")})
			c.fr.WritePing(false, [8]byte{})
		}, http2.ErrCodeProtocol},
		{"CONTINUATION on another stream", func(c *rawPeer) {
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block(":method", "GET")})
			c.fr.WriteContinuation(3, true, c.block(":path", "/"))
		}, http2.ErrCodeProtocol},
		{"CONTINUATION flood", func(c *rawPeer) {
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block(":method", "GET")})
			for range maxHeaderFrames + 1 {
				c.fr.WriteContinuation(1, false, c.block("x-a", "b"))
			}
		}, http2.ErrCodeEnhanceYourCalm},
		{"bad HPACK", func(c *rawPeer) {
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff}, EndHeaders: true})
		}, http2.ErrCodeCompression},
		{"WINDOW_UPDATE of 0 on the connection", func(c *rawPeer) { c.fr.WriteWindowUpdate(0, 0) }, http2.ErrCodeProtocol},
		{"WINDOW_UPDATE of 5 bytes", func(c *rawPeer) { c.fr.WriteRawFrame(http2.FrameWindowUpdate, 0, 0, []byte{0, 0, 0, 1, 0}) }, http2.ErrCodeFrameSize},
		{"PING of 4 bytes", func(c *rawPeer) { c.fr.WriteRawFrame(http2.FramePing, 0, 0, []byte{1, 2, 3, 4}) }, http2.ErrCodeFrameSize},
		{"PING on a stream", func(c *rawPeer) { c.fr.WriteRawFrame(http2.FramePing, 0, 1, make([]byte, 8)) }, http2.ErrCodeProtocol},
		{"RST_STREAM on stream 0", func(c *rawPeer) { c.fr.WriteRSTStream(0, http2.ErrCodeCancel) }, http2.ErrCodeProtocol},
		{"RST_STREAM of 8 bytes", func(c *rawPeer) {
			c.post(1)
			c.fr.WriteRawFrame(http2.FrameRSTStream, 0, 1, make([]byte, 8))
		}, http2.ErrCodeFrameSize},
		{"PUSH_PROMISE from a client", func(c *rawPeer) {
			c.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: c.block(":method", "GET"), EndHeaders: true})
		}, http2.ErrCodeProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, addr := statsServer(t, p, proxyOpts{})
			c := dialRaw(t, addr, true)
			tt.give(c)
			c.wantGoAway(tt.want)
			wantCounts(t, st, 1, 0)
		})
	}
}

// TestStreamErrors expects RST_STREAM with a code on stream 1 (or 3), and
// the connection still working afterwards.
func TestStreamErrors(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	p := okProxy(t, blockingHandler(release), proxyOpts{})
	tests := []struct {
		name string
		give func(c *rawPeer)
		id   uint32
		want http2.ErrCode
		// txReset: the stream was a request (its headers were valid),
		// so its reset counts in downstream_rq_tx_reset.
		txReset int64
	}{
		{"uppercase field name", func(c *rawPeer) { c.request(1, true, "X-Upper", "1") }, 1, http2.ErrCodeProtocol, 0},
		{"connection header", func(c *rawPeer) { c.request(1, true, "connection", "keep-alive") }, 1, http2.ErrCodeProtocol, 0},
		{"te other than trailers", func(c *rawPeer) { c.request(1, true, "te", "gzip") }, 1, http2.ErrCodeProtocol, 0},
		{"value with a newline", func(c *rawPeer) { c.request(1, true, "x-a", "b\nc") }, 1, http2.ErrCodeProtocol, 0},
		{"value with leading space", func(c *rawPeer) { c.request(1, true, "x-a", " b") }, 1, http2.ErrCodeProtocol, 0},
		{"missing :path", func(c *rawPeer) {
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block(":method", "GET", ":scheme", "http"), EndStream: true, EndHeaders: true})
		}, 1, http2.ErrCodeProtocol, 0},
		{"unknown pseudo-header", func(c *rawPeer) { c.request(1, true, ":foo", "x") }, 1, http2.ErrCodeProtocol, 0},
		{"content-length too short", func(c *rawPeer) {
			c.post(1, "content-length", "10")
			c.fr.WriteData(1, true, []byte("12345"))
		}, 1, http2.ErrCodeProtocol, 1},
		{"content-length too long", func(c *rawPeer) {
			c.post(1, "content-length", "2")
			c.fr.WriteData(1, false, []byte("12345"))
		}, 1, http2.ErrCodeProtocol, 1},
		{"DATA after END_STREAM", func(c *rawPeer) {
			c.request(1, true)
			c.fr.WriteData(1, true, []byte("x"))
		}, 1, http2.ErrCodeStreamClosed, 1},
		{"second HEADERS without END_STREAM", func(c *rawPeer) {
			c.post(1)
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block("x-t", "1"), EndHeaders: true})
		}, 1, http2.ErrCodeProtocol, 1},
		{"pseudo-header in trailers", func(c *rawPeer) {
			c.post(1)
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block(":path", "/"), EndStream: true, EndHeaders: true})
		}, 1, http2.ErrCodeProtocol, 1},
		{"WINDOW_UPDATE of 0 on a stream", func(c *rawPeer) {
			c.post(1)
			c.fr.WriteWindowUpdate(1, 0)
		}, 1, http2.ErrCodeProtocol, 1},
		{"stream window overflow", func(c *rawPeer) {
			c.post(1)
			c.fr.WriteWindowUpdate(1, 1<<31-1)
			c.fr.WriteWindowUpdate(1, 1<<31-1)
		}, 1, http2.ErrCodeFlowControl, 1},
		{"stream receive window exceeded", func(c *rawPeer) {
			// The backend does not read: once its own window (1 MiB) and
			// ours (grown to at most 1 MiB as the backend took bytes) are
			// full, the next byte is over.
			c.post(1)
			chunk := make([]byte, maxFrameSize)
			for range 3 * maxStreamWindow / maxFrameSize {
				if c.fr.WriteData(1, false, chunk) != nil {
					return
				}
			}
		}, 1, http2.ErrCodeFlowControl, 1},
		{"WINDOW_UPDATE of 0 on a stream", func(c *rawPeer) {
			c.post(1)
			c.fr.WriteWindowUpdate(1, 0)
		}, 1, http2.ErrCodeProtocol, 1},
		{"depends on itself", func(c *rawPeer) {
			c.fr.WritePriority(1, http2.PriorityParam{StreamDep: 1, Weight: 1})
		}, 1, http2.ErrCodeProtocol, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, addr := statsServer(t, p, proxyOpts{})
			c := dialRaw(t, addr, true)
			tt.give(c)
			c.wantRST(tt.id, tt.want)
			wantCounts(t, st, 0, tt.txReset)
			// The connection survives a stream error.
			c.fr.WritePing(false, [8]byte{1, 2, 3})
			for {
				f := c.next(http2.FramePing)
				if f == nil {
					t.Fatal("connection closed after a stream error")
				}
				if pf, ok := f.(*http2.PingFrame); ok && pf.IsAck() && pf.Data == [8]byte{1, 2, 3} {
					break
				}
			}
		})
	}
}

// TestSettingsDuplicates: one SETTINGS frame setting INITIAL_WINDOW_SIZE
// twice; the last value wins (h2spec 6.5.3/1, which Go's server fails).
func TestSettingsDuplicates(t *testing.T) {
	p := okProxy(t, okHandler, proxyOpts{})
	c := dialRaw(t, p.addr, true)
	c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
	for {
		f := c.next(http2.FrameSettings)
		if sf, ok := f.(*http2.SettingsFrame); ok && sf.IsAck() {
			break
		}
	}
	c.request(1, true)
	for {
		f := c.next()
		if d, ok := f.(*http2.DataFrame); ok {
			if len(d.Data()) != 1 {
				t.Fatalf("first DATA has %d bytes, want 1", len(d.Data()))
			}
			return
		}
	}
}

func TestPing(t *testing.T) {
	p := okProxy(t, okHandler, proxyOpts{})
	c := dialRaw(t, p.addr, true)
	c.fr.WritePing(true, [8]byte{9}) // an ACK is never answered
	c.fr.WritePing(false, [8]byte{7})
	for {
		pf, ok := c.next(http2.FramePing).(*http2.PingFrame)
		if !ok {
			continue
		}
		if !pf.IsAck() || pf.Data != [8]byte{7} {
			t.Fatalf("got PING ack=%v data=%v, want the ACK of the second", pf.IsAck(), pf.Data)
		}
		return
	}
}

func TestMaxConcurrentStreams(t *testing.T) {
	release := make(chan struct{})
	p := okProxy(t, blockingHandler(release), proxyOpts{limits: config.Limits{MaxConcurrentStreams: 2}})
	c := dialRaw(t, p.addr, true)
	c.request(1, true)
	c.request(3, true)
	c.request(5, true)
	c.wantRST(5, http2.ErrCodeRefusedStream)
	close(release)
	for _, id := range []uint32{1, 3} {
		if status, _, body := c.response(id); status != "200" || string(body) != "late" {
			t.Errorf("stream %d: %s %q", id, status, body)
		}
	}
}

func TestHeaderListTooLarge(t *testing.T) {
	p := okProxy(t, okHandler, proxyOpts{limits: config.Limits{MaxHeaderBytes: 4096}})
	big := strings.Repeat("a", 5000)
	t.Run("http", func(t *testing.T) {
		c := dialRaw(t, p.addr, true)
		c.request(1, true, "x-big", big)
		if status, _, _ := c.response(1); status != "431" {
			t.Errorf("status %s, want 431", status)
		}
	})
	t.Run("grpc", func(t *testing.T) {
		c := dialRaw(t, p.addr, true)
		c.request(1, true, "content-type", "application/grpc", "x-big", big)
		status, fields, _ := c.response(1)
		if status != "200" || field(fields, "grpc-status") != "8" {
			t.Errorf("status %s grpc-status %q, want 200 and 8 (RESOURCE_EXHAUSTED)", status, field(fields, "grpc-status"))
		}
	})
}

// TestRapidReset opens and resets streams before any response: once most
// of 100 recent streams went that way, the connection gets
// GOAWAY(ENHANCE_YOUR_CALM) (CVE-2023-44487).
func TestRapidReset(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	p := okProxy(t, blockingHandler(release), proxyOpts{})
	c := dialRaw(t, p.addr, true)
	c.next(http2.FrameSettings) // acked here: the goroutine below is then the only writer
	block := c.block(":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/")
	go func() {
		for id := uint32(1); id < 2*300; id += 2 {
			if c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}) != nil ||
				c.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return
			}
		}
	}()
	c.wantGoAway(http2.ErrCodeEnhanceYourCalm)
}

// TestControlFlood: a client that sends PINGs and never reads the ACKs is
// cut off once too many are queued.
func TestControlFlood(t *testing.T) {
	p := okProxy(t, okHandler, proxyOpts{})
	c := dialRaw(t, p.addr, true)
	if tc, ok := c.c.(*net.TCPConn); ok {
		tc.SetReadBuffer(4096)
	}
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	for range 1000 {
		fr.WritePing(false, [8]byte{1})
	}
	deadline := time.Now().Add(20 * time.Second)
	c.c.SetWriteDeadline(deadline)
	for time.Now().Before(deadline) {
		if _, err := c.c.Write(buf.Bytes()); err != nil {
			return // the proxy closed the connection
		}
	}
	t.Fatal("the proxy kept reading PINGs from a client that never reads")
}

func TestGracefulShutdown(t *testing.T) {
	release := make(chan struct{})
	p := okProxy(t, blockingHandler(release), proxyOpts{})
	c := dialRaw(t, p.addr, true)
	c.request(1, true)
	// Wait until the stream is in.
	for p.srv.Stats().Streams != 1 {
		time.Sleep(time.Millisecond)
	}
	done := make(chan error, 1)
	go func() { done <- p.srv.Shutdown(context.Background()) }()

	ga, ok := c.next().(*http2.GoAwayFrame)
	if !ok || ga.LastStreamID != 1<<31-1 || ga.ErrCode != http2.ErrCodeNo {
		t.Fatalf("first frame %v, want GOAWAY(2^31-1, NO_ERROR)", ga)
	}
	pf, ok := c.next(http2.FramePing).(*http2.PingFrame)
	if !ok || pf.IsAck() {
		t.Fatalf("want a PING after the first GOAWAY, got %v", pf)
	}
	c.request(3, true) // in flight before the client saw the GOAWAY: still served
	c.fr.WritePing(true, pf.Data)
	ga, ok = c.next().(*http2.GoAwayFrame)
	if !ok || ga.LastStreamID != 3 {
		t.Fatalf("second frame %v, want GOAWAY(3)", ga)
	}
	c.request(5, true)
	c.wantRST(5, http2.ErrCodeRefusedStream)
	close(release)
	for _, id := range []uint32{1, 3} {
		if status, _, _ := c.response(id); status != "200" {
			t.Errorf("stream %d: status %s", id, status)
		}
	}
	if f := c.next(); f != nil {
		t.Fatalf("got %v, want the connection closed", f.Header())
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestIdleTimeout(t *testing.T) {
	p := okProxy(t, okHandler, proxyOpts{limits: config.Limits{IdleTimeout: config.Duration(100 * time.Millisecond)}})
	c := dialRaw(t, p.addr, true)
	c.request(1, true)
	if status, _, _ := c.response(1); status != "200" {
		t.Fatalf("status %s", status)
	}
	start := time.Now()
	ga, ok := c.next().(*http2.GoAwayFrame)
	if !ok || ga.ErrCode != http2.ErrCodeNo {
		t.Fatalf("got %v, want GOAWAY(NO_ERROR)", ga)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("GOAWAY after %v, want about 100ms", el)
	}
}

// TestRequestBodyAndTrailers sends a body in several DATA frames (one
// padded) and trailers; the backend sees them all.
func TestRequestBodyAndTrailers(t *testing.T) {
	got := make(chan string, 1)
	p := okProxy(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b) + "|" + r.Trailer.Get("X-Check") + "|" + r.Header.Get("X-Forwarded-For")
		w.Write([]byte("done"))
	}), proxyOpts{})
	c := dialRaw(t, p.addr, true)
	c.post(1, "trailer", "x-check")
	c.fr.WriteData(1, false, []byte("hello "))
	c.fr.WriteDataPadded(1, false, []byte("padded "), make([]byte, 20))
	c.fr.WriteData(1, false, []byte("world"))
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block("x-check", "ok"), EndStream: true, EndHeaders: true})
	status, fields, body := c.response(1)
	if status != "200" || string(body) != "done" {
		t.Errorf("response %s %q", status, body)
	}
	if field(fields, "x-sightline-upstream-service-time") == "" {
		t.Error("no x-sightline-upstream-service-time")
	}
	if g := <-got; g != "hello padded world|ok|127.0.0.1" {
		t.Errorf("backend saw %q", g)
	}
}

// TestLocalReplies checks the proxy's own answers to HTTP clients.
func TestLocalReplies(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	slow := testnet.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}), testnet.HTTP1|testnet.H2C)
	p := startProxy(t, []testCluster{{name: "dead", addrs: []string{dead}}, {name: "slow", addrs: []string{slow}}},
		[]testRoute{{prefix: "/dead", cluster: "dead"}, {prefix: "/slow", cluster: "slow", timeout: 50 * time.Millisecond}}, proxyOpts{})
	tests := []struct {
		path, status, flags, body string
	}{
		{"/nowhere", "404", "NR", "no route\n"},
		{"/dead", "503", "UF", router.ReplyConnectFailure.Message + "\n"},
		{"/slow", "504", "UT", "upstream request timeout\n"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			c := dialRaw(t, p.addr, true)
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true,
				BlockFragment: c.block(":method", "GET", ":scheme", "http", ":authority", "x", ":path", tt.path)})
			status, fields, body := c.response(1)
			if status != tt.status || field(fields, "x-sightline-response-flags") != tt.flags || string(body) != tt.body {
				t.Errorf("got %s %s %q, want %s %s %q", status, field(fields, "x-sightline-response-flags"), body, tt.status, tt.flags, tt.body)
			}
		})
	}
}

// TestHeadersOnStreamThatClosedWhileRead: a header block on a stream that
// was open when the block began and left the server's table before it
// ended (the writer that sent our END_STREAM let go of it meanwhile, a
// race that a busy machine shows now and then, as h2spec's "closed: Sends
// a HEADERS frame" did) is a connection error of type STREAM_CLOSED, not
// a new request on a used stream ID.
func TestHeadersOnStreamThatClosedWhileRead(t *testing.T) {
	srv := NewServer(ServerOptions{Log: zerolog.Nop()})
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	sc := newServerConn(srv, a)
	sc.maxClientID = 3
	sc.hb.streamID, sc.hb.endStream = 3, true
	var ce connErr
	if err := sc.endHeaders(); !errors.As(err, &ce) || ce.code != http2.ErrCodeStreamClosed {
		t.Fatalf("endHeaders on a stream that closed while its block was read: %v, want a connection error STREAM_CLOSED", err)
	}
}
