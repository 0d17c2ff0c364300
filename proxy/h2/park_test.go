package h2

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sightline-proxy/sightline/internal/testnet"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/sock"
)

// waitParked waits until the server has want parked connections.
func waitParked(t *testing.T, p *testProxy, want int) {
	t.Helper()
	deadline := time.Now().Add(4*parkAfter + 5*time.Second)
	for p.srv.Stats().Parked != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections parked, want %d", p.srv.Stats().Parked, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serverReaders counts the goroutines reading downstream connections.
func serverReaders() int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "(*serverConn).read(")
}

// serverEncoders counts the server's connections that hold an HPACK
// encoder.
func serverEncoders(p *testProxy) int {
	p.srv.mu.Lock()
	defer p.srv.mu.Unlock()
	n := 0
	for sc := range p.srv.conns {
		sc.mu.Lock()
		if sc.enc != nil {
			n++
		}
		sc.mu.Unlock()
	}
	return n
}

// dialHandshake is dialRaw with the handshake, over TLS (ALPN h2) or
// not.
func dialHandshake(t testing.TB, addr string, useTLS bool) *rawPeer {
	t.Helper()
	if !useTLS {
		return dialRaw(t, addr, true)
	}
	c := dialRawTLS(t, addr)
	c.handshake()
	return c
}

// forBoth runs f over h2c and over TLS.
func forBoth(t *testing.T, f func(t *testing.T, useTLS bool)) {
	t.Run("h2c", func(t *testing.T) { f(t, false) })
	t.Run("tls", func(t *testing.T) { f(t, true) })
}

// TestIdleConnectionsPark: connections whose clients go quiet, before or
// after requests, give up their reader goroutines; each is served again
// as soon as its client speaks, and a client that hangs up on a parked
// connection has it closed and counted. Over h2c and over TLS.
func TestIdleConnectionsPark(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is Linux-only")
	}
	forBoth(t, testIdleConnectionsPark)
}

func testIdleConnectionsPark(t *testing.T, useTLS bool) {
	p := okProxy(t, okHandler, proxyOpts{tls: useTLS})
	const n = 40
	peers := make([]*rawPeer, n)
	for i := range peers {
		peers[i] = dialHandshake(t, p.addr, useTLS)
		if i%2 == 0 { // half of them make a request first
			peers[i].request(1, true)
			if status, _, _ := peers[i].response(1); status != "200" {
				t.Fatalf("status %s", status)
			}
		}
	}
	waitParked(t, p, n)
	if r := serverReaders(); r != 0 {
		buf := make([]byte, 8<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "(*serverConn).read(") {
				t.Log(g)
			}
		}
		t.Errorf("%d reader goroutines for %d parked connections", r, n)
	}
	// A parked connection keeps no ring of closed streams, no stream map
	// and no HPACK encoder, those that served a request included; one
	// that never carried a request has no HPACK decoder either. A writer
	// still running as a connection parked lets its encoder go as it
	// ends.
	for deadline := time.Now().Add(5 * time.Second); serverEncoders(p) > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	p.srv.mu.Lock()
	served := 0
	for sc := range p.srv.conns {
		sc.mu.Lock()
		if sc.closedIDs != nil {
			t.Error("a parked connection keeps its ring of closed streams")
		}
		if sc.streams != nil {
			t.Error("a parked connection keeps its stream map")
		}
		if sc.enc != nil {
			t.Error("a parked connection keeps its HPACK encoder")
		}
		if sc.requests == 0 && sc.dec != nil {
			t.Error("a connection that carried no request has an HPACK decoder")
		}
		if sc.requests > 0 {
			served++
		}
		sc.mu.Unlock()
	}
	p.srv.mu.Unlock()
	if served != n/2 {
		t.Errorf("%d connections served a request, want %d", served, n/2)
	}

	// Every one answers its next request.
	for i, c := range peers {
		id := uint32(1)
		if i%2 == 0 {
			id = 3
		}
		c.request(id, true)
		if status, _, body := c.response(id); status != "200" || string(body) != "ok from the backend\n" {
			t.Fatalf("connection %d after parking: status %s, body %q", i, status, body)
		}
	}
	if parked := p.srv.Stats().Parked; parked == n {
		t.Errorf("all %d connections still parked after their requests", n)
	}

	// They park again; then a client that hangs up has its connection
	// closed by the proxy.
	waitParked(t, p, n)
	peers[0].c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for p.srv.Stats().Conns != n-1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open after one of %d parked clients hung up", p.srv.Stats().Conns, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestParkedConnectionTimesOut: a parked connection that never sent a
