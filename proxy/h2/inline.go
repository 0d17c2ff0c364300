package h2

import (
	"crypto/tls"
	"net"
	"syscall"
)

// Inline writes. A frame that a reader's work queues on a connection
// whose writer is not running is written by that reader itself, just
// before it next reads from its socket, instead of by a writer goroutine
// started for it: the reader of a request's downstream connection writes
// the request to the upstream socket, the upstream reader writes the
// response back, and a call at light load costs no goroutine hand-off
// (each is a futex wake and a trip through the scheduler, more than the
// write itself). What a reader's burst of frames queued on one connection
// goes out in one write, as HAProxy's event loop does: read what is there,
// handle it, write, wait.
//
// An inline write never waits: it is one non-blocking write(2) on the
// socket, and what the socket does not take is kept (conn.over) for a
// writer goroutine, started then, which waits for the socket as usual. A
// pass with much DATA queued, a stopping or failed connection, and a kick
// from any goroutine that is not a reader at work (timers, the HTTP/1.1
// bridge, a mirror) also go to a writer goroutine, so a reader is held up
// by a write for a few microseconds at most. TCP sockets are written
// inline, cleartext or under TLS (through the TLS layer's base, see
// tlsbase.go).
//
// The handoff: kickViaLocked, under the connection's mutex, gives the
// writer role (writerOn) to a reader's flush queue instead of a new
// goroutine, when the connection's own reader or the reader of the peer
// half's connection is handling frames (its queue is open). The reader
// closes its queue and flushes every connection on it before each read of
// its socket, and when its read loop ends; a flush that kicks further
// connections (the flow-control credit a written DATA frame returns to its
// source) puts them on the queue it is draining.

// WriteCounter is a connection wrapper that counts the bytes written
// through it (a listener's byte meter): writes the engine makes on the
// socket below it are reported to it.
type WriteCounter interface {
	CountWritten(n int)
}

// ReadCounter is a connection wrapper that notes the bytes read through
// it (a listener's byte meter, an upstream's read clock): reads the engine
// makes on the socket below it are reported to it.
type ReadCounter interface {
	CountRead(n int)
}

// counters are the wrappers a socket's own reads and writes are reported
// to; either may be nil.
type counters struct {
	r ReadCounter
	w WriteCounter
}

func (cs counters) read(n int) {
	if cs.r != nil {
		cs.r.CountRead(n)
	}
}

func (cs counters) written(n int) {
	if cs.w != nil {
		cs.w.CountWritten(n)
	}
}

// inlineMaxQueued is the most DATA a connection may have queued for a
// pass to be written inline; more goes to a writer goroutine, which keeps
// big transfers off the readers and in parallel with them.
const inlineMaxQueued = 64 << 10

// fqOpen ends the list of an open flush queue; a nil head is a closed one.
var fqOpen conn

// openFlushQueue opens the reader's flush queue, if closed: the reader is
// about to handle what it read. A reader that cannot tell when its socket
// is empty (no rawSock) keeps it closed.
func (c *conn) openFlushQueue() {
	if c.sock != nil {
		c.fq.CompareAndSwap(nil, &fqOpen)
	}
}

// deferFlush puts w on c's flush queue, if c's reader is handling frames,
// and reports whether it did. w's writer role is the caller's to give.
func (c *conn) deferFlush(w *conn) bool {
	for {
		head := c.fq.Load()
		if head == nil {
			return false
		}
		w.nextFlush = head
		if c.fq.CompareAndSwap(head, w) {
			return true
		}
	}
}

// closeIdleQueue closes the reader's flush queue if nothing is on it, and
// reports whether it did: the reader may then wait for its socket.
func (c *conn) closeIdleQueue() bool {
	return c.fq.CompareAndSwap(&fqOpen, nil) || c.fq.Load() == nil
}

// flushDeferred writes for every connection on the reader's flush queue
// and leaves the queue closed. Reader only.
func (c *conn) flushDeferred() {
	for {
		// Take the list but leave the queue open: the flushes below may
		// kick connections (this one included) that go on it.
		w := c.fq.Swap(&fqOpen)
		if w == &fqOpen || w == nil {
			if c.fq.CompareAndSwap(&fqOpen, nil) {
				return
			}
			continue
		}
		for w != &fqOpen {
			next := w.nextFlush
			w.nextFlush = nil
			w.flushInline()
			w = next
		}
	}
}

// flushInline runs writer passes for c on the caller's goroutine, which
// holds c's writer role, until nothing is left to write; then it gives the
// role back. Anything it should not do without waiting goes on to a
// writer goroutine, with the role.
func (c *conn) flushInline() {
	for {
		c.mu.Lock()
		if c.stopWriter || c.failed || c.queued > inlineMaxQueued {
			c.mu.Unlock()
			go c.writeLoop()
			return
		}
		if len(c.ctrl) == 0 && (c.ready.head == nil || c.ctrlOnly) {
			if c.bw == nil || c.bw.Buffered() == 0 {
				c.releaseWriter()
				c.writerGoneLocked()
				c.mu.Unlock()
				return
			}
		}
		ctrl, items := c.takeBatchLocked()
		c.mu.Unlock()

		c.takeWriter()
		c.inlining = true
		err := c.writeBatch(ctrl, items)
		if err == nil {
			err = c.bw.Flush()
		}
		c.inlining = false
		c.endBatch(ctrl, items)
		if err != nil {
			c.writeFailed(err)
			c.writerStopped()
			return
		}
		if c.leftOver() {
			// The socket is full: a writer goroutine waits for it.
			go c.writeLoop()
			return
		}
	}
}

