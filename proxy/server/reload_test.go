package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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
	return twoClustersLB(weightB, "round_robin", extraListener)
}

func twoClustersLB(weightB int, lbB, extraListener string) string {
	return fmt.Sprintf(`admin: {address: 127.0.0.1:0}
server: {drain_time: 10ms}
listeners:
  - name: in
    address: 127.0.0.1:0
    virtual_hosts: [{name: all, domains: ['*'], routes: [{match: {prefix: /a}, cluster: a}, {match: {prefix: /}, cluster: b}]}]
%sclusters:
  - {name: a, endpoints: [{address: 127.0.0.1:1}]}
  - {name: b, lb_policy: %s, endpoints: [{address: 127.0.0.1:2, weight: %d}, {address: 127.0.0.1:3}]}
`, extraListener, lbB, weightB)
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
	if err := s.Reload(load(t, twoClustersLB(1, "least_request", ""))); err != nil {
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

// TestReloadEndpointsInPlace: a reload that changes only a static
// cluster's endpoints updates its hosts in place: the cluster is the same,
// an unchanged host keeps its Host (its pool, counters and health), a
// host whose weight changed is a new one with that weight, and an added
// host appears.
func TestReloadEndpointsInPlace(t *testing.T) {
	s := started(t, load(t, twoClusters(1, "")))
	b := s.cur.Load().byName["b"]
	hostsBefore := b.Hosts()
	cfg := load(t, strings.Replace(twoClusters(5, ""), "{address: 127.0.0.1:3}]", "{address: 127.0.0.1:3}, {address: 127.0.0.1:4}]", 1))
	if err := s.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if s.cur.Load().byName["b"] != b {
		t.Fatal("a cluster whose endpoints alone changed was rebuilt")
	}
	got := b.Hosts()
	if len(got) != 3 {
		t.Fatalf("%d hosts after the reload, want 3", len(got))
	}
	if got[0] == hostsBefore[0] || got[0].Weight != 5 {
		t.Errorf("127.0.0.1:2 (weight 1 → 5): same Host %v, weight %d; want a new Host of weight 5", got[0] == hostsBefore[0], got[0].Weight)
	}
	if got[1] != hostsBefore[1] {
		t.Error("127.0.0.1:3, unchanged, is a new Host: its pool and counters were lost")
	}
	if got[2].Address != "127.0.0.1:4" {
		t.Errorf("third host %s, want the added 127.0.0.1:4", got[2].Address)
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
	if w := before.byName["b"].Hosts()[0].Weight; w != 1 {
		t.Fatalf("a refused reload set b's endpoints anyway: weight %d, want 1", w)
	}
	if n := s.stats.Server().ConfigReloadFailed.Value(); n != 1 {
		t.Fatalf("config_reload_failed = %d, want 1", n)
	}
}

// TestReloadPprof: admin.pprof is applied by a reload, both ways, with
// the admin server and the rest of the config as they were.
func TestReloadPprof(t *testing.T) {
	s := started(t, load(t, twoClusters(1, "")))
	get := func() int {
		t.Helper()
		resp, err := http.Get("http://" + s.AdminAddr() + "/debug/pprof/cmdline")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != 200 {
		t.Fatalf("/debug/pprof/cmdline by default: %d, want 200", code)
	}
	off := strings.Replace(twoClusters(1, ""), "admin: {address: 127.0.0.1:0}", "admin: {address: 127.0.0.1:0, pprof: false}", 1)
	before := s.cur.Load()
	if err := s.Reload(load(t, off)); err != nil {
		t.Fatal(err)
	}
	if code := get(); code != 404 {
		t.Errorf("after a reload with admin.pprof: false: %d, want 404", code)
	}
	if after := s.cur.Load(); after.byName["a"] != before.byName["a"] || after.listeners[0] != before.listeners[0] {
		t.Error("turning the profiles off rebuilt a cluster or a listener")
	}
	if err := s.Reload(load(t, twoClusters(1, ""))); err != nil {
		t.Fatal(err)
	}
	if code := get(); code != 200 {
		t.Errorf("after a reload back to the default: %d, want 200", code)
	}
}
