package router

import "testing"

func TestUpgradeType(t *testing.T) {
	tests := []struct {
		name       string
		upgrade    []string
		connection []string
		want       string
	}{
		{name: "websocket", upgrade: []string{"websocket"}, connection: []string{"Upgrade"}, want: "websocket"},
		{name: "connection lists more", upgrade: []string{"WebSocket"}, connection: []string{"keep-alive, UPGRADE"}, want: "WebSocket"},
		{name: "connection in two lines", upgrade: []string{"websocket"}, connection: []string{"keep-alive", "upgrade"}, want: "websocket"},
		{name: "no connection token", upgrade: []string{"websocket"}, connection: []string{"keep-alive"}},
		{name: "no upgrade header", connection: []string{"upgrade"}},
		{name: "empty upgrade", upgrade: []string{" "}, connection: []string{"upgrade"}},
		{name: "h2c is served as HTTP/1.1", upgrade: []string{"h2c"}, connection: []string{"Upgrade, HTTP2-Settings"}},
		{name: "a token that only contains upgrade", upgrade: []string{"websocket"}, connection: []string{"upgraded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := UpgradeType(tt.upgrade, tt.connection); got != tt.want {
				t.Errorf("UpgradeType(%q, %q) = %q, want %q", tt.upgrade, tt.connection, got, tt.want)
			}
		})
	}
}
