package h2

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// writerGoroutines counts the goroutines running a connection's writer.
func writerGoroutines() int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "(*conn).writeLoop(")
}

// TestLightLoadWritesInline: at light load the readers write what they
// forward, on both sides, so calls one at a time run no writer goroutine
// at all (each would be a hand-off per frame): over h2c downstream and a
// cleartext HTTP/2 upstream, and over TLS on both sides.
func TestLightLoadWritesInline(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("inline writes need a Unix socket")
	}
	calls := func(t *testing.T, c *rawPeer) {
		for i := range 50 {
			id := uint32(2*i + 1)
			c.request(id, true)
			if status, _, body := c.response(id); status != "200" || string(body) != "ok from the backend\n" {
				t.Fatalf("call %d: status %s body %q", i, status, body)
			}
			// The writer goroutines of net/http's upstream test servers
			// are not ours: only the engine's writeLoop is counted.
			if n := writerGoroutines(); n != 0 {
				t.Fatalf("call %d: %d writer goroutines running between calls at light load, want 0", i, n)
			}
		}
	}
	t.Run("h2c", func(t *testing.T) {
		p := okProxy(t, okHandler, proxyOpts{})
		calls(t, dialRaw(t, p.addr, true))
	})
	t.Run("tls", func(t *testing.T) {
		calls(t, dialHandshake(t, tlsProxy(t, okHandler).addr, true))
	})
}

// readCounter is a connection wrapper that counts the socket reads that
// brought bytes, as a listener's byte counter is told of them.
type readCounter struct {
	net.Conn
	reads *atomic.Int64
}

func (c *readCounter) Unwrap() net.Conn { return c.Conn }
func (c *readCounter) CountRead(int)    { c.reads.Add(1) }

// TestRequestsLargerThanSmallBufferReadWhole: a connection waits for its
// peer with only its small read buffer, and takes the large one once the
// socket is readable, so a request larger than the small buffer (HEADERS
// and 2 KiB of DATA, sent in one write) is one read of the socket, not a
// small read and then one for the rest. After each response the client
// sends a PING, as grpc-go does to measure the connection: the proxy
// reads it with no stream open, and gives the large buffer back.
func TestRequestsLargerThanSmallBufferReadWhole(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("inline reads need a Unix socket")
	}
	var reads atomic.Int64
	p := okProxy(t, okHandler, proxyOpts{wrap: func(c net.Conn) net.Conn { return &readCounter{Conn: c, reads: &reads} }})
	c := dialRaw(t, p.addr, true)
	body := bytes.Repeat([]byte("x"), 2048)
	call := func(id uint32) {
		t.Helper()
		c.postWhole(id, body)
		if status, _, _ := c.response(id); status != "200" {
			t.Fatalf("stream %d: status %s", id, status)
		}
		if err := c.fr.WritePing(false, [8]byte{byte(id)}); err != nil {
			t.Fatal(err)
		}
		if f := c.next(http2.FramePing); f == nil || !f.(*http2.PingFrame).IsAck() {
			t.Fatalf("stream %d: got %v, want the PING's ACK", id, f)
		}
		// A client between calls: the proxy's reader waits for the next
		// request, rather than find it already there as it reads again
		// right after writing the ACK (into the small buffer, then).
		time.Sleep(5 * time.Millisecond)
	}
	// The first calls also carry the handshake's frames.
	call(1)
	call(3)
	const calls = 20
	before := reads.Load()
	for i := range calls {
		call(uint32(5 + 2*i))
	}
	// On a slow machine a request may still come before the reader
	// waits, or a pause of a second park the connection (which gives its
	// buffers back): now and then a request takes two reads.
	if n := reads.Load() - before; n > 2*calls+calls/4 {
		t.Errorf("%d requests and PINGs took %d reads with bytes, want about one each", 2*calls, n)
	}
}

// tlsProxy is a proxy with a TLS listener in front of h served over TLS
// (ALPN h2).
func tlsProxy(t *testing.T, h http.Handler) *testProxy {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return startProxy(t, []testCluster{{name: "ok", addrs: []string{ln.Addr().String()}, tls: &tls.Config{InsecureSkipVerify: true}}},
		[]testRoute{{prefix: "/", cluster: "ok"}}, proxyOpts{tls: true})
}

