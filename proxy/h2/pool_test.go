package h2

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sightline-proxy/sightline/internal/testnet"
)

// fakeUpstream is a scripted HTTP/2 server. Each connection sends its
// SETTINGS (after settingsDelay), then hands every HEADERS frame to
// onRequest, which may answer with respond.
type fakeUpstream struct {
	t             testing.TB
	addr          string
	settings      []http2.Setting
	settingsDelay time.Duration
	// settingsGate, when set, holds each connection's SETTINGS until it
	// is closed.
	settingsGate <-chan struct{}
	onRequest    func(fc *fakeConn, id uint32)
	// onHeaders, when set, is called with each request's header block as
	// sent and its fields, before onRequest; requests must then fit one
	// HEADERS frame.
	onHeaders func(fc *fakeConn, block []byte, fields []hpack.HeaderField)
	// ackPings makes the upstream answer PINGs; by default it ignores
	// them, as a peer that stopped processing frames would.
	ackPings bool
	// onWindowUpdate, when set, is called with each WINDOW_UPDATE the
	// proxy sends, on the connection's reading goroutine.
	onWindowUpdate func(fc *fakeConn, id, inc uint32)

	conns   atomic.Int32
	streams atomic.Int32
	pings   atomic.Int32
	// ended counts connections whose serving ended: the proxy closed
	// them, or the fake did.
	ended atomic.Int32
	// onEnd, when set, is called with a connection's number as its
	// serving ends.
	onEnd func(n int32)
}

type fakeConn struct {
	fu     *fakeUpstream
	n      int32 // 1 for the first connection
	mu     sync.Mutex
	fr     *http2.Framer
	enc    *hpack.Encoder
	encBuf bytes.Buffer
	c      net.Conn
	// window is the proxy's SETTINGS_INITIAL_WINDOW_SIZE, once its
	// SETTINGS arrived (before any request).
	window atomic.Uint32
}

func startFakeUpstream(t testing.TB, fu *fakeUpstream) *fakeUpstream {
	t.Helper()
	fu.t = t
	fu.addr = testnet.ServeConns(t, fu.serve)
	return fu
}

func (fu *fakeUpstream) serve(c net.Conn) {
	defer fu.ended.Add(1)
	fc := &fakeConn{fu: fu, n: fu.conns.Add(1), c: c, fr: http2.NewFramer(c, c)}
	if fu.onEnd != nil {
		defer fu.onEnd(fc.n)
	}
	fc.enc = hpack.NewEncoder(&fc.encBuf)
	dec := hpack.NewDecoder(4096, nil)
	if fu.onHeaders == nil {
		fc.fr.ReadMetaHeaders = dec
	}
	pre := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, pre); err != nil {
		return
	}
	time.Sleep(fu.settingsDelay)
	if fu.settingsGate != nil {
		<-fu.settingsGate
	}
	fc.mu.Lock()
	fc.fr.WriteSettings(fu.settings...)
	fc.mu.Unlock()
	for {
		f, err := fc.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if v, ok := f.Value(http2.SettingInitialWindowSize); ok {
				fc.window.Store(v)
			}
			if !f.IsAck() {
				fc.mu.Lock()
				fc.fr.WriteSettingsAck()
				fc.mu.Unlock()
			}
		case *http2.PingFrame:
			if f.IsAck() {
				break
			}
			fu.pings.Add(1)
			if fu.ackPings {
				fc.write(func(fr *http2.Framer) { fr.WritePing(true, f.Data) })
			}
		case *http2.WindowUpdateFrame:
			if fu.onWindowUpdate != nil {
				fu.onWindowUpdate(fc, f.StreamID, f.Increment)
			}
		case *http2.HeadersFrame: // onHeaders: the block as sent
			block := bytes.Clone(f.HeaderBlockFragment())
			fields, err := dec.DecodeFull(block)
			if err != nil || !f.HeadersEnded() {
				fu.t.Errorf("upstream: decoding a request's block % x (whole: %v): %v", block, f.HeadersEnded(), err)
				return
			}
			fu.onHeaders(fc, block, fields)
			fu.request(fc, f.StreamID)
		case *http2.MetaHeadersFrame:
			fu.request(fc, f.StreamID)
		}
	}
}

// request answers the request on id: onRequest, or 200 "fine".
func (fu *fakeUpstream) request(fc *fakeConn, id uint32) {
	fu.streams.Add(1)
	if fu.onRequest != nil {
		fu.onRequest(fc, id)
	} else {
		fc.respond(id, "fine")
	}
}

