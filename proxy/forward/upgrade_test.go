package forward

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sightline-proxy/sightline/internal/testnet"
	"github.com/sightline-proxy/sightline/proxy/config"
)

func enabled(typ string, on bool) config.Upgrade { return config.Upgrade{Type: typ, Enabled: &on} }

func dialWS(t *testing.T, addr, path string) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	return d.Dial("ws://"+addr+path, nil)
}

// TestWebSocketThroughTheProxy checks that a WebSocket upgrade reaches a
// route that allows it, and that messages go both ways until the client
// closes; the tunnel is counted and logged once. The Upgrade header used
// to be dropped as hop-by-hop, and the backend answered 404.
func TestWebSocketThroughTheProxy(t *testing.T) {
	p := startProxy(t, []testCluster{{name: "ws", protocol: "http1", addrs: []string{testnet.Serve(t, testnet.WebSocketEcho, testnet.HTTP1)}}},
		[]testRoute{{prefix: "/", cluster: "ws", upgrades: []config.Upgrade{enabled("websocket", true)}}})
	c, resp, err := dialWS(t, p.addr, "/chat")
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial through the proxy: %v (status %d)", err, status)
	}
	if resp.Header.Get("X-Backend") != "ws" {
		t.Errorf("101 headers %v, want the backend's", resp.Header)
	}
	if got := p.stats.DownstreamCxUpgradesActive.Value(); got != 1 {
		t.Errorf("downstream_cx_upgrades_active = %d during the tunnel, want 1", got)
	}
	for _, msg := range []string{"one", "two", strings.Repeat("x", 100<<10)} {
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, got, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != msg {
			t.Fatalf("echo of a %d-byte message: %d bytes", len(msg), len(got))
		}
	}
	c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Errorf("after close: %v, want the backend's close frame", err)
	}
	c.Close()
	p.waitServed(t, "/chat")

	if got := p.stats.DownstreamCxUpgradesTotal.Value(); got != 1 {
		t.Errorf("downstream_cx_upgrades_total = %d, want 1", got)
	}
	if got := p.stats.DownstreamCxUpgradesActive.Value(); got != 0 {
		t.Errorf("downstream_cx_upgrades_active = %d after the tunnel, want 0", got)
	}
	logs := p.accessLog(t)
	if len(logs) != 1 {
		t.Fatalf("%d access-log lines, want 1 for the tunnel", len(logs))
	}
	e := logs[0]
	if e["response_code"] != float64(101) || e["upstream_cluster"] != "ws" {
		t.Errorf("access log %v: want response_code 101 on cluster ws", e)
	}
	// Both ways carried the 100 KiB message and more (framing).
	for _, k := range []string{"bytes_received", "bytes_sent"} {
		if n, _ := e[k].(float64); n < 100<<10 {
			t.Errorf("access log %s = %v, want the tunnel's bytes", k, e[k])
		}
	}
}

// rawUpgradeBackend switches to "echo/1" (and answers anything else with
// 426) and then echoes raw bytes until the client closes.
func rawUpgradeBackend(t *testing.T) string {
	return testnet.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "echo/1") || !strings.EqualFold(r.Header.Get("Connection"), "upgrade") {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusUpgradeRequired)
			io.WriteString(w, "say echo/1")
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo/1\r\n\r\n")
		io.Copy(conn, brw)
	}), testnet.HTTP1)
}

