package listener

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sightline-proxy/sightline/stats"
)

// flushBytes is how many bytes a connection counts before it adds them to
// the listener's counters.
const flushBytes = 64 << 10

// sweepInterval is how often the counters get the bytes of every open
// connection; a variable for the tests.
var sweepInterval = time.Second

// countConn is an accepted socket that counts its bytes.
//
// downstream_cx_rx_bytes_total and _tx_bytes_total are the bytes read
// from and written to the TCP socket of every connection the
// listener hands to a codec (the ones in downstream_cx_total), as Envoy
// counts them: on the wire, so for TLS they include the handshake, record
// headers and padding, not just the plaintext. The bytes the listener
// read to sniff the protocol count; those of a connection it closes
// unserved (an unknown protocol, a failed TLS handshake) do not.
//
// A read or write adds to its connection's own counters, not to a counter
// every connection shares; the listener's counters get the sum in
// batches: once flushBytes have piled up, every sweepInterval (so
// that a long-lived, quiet gRPC stream shows its bytes too) and when the
// connection closes.
type countConn struct {
	net.Conn
	m      *byteMeter
	rx, tx atomic.Int64 // not yet added to the shared counters
	closed atomic.Bool
	// onClose, when set, runs once, at the first Close: the connection
	// gives its place back under the connection limits.
	onClose func()
}

// Unwrap is the socket: a countConn holds no bytes of its own, so the
// HTTP/2 engine may wait for the socket's readiness without it (h2.Unwrapper).
func (c *countConn) Unwrap() net.Conn { return c.Conn }

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.CountRead(n)
	return n, err
}

// CountRead counts n bytes read from the socket, through Read or by the
// HTTP/2 engine on the socket itself (h2.ReadCounter).
func (c *countConn) CountRead(n int) {
	if n > 0 && (c.rx.Add(int64(n)) >= flushBytes || c.closed.Load()) {
		c.m.rx.Inc(c.rx.Swap(0))
	}
}

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.CountWritten(n)
	return n, err
}

// CountWritten counts n bytes written to the socket, through Write or by
// the HTTP/2 engine on the socket itself (h2.WriteCounter).
func (c *countConn) CountWritten(n int) {
	if n > 0 && (c.tx.Add(int64(n)) >= flushBytes || c.closed.Load()) {
		c.m.tx.Inc(c.tx.Swap(0))
	}
}

// CloseWrite half-closes the socket, so that the layers above (PeekConn,
// net/http, the HTTP/2 engine) can still end with a FIN.
func (c *countConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// Close closes the socket and adds what the connection has not yet. A
// read or write that returns after it adds its own bytes at once.
func (c *countConn) Close() error {
	err := c.Conn.Close()
	if !c.closed.Swap(true) {
		c.m.forget(c)
		if c.onClose != nil {
			c.onClose()
		}
	}
	c.flush()
	return err
}

func (c *countConn) flush() {
	if n := c.rx.Swap(0); n != 0 {
		c.m.rx.Inc(n)
	}
	if n := c.tx.Swap(0); n != 0 {
		c.m.tx.Inc(n)
	}
}

// discard drops the bytes of a connection the listener closes without
// handing it to a codec; it is not counted anywhere else either.
func (c *countConn) discard() {
	c.rx.Store(0)
	c.tx.Store(0)
}

// byteMeter is a listener's byte counters and its open connections, which
// sweep flushes periodically.
type byteMeter struct {
	rx, tx *stats.Counter

	mu    sync.Mutex
	conns map[*countConn]struct{}
	stop  chan struct{}
	done  chan struct{}
}

func newByteMeter(st *stats.HTTP) *byteMeter {
	return &byteMeter{rx: st.DownstreamCxRxBytes, tx: st.DownstreamCxTxBytes, conns: make(map[*countConn]struct{})}
}

// wrap returns c counting its bytes; track starts the periodic flushes
// once the connection is handed to a codec.
func (m *byteMeter) wrap(c net.Conn) *countConn { return &countConn{Conn: c, m: m} }

func (m *byteMeter) track(c *countConn) {
	m.mu.Lock()
	if !c.closed.Load() {
		m.conns[c] = struct{}{}
	}
	m.mu.Unlock()
}

func (m *byteMeter) forget(c *countConn) {
	m.mu.Lock()
	delete(m.conns, c)
	m.mu.Unlock()
}

// start runs the sweeper until stopSweeping.
func (m *byteMeter) start() {
	m.stop, m.done = make(chan struct{}), make(chan struct{})
	t := time.NewTicker(sweepInterval)
	go func() {
		defer close(m.done)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
				m.sweep()
			}
		}
	}()
}

// stopSweeping ends the sweeper and flushes once more; connections still
// open flush when they close.
func (m *byteMeter) stopSweeping() {
	if m.stop == nil {
		return
	}
	close(m.stop)
	<-m.done
	m.stop = nil
	m.sweep()
}

func (m *byteMeter) sweep() {
	m.mu.Lock()
	for c := range m.conns {
		c.flush()
	}
	m.mu.Unlock()
}
