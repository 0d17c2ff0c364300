package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/proxy/config"
)

func load(t *testing.T, body string) *config.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func twoClusters(weightB int, extraListener string) string {
	return fmt.Sprintf(`admin: {address: 127.0.0.1:0}
server: {drain_time: 10ms}
listeners:
  - name: in
    address: 127.0.0.1:0
    virtual_hosts: [{name: all, domains: ['*'], routes: [{match: {prefix: /a}, cluster: a}, {match: {prefix: /}, cluster: b}]}]
%sclusters:
  - {name: a, endpoints: [{address: 127.0.0.1:1}]}
  - {name: b, endpoints: [{address: 127.0.0.1:2, weight: %d}]}
`, extraListener, weightB)
}

func started(t *testing.T, cfg *config.Config) *Server {
	t.Helper()
	s, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s
}

// TestReloadKeepsWhatDidNotChange: the unchanged cluster and listener are
// the same objects after a reload; the changed cluster is a new one.
func TestReloadKeepsWhatDidNotChange(t *testing.T) {
	s := started(t, load(t, twoClusters(1, "")))
	before := s.cur.Load()
	addr := s.ListenerAddr("in")
	if err := s.Reload(load(t, twoClusters(5, ""))); err != nil {
		t.Fatal(err)
	}
	after := s.cur.Load()
	if after.byName["a"] != before.byName["a"] {
		t.Error("unchanged cluster a was rebuilt")
	}
	if after.byName["b"] == before.byName["b"] {
		t.Error("changed cluster b was kept")
	}
	if after.listeners[0] != before.listeners[0] || s.ListenerAddr("in") != addr {
		t.Error("the listener whose routes only point at a rebuilt cluster lost its socket")
	}
	if n := s.stats.Server().ConfigReload.Value(); n != 1 {
		t.Errorf("config_reload = %d, want 1", n)
	}
}

// TestReloadRefusedKeepsServing: a config whose new listener cannot bind
// is refused as a whole; nothing of it is applied and the refusal counts.
func TestReloadRefusedKeepsServing(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	s := started(t, load(t, twoClusters(1, "")))
	before := s.cur.Load()
	bad := load(t, twoClusters(7, fmt.Sprintf(`  - name: clash
    address: %s
    virtual_hosts: [{name: all, domains: ['*'], routes: [{match: {prefix: /}, cluster: a}]}]
`, taken.Addr())))
	if err := s.Reload(bad); err == nil {
		t.Fatal("a reload whose listener cannot bind succeeded")
	}
	if s.cur.Load() != before {
		t.Fatal("a refused reload changed the running generation")
	}
	if n := s.stats.Server().ConfigReloadFailed.Value(); n != 1 {
		t.Fatalf("config_reload_failed = %d, want 1", n)
	}
}