// TestUpgradeTunnelsBytesSentEarly sends the upgrade request and the first
// tunnelled bytes in one write, before the 101: they must reach the
// backend after the switch. The access log counts the tunnel's bytes
// exactly.
func TestUpgradeTunnelsBytesSentEarly(t *testing.T) {
	p := startProxy(t, []testCluster{{name: "raw", protocol: "auto", addrs: []string{rawUpgradeBackend(t)}}},
		[]testRoute{{prefix: "/", cluster: "raw", upgrades: []config.Upgrade{enabled("echo/1", true)}}})
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "GET /raw HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo/1\r\n\r\nhello")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "echo/1" || !strings.EqualFold(resp.Header.Get("Connection"), "upgrade") {
		t.Fatalf("got %s %v, want 101 with Upgrade: echo/1", resp.Status, resp.Header)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q, %v; want the early bytes echoed", buf, err)
	}
	io.WriteString(conn, "world!")
	buf = make([]byte, 6)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "world!" {
		t.Fatalf("read %q, %v", buf, err)
	}
	conn.Close()
	p.waitServed(t, "/raw")
	logs := p.accessLog(t)
	if len(logs) != 1 {
		t.Fatalf("%d access-log lines, want 1", len(logs))
	}
	if e := logs[0]; e["bytes_received"] != float64(11) || e["bytes_sent"] != float64(11) || e["response_code"] != float64(101) {
		t.Errorf("access log %v: want 101, 11 bytes each way", e)
	}
}

// TestUpgradeRefusedOrAnsweredPlainly: an upgrade the route does not allow
// gets 403 from the proxy (as Envoy answers) without reaching the backend;
// an upgrade to an HTTP/2 cluster gets 501; an upstream that answers an
// allowed upgrade with something else than 101 is forwarded as it is.
func TestUpgradeRefusedOrAnsweredPlainly(t *testing.T) {
	hits := make(chan string, 16)
	be := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits <- r.URL.Path
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "plain "+r.Header.Get("Upgrade"))
	})
	p := startProxy(t, []testCluster{
		{name: "h1", protocol: "http1", addrs: []string{testnet.Serve(t, be, testnet.HTTP1)}},
		{name: "h2", protocol: "http2", addrs: []string{testnet.Serve(t, be, testnet.H2C)}},
	}, []testRoute{
		{prefix: "/off", cluster: "h1", upgrades: []config.Upgrade{enabled("websocket", false)}},
		{prefix: "/other", cluster: "h1", upgrades: []config.Upgrade{enabled("spdy/3.1", true)}},
		{prefix: "/h2", cluster: "h2", upgrades: []config.Upgrade{enabled("websocket", true)}},
		{prefix: "/plain", cluster: "h1", upgrades: []config.Upgrade{enabled("websocket", true)}},
		{prefix: "/", cluster: "h1"},
	})
	tests := []struct {
		name       string
		path       string
		upgrade    string
		wantStatus int
		wantBody   string
		wantHit    bool
	}{
		{name: "no upgrades on the route", path: "/none", upgrade: "websocket", wantStatus: 403, wantBody: "upgrade not allowed on this route\n"},
		{name: "disabled on the route", path: "/off", upgrade: "websocket", wantStatus: 403, wantBody: "upgrade not allowed on this route\n"},
		{name: "another type allowed", path: "/other", upgrade: "websocket", wantStatus: 403, wantBody: "upgrade not allowed on this route\n"},
		{name: "HTTP/2 cluster", path: "/h2", upgrade: "websocket", wantStatus: 501, wantBody: "upgrades to an HTTP/2 cluster are not supported\n"},
		{name: "upstream answers 200", path: "/plain", upgrade: "WebSocket", wantStatus: 200, wantBody: "plain WebSocket", wantHit: true},
		{name: "h2c upgrade is served as HTTP/1.1", path: "/none", upgrade: "h2c", wantStatus: 200, wantBody: "plain ", wantHit: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+tt.path, nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", tt.upgrade)
			resp, err := h1Client(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus || string(b) != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, b, tt.wantStatus, tt.wantBody)
			}
			select {
			case path := <-hits:
				if !tt.wantHit {
					t.Errorf("the backend got %s", path)
				}
			default:
				if tt.wantHit {
					t.Errorf("the backend got nothing")
				}
			}
		})
	}
	if got := p.stats.DownstreamCxUpgradesTotal.Value(); got != 0 {
		t.Errorf("downstream_cx_upgrades_total = %d, want 0: nothing was upgraded", got)
	}
}
