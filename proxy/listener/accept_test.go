package listener

import (
	"net"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/sightline-proxy/sightline/internal/testnet"
)

// countingListener counts the connections accepted from it.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// TestAcceptStormLetsOthersRun starts a listener on a socket whose
// backlog holds hundreds of connections, with the process on one P, and
// checks that a goroutine whose socket the network readied meanwhile (a
// client of the proxy) ran before the accept loop had taken them all.
// An accept loop that only sleeps a microsecond between its turns is run
// again before the network is polled, and took the whole backlog first.
func TestAcceptStormLetsOthersRun(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	raw, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &countingListener{Listener: raw}
	const storm = 400
	clients := make([]net.Conn, 0, storm)
	defer func() { // before the listener's shutdown, which waits for them
		for _, c := range clients {
			c.Close()
		}
	}()
	for range storm {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}

	// Another client, already connected, whose bytes arrive as the storm
	// is accepted.
	ranAt := testnet.ReadableWhileBusy(t, ln.n.Load)
	startListenerOn(t, ln, false, Options{}, "h1", "h2")
	if at := <-ranAt; at > storm/2 {
		t.Errorf("the other client's goroutine ran after %d of %d connections were accepted, want within the first %d", at, storm, storm/2)
	}
}
