package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

func limitsConfig(global, perListener int) string {
	return fmt.Sprintf(`admin: {address: 127.0.0.1:0}
server: {drain_time: 10ms, max_connections: %d}
listeners:
  - name: in
    address: 127.0.0.1:0
    protocols: [http1]
    limits: {max_connections: %d}
    virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, direct_response: {status: 200}}]}]
`, global, perListener)
}

// served reports whether a new connection to addr gets an answer.
func served(t *testing.T, addr string) (net.Conn, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return c, false
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return c, false
	}
	res.Body.Close()
	return c, res.StatusCode == 200
}

// TestConnectionLimitsFollowReloads: server.max_connections applies from
// the next connection after a reload; a listener rebuilt for a new
// limits.max_connections keeps counting under the same limit, so the
// connections of the one it replaces count too.
func TestConnectionLimitsFollowReloads(t *testing.T) {
	s := started(t, load(t, limitsConfig(0, 0)))
	addr := s.ListenerAddr("in")
	if _, ok := served(t, addr); !ok {
		t.Fatal("no cap: the first connection was not served")
	}
	if err := s.Reload(load(t, limitsConfig(1, 0))); err != nil {
		t.Fatal(err)
	}
	if _, ok := served(t, addr); ok {
		t.Error("server.max_connections 1 with a connection open: a second one was served")
	}
	st := s.stats.Listener("127.0.0.1:0")
	if n := st.DownstreamGlobalCxOverflow.Value(); n != 1 {
		t.Errorf("downstream_global_cx_overflow = %d, want 1", n)
	}

	lim := s.connLimits["in"]
	before := s.cur.Load().listeners[0]
	if err := s.Reload(load(t, limitsConfig(0, 5))); err != nil {
		t.Fatal(err)
	}
	after := s.cur.Load().listeners[0]
	if after == before {
		t.Fatal("a new limits.max_connections did not rebuild the listener")
	}
	if after.conns != lim || lim.Max() != 5 || s.global.Max() != 0 {
		t.Errorf("after the reload: same limit %v, max %d, global %d; want true, 5, 0", after.conns == lim, lim.Max(), s.global.Max())
	}
}
