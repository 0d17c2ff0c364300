package h2

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http2"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/stats"
)

// statsServer serves p's routes with a second Server whose listener
// stats (http.test.*) live in a real store, on its own loopback socket,
// as startProxy serves p.srv. Each call has fresh stats, so a subtest can
// check exact values.
func statsServer(t testing.TB, p *testProxy, o proxyOpts) (*stats.HTTP, string) {
	t.Helper()
	store, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := store.HTTP("test")
	srv := NewServer(ServerOptions{Routes: p.srv.routes.Load(), TLS: o.tls, Limits: o.limits, Stats: st, Log: zerolog.Nop()})
	return st, serve(t, srv, o.tls)
}

// dialRawTLS is dialRaw over TLS with ALPN h2, without the preface.
func dialRawTLS(t testing.TB, addr string) *rawPeer {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ConnectionState().NegotiatedProtocol; got != "h2" {
		t.Fatalf("ALPN chose %q, want h2", got)
	}
	return newRawPeer(t, c)
}

// wantCounts checks downstream_cx_protocol_error and downstream_rq_tx_reset.
// It is called once the client has seen the GOAWAY or RST_STREAM (or the
// close) the engine counted before writing it.
func wantCounts(t testing.TB, st *stats.HTTP, protocolErrors, txResets int64) {
	t.Helper()
	if got := st.DownstreamCxProtocolError.Value(); got != protocolErrors {
		t.Errorf("downstream_cx_protocol_error = %d, want %d", got, protocolErrors)
	}
	if got := st.DownstreamRqTxReset.Value(); got != txResets {
		t.Errorf("downstream_rq_tx_reset = %d, want %d", got, txResets)
	}
}

// TestDownstreamProtocolErrorTLS: a TLS client whose ALPN chose h2 but
// that does not send the HTTP/2 preface is closed without a frame and
// counted as a protocol error; one that leaves without a word is not.
func TestDownstreamProtocolErrorTLS(t *testing.T) {
	p := okProxy(t, okHandler, proxyOpts{})
	tests := []struct {
		name string
		give func(c *rawPeer)
		want int64
	}{
		{"HTTP/1.1 request instead of the preface", func(c *rawPeer) {
			c.write([]byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"))
		}, 1},
		{"bad preface", func(c *rawPeer) { c.write([]byte("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")) }, 1},
		{"client leaves before the preface", func(c *rawPeer) {
			c.c.(*tls.Conn).CloseWrite()
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, addr := statsServer(t, p, proxyOpts{tls: true})
			c := dialRawTLS(t, addr)
			tt.give(c)
			for f := c.next(); f != nil; f = c.next() {
				if _, ok := f.(*http2.GoAwayFrame); !ok {
					t.Fatalf("got %v, want GOAWAY or the connection closed", f.Header())
				}
			}
			wantCounts(t, st, tt.want, 0)
		})
	}
}

// TestDownstreamRqTxResetDrain: a request whose response is complete but
// whose body goes on is reset with NO_ERROR once drainLimit bytes were
// dropped; the request was answered, so the reset is not counted.
func TestDownstreamRqTxResetDrain(t *testing.T) {
	p := okProxy(t, okHandler, proxyOpts{})
	st, addr := statsServer(t, p, proxyOpts{})
	c := dialRaw(t, addr, true)
	c.post(1)
	if status, _, _ := c.response(1); status != "200" {
		t.Fatalf("status %q, want 200", status)
	}
	chunk := make([]byte, maxFrameSize)
	for range drainLimit/maxFrameSize + 1 {
		if err := c.fr.WriteData(1, false, chunk); err != nil {
			t.Fatal(err)
		}
	}
	c.wantRST(1, http2.ErrCodeNo)
	wantCounts(t, st, 0, 0)
}
