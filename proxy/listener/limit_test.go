package listener

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/proxy/overload"
)

// h1Conn is an HTTP/1.1 client connection that keeps itself open.
type h1Conn struct {
	net.Conn
	br *bufio.Reader
}

func dialH1(t *testing.T, addr string) *h1Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &h1Conn{Conn: c, br: bufio.NewReader(c)}
}

// get sends a request and reports whether an answer came back.
func (c *h1Conn) get(t *testing.T) bool {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		return false
	}
	res, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode == 200
}

// closedAtOnce reports whether the proxy closed c without a byte.
func (c *h1Conn) closedAtOnce(t *testing.T) bool {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) // may fail: closed already
	n, err := c.br.Read(make([]byte, 1))
	return n == 0 && err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// waitOpen waits until lim counts n connections: a closed one is given
// back when the server side sees it closed, a moment after the client.
func waitOpen(t *testing.T, lim *ConnLimit, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for lim.Open() != n {
		if time.Now().After(deadline) {
			t.Fatalf("connections open = %d, want %d", lim.Open(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestMaxConnections: past the listener's cap a connection is accepted,
// closed at once and counted in downstream_cx_overflow; once one closes,
// a new one is served.
func TestMaxConnections(t *testing.T) {
	lim := NewConnLimit(2)
	tl := startListenerWith(t, false, Options{Conns: lim}, "http1")
	a, b := dialH1(t, tl.addr), dialH1(t, tl.addr)
	if !a.get(t) || !b.get(t) {
		t.Fatal("connections under the cap were not served")
	}
	if !dialH1(t, tl.addr).closedAtOnce(t) {
		t.Error("the third connection was not closed at once")
	}
	if n := tl.ls.DownstreamCxOverflow.Value(); n != 1 {
		t.Errorf("downstream_cx_overflow = %d, want 1", n)
	}
	if n := tl.ls.DownstreamCxTotal.Value(); n != 2 {
		t.Errorf("downstream_cx_total = %d, want 2: a refused connection is not served", n)
	}
	if !a.get(t) {
		t.Error("a connection under the cap stopped being served")
	}
	a.Close()
	waitOpen(t, lim, 1)
	if !dialH1(t, tl.addr).get(t) {
		t.Error("a connection after one closed was not served")
	}
	// A lower cap refuses new connections until enough have closed; the
	// open ones stay.
	lim.SetMax(1)
	if !dialH1(t, tl.addr).closedAtOnce(t) || !b.get(t) {
		t.Error("a lowered cap: new refused and open kept, want both")
	}
}

// TestGlobalMaxConnections: the process-wide cap counts the connections
// of every listener; the one that refuses counts
// downstream_global_cx_overflow.
func TestGlobalMaxConnections(t *testing.T) {
	global := NewConnLimit(1)
	one := startListenerWith(t, false, Options{Global: global}, "http1")
	two := startListenerWith(t, false, Options{Global: global}, "http1")
	a := dialH1(t, one.addr)
	if !a.get(t) {
		t.Fatal("the first connection was not served")
	}
	if !dialH1(t, two.addr).closedAtOnce(t) {
		t.Error("a connection to the other listener past the global cap was not closed at once")
	}
	if n := two.ls.DownstreamGlobalCxOverflow.Value(); n != 1 {
		t.Errorf("downstream_global_cx_overflow = %d, want 1", n)
	}
	if n := two.ls.DownstreamCxOverflow.Value(); n != 0 {
		t.Errorf("downstream_cx_overflow = %d, want 0: the listener has no cap of its own", n)
	}
	a.Close()
	waitOpen(t, global, 0)
}

// TestRefusedConnectionsGiveTheirPlaceBack: connections closed unserved
// (an unknown protocol) and HTTP/2 ones give their place back too.
func TestRefusedConnectionsGiveTheirPlaceBack(t *testing.T) {
	lim := NewConnLimit(1)
	tl := startListenerWith(t, false, Options{Conns: lim}, "http1")
	c := dialH1(t, tl.addr)
	c.Write([]byte("\x16\x03\x01 not HTTP at all\r\n\r\n"))
	io.Copy(io.Discard, c)
	waitOpen(t, lim, 0)
	if !dialH1(t, tl.addr).get(t) {
		t.Error("the place of a connection closed unserved was not given back")
	}
}

// TestOverloadStopsConnections: while the overload manager's
// stop_accepting_connections is on, a new connection is closed at once and
// counted in downstream_cx_overload_reject; once it is off, connections
// are served again.
func TestOverloadStopsConnections(t *testing.T) {
	var held atomic.Int64
	held.Store(2 << 20)
	m := overload.New(overload.Config{MaxBufferedBytes: 1 << 20, ResetStreams: 10, StopRequests: 10, RefreshInterval: time.Millisecond},
		overload.Engine{Buffered: held.Load}, nil)
	m.Start()
	defer m.Stop()
	tl := startListenerWith(t, false, Options{Overload: m}, "http1")
	if !dialH1(t, tl.addr).closedAtOnce(t) {
		t.Error("a connection while overloaded was not closed at once")
	}
	if n := tl.ls.DownstreamCxOverloadReject.Value(); n != 1 {
		t.Errorf("downstream_cx_overload_reject = %d, want 1", n)
	}
	held.Store(0)
	deadline := time.Now().Add(10 * time.Second)
	for m.Active(overload.StopConnections) {
		if time.Now().After(deadline) {
			t.Fatal("stop_accepting_connections still on with nothing buffered")
		}
		time.Sleep(time.Millisecond)
	}
	if !dialH1(t, tl.addr).get(t) {
		t.Error("a connection after the overload was not served")
	}
}