// request still gets its GOAWAY and close at the header read timeout,
// over h2c and over TLS.
func TestParkedConnectionTimesOut(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is Linux-only")
	}
	forBoth(t, testParkedConnectionTimesOut)
}

func testParkedConnectionTimesOut(t *testing.T, useTLS bool) {
	timeout := 3*parkAfter + 500*time.Millisecond
	p := okProxy(t, okHandler, proxyOpts{tls: useTLS, limits: config.Limits{HeaderReadTimeout: config.Duration(timeout), IdleTimeout: config.Duration(time.Hour)}})
	c := dialHandshake(t, p.addr, useTLS)
	waitParked(t, p, 1)
	c.c.SetReadDeadline(time.Now().Add(timeout + 5*time.Second))
	for {
		f := c.next()
		if f == nil {
			t.Fatal("closed without a GOAWAY")
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeNo || ga.LastStreamID != 0 {
				t.Fatalf("GOAWAY %v last stream %d, want NO_ERROR, 0", ga.ErrCode, ga.LastStreamID)
			}
			break
		}
	}
	if f := c.next(); f != nil {
		t.Fatalf("after the GOAWAY: %v, want the connection closed", f.Header())
	}
}

// TestParkedConnectionsCloseWithoutReaders: parked connections that time
// out before asking for anything are closed without a reader goroutine
// each; the proxy drains what a client sends after the GOAWAY, closes as
// soon as the client does, and closes a client that never does after the
// linger.
func TestParkedConnectionsCloseWithoutReaders(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is Linux-only")
	}
	timeout := 2*parkAfter + 500*time.Millisecond
	p := okProxy(t, okHandler, proxyOpts{limits: config.Limits{HeaderReadTimeout: config.Duration(timeout), IdleTimeout: config.Duration(time.Hour)}})
	// Each connection's GOAWAY comes at its own header timeout, and its
	// linger in the lobby ends that much later: longer than the
	// connections take to open on a busy machine, so that all of them
	// linger at once.
	linger := 3 * closeLinger
	p.srv.lobby.linger = linger
	const n = 20
	peers := make([]*rawPeer, n)
	for i := range peers {
		// The handshake is finished, as a real client's is: an ACK of
		// our SETTINGS sent later would wake the connection.
		c := dialRaw(t, p.addr, true)
		if f, err := c.fr.ReadFrame(); err != nil || f.Header().Type != http2.FrameSettings {
			t.Fatalf("connection %d: first frame %v, %v; want SETTINGS", i, f, err)
		}
		if err := c.fr.WriteSettingsAck(); err != nil {
			t.Fatal(err)
		}
		peers[i] = c
	}
	waitParked(t, p, n)
	readers := serverReaders() // other tests' connections
	for i, c := range peers {
		c.c.SetReadDeadline(time.Now().Add(timeout + 5*time.Second))
		for {
			f := c.next()
			if f == nil {
				t.Fatalf("connection %d closed without a GOAWAY", i)
			}
			if _, ok := f.(*http2.GoAwayFrame); ok {
				break
			}
		}
		if f := c.next(); f != nil {
			t.Fatalf("connection %d after the GOAWAY: %v, want EOF", i, f.Header())
		}
	}
	// Every client has its GOAWAY and EOF and keeps its side open: the
	// proxy lingers on each, in the poller, with no reader (those that
	// never left the lobby, in the lobby).
	lingering := 0
	p.srv.mu.Lock()
	lingering += lobbyLingeringLocked(p.srv)
	for sc := range p.srv.conns {
		sc.park.mu.Lock()
		if sc.park.lingering {
			lingering++
		}
		sc.park.mu.Unlock()
	}
	p.srv.mu.Unlock()
	if lingering != n {
		t.Errorf("%d of %d connections closed while parked linger in the poller", lingering, n)
	}
	if r := serverReaders(); r > readers {
		t.Errorf("%d reader goroutines for %d connections closed while parked", r-readers, n)
	}
	if st := p.srv.Stats(); st.Conns != n {
		t.Errorf("%d connections open while their clients keep their side open, want %d (lingering)", st.Conns, n)
	}
	// A request that crossed the GOAWAY is drained, not answered with a
	// reset; the first half of the clients then close, the rest never do.
	for i, c := range peers {
		if err := c.fr.WritePing(false, [8]byte{1}); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if i < n/2 {
			c.c.Close()
		}
	}
	waitConns := func(want int, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for p.srv.Stats().Conns != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections open, want %d", p.srv.Stats().Conns, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitConns(n/2, closeLinger/2)
	waitConns(0, linger+2*parkAfter+time.Second)
	for i, c := range peers[n/2:] {
		var b [1]byte
		if _, err := c.c.Read(b[:]); err != io.EOF {
			t.Errorf("connection %d after the linger: %v, want EOF (no reset)", n/2+i, err)
		}
	}
}

