package config

import (
	"strings"
	"testing"
)

func TestLoadUpgrades(t *testing.T) {
	inDir(t, map[string]string{"main.yaml": `listeners:
  - name: a
    address: 127.0.0.1:1
    upgrades: [{type: WebSocket}, {type: spdy/3.1, enabled: false}]
    virtual_hosts:
      - domains: ['*']
        routes:
          - match: {prefix: /no-ws}
            cluster: c
            upgrades: [{type: websocket, enabled: false}]
          - match: {prefix: /spdy}
            cluster: c
            upgrades: [{type: SPDY/3.1}, {type: my-proto}]
          - match: {prefix: /}
            cluster: c
` + clusterC})
	cfg, err := Load("main.yaml")
	if err != nil {
		t.Fatal(err)
	}
	routes := cfg.Listeners[0].VirtualHosts[0].Routes
	tests := []struct {
		name  string
		route int
		give  string
		want  bool
	}{
		{name: "listener's websocket, any case", route: 2, give: "websocket", want: true},
		{name: "listener refuses spdy", route: 2, give: "spdy/3.1", want: false},
		{name: "never named", route: 2, give: "my-proto", want: false},
		{name: "route refuses the listener's websocket", route: 0, give: "WEBSOCKET", want: false},
		{name: "route refusal keeps the rest", route: 0, give: "spdy/3.1", want: false},
		{name: "route allows what the listener refuses", route: 1, give: "spdy/3.1", want: true},
		{name: "route allows its own type", route: 1, give: "my-proto", want: true},
		{name: "route inherits websocket", route: 1, give: "websocket", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := routes[tt.route].Upgrade(tt.give); got != tt.want {
				t.Errorf("routes[%d].Upgrade(%q) = %v, want %v (upgrades %+v)", tt.route, tt.give, got, tt.want, routes[tt.route].Upgrades)
			}
		})
	}
}

func TestLoadUpgradeErrors(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		wantErr string
	}{
		{name: "empty type", give: `[{enabled: true}]`, wantErr: `listeners[0].upgrades[0].type: must not be empty`},
		{name: "not a token", give: `[{type: "web socket"}]`, wantErr: `"web socket" is not a protocol name`},
		{name: "h2c", give: `[{type: h2c}]`, wantErr: `h2c is not an upgrade Sightline tunnels`},
		{name: "connect", give: `[{type: CONNECT}]`, wantErr: `CONNECT is not supported`},
		{name: "twice", give: `[{type: websocket}, {type: WebSocket}]`, wantErr: `listeners[0].upgrades[1].type: duplicate upgrade type "websocket"`},
		{name: "a bare name", give: `[websocket]`, wantErr: `listeners[0].upgrades[0]: must be`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inDir(t, map[string]string{"main.yaml": `listeners:
  - name: a
    address: 127.0.0.1:1
    upgrades: ` + tt.give + `
    virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, cluster: c}]}]
` + clusterC})
			if got := loadProblems(t, "main.yaml"); !strings.Contains(got, tt.wantErr) {
				t.Errorf("problems:\n%s\nwant one containing %q", got, tt.wantErr)
			}
		})
	}
}
