package listener

import (
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"

	"github.com/sightline-proxy/sightline/internal/testnet"
)

// TestAcceptStormLetsOthersRun starts a listener on a socket whose
// backlog holds hundreds of connections, with the process on one P, and
// checks that a goroutine whose socket the network readied meanwhile (a
// client of the proxy) ran before the accept loop had taken them all.
// An accept loop that only sleeps a microsecond between its turns is run
// again before the network is polled, and took the whole backlog first.
func TestAcceptStormLetsOthersRun(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Every connection the loop accepts holds its place under the cap
	// until it closes.
	accepted := NewConnLimit(0)
	const storm = 400
	clients := make([]net.Conn, 0, storm)
	defer func() { // before the listener's shutdown, which waits for them
		for _, c := range clients {
			c.Close()
		}
	}()
	for range storm {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}

	// Another client, already connected, whose bytes arrive as the storm
	// is accepted.
	ranAt := testnet.ReadableWhileBusy(t, func() int64 { return int64(accepted.Open()) })
	startListenerOn(t, ln, false, Options{Conns: accepted}, "http1", "h2c")
	if at := <-ranAt; at > storm/2 {
		t.Errorf("the other client's goroutine ran after %d of %d connections were accepted, want within the first %d", at, storm, storm/2)
	}
}

// wrappedListener is a net.Listener that is not a TCP socket's to the
// listener: it accepts through it, not with accept4.
type wrappedListener struct{ net.Listener }

// TestAcceptThroughWrapper: a listener started on a net.Listener that is
// no *net.TCPListener accepts through its Accept and serves as usual.
func TestAcceptThroughWrapper(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := startListenerOn(t, wrappedListener{ln}, false, Options{}, "http1", "h2c")
	if tl.l.raw != nil {
		t.Fatal("the listener accepts with accept4 from a wrapped listener")
	}
	resp, err := http.Get("http://" + tl.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != h1Body {
		t.Errorf("GET through a wrapped listener: %q, %v; want %q", body, err, h1Body)
	}
}
