package cluster

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/stats"
)

// fakeResolver answers from a table the test changes; an entry of nil
// fails the lookup, as a DNS outage does.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][]string
}

func (f *fakeResolver) set(name string, ips ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[name] = ips
}

func (f *fakeResolver) LookupIPAddr(_ context.Context, name string) ([]net.IPAddr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ips := f.answers[name]
	if ips == nil {
		return nil, errors.New("no such host")
	}
	out := make([]net.IPAddr, len(ips))
	for i, ip := range ips {
		out[i] = net.IPAddr{IP: net.ParseIP(ip)}
	}
	return out, nil
}

type closeCounter struct{ closed *int }

func (c closeCounter) Close() error { *c.closed++; return nil }

func addrs(hs []*host.Host) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Address
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestStaticCluster(t *testing.T) {
	cfg := config.Cluster{
		Name: "c", Type: "static", LBPolicy: "round_robin",
		Endpoints: []config.Endpoint{
			{Address: "127.0.0.1:10", Zone: "a", Weight: 2},
			{Address: "127.0.0.1:9", Zone: "b"},
		},
	}
	c, err := New(cfg, Options{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	c.Start(context.Background())
	defer c.Close()
	if got, want := addrs(c.Hosts()), []string{"127.0.0.1:9", "127.0.0.1:10"}; !equal(got, want) {
		t.Errorf("hosts = %v, want %v (sorted by numeric port)", got, want)
	}
	if h := c.Hosts()[0]; h.Weight != 1 || h.Zone != "b" {
		t.Errorf("host 9: weight %d zone %q, want 1 and b", h.Weight, h.Zone)
	}
	seen := map[string]int{}
	for range 300 {
		seen[c.Pick(&balancer.Request{}).Address]++
	}
	if seen["127.0.0.1:10"] != 200 || seen["127.0.0.1:9"] != 100 {
		t.Errorf("picks = %v, want 200/100 for weights 2/1", seen)
	}
}

func TestUnknownPolicy(t *testing.T) {
	_, err := New(config.Cluster{Name: "c", LBPolicy: "fastest"}, Options{})
	if err == nil {
		t.Fatal("New accepted lb_policy fastest")
	}
}

func TestStrictDNS(t *testing.T) {
	res := &fakeResolver{answers: map[string][]string{}}
	res.set("svc.local", "10.0.0.1", "10.0.0.2")
	closed := 0
	cfg := config.Cluster{
		Name: "dns", Type: "strict_dns", LBPolicy: "round_robin",
		DNSRefreshRate: config.Duration(20 * time.Millisecond),
		Endpoints:      []config.Endpoint{{Address: "svc.local:5100", Zone: "z"}},
	}
	c, err := New(cfg, Options{
		Resolver:    res,
		Log:         zerolog.Nop(),
		NewUpstream: func(*Cluster, *host.Host) host.Upstream { return closeCounter{&closed} },
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(c.Hosts()); n != 0 {
		t.Fatalf("before Start: %d hosts, want 0", n)
	}
	c.Start(context.Background())
	defer c.Close()
	if got, want := addrs(c.Hosts()), []string{"10.0.0.1:5100", "10.0.0.2:5100"}; !equal(got, want) {
		t.Fatalf("after Start: hosts %v, want %v", got, want)
	}
	kept := c.Hosts()[0]
	// A pool is made on a host's first use: use both.
	for _, h := range c.Hosts() {
		h.Upstream()
	}

	waitHosts := func(want []string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for !equal(addrs(c.Hosts()), want) {
			if time.Now().After(deadline) {
				t.Fatalf("hosts = %v, want %v", addrs(c.Hosts()), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// A record goes away and another arrives: the surviving host is the
	// same value, so its counters and pool survive.
	res.set("svc.local", "10.0.0.1", "10.0.0.3")
	waitHosts([]string{"10.0.0.1:5100", "10.0.0.3:5100"})
	if c.Hosts()[0] != kept {
		t.Error("the surviving host was replaced; its counters and pool were lost")
	}

	// A failed lookup keeps the last good set.
	res.set("svc.local")
	time.Sleep(100 * time.Millisecond)
	if got, want := addrs(c.Hosts()), []string{"10.0.0.1:5100", "10.0.0.3:5100"}; !equal(got, want) {
		t.Errorf("after a failed lookup: hosts %v, want the last good %v", got, want)
	}
	c.Close()
	if closed != 2 {
		t.Errorf("closed %d pools, want 2 (10.0.0.2, removed, and 10.0.0.1 on Close; 10.0.0.3 was never used and has none)", closed)
	}
}

func TestPanicThreshold(t *testing.T) {
	tests := []struct {
		name      string
		threshold *float64
		unhealthy int
		wantPanic bool
		wantPicks int // distinct hosts picked
	}{
		{name: "all healthy", unhealthy: 0, wantPicks: 4},
		{name: "one down of four: 75% healthy", unhealthy: 1, wantPicks: 3},
		{name: "three down: 25% < 50%", unhealthy: 3, wantPanic: true, wantPicks: 4},
		{name: "threshold 0 never panics", threshold: new(float64), unhealthy: 3, wantPicks: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Cluster{Name: "c", LBPolicy: "round_robin", PanicThreshold: tt.threshold}
			for _, a := range []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"} {
				cfg.Endpoints = append(cfg.Endpoints, config.Endpoint{Address: a})
			}
			c, err := New(cfg, Options{Log: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range c.Hosts()[:tt.unhealthy] {
				h.SetFlag(host.FailedActiveHC, true)
			}
			c.Refresh()
			if c.Panic() != tt.wantPanic {
				t.Errorf("Panic() = %v, want %v", c.Panic(), tt.wantPanic)
			}
			seen := map[*host.Host]bool{}
			for range 40 {
				seen[c.Pick(&balancer.Request{})] = true
			}
			if len(seen) != tt.wantPicks {
				t.Errorf("picked %d distinct hosts, want %d", len(seen), tt.wantPicks)
			}
		})
	}
}

// TestPanicLog: a cluster whose hosts wait for their first health check
// is in panic for want of knowledge; it says nothing of it, nor of its
// end when the checks pass. A panic that outlasts the first checks, or
// comes later, is logged once, and so is its end.
func TestPanicLog(t *testing.T) {
	var logged bytes.Buffer
	cfg := config.Cluster{Name: "c", LBPolicy: "round_robin"}
	for _, a := range []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"} {
		cfg.Endpoints = append(cfg.Endpoints, config.Endpoint{Address: a})
	}
	c, err := New(cfg, Options{Log: zerolog.New(&logged)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hosts := c.Hosts()
	const (
		pending = host.FailedActiveHC | host.PendingActiveHC
		warned  = "too few healthy hosts"
		over    = "panic over"
	)
	step := func(name string, flags [4]uint32, want string) {
		t.Helper()
		for i, h := range hosts {
			h.SetFlags(pending|host.FailedOutlierCheck, flags[i])
		}
		logged.Reset()
		c.Refresh()
		got := ""
		for _, s := range []string{warned, over} {
			if n := strings.Count(logged.String(), s); n > 1 || n == 1 && got != "" {
				t.Fatalf("%s: logged %q", name, logged.String())
			} else if n == 1 {
				got = s
			}
		}
		if got != want {
			t.Errorf("%s: logged %q, want a line saying %q", name, logged.String(), want)
		}
	}
	f := host.FailedActiveHC
	step("every host waits for its first check", [4]uint32{pending, pending, pending, pending}, "")
	step("three first checks passed, one waits", [4]uint32{0, 0, 0, pending}, "")
	step("all passed", [4]uint32{}, "")
	step("three ejected", [4]uint32{f, f, 0, f}, warned)
	step("still in panic", [4]uint32{f, f, 0, host.FailedOutlierCheck}, "")
	step("back", [4]uint32{0, 0, 0, f}, over)
	step("new hosts wait", [4]uint32{0, pending, pending, pending}, "")
	step("their first checks failed", [4]uint32{0, f, f, f}, warned)
	step("they pass", [4]uint32{}, over)
}

func TestPickWithNoHosts(t *testing.T) {
	c, err := New(config.Cluster{Name: "c", Type: "strict_dns", LBPolicy: "least_request"}, Options{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if h := c.Pick(&balancer.Request{}); h != nil {
		t.Errorf("Pick on an empty cluster = %v, want nil", h.Address)
	}
}

// TestPickRetryAvoidsTriedHosts: a consistent hash keeps choosing the same
// host; a retry still gets one it has not tried, while there is one.
func TestPickRetryAvoidsTriedHosts(t *testing.T) {
	cfg := config.Cluster{Name: "c", LBPolicy: "ring_hash", Endpoints: []config.Endpoint{
		{Address: "127.0.0.1:1"}, {Address: "127.0.0.1:2"}, {Address: "127.0.0.1:3"},
	}}
	c, err := New(cfg, Options{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	r := &balancer.Request{Hash: 42, HasHash: true}
	first := c.Pick(r)
	tried := []*host.Host{first}
	second := c.PickRetry(r, tried)
	if second == nil || second == first {
		t.Fatalf("retry picked %v after %v failed", second, first)
	}
	tried = append(tried, second)
	for range 20 {
		if third := c.PickRetry(r, tried); third == first || third == second {
			t.Fatalf("retry picked %s, which was tried", third.Address)
		}
	}
	tried = append(tried, c.PickRetry(r, tried))
	if got := c.PickRetry(r, tried); got == nil {
		t.Fatal("with every host tried, a retry must still get one")
	}
}

// TestIdleClusterStats: a cluster that serves nothing has its membership
// gauges and no other stat, in the store and so in every sink; its
// breakers' gauges appear with its first request.
func TestIdleClusterStats(t *testing.T) {
	st, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Cluster{Name: "idle", LBPolicy: "round_robin", PanicThreshold: new(100.0),
		Endpoints: []config.Endpoint{{Address: "127.0.0.1:1"}, {Address: "127.0.0.1:2"}}}
	c, err := New(cfg, Options{Log: zerolog.Nop(), Stats: st.Cluster("idle")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h1, _ := c.hosts.get("127.0.0.1:1")
	h1.SetFlag(host.FailedActiveHC, true)
	c.Refresh() // in panic: half the hosts healthy, below 100 %
	names := func() []string {
		rec := httptest.NewRecorder()
		st.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/stats?filter=^cluster\\.idle\\.", nil))
		var out []string
		for _, line := range strings.Split(strings.TrimSpace(rec.Body.String()), "\n") {
			name, _, _ := strings.Cut(line, ":")
			out = append(out, name)
		}
		return out
	}
	if got, want := names(), []string{"cluster.idle.membership_healthy", "cluster.idle.membership_total"}; !equal(got, want) {
		t.Fatalf("an idle cluster's stats: %v, want %v", got, want)
	}
	c.Pick(&balancer.Request{}) // the first request: no limit reached
	got := strings.Join(names(), " ")
	for _, want := range []string{"cluster.idle.circuit_breakers.default.rq_open", "cluster.idle.circuit_breakers.default.cx_open", "cluster.idle.lb_healthy_panic"} {
		if !strings.Contains(got, want) {
			t.Errorf("after a first pick, in panic: no %s in %s", want, got)
		}
	}
	if strings.Contains(got, "upstream_rq_total") {
		t.Errorf("request stats made without a request: %s", got)
	}
}

// TestRemovedHostKeepsItsPool: the pool of a host that leaves the cluster
// is not closed at once (a request may have picked the host just before),
// but after a grace or when the cluster closes.
func TestRemovedHostKeepsItsPool(t *testing.T) {
	closed := 0
	cfg := config.Cluster{Name: "c", LBPolicy: "round_robin",
		Endpoints: []config.Endpoint{{Address: "127.0.0.1:1"}, {Address: "127.0.0.1:2"}}}
	c, err := New(cfg, Options{Log: zerolog.Nop(), NewUpstream: func(*Cluster, *host.Host) host.Upstream { return closeCounter{&closed} }})
	if err != nil {
		t.Fatal(err)
	}
	c.Start(context.Background())
	leaving := c.Hosts()[1]
	for _, h := range c.Hosts() {
		h.Upstream()
	}
	c.SetEndpoints(cfg.Endpoints[:1])
	if n := len(c.Hosts()); n != 1 {
		t.Fatalf("%d hosts after the removal, want 1", n)
	}
	if closed != 0 || leaving.Upstream() == nil {
		t.Fatalf("the removed host's pool was closed at once (%d closes)", closed)
	}
	c.Close()
	if closed != 2 {
		t.Errorf("after Close: %d pools closed, want 2 (the removed host's too)", closed)
	}
}