// holdConn holds what is written to it while hold is set, so that two
// TLS records go to the peer in one write.
type holdConn struct {
	net.Conn
	hold bool
	buf  []byte
}

func (c *holdConn) Write(p []byte) (int, error) {
	if c.hold {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *holdConn) flush() error {
	c.hold = false
	_, err := c.Conn.Write(c.buf)
	c.buf = nil
	return err
}

// TestTLSParkKeepsBufferedRecords: crypto/tls may read two records in one
// read of the socket and hand over the first; a connection whose client
// sent its handshake (with an ACK of the proxy's SETTINGS, so that it
// parks as soon as it has nothing buffered) in one record and its
// request in the next, in one write, is served: it does not park while
// the request sits in crypto/tls. Then it parks, gives up its reader, and
// is served when its client speaks again.
func TestTLSParkKeepsBufferedRecords(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is Linux-only")
	}
	p := okProxy(t, okHandler, proxyOpts{tls: true})
	raw, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	hc := &holdConn{Conn: raw}
	tc := tls.Client(hc, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c := newRawPeer(t, tc)
	var flight bytes.Buffer
	fr := http2.NewFramer(&flight, nil)
	flight.WriteString(http2.ClientPreface)
	fr.WriteSettings()
	fr.WriteSettingsAck()
	hc.hold = true
	c.write(flight.Bytes())
	flight.Reset()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true,
		BlockFragment: c.block(":method", "GET", ":scheme", "https", ":authority", "example.com", ":path", "/")})
	c.write(flight.Bytes())
	if err := hc.flush(); err != nil {
		t.Fatal(err)
	}
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if status := c.awaitStatus(1, "the request in the second record"); status != "200" {
		t.Fatalf("status %s", status)
	}
	tc.SetReadDeadline(time.Time{})

	waitParked(t, p, 1)
	if r := serverReaders(); r != 0 {
		t.Errorf("%d reader goroutines for a parked TLS connection", r)
	}
	c.request(3, true)
	if status, _, body := c.response(3); status != "200" || string(body) != "ok from the backend\n" {
		t.Fatalf("after parking: status %s, body %q", status, body)
	}
}

// TestServerCloseClosesParked: Close ends parked connections too, and
// their ends are reported (ServeConn returns); over h2c and over TLS.
func TestServerCloseClosesParked(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is Linux-only")
	}
	forBoth(t, testServerCloseClosesParked)
}

