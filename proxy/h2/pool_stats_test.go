package h2

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/internal/statstest"
	"github.com/sightline-proxy/sightline/internal/testnet"
	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/route"
	"github.com/sightline-proxy/sightline/stats"
)

// countingProxy is a Server in front of one cluster ("c") whose stats go
// to a real stats.Store, so that tests read what a user would.
type countingProxy struct {
	addr  string
	store *stats.Store
	cs    *stats.Cluster

	mu    sync.Mutex
	pools map[string]*Pool // by host address
}

// startCountingProxy serves h2c on 127.0.0.1:0 and routes every request
// to the hosts at addrs with round robin; po are the pools' options, to
// which the cluster's breakers and stats are added.
func startCountingProxy(t *testing.T, addrs []string, cb config.CircuitBreakers, po PoolOptions) *countingProxy {
	t.Helper()
	store, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{store: store, cs: store.Cluster("c"), pools: map[string]*Pool{}}
	cfg := config.Cluster{Name: "c", LBPolicy: "round_robin", CircuitBreakers: cb}
	for _, a := range addrs {
		cfg.Endpoints = append(cfg.Endpoints, config.Endpoint{Address: a})
	}
	c, err := cluster.New(cfg, cluster.Options{
		Stats: p.cs,
		Log:   zerolog.Nop(),
		NewUpstream: func(c *cluster.Cluster, h *host.Host) host.Upstream {
			o := po
			o.Breakers = c.Breakers
			o.Stats = c.Stats
			u := NewUpstream(h.Address, o, nil)
			p.mu.Lock()
			p.pools[h.Address] = u.H2
			p.mu.Unlock()
			return u
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	vh := config.VirtualHost{Name: "all", Domains: []string{"*"},
		Routes: []config.Route{{Match: config.RouteMatch{Prefix: "/"}, Cluster: "c"}}}
	table, err := route.New([]config.VirtualHost{vh}, map[string]*cluster.Cluster{"c": c})
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ServerOptions{Routes: table, Log: zerolog.Nop()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				pc := NewPeekConn(c)
				if proto, _ := pc.Sniff(); proto != ProtoH2 {
					c.Close()
					return
				}
				srv.ServeConn(pc)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		srv.Close()
		wg.Wait()
	})
	return p
}

func (p *countingProxy) pool(addr string) *Pool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pools[addr]
}

// cxCounts are the stats of cluster "c" that the pool tests read.
type cxCounts = statstest.Connections

func readCounts(t testing.TB, s *stats.Store) cxCounts {
	t.Helper()
	return statstest.ReadConnections(t, s, "c")
}

func waitCounts(t testing.TB, s *stats.Store, want cxCounts) {
	t.Helper()
	statstest.WaitConnections(t, s, "c", want, nil)
}

// getFlags fetches / through the proxy and returns the status and the
// response flags.
func getFlags(t testing.TB, addr string) (int, string) {
	t.Helper()
	resp, err := h2cClient().Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Sightline-Response-Flags")
}

// TestPoolConnectionStats: what the upstream_cx_* stats show after each
// way an engine pool connection can go, counted as Envoy counts them:
// every attempt in cx_total and cx_http2_total, a failed connect once in
// connect_fail (plus connect_timeout for a timeout) and in destroy, and
// every end as local (the proxy closed it) or remote (the peer did).
func TestPoolConnectionStats(t *testing.T) {
	tests := []struct {
		name string
		// start returns the upstream's address and, when the proxy is
		// to close the connection afterwards, true.
		start     func(t *testing.T) (addr string, closePool bool)
		wantCode  int
		wantFlags string
		want      cxCounts
	}{
		{
			name: "used, then closed by the proxy",
			start: func(t *testing.T) (string, bool) {
				return startFakeUpstream(t, &fakeUpstream{}).addr, true
			},
			wantCode: 200,
			want: cxCounts{Total: 1, HTTP2: 1, Destroy: 1, DestroyLocal: 1,
				ConnectMs: 1, LengthMs: 1},
		},
		{
			name: "nothing listens",
			start: func(t *testing.T) (string, bool) {
				return testnet.ClosedPort(t), false
			},
			wantCode: 503, wantFlags: "UF",
			// Refused: the peer's doing, as Envoy's RemoteClose.
			want: cxCounts{Total: 1, HTTP2: 1, ConnectFail: 1, Destroy: 1, DestroyRemote: 1, LengthMs: 1},
		},
		{
			name: "connect timeout: no SETTINGS",
			start: func(t *testing.T) (string, bool) {
				addr, _ := testnet.MuteListener(t)
				return addr, false
			},
			wantCode: 503, wantFlags: "UF",
			want: cxCounts{Total: 1, HTTP2: 1, ConnectFail: 1, ConnectTimeout: 1, Destroy: 1, DestroyLocal: 1, LengthMs: 1},
		},
		{
			name: "the peer closes it after the response",
			start: func(t *testing.T) (string, bool) {
				fu := &fakeUpstream{onRequest: func(fc *fakeConn, id uint32) {
					fc.respond(id, "bye")
					// FIN, not RST: the response must arrive.
					fc.c.(*net.TCPConn).CloseWrite()
				}}
				return startFakeUpstream(t, fu).addr, false
			},
			wantCode: 200,
			want:     cxCounts{Total: 1, HTTP2: 1, Destroy: 1, DestroyRemote: 1, ConnectMs: 1, LengthMs: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, closePool := tt.start(t)
			timeout := 5 * time.Second
			if tt.want.ConnectTimeout != 0 {
				timeout = 100 * time.Millisecond
			}
			p := startCountingProxy(t, []string{addr}, config.CircuitBreakers{}, PoolOptions{ConnectTimeout: timeout})
			code, flags := getFlags(t, p.addr)
			if code != tt.wantCode || flags != tt.wantFlags {
				t.Errorf("got %d %q, want %d %q", code, flags, tt.wantCode, tt.wantFlags)
			}
			want := tt.want
			// The first request of a pool waits for its connection:
			// one pending request, and none left.
			want.PendingTotal = 1
			if closePool {
				p.pool(addr).Close()
			}
			waitCounts(t, p.store, want)
		})
	}
}

// TestPoolPendingStats: a request waiting for a connection counts in
// upstream_rq_pending_active while it waits and in
// upstream_rq_pending_total once.
func TestPoolPendingStats(t *testing.T) {
	gate := make(chan struct{})
	fu := startFakeUpstream(t, &fakeUpstream{settingsGate: gate})
	p := startCountingProxy(t, []string{fu.addr}, config.CircuitBreakers{}, PoolOptions{ConnectTimeout: 5 * time.Second})
	type result struct {
		code  int
		flags string
	}
	done := make(chan result, 1)
	go func() {
		resp, err := h2cClient().Get("http://" + p.addr + "/")
		if err != nil {
			done <- result{flags: err.Error()}
			return
		}
		resp.Body.Close()
		done <- result{resp.StatusCode, resp.Header.Get("X-Sightline-Response-Flags")}
	}()
	up := p.cs.Upstream()
	deadline := time.Now().Add(5 * time.Second)
	for up.RqPendingActive.Value() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("pending_active = %d while the request waits for SETTINGS, want 1", up.RqPendingActive.Value())
		}
		time.Sleep(time.Millisecond)
	}
	if got := up.RqPendingTotal.Value(); got != 1 {
		t.Errorf("pending_total = %d while waiting, want 1", got)
	}
	close(gate)
	if r := <-done; r.code != 200 {
		t.Fatalf("got %d %q, want 200", r.code, r.flags)
	}
	if got := up.RqPendingActive.Value(); got != 0 {
		t.Errorf("pending_active = %d after the request got its stream, want 0", got)
	}
	// A second request finds the connection ready: not pending.
	if code, flags := getFlags(t, p.addr); code != 200 {
		t.Fatalf("second request: %d %q", code, flags)
	}
	if got := up.RqPendingTotal.Value(); got != 1 {
		t.Errorf("pending_total = %d after a request on a ready connection, want 1", got)
	}
}

