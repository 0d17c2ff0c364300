package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/statstest"
	"github.com/sightline-proxy/sightline/internal/testnet"
	"github.com/sightline-proxy/sightline/proxy/breaker"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/stats"
)

// counted is a pool whose connections count in cluster "c" of a real
// stats.Store.
type counted struct {
	store *stats.Store
	cs    *stats.Cluster
}

func newCounted(t testing.TB) *counted {
	t.Helper()
	s, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &counted{store: s, cs: s.Cluster("c")}
}

// pool returns a pool for addr counting in c's stats, closed when the
// test ends.
func (c *counted) pool(t testing.TB, addr string, opts Options) *Pool {
	opts.Stats = c.cs
	p := New(addr, opts)
	t.Cleanup(func() { p.Close() })
	return p
}

// cxCounts are the stats of cluster "c".
type cxCounts = statstest.Connections

// wait polls the stats until they are want or 5s pass, calling each (when
// set) before every look.
func (c *counted) wait(t testing.TB, want cxCounts, each func()) {
	t.Helper()
	statstest.WaitConnections(t, c.store, "c", want, each)
}

// startBackend serves HTTP/1.1 on loopback.
func startBackend(t *testing.T) (string, *http.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	srv := &http.Server{Protocols: protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), srv
}

// roundTrip sends a GET and reads the whole response.
func roundTrip(p *Pool, scheme, addr string) (string, error) {
	req, _ := http.NewRequestWithContext(context.Background(), "GET", scheme+"://"+addr+"/", nil)
	resp, err := p.RoundTripH1(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestPoolConnectionStats: what the upstream_cx_* stats show after each
// way a connection of the HTTP/1.1 pool can go, counted as Envoy counts
// them: every attempt in cx_total and cx_http1_total, a failed connect once in connect_fail (plus
// connect_timeout for a timeout) and in destroy, and every end as local
// (the proxy closed it) or remote (the peer did).
func TestPoolConnectionStats(t *testing.T) {
	mute := func(t *testing.T) string { addr, _ := testnet.MuteListener(t); return addr }
	tests := []struct {
		name string
		// tls: the connect timeout case needs a handshake to time out
		// for HTTP/1.1, whose connect is over once TCP is.
		tls bool
		// start returns the upstream's address.
		start func(t *testing.T) (string, *http.Server)
		// after runs once the request is done; with byProxy, it closes
		// the connection from the proxy's side.
		after   func(p *Pool, srv *http.Server)
		byProxy bool
		wantErr bool
		want    cxCounts // without the protocol's total
	}{
		{
			name:    "used, then closed by the proxy",
			start:   startBackend,
			after:   func(p *Pool, _ *http.Server) { p.Close() },
			byProxy: true,
			want:    cxCounts{Total: 1, Destroy: 1, DestroyLocal: 1, ConnectMs: 1, LengthMs: 1},
		},
		{
			name:    "nothing listens",
			start:   func(t *testing.T) (string, *http.Server) { return testnet.ClosedPort(t), nil },
			wantErr: true,
			want:    cxCounts{Total: 1, ConnectFail: 1, Destroy: 1, DestroyRemote: 1, LengthMs: 1},
		},
		{
			name:    "connect timeout: no TLS handshake",
			tls:     true,
			start:   func(t *testing.T) (string, *http.Server) { return mute(t), nil },
			wantErr: true,
			want:    cxCounts{Total: 1, ConnectFail: 1, ConnectTimeout: 1, Destroy: 1, DestroyLocal: 1, LengthMs: 1},
		},
		{
			name:  "the peer closes it",
			start: startBackend,
			after: func(_ *Pool, srv *http.Server) { srv.Close() },
			want:  cxCounts{Total: 1, Destroy: 1, DestroyRemote: 1, ConnectMs: 1, LengthMs: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCounted(t)
			addr, srv := tt.start(t)
			opts := Options{ConnectTimeout: 5 * time.Second}
			if tt.want.ConnectTimeout != 0 {
				opts.ConnectTimeout = 100 * time.Millisecond
			}
			scheme := "http"
			if tt.tls {
				opts.TLS, scheme = &tls.Config{InsecureSkipVerify: true}, "https"
			}
			p := c.pool(t, addr, opts)
			_, err := roundTrip(p, scheme, addr)
			switch {
			case tt.wantErr && !errors.Is(err, ErrConnect):
				t.Errorf("err = %v, want ErrConnect", err)
			case !tt.wantErr && err != nil:
				t.Fatal(err)
			}
			if tt.after != nil {
				tt.after(p, srv)
			}
			want := tt.want
			want.HTTP1 = 1
			// A connection goes back to the idle pool a moment after
			// its response: close it once it is there.
			c.wait(t, want, func() {
				if tt.byProxy {
					p.transport().CloseIdleConnections()
				}
			})
		})
	}
}

// TestPoolTLSConnectionStats: over TLS the pool does the handshake itself
// (so that a failed one is a connect failure) and offers http/1.1 by ALPN.
func TestPoolTLSConnectionStats(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto+" "+r.TLS.NegotiatedProtocol)
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	c := newCounted(t)
	p := c.pool(t, addr, Options{ConnectTimeout: time.Second, TLS: &tls.Config{InsecureSkipVerify: true}})
	if body, err := roundTrip(p, "https", addr); err != nil || body != "HTTP/1.1 http/1.1" {
		t.Errorf("got %q, %v; want %q", body, err, "HTTP/1.1 http/1.1")
	}
	c.wait(t, cxCounts{Total: 1, HTTP1: 1, Active: 1, ConnectMs: 1}, nil)
}

// TestPoolMaxConnectionPools: with max_connection_pools 1, a second pool
// of the cluster cannot dial while the first holds a connection: its
// request fails with ErrOverflow (and ErrConnect) without a connection
// attempt, and cx_pool_open is 1 until the first pool's connection closes.
func TestPoolMaxConnectionPools(t *testing.T) {
	c := newCounted(t)
	b := breaker.New(config.CircuitBreakers{MaxConnectionPools: 1}, c.cs)
	addrA, _ := startBackend(t)
	addrB, _ := startBackend(t)
	pa := c.pool(t, addrA, Options{Breakers: b})
	pb := c.pool(t, addrB, Options{Breakers: b})
	if _, err := roundTrip(pa, "http", addrA); err != nil {
		t.Fatal(err)
	}
	_, err := roundTrip(pb, "http", addrB)
	if !errors.Is(err, ErrOverflow) || !errors.Is(err, ErrConnect) {
		t.Errorf("second pool: err = %v, want ErrOverflow and ErrConnect", err)
	}
	c.wait(t, cxCounts{Total: 1, HTTP1: 1, Active: 1, ConnectMs: 1, PoolsOpen: 1}, nil)
	pa.Close()
	c.wait(t, cxCounts{Total: 1, HTTP1: 1, Destroy: 1, DestroyLocal: 1, ConnectMs: 1, LengthMs: 1}, pa.transport().CloseIdleConnections)
	if _, err := roundTrip(pb, "http", addrB); err != nil {
		t.Errorf("second pool once the first has no connection: %v", err)
	}
}