func testServerCloseClosesParked(t *testing.T, useTLS bool) {
	p := okProxy(t, okHandler, proxyOpts{tls: useTLS})
	c := dialHandshake(t, p.addr, useTLS)
	waitParked(t, p, 1)
	p.srv.Close()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for f := c.next(); f != nil; f = c.next() {
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.srv.Stats().Conns != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the parked connection is still counted after Close")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestParkKeepsPeekedBytes: a client's first flight read ahead by the
// protocol sniffer, whose first smallReadBuffer bytes end on a frame
// boundary before its request, is served whole: the connection must not
// park (waiting on the socket) while the request sits in the sniffer's
// buffer.
func TestParkKeepsPeekedBytes(t *testing.T) {
	p := okProxy(t, okHandler, proxyOpts{})
	c := dialRaw(t, p.addr, false)
	var flight bytes.Buffer
	fr := http2.NewFramer(&flight, nil)
	flight.WriteString(http2.ClientPreface)
	fr.WriteSettings()
	// An ACK of the proxy's SETTINGS ahead of them (as if the client
	// knew them): a connection whose SETTINGS are acknowledged and that
	// has no stream parks as soon as it has nothing buffered.
	fr.WriteSettingsAck()
	// SETTINGS and PING frames (15 and 17 bytes) up to exactly the
	// reader's small buffer, then the request.
	for range 20 {
		fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100})
	}
	for range 10 {
		fr.WritePing(false, [8]byte{})
	}
	if flight.Len() != smallReadBuffer {
		t.Fatalf("the frames before the request take %d bytes, want %d", flight.Len(), smallReadBuffer)
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true,
		BlockFragment: c.block(":method", "GET", ":scheme", "http", ":authority", "example.com", ":path", "/")})
	c.write(flight.Bytes()) // one write: the sniffer reads it all at once
	// The client writes nothing more (not even a SETTINGS ACK, which
	// would wake a parked connection) until its response comes.
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if status := c.awaitStatus(1, "the request in the first flight"); status != "200" {
		t.Fatalf("status %s", status)
	}
}

// waitPool waits until the pool's numbers pass ok.
func waitPool(t *testing.T, p *Pool, what string, ok func(PoolStats) bool) {
	t.Helper()
	deadline := time.Now().Add(4*parkAfter + 5*time.Second)
	for !ok(p.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: pool %+v", what, p.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clientReaders counts the goroutines reading upstream connections.
func clientReaders() int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "(*clientConn).read(")
}