// TestInlineWriteOverflow: 6 MB of responses that a client with a large
// window does not read fill the sockets, in the middle of an inline write
// or of a writer goroutine's; what an inline write leaves goes to a
// writer goroutine, which waits for the socket, and every byte of every
// body arrives in order once the client reads. Over h2c, and over TLS on
// both sides, where what is left is encrypted records.
func TestInlineWriteOverflow(t *testing.T) {
	const (
		calls = 100
		size  = 60 << 10 // under inlineMaxQueued: each response alone is written inline
	)
	body := func(i int) []byte {
		return bytes.Repeat([]byte(fmt.Sprintf("%02d-", i)), size/3)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var i int
		fmt.Sscanf(r.URL.Path, "/%d", &i)
		w.Write(body(i))
	})
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "h2c", true: "tls"}[useTLS], func(t *testing.T) {
			var p *testProxy
			if useTLS {
				p = tlsProxy(t, h)
			} else {
				p = okProxy(t, h, proxyOpts{})
			}
			nc, err := net.Dial("tcp", p.addr)
			if err != nil {
				t.Fatal(err)
			}
			if err := nc.(*net.TCPConn).SetReadBuffer(32 << 10); err != nil {
				t.Fatal(err)
			}
			if useTLS {
				tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
				nc = tc
			}
			c := newRawPeer(t, nc)
			c.write([]byte(http2.ClientPreface))
			if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 24}); err != nil {
				t.Fatal(err)
			}
			if err := c.fr.WriteWindowUpdate(0, 1<<30); err != nil {
				t.Fatal(err)
			}
			scheme := map[bool]string{false: "http", true: "https"}[useTLS]
			for i := range calls {
				block := c.block(":method", "GET", ":scheme", scheme, ":authority", "example.com", ":path", fmt.Sprintf("/%d", i))
				if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
					t.Fatal(err)
				}
			}
			// Read nothing while the responses come: they fill both sockets.
			time.Sleep(300 * time.Millisecond)
			for i := range calls {
				status, _, got := c.response(uint32(2*i + 1))
				if status != "200" || !bytes.Equal(got, body(i)) {
					t.Fatalf("call %d: status %s, %d bytes, want 200 and %d bytes of its own body", i, status, len(got), size)
				}
			}
		})
	}
}

// TestTLSBadRecordEndsOnlyItsConnection: a record that fails to decrypt,
// read by the reader through the base, is answered with crypto/tls's
// alert and ends that connection, which the client sees as an error, not
// a hang; the proxy goes on serving another TLS connection, and the
// established one's calls before it were answered.
func TestTLSBadRecordEndsOnlyItsConnection(t *testing.T) {
	p := tlsProxy(t, okHandler)
	raw, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	c := newRawPeer(t, tc)
	c.handshake()
	c.request(1, true)
	if status, _, _ := c.response(1); status != "200" {
		t.Fatalf("before the bad record: status %s", status)
	}
	// An application-data record of 32 bytes that no key produced.
	bad := append([]byte{23, 3, 3, 0, 32}, bytes.Repeat([]byte{0x5a}, 32)...)
	if _, err := raw.Write(bad); err != nil {
		t.Fatal(err)
	}
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf [4096]byte
	for {
		_, err := tc.Read(buf[:])
		if err == nil {
			continue // frames written before the record was read
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("the connection that sent a bad record is still open after 5 s")
		}
		break
	}

	other := dialHandshake(t, p.addr, true)
	other.request(1, true)
	if status, _, _ := other.response(1); status != "200" {
		t.Fatalf("another connection after the bad record: status %s", status)
	}
}

// stallConn stops reading its socket for a while once it has read a
// little: a backend whose reader is held up, with a large window granted.
type stallConn struct {
	net.Conn
	read  int
	until time.Time
}

func (c *stallConn) Read(p []byte) (int, error) {
	if c.read > 16<<10 && time.Now().Before(c.until) {
		time.Sleep(time.Until(c.until))
	}
	n, err := c.Conn.Read(p)
	c.read += n
	return n, err
}

type stallListener struct{ net.Listener }

func (l stallListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &stallConn{Conn: c, until: time.Now().Add(500 * time.Millisecond)}, nil
}

// TestTLSUploadsArriveWhole: uploads larger than the sockets hold, over
// TLS on both sides to a backend that grants a large window and stops
// reading its socket for a while, leave records the upstream socket does
// not take at once (kept by the base, written by a writer goroutine);
// every byte of every body reaches the backend in order, as its echo
// shows.
func TestTLSUploadsArriveWhole(t *testing.T) {
	const (
		calls = 8
		size  = 2 << 20
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) }),
		HTTP2:   &http.HTTP2Config{MaxReceiveBufferPerStream: 4 << 20, MaxReceiveBufferPerConnection: 64 << 20},
	}
	tlsLn := tls.NewListener(stallListener{ln}, &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"h2"}})
	go srv.Serve(tlsLn)
	t.Cleanup(func() { srv.Close() })
	p := startProxy(t, []testCluster{{name: "ok", addrs: []string{ln.Addr().String()}, tls: &tls.Config{InsecureSkipVerify: true}}},
		[]testRoute{{prefix: "/", cluster: "ok"}}, proxyOpts{tls: true})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
	errs := make(chan error, calls)
	for i := range calls {
		go func() {
			body := bytes.Repeat([]byte(fmt.Sprintf("%07d:", i)), size/8)
			resp, err := client.Post("https://"+p.addr+"/", "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			switch {
			case err != nil:
				errs <- fmt.Errorf("call %d: reading the echo: %w", i, err)
			case resp.StatusCode != 200 || !bytes.Equal(got, body):
				errs <- fmt.Errorf("call %d: status %d, %d bytes back, want 200 and its own %d", i, resp.StatusCode, len(got), len(body))
			default:
				errs <- nil
			}
		}()
	}
	for range calls {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