// TestPoolConnectFailCountsDials: requests waiting for the same failed
// connection count one connect failure, not one each.
func TestPoolConnectFailCountsDials(t *testing.T) {
	addr, accepted := testnet.MuteListener(t)
	p := startCountingProxy(t, []string{addr}, config.CircuitBreakers{}, PoolOptions{ConnectTimeout: 5 * time.Second})
	const n = 4
	var wg sync.WaitGroup
	codes := make(chan string, n)
	for range n {
		wg.Go(func() {
			code, flags := getFlags(t, p.addr)
			codes <- fmt.Sprint(code, " ", flags)
		})
	}
	// Every request waits on the one connection, which the upstream
	// then closes before its SETTINGS.
	up := p.cs.Upstream()
	deadline := time.Now().Add(5 * time.Second)
	for up.RqPendingActive.Value() != n {
		if time.Now().After(deadline) {
			t.Fatalf("pending_active = %d, want %d", up.RqPendingActive.Value(), n)
		}
		time.Sleep(time.Millisecond)
	}
	(<-accepted).Close()
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != "503 UF" {
			t.Errorf("got %s, want 503 UF", c)
		}
	}
	waitCounts(t, p.store, cxCounts{Total: 1, HTTP2: 1, ConnectFail: 1, Destroy: 1, DestroyRemote: 1, LengthMs: 1, PendingTotal: n})
}