// TestUpstreamConnectionsPark: an upstream connection whose host has gone
// quiet gives up its reader goroutine and carries the next call on the
// same connection; a parked connection still ends as an awake one does:
// the host closing it, its idle timeout, an unanswered keepalive PING.
func TestUpstreamConnectionsPark(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is Linux-only")
	}
	// Not in parallel: it counts the process's upstream readers.
	t.Run("reused then closed by the host", func(t *testing.T) {
		conns := make(chan *fakeConn, 2)
		fu := startFakeUpstream(t, &fakeUpstream{onRequest: func(fc *fakeConn, id uint32) {
			fc.respond(id, "fine")
			conns <- fc
		}})
		p := startCountingProxy(t, []string{fu.addr}, config.CircuitBreakers{}, PoolOptions{})
		c := h2cClient()
		if code, body := get(t, c, p.addr, "/"); code != 200 || body != "fine" {
			t.Fatalf("first call: %d %q", code, body)
		}
		pool := p.pool(fu.addr)
		waitPool(t, pool, "the connection to park", func(s PoolStats) bool { return s.Parked == 1 })
		// Connections of earlier tests may still be closing.
		for deadline := time.Now().Add(5 * time.Second); clientReaders() != 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d upstream reader goroutines with the only connection parked", clientReaders())
			}
		}
		if code, body := get(t, c, p.addr, "/"); code != 200 || body != "fine" {
			t.Fatalf("call on the parked connection: %d %q", code, body)
		}
		if n := fu.conns.Load(); n != 1 {
			t.Fatalf("upstream saw %d connections, want the parked one reused", n)
		}
		waitPool(t, pool, "the connection to park again", func(s PoolStats) bool { return s.Parked == 1 })
		wantOnPoller(t, pool, false)
		<-conns
		(<-conns).c.Close()
		waitPool(t, pool, "the closed connection to be forgotten", func(s PoolStats) bool { return s.Conns == 0 })
		cx := p.cs.Connections()
		if remote, local := cx.CxDestroyRemote.Value(), cx.CxDestroyLocal.Value(); remote != 1 || local != 0 {
			t.Errorf("upstream_cx_destroy_remote %d, _local %d; want 1 and 0", remote, local)
		}
		if code, _ := get(t, c, p.addr, "/"); code != 200 {
			t.Fatalf("after the host closed the parked connection: %d", code)
		}
	})
	t.Run("after its one call, at once", func(t *testing.T) {
		release := make(chan struct{})
		fu := startFakeUpstream(t, &fakeUpstream{onRequest: func(fc *fakeConn, id uint32) {
			<-release
			fc.respond(id, "fine")
		}})
		p := startCountingProxy(t, []string{fu.addr}, config.CircuitBreakers{}, PoolOptions{})
		c := h2cClient()
		type answer struct {
			code int
			err  error
		}
		call := func() <-chan answer {
			ch := make(chan answer, 1)
			go func() {
				resp, err := c.Get("http://" + p.addr + "/")
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					ch <- answer{resp.StatusCode, err}
					return
				}
				ch <- answer{0, err}
			}()
			return ch
		}
		first := call()
		var pool *Pool
		for deadline := time.Now().Add(5 * time.Second); pool == nil || pool.Stats().Streams != 1; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the call never reached the host")
			}
			pool = p.pool(fu.addr)
		}
		// Out of the sweep's sight: only parking at once can park it.
		pool.mu.Lock()
		for cc := range pool.all {
			parker.removeClient(cc)
		}
		pool.mu.Unlock()
		close(release)
		if a := <-first; a.err != nil || a.code != 200 {
			t.Fatalf("first call: %d, %v", a.code, a.err)
		}
		waitPool(t, pool, "the connection to park after its one stream", func(s PoolStats) bool { return s.Parked == 1 })
		wantOnPoller(t, pool, false)
		// A second stream wakes it, and it then waits as a busy one
		// does, for the sweep (which does not see it here).
		if a := <-call(); a.err != nil || a.code != 200 {
			t.Fatalf("second call: %d, %v", a.code, a.err)
		}
		time.Sleep(500 * time.Millisecond)
		if st := pool.Stats(); st.Parked != 0 || st.Conns != 1 {
			t.Fatalf("after a second stream: pool %+v, want its one connection awake", st)
		}
		wantOnPoller(t, pool, true)
	})
	t.Run("over TLS", func(t *testing.T) {
		p := tlsProxy(t, okHandler)
		c := dialHandshake(t, p.addr, true)
		for i, id := range []uint32{1, 3} {
			c.request(id, true)
			if status, _, body := c.response(id); status != "200" || string(body) != "ok from the backend\n" {
				t.Fatalf("call %d: status %s, body %q", i, status, body)
			}
			pool := p.pools[0].H2
			waitPool(t, pool, "the TLS connection to park", func(s PoolStats) bool { return s.Parked == 1 && s.Conns == 1 })
		}
		if n := p.pools[0].H2.Stats().Conns; n != 1 {
			t.Fatalf("%d upstream connections, want the parked one reused", n)
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		t.Parallel()
		fu := startFakeUpstream(t, &fakeUpstream{})
		// Long enough for the connection to park first (the sweep
		// takes up to two periods), which the test checks.
		p := startCountingProxy(t, []string{fu.addr}, config.CircuitBreakers{}, PoolOptions{IdleTimeout: 3*parkAfter + time.Second})
		if code, _ := get(t, h2cClient(), p.addr, "/"); code != 200 {
			t.Fatalf("call: %d", code)
		}
		pool := p.pool(fu.addr)
		waitPool(t, pool, "the connection to park", func(s PoolStats) bool { return s.Parked == 1 })
		waitPool(t, pool, "the idle timeout to close it", func(s PoolStats) bool { return s.Conns == 0 })
		cx := p.cs.Connections()
		if idle, local := cx.CxIdleTimeout.Value(), cx.CxDestroyLocal.Value(); idle != 1 || local != 1 {
			t.Errorf("upstream_cx_idle_timeout %d, _destroy_local %d; want 1 and 1", idle, local)
		}
	})
	t.Run("keepalive unanswered", func(t *testing.T) {
		t.Parallel()
		fu := startFakeUpstream(t, &fakeUpstream{}) // ignores PINGs
		p := startCountingProxy(t, []string{fu.addr}, config.CircuitBreakers{},
			PoolOptions{SendPingTimeout: 3*parkAfter + time.Second, PingTimeout: 200 * time.Millisecond})
		if code, _ := get(t, h2cClient(), p.addr, "/"); code != 200 {
			t.Fatalf("call: %d", code)
		}
		pool := p.pool(fu.addr)
		waitPool(t, pool, "the connection to park", func(s PoolStats) bool { return s.Parked == 1 })
		waitPool(t, pool, "the PING timeout to close it", func(s PoolStats) bool { return s.Conns == 0 })
		if n := fu.pings.Load(); n != 1 {
			t.Errorf("upstream got %d PINGs, want 1", n)
		}
		if n := p.cs.Connections().CxDestroyLocal.Value(); n != 1 {
			t.Errorf("upstream_cx_destroy_local = %d, want 1", n)
		}
	})
}

