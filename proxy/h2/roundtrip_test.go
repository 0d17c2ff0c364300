package h2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/testnet"
	"github.com/sightline-proxy/sightline/proxy/upstream"
)

// TestPoolRoundTrip: net/http callers (the HTTP/1.1 handler, the mirror)
// reach HTTP/2 upstreams through the engine's pool, with bodies larger
// than every window both ways, trailers, and cancellation.
func TestPoolRoundTrip(t *testing.T) {
	addr := testnet.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			h := sha256.New()
			n, _ := io.Copy(h, r.Body)
			w.Header().Set("Trailer", "X-Sum")
			w.Header().Set("X-Got", fmt.Sprint(n, " ", r.Host, " ", r.URL.RawQuery, " ", r.Header.Get("X-Custom")))
			// A large response too: 3 MiB.
			chunk := bytes.Repeat([]byte("r"), 64<<10)
			for range 48 {
				w.Write(chunk)
			}
			w.Header().Set("X-Sum", fmt.Sprintf("%x", h.Sum(nil)))
		case "/hang":
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	}), testnet.HTTP1|testnet.H2C)
	pool := NewPool(addr, PoolOptions{})
	t.Cleanup(func() { pool.Close() })

	body := bytes.Repeat([]byte("q"), 5<<20+17)
	req, _ := http.NewRequest("POST", "http://"+addr+"/echo?a=1", bytes.NewReader(body))
	req.Host = "svc.example"
	req.Header.Set("X-Custom", "yes")
	req.Header.Set("Connection", "close") // hop-by-hop: must not go
	resp, err := pool.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	if resp.StatusCode != 200 || len(got) != 48*64<<10 {
		t.Fatalf("status %d, %d bytes", resp.StatusCode, len(got))
	}
	if want := fmt.Sprint(len(body), " svc.example a=1 yes"); resp.Header.Get("X-Got") != want {
		t.Errorf("the upstream saw %q, want %q", resp.Header.Get("X-Got"), want)
	}
	if want := fmt.Sprintf("%x", sha256.Sum256(body)); resp.Trailer.Get("X-Sum") != want {
		t.Errorf("trailer X-Sum %q, want %q (the request body arrived altered)", resp.Trailer.Get("X-Sum"), want)
	}

	// Cancelling the context ends a response that is still streaming.
	ctx, cancel := context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/hang", nil)
	resp, err = pool.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel: %v, want context.Canceled", err)
	}
	resp.Body.Close()
}

func TestPoolRoundTripConnectFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	pool := NewPool(addr, PoolOptions{ConnectTimeout: time.Second})
	t.Cleanup(func() { pool.Close() })
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	if _, err := pool.RoundTrip(req); !errors.Is(err, upstream.ErrConnect) {
		t.Fatalf("RoundTrip to a closed port: %v, want upstream.ErrConnect", err)
	}
}

func BenchmarkPoolRoundTrip(b *testing.B) {
	addr := testnet.Serve(b, okHandler, testnet.HTTP1|testnet.H2C)
	pool := NewPool(addr, PoolOptions{})
	b.Cleanup(func() { pool.Close() })
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		resp, err := pool.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// TestPoolRoundTripResetMidBody: an upstream that resets its stream after
// part of the body gives the reader an error, never a clean end.
func TestPoolRoundTripResetMidBody(t *testing.T) {
	addr := testnet.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}), testnet.HTTP1|testnet.H2C)
	pool := NewPool(addr, PoolOptions{})
	t.Cleanup(func() { pool.Close() })
	for i := range 200 {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		resp, err := pool.RoundTrip(req)
		if err != nil {
			t.Fatalf("request %d: %v, want the response whose headers came before the reset", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatalf("request %d: read %q and a clean end, want an error", i, b)
		}
	}
}