// TestPoolKeepalive: a connection that reads nothing for SendPingTimeout
// sends a PING; a peer that ACKs keeps the connection, one that does not
// has it closed by the proxy after PingTimeout (cx_destroy_local), and the
// stream waiting on it fails as a connection termination (UC), which a
// retry policy with "reset" would retry.
func TestPoolKeepalive(t *testing.T) {
	po := PoolOptions{ConnectTimeout: 5 * time.Second, SendPingTimeout: 20 * time.Millisecond, PingTimeout: 50 * time.Millisecond}

	t.Run("the peer acks", func(t *testing.T) {
		fu := startFakeUpstream(t, &fakeUpstream{ackPings: true})
		po := po
		po.PingTimeout = 10 * time.Second // however slow the machine, the ACK comes first
		p := startCountingProxy(t, []string{fu.addr}, config.CircuitBreakers{}, po)
		if code, flags := getFlags(t, p.addr); code != 200 {
			t.Fatalf("got %d %q", code, flags)
		}
		// Several PINGs, each answered, and the connection stays.
		deadline := time.Now().Add(5 * time.Second)
		for fu.pings.Load() < 5 {
			if time.Now().After(deadline) {
				t.Fatalf("upstream got %d PINGs in 5s from an idle connection, want 5", fu.pings.Load())
			}
			time.Sleep(5 * time.Millisecond)
		}
		if got := readCounts(t, p.store); got.Destroy != 0 || got.Active != 1 {
			t.Errorf("after answered PINGs: destroy %d, active %d; want the connection kept", got.Destroy, got.Active)
		}
		if n := fu.conns.Load(); n != 1 {
			t.Errorf("upstream saw %d connections, want 1", n)
		}
	})

	t.Run("the peer does not ack", func(t *testing.T) {
		fu := startFakeUpstream(t, &fakeUpstream{onRequest: func(*fakeConn, uint32) {}}) // never answers
		p := startCountingProxy(t, []string{fu.addr}, config.CircuitBreakers{}, po)
		code, flags := getFlags(t, p.addr)
		if code != 503 || flags != "UC" {
			t.Errorf("stream on a connection whose PING went unanswered: %d %q, want 503 UC", code, flags)
		}
		if fu.pings.Load() == 0 {
			t.Error("the connection closed without sending a PING")
		}
		waitCounts(t, p.store, cxCounts{Total: 1, HTTP2: 1, Destroy: 1, DestroyLocal: 1, ConnectMs: 1, LengthMs: 1, PendingTotal: 1})
		deadline := time.Now().Add(5 * time.Second)
		for fu.ended.Load() != 1 {
			if time.Now().After(deadline) {
				t.Fatal("the upstream's connection is still open")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// TestPoolMaxConnectionPools: with max_connection_pools 1, a second host
// cannot open a pool while the first holds a connection: its requests
// are refused as overflows (UO) without a connection attempt, and
// circuit_breakers.default.cx_pool_open is 1; once the first pool's
// connection closes, the second host can connect.
func TestPoolMaxConnectionPools(t *testing.T) {
	a := startFakeUpstream(t, &fakeUpstream{})
	b := startFakeUpstream(t, &fakeUpstream{})
	p := startCountingProxy(t, []string{a.addr, b.addr}, config.CircuitBreakers{MaxConnectionPools: 1}, PoolOptions{ConnectTimeout: 5 * time.Second})
	got := map[string]int{}
	for range 4 {
		code, flags := getFlags(t, p.addr)
		got[fmt.Sprint(code, " ", flags)]++
	}
	if got["200 "] != 2 || got["503 UO"] != 2 {
		t.Errorf("4 requests over 2 hosts with one pool allowed: %v, want 2 × 200 and 2 × 503 UO", got)
	}
	if c := readCounts(t, p.store); c.PoolsOpen != 1 || c.Total != 1 {
		t.Errorf("cx_pool_open %d, cx_total %d; want 1 and 1", c.PoolsOpen, c.Total)
	}
	first := a
	if a.conns.Load() == 0 {
		first = b
	}
	p.pool(first.addr).Close()
	waitCounts(t, p.store, cxCounts{Total: 1, HTTP2: 1, Destroy: 1, DestroyLocal: 1, ConnectMs: 1, LengthMs: 1, PendingTotal: 1})
	// Both hosts may connect now (the closed pool answers UF).
	for range 2 {
		if code, flags := getFlags(t, p.addr); code != 200 && flags != "UF" {
			t.Errorf("after the first pool closed: %d %q", code, flags)
		}
	}
	if n := a.conns.Load() + b.conns.Load(); n != 2 {
		t.Errorf("hosts saw %d connections, want 2", n)
	}
}
