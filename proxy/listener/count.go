package listener

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sightline-proxy/sightline/internal/shrink"
	"github.com/sightline-proxy/sightline/internal/tick"
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
// connection closes. The sweep flushes only the connections that counted
// bytes since the last one (the dirty list): with 19,000 idle connections
// a sweep over all of them held the process's only P for 1 to 2 ms each
// second, and a busy client's bytes waited for it.
type countConn struct {
	net.Conn
	m      *byteMeter
	rx, tx atomic.Int64 // not yet added to the shared counters
	closed atomic.Bool
	// tracked: handed to a codec, so its bytes count; queued: in the
	// meter's dirty list, for the next sweep.
	tracked, queued atomic.Bool
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
func (c *countConn) CountRead(n int) { c.count(&c.rx, c.m.rx, n) }

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.CountWritten(n)
	return n, err
}

// CountWritten counts n bytes written to the socket, through Write or by
// the HTTP/2 engine on the socket itself (h2.WriteCounter).
func (c *countConn) CountWritten(n int) { c.count(&c.tx, c.m.tx, n) }

// count adds n bytes to pending, total's share not yet added: it adds
// them at once past flushBytes or once closed, and otherwise, for the
// first bytes since the last flush, queues the connection for the sweep.
func (c *countConn) count(pending *atomic.Int64, total *stats.Counter, n int) {
	if n <= 0 {
		return
	}
	switch v := pending.Add(int64(n)); {
	case v >= flushBytes || c.closed.Load():
		total.Inc(pending.Swap(0))
	case v == int64(n) && c.tracked.Load():
		c.m.queue(c)
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

// byteMeter is a listener's byte counters and the connections that
// counted bytes since its last sweep.
type byteMeter struct {
	rx, tx *stats.Counter

	mu    sync.Mutex
	dirty []*countConn
	// flushing is the sweep's: the dirty list it took, emptied, swapped
	// back in at the next sweep.
	flushing []*countConn
	stop     chan struct{}
	done     chan struct{}
}

func newByteMeter(st *stats.HTTP) *byteMeter {
	return &byteMeter{rx: st.DownstreamCxRxBytes, tx: st.DownstreamCxTxBytes}
}

// wrap returns c counting its bytes; track starts the periodic flushes
// once the connection is handed to a codec.
func (m *byteMeter) wrap(c net.Conn) *countConn { return &countConn{Conn: c, m: m} }

func (m *byteMeter) track(c *countConn) {
	c.tracked.Store(true)
	if c.rx.Load() != 0 || c.tx.Load() != 0 {
		m.queue(c) // what the listener read to sniff the protocol
	}
}

// queue puts c in the dirty list, unless it is there.
func (m *byteMeter) queue(c *countConn) {
	if c.queued.CompareAndSwap(false, true) {
		m.mu.Lock()
		m.dirty = append(m.dirty, c)
		m.mu.Unlock()
	}
}

// start runs the sweeper until stopSweeping.
func (m *byteMeter) start() {
	m.stop, m.done = make(chan struct{}), make(chan struct{})
	t := tick.NewTicker(sweepInterval)
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

// sweep flushes the connections in the dirty list. A connection is
// taken off the list before its flush, so bytes it counts after the
// flush's swap queue it again.
func (m *byteMeter) sweep() {
	m.mu.Lock()
	m.dirty, m.flushing = m.flushing, m.dirty
	m.mu.Unlock()
	for i, c := range m.flushing {
		c.queued.Store(false)
		c.flush()
		m.flushing[i] = nil
	}
	if shrink.Slack(m.flushing) {
		m.flushing = nil
	} else {
		m.flushing = m.flushing[:0]
	}
}
