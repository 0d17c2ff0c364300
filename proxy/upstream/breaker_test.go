package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/sightline-proxy/sightline/proxy/breaker"
	"github.com/sightline-proxy/sightline/proxy/config"
)

// TestPoolMaxConnections: the cluster's max_connections bounds HTTP/1.1
// connections too. A host's first connection is always allowed; past the
// limit a request that finds no idle connection is refused with
// ErrOverflow (UO) instead of dialling.
func TestPoolMaxConnections(t *testing.T) {
	c := newCounted(t)
	b := breaker.New(config.CircuitBreakers{MaxConnections: 1}, c.cs)
	release := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			<-release
		}
		io.WriteString(w, "ok")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()
	p := c.pool(t, addr, Options{Breakers: b})

	get := func(path string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://"+addr+path, nil)
		return p.RoundTripH1(req)
	}
	held, err := get("/hold") // the first connection, held busy
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get("/"); !errors.Is(err, ErrOverflow) || !errors.Is(err, ErrConnect) {
		t.Fatalf("a second connection past max_connections 1: %v, want ErrOverflow", err)
	}
	close(release)
	io.Copy(io.Discard, held.Body)
	held.Body.Close()
	resp, err := get("/") // the first connection is idle again: reused
	if err != nil {
		t.Fatalf("a request once the connection is free: %v", err)
	}
	io.Copy(io.Discard, resp.Body) // read whole, the connection stays open
	resp.Body.Close()
	if n := b.Snapshot().Connections.Active; n != 1 {
		t.Errorf("max_connections claims %d, want the one open connection", n)
	}
}