// TestParkedWhileWriting: an upstream connection whose reader parks while
// a writer holds the writer role keeps its HPACK encoder and its place on
// Go's poller only until the writer gives the role back. Then it lets both
// go, the poller watches it under its new descriptor, and its next call
// wakes it.
func TestParkedWhileWriting(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is Linux-only")
	}
	fu := startFakeUpstream(t, &fakeUpstream{})
	p := startCountingProxy(t, []string{fu.addr}, config.CircuitBreakers{}, PoolOptions{})
	c := h2cClient()
	// Two calls: a connection that carried a second stream parks by the
	// sweep, not at once.
	for range 2 {
		if code, _ := get(t, c, p.addr, "/"); code != 200 {
			t.Fatalf("call: %d", code)
		}
	}
	pool := p.pool(fu.addr)
	var cc *clientConn
	pool.mu.Lock()
	for x := range pool.all {
		cc = x
	}
	pool.mu.Unlock()
	// Take the writer role, as a writer does, once it is free, while the
	// connection is awake and holds an encoder: the sweep may park it
	// between a call and the taking, and a call wakes it again.
	take := func() (taken, asleep bool) {
		cc.mu.Lock()
		defer cc.mu.Unlock()
		if cc.writerOn {
			return false, false
		}
		cc.park.mu.Lock()
		parked := cc.park.parked
		cc.park.mu.Unlock()
		if parked || cc.enc == nil {
			return false, true
		}
		cc.writerOn = true
		return true, false
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		taken, asleep := take()
		if taken {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer role stays taken, or the connection asleep")
		}
		if asleep {
			if code, _ := get(t, c, p.addr, "/"); code != 200 {
				t.Fatalf("call: %d", code)
			}
			continue
		}
		time.Sleep(time.Millisecond)
	}
	held := true
	t.Cleanup(func() {
		// A failed check must not leave the connection without a
		// writer: it could not close.
		if held {
			cc.mu.Lock()
			cc.writerGoneLocked()
			cc.mu.Unlock()
		}
	})
	waitPool(t, pool, "the connection to park", func(s PoolStats) bool { return s.Parked == 1 })
	cc.mu.Lock()
	kept, fd := cc.enc != nil, cc.park.fd
	cc.mu.Unlock()
	if !kept {
		t.Fatal("the encoder went while a writer held the role")
	}
	cc.mu.Lock()
	cc.writerGoneLocked()
	held = false
	gone, newFD := cc.enc == nil, cc.park.fd
	cc.mu.Unlock()
	if !gone {
		t.Error("the parked connection keeps its HPACK encoder after the writer is gone")
	}
	if newFD == fd {
		t.Errorf("the parked connection keeps descriptor %d, on Go's poller", fd)
	}
	if s := pool.Stats(); s.Parked != 1 {
		t.Fatalf("pool %+v, want the connection still parked", s)
	}
	if code, _ := get(t, c, p.addr, "/"); code != 200 {
		t.Fatalf("call after: %d", code)
	}
	if n := fu.conns.Load(); n != 1 {
		t.Errorf("upstream saw %d connections, want the parked one woken", n)
	}
}

// encoders counts the pool's connections that hold an HPACK encoder.
func encoders(p *Pool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for cc := range p.all {
		cc.mu.Lock()
		if cc.enc != nil {
			n++
		}
		cc.mu.Unlock()
	}
	return n
}

// emptiesTable is the start of the first header block after an encoder
// was dropped: table size updates to 0 and to 4096 (RFC 7541 §6.3).
var emptiesTable = []byte{0x20, 0x3f, 0xe1, 0x1f}

