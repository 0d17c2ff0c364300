package forward

import (
	"context"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/accesslog"
	"github.com/sightline-proxy/sightline/internal/jsonlines"
	"github.com/sightline-proxy/sightline/internal/testnet"
	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/h2"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/observe"
	"github.com/sightline-proxy/sightline/proxy/route"
	"github.com/sightline-proxy/sightline/proxy/upstream"
	"github.com/sightline-proxy/sightline/stats"
)

// testCluster is one cluster of a test proxy.
type testCluster struct {
	name     string
	protocol string // http1 | http2 | auto
	addrs    []string
}

// testRoute is one route of a test proxy's single virtual host.
type testRoute struct {
	prefix   string
	cluster  string
	upgrades []config.Upgrade
	idle     time.Duration // the route's idle_timeout; 0: none
}

// testProxy is a Handler served by net/http's HTTP/1.1 server on a
// loopback socket, with its clusters and an access log.
type testProxy struct {
	addr    string
	handler *Handler
	store   *stats.Store
	stats   *stats.HTTP
	logPath string
	log     *accesslog.Logger
	logOnce sync.Once
	// served gets each request's path when the handler returns.
	served chan string
}

// startProxy builds the clusters (the h2 engine's pool and the net/http
// pool per host, as the server does), one virtual host with the routes,
// and serves a Handler on 127.0.0.1:0 until the test ends.
func startProxy(t testing.TB, clusters []testCluster, routes []testRoute) *testProxy {
	t.Helper()
	store, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Second)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*cluster.Cluster{}
	for _, tc := range clusters {
		cfg := config.Cluster{Name: tc.name, Protocol: tc.protocol, LBPolicy: "round_robin"}
		for _, a := range tc.addrs {
			cfg.Endpoints = append(cfg.Endpoints, config.Endpoint{Address: a})
		}
		c, err := cluster.New(cfg, cluster.Options{
			NewUpstream: func(c *cluster.Cluster, h *host.Host) host.Upstream {
				po := h2.PoolOptions{Breakers: c.Breakers, Log: zerolog.Nop()}
				return h2.NewUpstream(h.Address, po, upstream.New(h.Address, upstream.Options{Breakers: c.Breakers}))
			},
			Stats: store.Cluster(tc.name),
			Log:   zerolog.Nop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		byName[tc.name] = c
		t.Cleanup(c.Close)
	}
	vh := config.VirtualHost{Name: "all", Domains: []string{"*"}}
	for _, r := range routes {
		cr := config.Route{Match: config.RouteMatch{Prefix: r.prefix}, Cluster: r.cluster, Upgrades: r.upgrades}
		if r.idle > 0 {
			d := config.Duration(r.idle)
			cr.IdleTimeout = &d
		}
		vh.Routes = append(vh.Routes, cr)
	}
	table, err := route.New([]config.VirtualHost{vh}, byName)
	if err != nil {
		t.Fatal(err)
	}
	p := &testProxy{store: store, stats: store.HTTP("test"), logPath: filepath.Join(t.TempDir(), "access.log")}
	p.log, err = accesslog.New(config.AccessLog{Path: p.logPath, FlushInterval: config.Duration(time.Hour), BufferBytes: 1 << 16}, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.closeLog(t) })
	p.handler = &Handler{Routes: table, Stats: p.stats, Observer: observe.New(config.RequestID{}, nil, []*accesslog.Logger{p.log}), Log: zerolog.Nop()}
	p.served = make(chan string, 64)
	p.addr = testnet.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			select {
			case p.served <- r.URL.Path:
			default: // nobody waits: a benchmark's many requests
			}
		}()
		p.handler.ServeHTTP(w, r)
	}), testnet.HTTP1)
	return p
}

func (p *testProxy) closeLog(t testing.TB) {
	p.logOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.log.Close(ctx); err != nil {
			t.Errorf("closing the access log: %v", err)
		}
	})
}

// waitServed waits until the handler has returned from a request for path.
func (p *testProxy) waitServed(t testing.TB, path string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-p.served:
			if got == path {
				return
			}
		case <-timeout:
			t.Fatalf("the handler did not return from %s", path)
		}
	}
}

// accessLog closes the access log, which writes what it holds, and
// returns its entries.
func (p *testProxy) accessLog(t testing.TB) []map[string]any {
	t.Helper()
	p.closeLog(t)
	return jsonlines.Read(t, p.logPath)
}

// h1Client is a client of its own that speaks HTTP/1.1 only; its idle
// connections are closed when the test ends.
func h1Client(t testing.TB) *http.Client {
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	tr := &http.Transport{Protocols: protos, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}
