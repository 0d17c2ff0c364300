package upstream

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

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
	opts.ConnStats = c.cs.Connections()
	p := New(addr, opts)
	t.Cleanup(func() { p.Close() })
	return p
}

// cxCounts are the cluster's upstream_cx_* stats; the histograms are
// their sample counts.
type cxCounts struct {
	Total, HTTP1, HTTP2                  int64
	ConnectFail, ConnectTimeout          int64
	Destroy, DestroyLocal, DestroyRemote int64
	Active                               int64
	ConnectMs, LengthMs                  uint64
	PoolsOpen                            int64
}

// read reads the stats from the store's /stats JSON, as an operator would.
func (c *counted) read(t testing.TB) cxCounts {
	t.Helper()
	rec := httptest.NewRecorder()
	c.store.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/stats?format=json&filter="+url.QueryEscape(`^cluster\.c\.`), nil))
	var out struct {
		Stats []struct {
			Name  string `json:"name"`
			Value int64  `json:"value"`
			Count uint64 `json:"count"`
		} `json:"stats"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("/stats: %v", err)
	}
	var n cxCounts
	for _, st := range out.Stats {
		v := st.Value
		switch strings.TrimPrefix(st.Name, "cluster.c.") {
		case "upstream_cx_total":
			n.Total = v
		case "upstream_cx_http1_total":
			n.HTTP1 = v
		case "upstream_cx_http2_total":
			n.HTTP2 = v
		case "upstream_cx_connect_fail":
			n.ConnectFail = v
		case "upstream_cx_connect_timeout":
			n.ConnectTimeout = v
		case "upstream_cx_destroy":
			n.Destroy = v
		case "upstream_cx_destroy_local":
			n.DestroyLocal = v
		case "upstream_cx_destroy_remote":
			n.DestroyRemote = v
		case "upstream_cx_active":
			n.Active = v
		case "upstream_cx_connect_ms":
			n.ConnectMs = st.Count
		case "upstream_cx_length_ms":
			n.LengthMs = st.Count
		case "circuit_breakers.default.cx_pool_open":
			n.PoolsOpen = v
		}
	}
	return n
}

// wait polls the stats until they are want or 5s pass, calling each (when
// set) before every look.
func (c *counted) wait(t testing.TB, want cxCounts, each func()) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if each != nil {
			each()
		}
		got := c.read(t)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats:\n got %+v\nwant %+v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startBackend serves HTTP/1.1 and h2c on loopback.
func startBackend(t *testing.T) (string, *http.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), srv
}

// roundTrip sends a GET over HTTP/2 or HTTP/1.1 and reads the whole
// response.
func roundTrip(p *Pool, h2 bool, scheme, addr string) (string, error) {
	req := getPath(context.Background(), addr, "/")
	req.URL.Scheme = scheme
	rt := p.RoundTripH1
	if h2 {
		rt = p.RoundTripH2
	}
	resp, err := rt(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestPoolConnectionStats: what the upstream_cx_* stats show after each
// way a connection of the net/http pool can go, for both protocols,
// counted as Envoy counts them: every attempt in cx_total and the
// protocol's total, a failed connect once in connect_fail (plus
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
			name:    "connect timeout: no SETTINGS, no TLS handshake",
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
	for _, proto := range []string{"http1", "h2c"} {
		h2 := proto == "h2c"
		for _, tt := range tests {
			t.Run(proto+"/"+tt.name, func(t *testing.T) {
				c := newCounted(t)
				addr, srv := tt.start(t)
				opts := Options{ConnectTimeout: 5 * time.Second}
				if tt.want.ConnectTimeout != 0 {
					opts.ConnectTimeout = 100 * time.Millisecond
				}
				scheme := "http"
				if tt.tls && !h2 {
					opts.TLS, scheme = &tls.Config{InsecureSkipVerify: true}, "https"
				}
				p := c.pool(t, addr, opts)
				_, err := roundTrip(p, h2, scheme, addr)
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
				if h2 {
					want.HTTP2 = 1
				} else {
					want.HTTP1 = 1
				}
				// An HTTP/1.1 connection goes back to the idle pool a
				// moment after its response: close it once it is there.
				c.wait(t, want, func() {
					if tt.byProxy {
						p.h1.CloseIdleConnections()
					}
				})
			})
		}
	}
}

// TestPoolTLSConnectionStats: over TLS the pool does the handshake itself
// (so that a failed one is a connect failure), and still negotiates h2 or
// http/1.1 with ALPN.
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
	for _, tt := range []struct {
		h2   bool
		want string
	}{{true, "HTTP/2.0 h2"}, {false, "HTTP/1.1 http/1.1"}} {
		body, err := roundTrip(p, tt.h2, "https", addr)
		if err != nil || body != tt.want {
			t.Errorf("h2 %t: got %q, %v; want %q", tt.h2, body, err, tt.want)
		}
	}
	c.wait(t, cxCounts{Total: 2, HTTP1: 1, HTTP2: 1, Active: 2, ConnectMs: 2}, nil)
}

// TestPoolOneDialForManyWaiters: HTTP/2 requests that find no connection
// wait for one dial, made outside the pool's lock; when it fails, that is
// one connect failure however many requests waited, and the pool can be
// closed while it is under way.
func TestPoolOneDialForManyWaiters(t *testing.T) {
	addr, accepted := testnet.MuteListener(t)
	c := newCounted(t)
	p := c.pool(t, addr, Options{ConnectTimeout: 10 * time.Second})
	const n = 5
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := roundTrip(p, true, "http", addr)
			errs <- err
		}()
	}
	conn := <-accepted
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		d := p.dialing
		p.mu.Unlock()
		if d != nil && d.waiting.Load() == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the requests are not all waiting for the dial")
		}
		time.Sleep(time.Millisecond)
	}
	// The dial holds no lock: the pool answers, and closes, meanwhile.
	if p.Conns() != 0 {
		t.Errorf("Conns() = %d while dialling, want 0", p.Conns())
	}
	p.Close()
	if got := c.read(t); got.Destroy != 0 {
		t.Fatalf("the dial ended before the upstream closed: %+v", got)
	}
	conn.Close() // the upstream gives up before its SETTINGS
	for range n {
		if err := <-errs; !errors.Is(err, ErrConnect) {
			t.Errorf("err = %v, want ErrConnect", err)
		}
	}
	c.wait(t, cxCounts{Total: 1, HTTP2: 1, ConnectFail: 1, Destroy: 1, DestroyRemote: 1, LengthMs: 1}, nil)
	select {
	case <-accepted:
		t.Error("a second connection was dialled")
	default:
	}
}

// TestPoolMaxConnectionPools: with max_connection_pools 1, a second pool
// of the cluster cannot dial while the first holds a connection: its
// request fails with ErrOverflow (and ErrConnect) without a connection
// attempt, and cx_pool_open is 1 until the first pool's connection closes.
func TestPoolMaxConnectionPools(t *testing.T) {
	c := newCounted(t)
	b := breaker.New(config.CircuitBreakers{MaxConnectionPools: 1}, c.cs.CircuitBreakers(), nil)
	addrA, _ := startBackend(t)
	addrB, _ := startBackend(t)
	pa := c.pool(t, addrA, Options{Breakers: b})
	pb := c.pool(t, addrB, Options{Breakers: b})
	if _, err := roundTrip(pa, false, "http", addrA); err != nil {
		t.Fatal(err)
	}
	_, err := roundTrip(pb, false, "http", addrB)
	if !errors.Is(err, ErrOverflow) || !errors.Is(err, ErrConnect) {
		t.Errorf("second pool: err = %v, want ErrOverflow and ErrConnect", err)
	}
	c.wait(t, cxCounts{Total: 1, HTTP1: 1, Active: 1, ConnectMs: 1, PoolsOpen: 1}, nil)
	pa.Close()
	c.wait(t, cxCounts{Total: 1, HTTP1: 1, Destroy: 1, DestroyLocal: 1, ConnectMs: 1, LengthMs: 1}, pa.h1.CloseIdleConnections)
	if _, err := roundTrip(pb, false, "http", addrB); err != nil {
		t.Errorf("second pool once the first has no connection: %v", err)
	}
}

// rawH2 is a hand-driven h2c upstream: it answers every request with 200
// "ok" and answers PINGs only when told to.
type rawH2 struct {
	addr     string
	ackPings bool
	pings    atomic.Int32
	ended    chan struct{} // closed when its (one) connection ends
}

func startRawH2(t testing.TB, ackPings bool) *rawH2 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &rawH2{addr: ln.Addr().String(), ackPings: ackPings, ended: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer close(r.ended)
		defer c.Close()
		r.serve(c)
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return r
}

func (r *rawH2) serve(c net.Conn) {
	pre := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, pre); err != nil {
		return
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var buf strings.Builder
	enc := hpack.NewEncoder(&buf)
	if fr.WriteSettings() != nil {
		return
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				r.pings.Add(1)
				if r.ackPings {
					fr.WritePing(true, f.Data)
				}
			}
		case *http2.MetaHeadersFrame:
			buf.Reset()
			enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: []byte(buf.String()), EndHeaders: true})
			fr.WriteData(f.StreamID, true, []byte("ok"))
		}
	}
}

// TestPoolKeepalive: an HTTP/2 connection that reads nothing for
// SendPingTimeout sends a PING; a peer that ACKs keeps it, one that does
// not has it closed by the proxy after PingTimeout (cx_destroy_local).
func TestPoolKeepalive(t *testing.T) {
	opts := Options{ConnectTimeout: 5 * time.Second, SendPingTimeout: 20 * time.Millisecond, PingTimeout: 50 * time.Millisecond}
	for _, ack := range []bool{true, false} {
		name := map[bool]string{true: "the peer acks", false: "the peer does not ack"}[ack]
		t.Run(name, func(t *testing.T) {
			r := startRawH2(t, ack)
			c := newCounted(t)
			opts := opts
			if ack {
				opts.PingTimeout = 10 * time.Second // however slow the machine, the ACK comes first
			}
			p := c.pool(t, r.addr, opts)
			if body, err := roundTrip(p, true, "http", r.addr); err != nil || body != "ok" {
				t.Fatalf("got %q, %v", body, err)
			}
			if !ack {
				c.wait(t, cxCounts{Total: 1, HTTP2: 1, Destroy: 1, DestroyLocal: 1, ConnectMs: 1, LengthMs: 1}, nil)
				<-r.ended
				if r.pings.Load() == 0 {
					t.Error("the connection closed without a PING")
				}
				return
			}
			deadline := time.Now().Add(5 * time.Second)
			for r.pings.Load() < 3 {
				if time.Now().After(deadline) {
					t.Fatalf("upstream got %d PINGs in 5s from an idle connection, want 3", r.pings.Load())
				}
				time.Sleep(5 * time.Millisecond)
			}
			if got := c.read(t); got.Destroy != 0 || got.Active != 1 || p.Conns() != 1 {
				t.Errorf("after answered PINGs: %+v, %d conns; want the connection kept", got, p.Conns())
			}
		})
	}
}