// TestParkedConnectionsEmptyThePeersTable: a connection that parks lets
// its HPACK encoder go, and its next header block empties the peer's
// table and sets its size back before any field, which the peer, decoding
// with its table in step, reads right; the blocks after it index again.
// Upstream, after a connection's one call parks it at once; downstream,
// after the sweep parks a connection that served a request.
func TestParkedConnectionsEmptyThePeersTable(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is Linux-only")
	}
	t.Run("upstream", func(t *testing.T) {
		type seen struct {
			block []byte
			path  string
			app   string
		}
		heads := make(chan seen, 3)
		fu := startFakeUpstream(t, &fakeUpstream{onHeaders: func(_ *fakeConn, block []byte, fields []hpack.HeaderField) {
			heads <- seen{block, field(fields, ":path"), field(fields, "x-app")}
		}})
		p := startCountingProxy(t, []string{fu.addr}, config.CircuitBreakers{}, PoolOptions{})
		c := h2cClient()
		call := func(path string) seen {
			t.Helper()
			req, _ := http.NewRequest("GET", "http://"+p.addr+path, nil)
			req.Header.Set("X-App", "the same on every call")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s: %d", path, resp.StatusCode)
			}
			h := <-heads
			if h.path != path || h.app != "the same on every call" {
				t.Fatalf("upstream decoded :path %q, x-app %q; want %q and the header sent", h.path, h.app, path)
			}
			return h
		}
		first := call("/first")
		pool := p.pool(fu.addr)
		// A writer still running as the reader parks lets the encoder
		// go when it ends.
		waitPool(t, pool, "the connection to park after its one call and let its HPACK encoder go", func(s PoolStats) bool {
			return s.Parked == 1 && encoders(pool) == 0
		})
		pool.mu.Lock()
		for cc := range pool.all {
			// Out of the sweep's sight, so that it stays awake after
			// its second call.
			parker.removeClient(cc)
		}
		pool.mu.Unlock()
		if bytes.HasPrefix(first.block, emptiesTable[:1]) {
			t.Errorf("the first block starts with a table size update: % x", first.block)
		}
		second := call("/second")
		if !bytes.HasPrefix(second.block, emptiesTable) {
			t.Fatalf("the block after parking starts % x, want % x", second.block[:min(len(second.block), 4)], emptiesTable)
		}
		third := call("/third")
		if bytes.HasPrefix(third.block, emptiesTable[:1]) || len(third.block) >= len(second.block)-len(emptiesTable) {
			t.Errorf("the block after that: % x, want no size update and fields indexed again (the one before: % x)", third.block, second.block)
		}
		if n := fu.conns.Load(); n != 1 {
			t.Errorf("upstream saw %d connections, want the parked one reused", n)
		}
	})
	t.Run("downstream", func(t *testing.T) {
		p := okProxy(t, okHandler, proxyOpts{})
		c := dialHandshake(t, p.addr, false)
		// The blocks as sent, decoded here, in step with the proxy's
		// encoder.
		c.fr.ReadMetaHeaders = nil
		dec := hpack.NewDecoder(4096, nil)
		respond := func(id uint32) []byte {
			t.Helper()
			c.request(id, true, "x-app", "the same on every call")
			var block []byte
			for {
				switch f := c.next().(type) {
				case nil:
					t.Fatalf("connection closed before the response on %d", id)
				case *http2.HeadersFrame:
					b := bytes.Clone(f.HeaderBlockFragment())
					fields, err := dec.DecodeFull(b)
					if err != nil || !f.HeadersEnded() {
						t.Fatalf("stream %d: decoding % x (whole: %v): %v", id, b, f.HeadersEnded(), err)
					}
					if block == nil {
						if st := field(fields, ":status"); st != "200" {
							t.Fatalf("stream %d: status %q", id, st)
						}
						block = b
					}
				case *http2.DataFrame:
					if f.StreamEnded() {
						return block
					}
				case *http2.RSTStreamFrame, *http2.GoAwayFrame:
					t.Fatalf("stream %d: %v", id, f.Header())
				}
			}
		}
		respond(1)
		waitParked(t, p, 1)
		second := respond(3)
		if !bytes.HasPrefix(second, emptiesTable) {
			t.Fatalf("the response block after parking starts % x, want % x", second[:min(len(second), 4)], emptiesTable)
		}
		if third := respond(5); bytes.HasPrefix(third, emptiesTable[:1]) {
			t.Errorf("the block after that starts with a table size update: % x", third)
		}
	})
}

