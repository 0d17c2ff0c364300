package listener

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sightline-proxy/sightline/internal/testnet"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/h2"
	"github.com/sightline-proxy/sightline/proxy/route"
	"github.com/sightline-proxy/sightline/stats"
)

// testListener is a started Listener whose stats live in a real store.
type testListener struct {
	l    *Listener
	h2   *h2.Server
	http *stats.HTTP
	ls   *stats.Listener
	addr string
}

// h1Body is what the HTTP/1.1 handler answers. HTTP/2 requests get the
// engine's 404 (the route table is empty), which is enough here.
const h1Body = "hello over HTTP/1.1\n"

// startListener starts a listener on 127.0.0.1:0 serving protocols, with
// TLS (a throwaway certificate) when tlsOn, until the test ends.
func startListener(t *testing.T, tlsOn bool, protocols ...string) *testListener {
	t.Helper()
	return startListenerWith(t, tlsOn, Options{}, protocols...)
}

// startListenerWith is startListener with options.
func startListenerWith(t *testing.T, tlsOn bool, opts Options, protocols ...string) *testListener {
	t.Helper()
	return startListenerOn(t, nil, tlsOn, opts, protocols...)
}

// startListenerOn is startListenerWith on a socket already bound (StartOn),
// or on its own when ln is nil.
func startListenerOn(t *testing.T, ln net.Listener, tlsOn bool, opts Options, protocols ...string) *testListener {
	t.Helper()
	store, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tl := &testListener{http: store.HTTP("test"), ls: store.Listener("127.0.0.1:0")}
	table, err := route.New(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h2srv := h2.NewServer(h2.ServerOptions{Routes: table, TLS: tlsOn, Stats: tl.http, Log: zerolog.Nop()})
	h1 := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte(h1Body))
	})
	cfg := config.Listener{Name: "test", Address: "127.0.0.1:0", StatPrefix: "test", Protocols: protocols}
	if tlsOn {
		certFile, keyFile, _ := testnet.WriteCert(t, t.TempDir())
		cfg.TLS = &config.ListenerTLS{CertFile: certFile, KeyFile: keyFile}
	}
	tl.h2 = h2srv
	tl.l, err = New(cfg, h1, h2srv, Stats{Listener: tl.ls, HTTP: tl.http}, zerolog.Nop(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if ln != nil {
		tl.l.StartOn(ln)
	} else if err := tl.l.Start(); err != nil {
		t.Fatal(err)
	}
	tl.addr = tl.l.Addr()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tl.l.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return tl
}

// meteredConn is the client's TCP socket, counting the bytes it wrote and
// read: what the listener must count for the connection.
type meteredConn struct {
	net.Conn
	read, written atomic.Int64
}

func (c *meteredConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func (c *meteredConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

// CloseWrite half-closes the socket.
func (c *meteredConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// dial connects to tl: plaintext, or TLS offering alpn. It returns the
// connection to speak on and the socket under it.
func dial(t *testing.T, tl *testListener, alpn string) (net.Conn, *meteredConn) {
	t.Helper()
	raw, err := net.Dial("tcp", tl.addr)
	if err != nil {
		t.Fatal(err)
	}
	mc := &meteredConn{Conn: raw}
	t.Cleanup(func() { mc.Close() })
	var c net.Conn = mc
	if alpn != "" {
		tc := tls.Client(mc, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpn}})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		if got := tc.ConnectionState().NegotiatedProtocol; got != alpn {
			t.Fatalf("ALPN chose %q, want %q", got, alpn)
		}
		c = tc
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, mc
}

// h1Exchange sends one HTTP/1.1 request and reads its response; the
// connection stays open.
func h1Exchange(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	if _, err := io.WriteString(c, "POST /x HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || string(body) != h1Body {
		t.Fatalf("got %d %q (%v), want 200 %q", resp.StatusCode, body, err, h1Body)
	}
}

// h2Client is a minimal HTTP/2 client on a framer.
type h2Client struct {
	t      *testing.T
	fr     *http2.Framer
	enc    *hpack.Encoder
	encBuf bytes.Buffer
	nextID uint32
}

func newH2Client(t *testing.T, c net.Conn) *h2Client {
	t.Helper()
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	hc := &h2Client{t: t, fr: http2.NewFramer(c, c), nextID: 1}
	hc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	hc.enc = hpack.NewEncoder(&hc.encBuf)
	if err := hc.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return hc
}

// exchange sends a GET and reads frames until its response ends; the
// engine answers 404 (no route).
func (hc *h2Client) exchange() {
	t := hc.t
	t.Helper()
	id := hc.nextID
	hc.nextID += 2
	hc.encBuf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "example.com"}, {":path", "/x"}} {
		hc.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := hc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hc.encBuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := hc.fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the response: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				hc.fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id && f.PseudoValue("status") != "404" {
				t.Fatalf("status %q, want 404", f.PseudoValue("status"))
			}
			if f.StreamID == id && f.StreamEnded() {
				return
			}
		case *http2.DataFrame:
			if f.StreamID == id && f.StreamEnded() {
				return
			}
		case *http2.GoAwayFrame, *http2.RSTStreamFrame:
			t.Fatalf("got %v", f.Header())
		}
	}
}

