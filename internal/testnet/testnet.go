// Package testnet has the loopback peers the tests of several packages
// need: a port nothing listens on, a listener that accepts and never says
// a word, one whose accept queue is full, net/http backends (HTTP/1.1,
// h2c or both) and the handlers several tests serve, and a self-signed
// certificate for 127.0.0.1.
package testnet

import (
	"net"
	"sync"
	"testing"
)

// ClosedPort is a loopback address nothing listens on: a dial gets
// "connection refused" at once.
func ClosedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// MuteListener accepts connections and never writes to them: an h2c
// upstream that never sends its SETTINGS, a TLS one that never answers
// the handshake. accepted receives each connection (up to 16 waiting);
// all are closed when the test ends.
func MuteListener(t testing.TB) (addr string, accepted <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan net.Conn, 16)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			select {
			case ch <- c:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String(), ch
}
