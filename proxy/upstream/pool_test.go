package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"
)

// startH2C serves prior-knowledge HTTP/2 on loopback with a small
// SETTINGS_MAX_CONCURRENT_STREAMS; handler blocks until release is closed.
func startH2C(t *testing.T, maxStreams int, release <-chan struct{}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Protocols: protos,
		HTTP2:     &http.HTTP2Config{MaxConcurrentStreams: maxStreams},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/warm" {
				<-release
			}
			io.WriteString(w, "ok")
		}),
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func get(ctx context.Context, addr string) *http.Request {
	return getPath(ctx, addr, "/")
}

func getPath(ctx context.Context, addr, path string) *http.Request {
	req := &http.Request{Method: "GET", URL: &url.URL{Scheme: "http", Host: addr, Path: path}, Header: http.Header{}, Host: addr}
	return req.WithContext(ctx)
}

// The pool must honour the peer's advertised stream limit and open another
// connection when every one is full, rather than queue or guess.
func TestPoolOpensConnectionsAtPeerStreamLimit(t *testing.T) {
	addr := startH2C(t, 2, make(chan struct{}))
	p := New(addr, Options{ConnectTimeout: time.Second})
	defer p.Close()
	// Let the first connection learn the peer's SETTINGS before the burst:
	// until they arrive a client must assume a default limit.
	resp, err := p.RoundTripH2(getPath(context.Background(), addr, "/warm"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	started := make(chan struct{}, 6)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started <- struct{}{}
			resp, err := p.RoundTripH2(get(ctx, addr))
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	for range 6 {
		<-started
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Conns() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := p.Conns(); got != 3 {
		t.Errorf("6 concurrent streams at a limit of 2 per connection used %d connections, want 3", got)
	}
	cancel()
	wg.Wait()
}

func TestPoolConnectFailureIsErrConnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now

	p := New(addr, Options{ConnectTimeout: time.Second})
	defer p.Close()
	if _, err := p.RoundTripH2(get(context.Background(), addr)); !errors.Is(err, ErrConnect) {
		t.Errorf("h2 to a closed port: err = %v, want ErrConnect", err)
	}
	if _, err := p.RoundTripH1(get(context.Background(), addr)); !errors.Is(err, ErrConnect) {
		t.Errorf("h1 to a closed port: err = %v, want ErrConnect", err)
	}
}

func TestPoolRefusesAfterClose(t *testing.T) {
	addr := startH2C(t, 10, make(chan struct{}))
	p := New(addr, Options{ConnectTimeout: time.Second})
	p.Close()
	p.Close() // idempotent
	if _, err := p.RoundTripH2(get(context.Background(), addr)); !errors.Is(err, ErrConnect) {
		t.Errorf("after Close: err = %v, want ErrConnect", err)
	}
}
