package listener

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestShutdownServesWhatItAccepted: a connection the listener accepted
// before Shutdown closed the socket, whose request had not arrived yet,
// gets its request answered (with Connection: close) rather than a close
// before any byte: in an upgrade the client's connect succeeded on a
// socket the new process keeps, so nothing tells it to try again.
func TestShutdownServesWhatItAccepted(t *testing.T) {
	lim := NewConnLimit(10)
	tl := startListenerWith(t, false, Options{Conns: lim}, "http1", "h2c")
	c, err := net.Dial("tcp", tl.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	waitOpen(t, lim, 1) // accepted, sniffing: no byte sent yet

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tl.l.Shutdown(ctx) }()
	// The socket is closed once a connect is refused.
	waitFor(t, "the socket to close", func() bool {
		d, err := net.DialTimeout("tcp", tl.addr, time.Second)
		if err != nil {
			return true
		}
		d.Close()
		return false
	})

	if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Errors, not Fatal: Shutdown must end before the cleanup's.
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Errorf("the request sent on a connection accepted before Shutdown: %v, want an answer", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != h1Body || !resp.Close {
			t.Errorf("got %d %q (Connection: close %v), want 200 %q with Connection: close", resp.StatusCode, body, resp.Close, h1Body)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return once the connection was served")
	}
}
