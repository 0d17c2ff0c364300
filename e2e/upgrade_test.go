package e2e

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sightline-proxy/sightline/internal/testnet"
)

// TestWebSocketUpgrade runs a WebSocket through the real binary: allowed
// by the listener's upgrades, refused with 403 on a route that disables
// it, and counted in the listener's upgrade stats.
func TestWebSocketUpgrade(t *testing.T) {
	ws := testnet.Serve(t, testnet.WebSocketEcho, testnet.HTTP1)
	p := startProxy(t, fmt.Sprintf(`listeners:
  - name: ingress
    address: 127.0.0.1:0
    stat_prefix: ws
    upgrades: [{type: websocket}]
    virtual_hosts:
      - domains: ['*']
        routes:
          - match: {prefix: /closed}
            cluster: ws
            upgrades: [{type: websocket, enabled: false}]
          - match: {prefix: /}
            cluster: ws
clusters:
  - {name: ws, protocol: http1, endpoints: %s}
`, endpoints(ws)))
	addr := p.listener("ingress")
	d := websocket.Dialer{HandshakeTimeout: callTimeout}

	c, resp, err := d.Dial("ws://"+addr+"/chat", nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("WebSocket through the proxy: %v (status %d)", err, status)
	}
	defer c.Close()
	m, _ := statsText(t, p, "?filter=^http\\.ws\\.downstream_cx_upgrades")
	if n, _ := statsInt(t, m, "http.ws.downstream_cx_upgrades_total"); n != 1 {
		t.Errorf("downstream_cx_upgrades_total = %d, want 1 (stats %v)", n, m)
	}
	if n, _ := statsInt(t, m, "http.ws.downstream_cx_upgrades_active"); n != 1 {
		t.Errorf("downstream_cx_upgrades_active = %d during the tunnel, want 1", n)
	}
	for i := range 3 {
		msg := fmt.Sprintf("message %d", i)
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(callTimeout))
		if _, got, err := c.ReadMessage(); err != nil || string(got) != msg {
			t.Fatalf("echo: %q, %v; want %q", got, err, msg)
		}
	}
	c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	c.SetReadDeadline(time.Now().Add(callTimeout))
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Errorf("after close: %v, want the backend's close frame", err)
	}

	_, resp, err = d.Dial("ws://"+addr+"/closed", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("upgrade on a route that disables it: %v, status %d; want 403", err, status)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "upgrade not allowed on this route\n" {
		t.Errorf("403 body %q", body)
	}
}
