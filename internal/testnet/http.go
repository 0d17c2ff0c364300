package testnet

import (
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Protocols is the set of protocols a server from Serve speaks.
type Protocols uint8

const (
	// HTTP1 is HTTP/1.1 over plaintext.
	HTTP1 Protocols = 1 << iota
	// H2C is HTTP/2 over plaintext with prior knowledge.
	H2C
)

// Serve serves h with net/http, speaking protos, on its own loopback
// socket until the test ends, and returns the address. The server is
// closed, and its Serve has returned, before the test's earlier cleanups
// run; a Serve that fails otherwise fails the test.
func Serve(t testing.TB, h http.Handler, protos Protocols) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := new(http.Protocols)
	p.SetHTTP1(protos&HTTP1 != 0)
	p.SetUnencryptedHTTP2(protos&H2C != 0)
	srv := &http.Server{Handler: h, Protocols: p}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serving on %s: %v", ln.Addr(), err)
		}
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// Drain reads the request body, then answers 200 "ok". A backend that
// answers HTTP/2 before it has read the request resets the stream
// (NO_ERROR) after its response; Drain never does.
var Drain http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Write([]byte("ok"))
})

// Stall is a backend for idle timeouts. On /silent it never answers; on
// /headers it sends its response headers, then nothing; on /trickle it
// answers 200 with a byte every 20 ms for 800 ms, then ends. The silent
// ones return when release is closed or the request is cancelled.
func Stall(release <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/silent":
		case "/headers":
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
		case "/trickle":
			w.WriteHeader(200)
			for range 40 {
				w.Write([]byte("x"))
				w.(http.Flusher).Flush()
				time.Sleep(20 * time.Millisecond)
			}
			return
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
}

// WebSocketEcho accepts WebSocket upgrades, with the response header
// X-Backend: ws, and echoes every message until the client closes; any
// other request gets 404.
var WebSocketEcho http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "websocket only here", http.StatusNotFound)
		return
	}
	var up websocket.Upgrader
	c, err := up.Upgrade(w, r, http.Header{"X-Backend": {"ws"}})
	if err != nil {
		return
	}
	defer c.Close()
	for {
		kind, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		if err := c.WriteMessage(kind, msg); err != nil {
			return
		}
	}
})
