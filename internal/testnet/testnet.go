// Package testnet has the loopback peers the tests of several packages
// need: a port nothing listens on, a listener that accepts and never says
// a word, one whose accept queue is full, one that hands each connection
// to the test, a client goroutine for tests of fairness, net/http
// backends (HTTP/1.1, h2c or both) and the handlers several tests serve
// (a WebSocket echo among them), and self-signed certificates for
// 127.0.0.1.
package testnet

import (
	"net"
	"sync"
	"testing"
	"time"
)

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

// ServeConns accepts connections on its own loopback socket until the
// test ends, and returns the address. Each connection is handed to handle
// on a goroutine of its own and closed when handle returns. When the test
// ends the listener is closed and ServeConns waits for every handle to
// return: handle must return once its peer has gone.
func ServeConns(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// ReadableWhileBusy is for tests of fairness: it starts a goroutine that
// waits in the network poller on a loopback socket, as a proxy's client
// connection does, then makes the socket readable. When the goroutine
// runs, it sends what progress returns then (how far the busy loop under
// test had got) on the channel.
func ReadableWhileBusy(t testing.TB, progress func() int64) <-chan int64 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	ran := make(chan int64, 1)
	go func() {
		var buf [1]byte
		if _, err := b.Read(buf[:]); err != nil {
			t.Error(err)
		}
		ran <- progress()
	}()
	time.Sleep(10 * time.Millisecond) // the reader waits in the poller
	if _, err := a.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	return ran
}