// respond sends a 200 with body on id.
func (fc *fakeConn) respond(id uint32, body string) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.encBuf.Reset()
	fc.enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	fc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: fc.encBuf.Bytes(), EndHeaders: true})
	fc.fr.WriteData(id, true, []byte(body))
}

func (fc *fakeConn) write(fn func(fr *http2.Framer)) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fn(fc.fr)
}

// h2cClient is a Go HTTP client speaking h2c with prior knowledge.
func h2cClient() *http.Client {
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: protos}, Timeout: 10 * time.Second}
}

// get fetches path through the proxy and returns status and body.
func get(t testing.TB, c *http.Client, addr, path string) (int, string) {
	t.Helper()
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s body: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

func fakeProxy(t testing.TB, fu *fakeUpstream) *testProxy {
	startFakeUpstream(t, fu)
	return startProxy(t, []testCluster{{name: "fake", addrs: []string{fu.addr}, connect: time.Second}},
		[]testRoute{{prefix: "/", cluster: "fake"}}, proxyOpts{})
}

// TestPoolWaitsForSettings: a new connection takes no more streams than
// the peer's SETTINGS_MAX_CONCURRENT_STREAMS once they arrive, however
// late; streams over the limit go to other connections.
func TestPoolWaitsForSettings(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	perConn := map[int32]int{}
	fu := &fakeUpstream{
		settings:      []http2.Setting{{ID: http2.SettingMaxConcurrentStreams, Val: 1}},
		settingsDelay: 100 * time.Millisecond,
		onRequest: func(fc *fakeConn, id uint32) {
			mu.Lock()
			perConn[fc.n]++
			mu.Unlock()
			go func() { <-release; fc.respond(id, "fine") }()
		},
	}
	p := fakeProxy(t, fu)
	c := h2cClient()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, body := get(t, c, p.addr, "/"); code != 200 || body != "fine" {
				t.Errorf("got %d %q", code, body)
			}
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for fu.streams.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(perConn) != 4 {
		t.Errorf("streams per connection %v, want 4 connections with one stream each", perConn)
	}
	for n, k := range perConn {
		if k != 1 {
			t.Errorf("connection %d got %d streams, want 1", n, k)
		}
	}
}

// TestPoolMaxConns: at MaxConns, streams wait for a slot on an existing
// connection instead of dialling more.
func TestPoolMaxConns(t *testing.T) {
	fu := startFakeUpstream(t, &fakeUpstream{
		settings: []http2.Setting{{ID: http2.SettingMaxConcurrentStreams, Val: 1}},
		onRequest: func(fc *fakeConn, id uint32) {
			go func() { time.Sleep(20 * time.Millisecond); fc.respond(id, "fine") }()
		},
	})
	p := startProxy(t, []testCluster{{name: "one", addrs: []string{fu.addr}, maxConns: 1}},
		[]testRoute{{prefix: "/", cluster: "one"}}, proxyOpts{})
	c := h2cClient()
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, body := get(t, c, p.addr, "/"); code != 200 || body != "fine" {
				t.Errorf("got %d %q", code, body)
			}
		}()
	}
	wg.Wait()
	if n := fu.conns.Load(); n != 1 {
		t.Errorf("upstream saw %d connections, want 1", n)
	}
}

// TestPoolRefusedStream: a stream the upstream refuses is retried.
func TestPoolRefusedStream(t *testing.T) {
	var first atomic.Bool
	fu := &fakeUpstream{onRequest: func(fc *fakeConn, id uint32) {
		if first.CompareAndSwap(false, true) {
			fc.write(func(fr *http2.Framer) { fr.WriteRSTStream(id, http2.ErrCodeRefusedStream) })
			return
		}
		fc.respond(id, "second try")
	}}
	p := fakeProxy(t, fu)
	if code, body := get(t, h2cClient(), p.addr, "/"); code != 200 || body != "second try" {
		t.Errorf("got %d %q", code, body)
	}
	if n := fu.streams.Load(); n != 2 {
		t.Errorf("upstream saw %d streams, want 2", n)
	}
}