// closeAndDrain half-closes c (a TLS close_notify over TLS), reads until
// the listener closes it too, then closes it: afterwards the client has
// read every byte the listener wrote, and the listener every byte the
// client wrote.
func closeAndDrain(t *testing.T, c net.Conn) {
	t.Helper()
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("draining: %v", err)
	}
	c.Close()
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// counts are a listener's connection stats.
type counts struct {
	total, active, h1Total, h1Active, h2Total, h2Active int64
	listenerTotal, listenerActive                       int64
}

func (tl *testListener) counts() counts {
	st := tl.http
	return counts{
		total: st.DownstreamCxTotal.Value(), active: st.DownstreamCxActive.Value(),
		h1Total: st.DownstreamCxHTTP1Total.Value(), h1Active: st.DownstreamCxHTTP1Active.Value(),
		h2Total: st.DownstreamCxHTTP2Total.Value(), h2Active: st.DownstreamCxHTTP2Active.Value(),
		listenerTotal: tl.ls.DownstreamCxTotal.Value(), listenerActive: tl.ls.DownstreamCxActive.Value(),
	}
}

// exchanges by protocol: one request and its response on an open
// connection, as many times as called.
func exchanger(t *testing.T, proto string, c net.Conn) func() {
	if proto == "http1" {
		br := bufio.NewReader(c)
		return func() { h1Exchange(t, c, br) }
	}
	hc := newH2Client(t, c)
	return hc.exchange
}

// TestConnCounters: a connection served as HTTP/1.1 or HTTP/2, plaintext
// or TLS, is counted once in downstream_cx_total and in its protocol's
// total, is active while open and no longer once closed, and its socket
// bytes, TLS records included, are exactly those the client's socket
// wrote and read.
func TestConnCounters(t *testing.T) {
	tests := []struct {
		name      string
		tls       bool
		protocols []string
		alpn      string // "" for plaintext
		proto     string // how the listener serves it: http1 or h2
	}{
		{name: "HTTP/1.1", protocols: []string{"http1", "h2c"}, proto: "http1"},
		{name: "h2c prior knowledge", protocols: []string{"http1", "h2c"}, proto: "h2"},
		{name: "HTTP/1.1 over TLS", tls: true, protocols: []string{"h2", "http1"}, alpn: "http/1.1", proto: "http1"},
		{name: "h2 over TLS", tls: true, protocols: []string{"h2", "http1"}, alpn: "h2", proto: "h2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := startListener(t, tt.tls, tt.protocols...)
			c, mc := dial(t, tl, tt.alpn)
			exchange := exchanger(t, tt.proto, c)
			exchange()
			exchange()

			open := counts{total: 1, active: 1, listenerTotal: 1, listenerActive: 1}
			if tt.proto == "http1" {
				open.h1Total, open.h1Active = 1, 1
			} else {
				open.h2Total, open.h2Active = 1, 1
			}
			if got := tl.counts(); got != open {
				t.Fatalf("while open: %+v, want %+v", got, open)
			}

			closeAndDrain(t, c)
			closed := open
			closed.active, closed.h1Active, closed.h2Active, closed.listenerActive = 0, 0, 0, 0
			waitFor(t, "the connection to be counted closed", func() bool { return tl.counts() == closed })

			st := tl.http
			if got, want := st.DownstreamCxRxBytes.Value(), mc.written.Load(); got != want {
				t.Errorf("downstream_cx_rx_bytes_total = %d, want %d (written by the client)", got, want)
			}
			if got, want := st.DownstreamCxTxBytes.Value(), mc.read.Load(); got != want {
				t.Errorf("downstream_cx_tx_bytes_total = %d, want %d (read by the client)", got, want)
			}
		})
	}
}

// TestBytesCountedWhileOpen: the byte counters catch up with a connection
// that stays open and quiet (a long-lived stream), without waiting for
// it to close.
func TestBytesCountedWhileOpen(t *testing.T) {
	defer func(d time.Duration) { sweepInterval = d }(sweepInterval)
	sweepInterval = 20 * time.Millisecond
	for _, proto := range []string{"http1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			tl := startListener(t, false, "http1", "h2c")
			c, mc := dial(t, tl, "")
			exchange := exchanger(t, proto, c)
			st := tl.http
			for range 2 {
				exchange()
				waitFor(t, "the bytes so far to be counted", func() bool {
					return st.DownstreamCxRxBytes.Value() == mc.written.Load() && st.DownstreamCxTxBytes.Value() == mc.read.Load()
				})
				if got := tl.counts().active; got != 1 {
					t.Fatalf("downstream_cx_active = %d, want 1", got)
				}
			}
		})
	}
}

