package h2

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/observe"
	"github.com/sightline-proxy/sightline/proxy/overload"
	"github.com/sightline-proxy/sightline/proxy/route"
	"github.com/sightline-proxy/sightline/proxy/sock"
	"github.com/sightline-proxy/sightline/proxy/upstream"
)

// testCluster describes one cluster of a test proxy.
type testCluster struct {
	name     string
	protocol string // "" = http2
	lb       string // "" = round_robin
	addrs    []string
	connect  time.Duration
	tls      *tls.Config
	maxConns int
	breakers config.CircuitBreakers
}

// testRoute describes one route of a test proxy's single virtual host.
type testRoute struct {
	prefix  string
	cluster string
	timeout time.Duration
	grpc    bool
	hash    string
	retry   *config.RetryPolicy
	mirror  string // cluster name; every request is mirrored
	// edit, when set, changes the route's config before it is built.
	edit func(*config.Route)
}

// testProxy is a Server on a loopback listener with its clusters.
type testProxy struct {
	srv      *Server
	addr     string
	clusters map[string]*cluster.Cluster
	pools    []*Upstream
	mu       sync.Mutex
}

type proxyOpts struct {
	tls    bool
	limits config.Limits
	trust  bool
	obs    *observe.Observer
	// overload is the overload manager the server honours; nil: none.
	overload *overload.Manager
	// wrap, when set, wraps each accepted plaintext connection, as a
	// listener's byte counters do.
	wrap func(net.Conn) net.Conn
}

// startProxy builds clusters (with h2 pools as their upstream factory), a
// route table, a Server, and serves it on 127.0.0.1:0 until the test ends.
func startProxy(t testing.TB, clusters []testCluster, routes []testRoute, o proxyOpts) *testProxy {
	t.Helper()
	p := &testProxy{clusters: map[string]*cluster.Cluster{}}
	for _, tc := range clusters {
		cfg := config.Cluster{Name: tc.name, Protocol: tc.protocol, LBPolicy: tc.lb, CircuitBreakers: tc.breakers}
		if cfg.LBPolicy == "" {
			cfg.LBPolicy = "round_robin"
		}
		for _, a := range tc.addrs {
			cfg.Endpoints = append(cfg.Endpoints, config.Endpoint{Address: a})
		}
		popts := PoolOptions{ConnectTimeout: tc.connect, TLS: tc.tls, MaxConns: tc.maxConns}
		c, err := cluster.New(cfg, cluster.Options{
			NewUpstream: func(c *cluster.Cluster, h *host.Host) host.Upstream {
				popts := popts
				popts.Breakers = c.Breakers
				u := NewUpstream(h.Address, popts,
					upstream.New(h.Address, upstream.Options{ConnectTimeout: popts.ConnectTimeout, TLS: popts.TLS}))
				p.mu.Lock()
				p.pools = append(p.pools, u)
				p.mu.Unlock()
				return u
			},
			Log: zerolog.Nop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		// A host's pools are made on its first use; make them now, in
		// config order, so that tests can reach them as p.pools[i].
		for _, a := range tc.addrs {
			for _, h := range c.Hosts() {
				if h.Address == a {
					h.Upstream()
				}
			}
		}
		p.clusters[tc.name] = c
		t.Cleanup(c.Close)
	}
	vh := config.VirtualHost{Name: "all", Domains: []string{"*"}}
	for _, r := range routes {
		cr := config.Route{Match: config.RouteMatch{Prefix: r.prefix, GRPC: r.grpc}, Cluster: r.cluster, Timeout: config.Duration(r.timeout)}
		if r.hash != "" {
			cr.HashPolicy = []config.HashPolicy{{Header: r.hash}}
		}
		cr.RetryPolicy = r.retry
		if r.mirror != "" {
			cr.Mirror = &config.Mirror{Cluster: r.mirror}
		}
		if r.edit != nil {
			r.edit(&cr)
		}
		vh.Routes = append(vh.Routes, cr)
	}
	table, err := route.New([]config.VirtualHost{vh}, p.clusters)
	if err != nil {
		t.Fatal(err)
	}
	p.srv = NewServer(ServerOptions{Routes: table, TLS: o.tls, Limits: o.limits, TrustRequestHeaders: o.trust, Observer: o.obs, Overload: o.overload, Log: zerolog.Nop()})
	p.addr = serveWrapped(t, p.srv, o.tls, o.wrap)
	return p
}

// serve serves srv on its own loopback socket until the test ends, and
// returns the address: plaintext connections are sniffed (h2c only), TLS
// ones (ALPN h2) are served as the handshake left them, both with Serve,
// as the listener does.
func serve(t testing.TB, srv *Server, useTLS bool) string {
	t.Helper()
	return serveWrapped(t, srv, useTLS, nil)
}

// serveWrapped is serve, with wrap, when not nil, applied to each
// plaintext connection before it is sniffed.
func serveWrapped(t testing.TB, srv *Server, useTLS bool, wrap func(net.Conn) net.Conn) string {
	t.Helper()
	return serveWith(t, srv, useTLS, wrap, testArrivals{srv})
}

// serveWith is serveWrapped with a, the listener's part, told what the
// lobby does with each plaintext connection.
func serveWith(t testing.TB, srv *Server, useTLS bool, wrap func(net.Conn) net.Conn, a Arrivals) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var tlsConf *tls.Config
	if useTLS {
		tlsConf = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"h2"}}
	}
	// As the listener accepts: with accept4 where it can (package sock).
	accept, stop := ln.Accept, ln.Close
	if raw, err := sock.Listen(ln); err == nil {
		accept = raw.Accept
		stop = func() error { raw.Close(); return ln.Close() }
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := accept()
			if err != nil {
				return
			}
			go func() {
				if tlsConf != nil {
					tc := TLSServer(c, tlsConf)
					if err := tc.Handshake(); err != nil {
						c.Close()
						return
					}
					srv.Serve(tc, func() {})
					return
				}
				if wrap != nil {
					c = wrap(c)
				}
				// As the listener does: the lobby first.
				srv.Greet(c, a)
			}()
		}
	}()
	t.Cleanup(func() {
		stop()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return ln.Addr().String()
}

// testArrivals serves what the lobby hands back as the listener does,
// h2c only, and counts nothing.
type testArrivals struct{ srv *Server }

func (a testArrivals) Sniff(nc net.Conn, pc *PeekConn) {
	go func() {
		if pc == nil {
			pc = NewPeekConn(nc)
		}
		if proto, _ := pc.Sniff(); proto != ProtoH2 {
			nc.Close()
			return
		}
		// The goroutine is the reader until the connection parks.
		a.srv.Serve(pc, func() {})
	}()
}

func (testArrivals) Opened(net.Conn)     {}
func (testArrivals) Closed(net.Conn)     {}
func (testArrivals) Dropped(nc net.Conn) { nc.Close() }

// bufferedBytes is what the proxy holds in DATA buffers, downstream and
// upstream.
func (p *testProxy) bufferedBytes() int64 {
	n := p.srv.Stats().BufferedBytes
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range p.pools {
		n += u.H2.Stats().BufferedBytes
	}
	return n
}

// okHandler answers 200 with a small body. h2spec's 6.9.2/2 needs at
// least 5 bytes of response body, or it skips itself.
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	w.Write([]byte("ok from the backend\n"))
})

// selfSigned returns a throwaway certificate for 127.0.0.1.
func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sightline-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