// TestPoolGoAway: streams above GOAWAY's last stream ID go to a new
// connection; the old one closes once empty.
func TestPoolGoAway(t *testing.T) {
	fu := &fakeUpstream{onRequest: func(fc *fakeConn, id uint32) {
		if fc.n == 1 {
			fc.write(func(fr *http2.Framer) { fr.WriteGoAway(0, http2.ErrCodeNo, nil) })
			return
		}
		fc.respond(id, "from conn 2")
	}}
	p := fakeProxy(t, fu)
	if code, body := get(t, h2cClient(), p.addr, "/"); code != 200 || body != "from conn 2" {
		t.Errorf("got %d %q", code, body)
	}
	if n := fu.conns.Load(); n != 2 {
		t.Errorf("upstream saw %d connections, want 2", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.pools[0].H2.Stats().Conns != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("pool has %d connections, want the GOAWAY one closed", p.pools[0].H2.Stats().Conns)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPoolStreamIDRotation: a connection near the end of its stream IDs
// is retired for a new one.
func TestPoolStreamIDRotation(t *testing.T) {
	fu := &fakeUpstream{}
	p := fakeProxy(t, fu)
	p.pools[0].H2.maxStreamID = 5
	c := h2cClient()
	for i := range 5 {
		if code, _ := get(t, c, p.addr, "/"); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	if n := fu.conns.Load(); n != 2 {
		t.Errorf("upstream saw %d connections, want 2 (IDs 1, 3, 5, then a new one)", n)
	}
}

// TestPoolConnectTimeout: an upstream that accepts but never sends
// SETTINGS is a connect failure once the timeout passes.
func TestPoolConnectTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	p := startProxy(t, []testCluster{{name: "mute", addrs: []string{ln.Addr().String()}, connect: 100 * time.Millisecond}},
		[]testRoute{{prefix: "/", cluster: "mute"}}, proxyOpts{})
	start := time.Now()
	resp, err := h2cClient().Get("http://" + p.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("X-Sightline-Response-Flags") != "UF" {
		t.Errorf("got %d %q, want 503 UF", resp.StatusCode, resp.Header.Get("X-Sightline-Response-Flags"))
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("took %v, want about the 100ms connect timeout", el)
	}
}

// TestPoolClose: closing a pool lets its streams finish and refuses new
// ones.
func TestPoolClose(t *testing.T) {
	release := make(chan struct{})
	fu := &fakeUpstream{onRequest: func(fc *fakeConn, id uint32) {
		go func() { <-release; fc.respond(id, "finished") }()
	}}
	p := fakeProxy(t, fu)
	done := make(chan string, 1)
	go func() {
		_, body := get(t, h2cClient(), p.addr, "/")
		done <- body
	}()
	for fu.streams.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	pool := p.pools[0].H2
	pool.Close()
	pool.Close() // idempotent
	close(release)
	if body := <-done; body != "finished" {
		t.Errorf("in-flight stream got %q", body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for pool.Stats().Conns != 0 {
		if time.Now().After(deadline) {
			t.Fatal("closed pool kept its connection")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code, _ := get(t, h2cClient(), p.addr, "/"); code != 503 {
		t.Errorf("after Close: %d, want 503", code)
	}
}

// TestPoolTLS: an upstream behind TLS with ALPN h2.
func TestPoolTLS(t *testing.T) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(r.Proto + " " + r.TLS.NegotiatedProtocol))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	p := startProxy(t, []testCluster{{name: "tls", addrs: []string{ln.Addr().String()}, tls: &tls.Config{InsecureSkipVerify: true}}},
		[]testRoute{{prefix: "/", cluster: "tls"}}, proxyOpts{})
	if code, body := get(t, h2cClient(), p.addr, "/"); code != 200 || body != "HTTP/2.0 h2" {
		t.Errorf("got %d %q", code, body)
	}
}

// TestHTTP1Bridge: an http1 cluster is reached through net/http, with
// the request body streamed from HTTP/2 frames and the response streamed
// back.
func TestHTTP1Bridge(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	srv := &http.Server{Protocols: protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen", r.Proto+" "+r.Host+" "+r.Header.Get("X-Forwarded-Proto"))
		w.Write(bytes.ToUpper(b))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	p := startProxy(t, []testCluster{{name: "h1", protocol: "http1", addrs: []string{ln.Addr().String()}}},
		[]testRoute{{prefix: "/", cluster: "h1"}}, proxyOpts{})
	for _, size := range []int{0, 10, 3 << 20} {
		body := strings.Repeat("abc", size/3)
		resp, err := h2cClient().Post("http://"+p.addr+"/echo", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || string(got) != strings.ToUpper(body) {
			t.Errorf("size %d: status %d, %d bytes back", size, resp.StatusCode, len(got))
		}
		if seen := resp.Header.Get("X-Seen"); seen != "HTTP/1.1 "+p.addr+" http" {
			t.Errorf("upstream saw %q", seen)
		}
	}
	waitIdle(t, p)
}