// TestParkedConnCounted: an h2c connection that goes quiet parks (its
// reader goroutine ends), is served again when its client speaks, and
// is still counted as open, with its bytes, until it closes.
func TestParkedConnCounted(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is Linux-only")
	}
	tl := startListener(t, false, "http1", "h2c")
	c, mc := dial(t, tl, "")
	exchange := exchanger(t, "h2", c)
	exchange()
	waitFor(t, "the connection to park", func() bool { return tl.h2.Stats().Parked == 1 })
	open := counts{total: 1, active: 1, h2Total: 1, h2Active: 1, listenerTotal: 1, listenerActive: 1}
	if got := tl.counts(); got != open {
		t.Fatalf("while parked: %+v, want %+v", got, open)
	}
	exchange()
	closeAndDrain(t, c)
	wantClosed(t, tl, open, mc)
}

// wantClosed waits until open's connection is counted closed, and checks
// that its bytes are counted as the client wrote and read them.
func wantClosed(t *testing.T, tl *testListener, open counts, mc *meteredConn) {
	t.Helper()
	closed := open
	closed.active, closed.h2Active, closed.listenerActive = 0, 0, 0
	waitFor(t, "the connection to be counted closed", func() bool { return tl.counts() == closed })
	st := tl.http
	if got, want := st.DownstreamCxRxBytes.Value(), mc.written.Load(); got != want {
		t.Errorf("downstream_cx_rx_bytes_total = %d, want %d (written by the client)", got, want)
	}
	if got, want := st.DownstreamCxTxBytes.Value(), mc.read.Load(); got != want {
		t.Errorf("downstream_cx_tx_bytes_total = %d, want %d (read by the client)", got, want)
	}
}

// TestUnservedConnNotCounted: a plaintext connection that speaks neither
// protocol is closed unserved and appears in no stat, bytes included.
func TestUnservedConnNotCounted(t *testing.T) {
	tl := startListener(t, false, "http1", "h2c")
	c, _ := dial(t, tl, "")
	if _, err := io.WriteString(c, "\x16\x03\x01 not a request line\r\n"); err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, c); n != 0 || err != nil {
		t.Fatalf("read %d bytes (%v), want the connection closed", n, err)
	}
	st := tl.http
	if got := tl.counts(); got != (counts{}) {
		t.Errorf("counters %+v, want none", got)
	}
	if rx, tx := st.DownstreamCxRxBytes.Value(), st.DownstreamCxTxBytes.Value(); rx != 0 || tx != 0 {
		t.Errorf("rx/tx bytes %d/%d, want 0/0", rx, tx)
	}
}

// TestH2ProtocolErrorCounted: an h2c client that sends garbage after the
// preface gets GOAWAY(FRAME_SIZE_ERROR) and counts in
// downstream_cx_protocol_error; its connection counts as HTTP/2.
func TestH2ProtocolErrorCounted(t *testing.T) {
	tl := startListener(t, false, "http1", "h2c")
	c, _ := dial(t, tl, "")
	if _, err := io.WriteString(c, http2.ClientPreface+"garbage, not a frame header"); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(nil, c)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("connection closed without GOAWAY: %v", err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeFrameSize {
				t.Fatalf("GOAWAY %v, want FRAME_SIZE_ERROR", ga.ErrCode)
			}
			break
		}
	}
	if got := tl.http.DownstreamCxProtocolError.Value(); got != 1 {
		t.Errorf("downstream_cx_protocol_error = %d, want 1", got)
	}
	closeAndDrain(t, c)
	want := counts{total: 1, h2Total: 1, listenerTotal: 1}
	waitFor(t, "the connection to be counted closed", func() bool { return tl.counts() == want })
}

// TestLobbyConnCounted: an h2c client that finishes its handshake and
// asks nothing waits in the HTTP/2 server's lobby, and counts as an open
// HTTP/2 connection all the same, its bytes included; one that sends
// nothing before it hangs up counts nowhere.
func TestLobbyConnCounted(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the lobby is Linux-only")
	}
	tl := startListener(t, false, "http1", "h2c")
	silent, _ := dial(t, tl, "")
	c, mc := dial(t, tl, "")
	fr := http2.NewFramer(c, c)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// The server preface: SETTINGS, WINDOW_UPDATE, then the ACK.
	for acked := false; !acked; {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		sf, ok := f.(*http2.SettingsFrame)
		acked = ok && sf.IsAck()
	}
	if err := fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	// Both wait in the lobby; the silent one is not counted yet.
	waitFor(t, "the connections to wait in the lobby", func() bool { return tl.h2.Stats().Parked == 2 })
	open := counts{total: 1, active: 1, h2Total: 1, h2Active: 1, listenerTotal: 1, listenerActive: 1}
	if got := tl.counts(); got != open {
		t.Fatalf("while in the lobby: %+v, want %+v", got, open)
	}
	silent.Close()
	closeAndDrain(t, c)
	wantClosed(t, tl, open, mc)
}