// TestPacerLetsNetworkGoroutinesRun runs a long loop on the only P, as the
// sweep does when thousands of connections close at once, and checks that
// a goroutine whose socket became readable ran early in it. Without the
// pacer it runs only once the runtime's monitor polls the network and
// preempts the loop, 10 ms or more in.
func TestPacerLetsNetworkGoroutinesRun(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const items, per = 400, 50 * time.Microsecond // 20 ms of work
	var done atomic.Int64
	ranAt := testnet.ReadableWhileBusy(t, done.Load)
	pace := newPacer()
	defer pace.y.Close()
	pace.start = time.Now()
	for range items {
		for end := time.Now().Add(per); time.Now().Before(end); {
		}
		done.Add(1)
		pace.step()
	}
	if at := <-ranAt; at > items/4 {
		t.Errorf("the reader ran after %d of %d items, want within the first %d (%v of work)", at, items, items/4, items/4*per)
	}
}

// TestPollerWaitsInNetpoller checks that the parking poller's goroutine
// waits as network goroutines do. One blocked in epoll_wait held the P
// it entered the system call with, and the goroutines its last wake-up
// readied waited until the runtime's monitor took the P back: up to
// 20 ms, seen by another client of the proxy.
func TestPollerWaitsInNetpoller(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is Linux-only")
	}
	p := okProxy(t, okHandler, proxyOpts{})
	dialRaw(t, p.addr, true)
	waitParked(t, p, 1)
	buf := make([]byte, 8<<20)
	state := "not found"
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if header, _, _ := strings.Cut(g, "\n"); strings.Contains(g, "(*pollerOS).wait") {
				state = header
			}
		}
		if strings.Contains(state, "[IO wait") {
			return
		}
	}
	t.Fatalf("the poller's goroutine is %s, want it waiting in the netpoller ([IO wait])", state)
}

// TestWokenConnectionReadsWhole: a parked connection's new reader finds
// its socket readable, and takes the large read buffer for its first
// read, so that a request over the small buffer (HEADERS and 2 KiB of
// DATA in one write) is one read of the socket, not a small read and
// then one for the rest.
func TestWokenConnectionReadsWhole(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is Linux-only")
	}
	var reads atomic.Int64
	p := okProxy(t, okHandler, proxyOpts{wrap: func(c net.Conn) net.Conn { return &readCounter{Conn: c, reads: &reads} }})
	c := dialRaw(t, p.addr, true)
	// A first call reads the proxy's SETTINGS, whose ACK the client
	// sends: no byte but the requests' comes after it.
	c.request(1, true)
	if status, _, _ := c.response(1); status != "200" {
		t.Fatalf("first call: status %s", status)
	}
	body := bytes.Repeat([]byte("x"), 2048)
	for i := range 3 {
		id := uint32(2*i + 3)
		waitParked(t, p, 1)
		before := reads.Load()
		size := c.postWhole(id, body)
		if status, _, _ := c.response(id); status != "200" {
			t.Fatalf("stream %d: status %s", id, status)
		}
		if n := reads.Load() - before; n != 1 {
			t.Errorf("a request of %d bytes to a parked connection took %d reads with bytes, want 1", size, n)
		}
	}
}

// wantOnPoller checks whether the sockets of pool's connections are on
// Go's poller: a parked cleartext connection's is not (the runtime keeps
// a poll descriptor for every socket it ever watched at once), an awake
// one's is.
func wantOnPoller(t *testing.T, pool *Pool, want bool) {
	t.Helper()
	pool.mu.Lock()
	defer pool.mu.Unlock()
	for cc := range pool.all {
		s, _, _ := findSocket(cc.nc)
		sc, ok := s.(*sock.Conn)
		if !ok {
			t.Fatalf("upstream socket %T, want a *sock.Conn", s)
		}
		if got := sc.OnPoller(); got != want {
			t.Errorf("upstream socket on Go's poller: %v, want %v", got, want)
		}
	}
}