// endReading: the read loop ends; what its frames queued is written.
func (c *conn) endReading() {
	c.reading = false
	c.flushDeferred()
}

// resumeReadingLocal undoes endReading for a reader that did not park
// after all.
func (c *conn) resumeReadingLocal() {
	c.reading = true
	c.openFlushQueue()
}

// readSrc is what a connection's read buffer reads from. In the read loop
// of a plain TCP socket the reader reads the socket itself: when it finds
// it empty it writes what the frames it read queued before it waits, and
// it is handling frames again once the read returns. Bytes that arrive in
// several segments are handled before anything is written, so a request's
// HEADERS, DATA and END_STREAM, or a response's HEADERS, DATA and
// trailers, go on in one write.
type readSrc struct{ c *conn }

func (r readSrc) Read(p []byte) (int, error) {
	c := r.c
	if !c.reading || c.sock == nil {
		return c.nc.Read(p)
	}
	if c.tlsb != nil {
		// crypto/tls reads the socket through the base, with the
		// reader's read.
		n, err := c.nc.Read(p)
		c.openFlushQueue()
		return n, err
	}
	if pc, ok := c.nc.(*PeekConn); ok && pc.r != nil {
		if pc.r.Buffered() > 0 {
			return pc.r.Read(p)
		}
		pc.release()
		c.sock.emptied()
	}
	n, err := c.sock.read(p)
	c.openFlushQueue()
	return n, err
}

// sink is what a connection's write buffer flushes to: the socket, through
// its wrappers, or during an inline pass the socket itself without waiting.
type sink struct{ c *conn }

func (s sink) Write(p []byte) (int, error) {
	c := s.c
	if c.tlsb != nil {
		// crypto/tls encrypts; its base writes without waiting, and a
		// writer goroutine waits for what it kept.
		n, err := c.nc.Write(p)
		if err == nil && !c.inlining {
			err = c.tlsb.drain()
		}
		return n, err
	}
	if !c.inlining {
		if c.sock != nil {
			return c.sock.writeAll(p)
		}
		return c.nc.Write(p)
	}
	return writeOrKeep(c.sock, p, &c.over, len(c.over) == 0)
}

// writeOrKeep writes p to s without waiting when now is set (nothing is
// kept ahead of it), and appends to kept what the socket did not take; it
// reports all of p written. An inline write's, and the TLS base's.
func writeOrKeep(s *rawSock, p []byte, kept *[]byte, now bool) (int, error) {
	total := len(p)
	if now {
		n, err := s.write(p)
		if err != nil {
			return n, err
		}
		p = p[n:]
	}
	*kept = append(*kept, p...)
	return total, nil
}

// leftOver reports whether an inline pass left bytes the socket did not
// take. Writer role only.
func (c *conn) leftOver() bool {
	if c.tlsb != nil {
		return c.tlsb.left()
	}
	return len(c.over) > 0
}

// drainOver writes what an inline pass left over, waiting for the
// socket. Writer goroutine only.
func (c *conn) drainOver() error {
	if c.tlsb != nil {
		return c.tlsb.drain()
	}
	if len(c.over) == 0 {
		return nil
	}
	_, err := sink{c}.Write(c.over)
	c.over = nil
	return err
}

// socket is a TCP socket the engine reads and writes itself.
type socket interface {
	net.Conn
	syscall.Conn
}

// FDConn is a TCP socket that gives its descriptor without joining Go's
// poller, as a connection accepted by package sock does: the lobby keeps
// such a socket off the poller until the engine takes it.
type FDConn interface {
	socket
	FD() int
}

// findSocket walks nc's wrappers down to a plain TCP socket, as socketFD
// does, and returns it with the first wrappers that count read and
// written bytes, and the base of the TLS layer on the way (tlsbase.go);
// nil when a layer holds bytes of its own that the engine cannot see
// past. Above a TLS layer, wrappers count what crypto/tls reads and
// writes through them; the counters returned are the socket's, below it.
func findSocket(nc net.Conn) (socket, counters, *tlsBase) {
	var cs counters
	var tb *tlsBase
	for {
		if r, ok := nc.(ReadCounter); ok && cs.r == nil {
			cs.r = r
		}
		if w, ok := nc.(WriteCounter); ok && cs.w == nil {
			cs.w = w
		}
		switch c := nc.(type) {
		case *PeekConn:
			nc = c.Conn
		case *net.TCPConn:
			return c, cs, tb
		case FDConn:
			return c, cs, tb
		case *tls.Conn:
			b, ok := c.NetConn().(*tlsBase)
			if !ok || tb != nil {
				return nil, counters{}, nil
			}
			tb, cs, nc = b, counters{}, b.Conn
		case Unwrapper:
			nc = c.Unwrap()
		default:
			return nil, counters{}, nil
		}
	}
}
