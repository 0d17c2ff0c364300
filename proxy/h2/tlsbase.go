package h2

import (
	"crypto/tls"
	"net"
	"sync"
)

// Inline writes over TLS. crypto/tls reads and writes the connection
// beneath it through net.Conn, and a TLS connection's reader cannot see
// from above when its socket is empty: crypto/tls may hold a record it
// read. So the engine puts a tlsBase between crypto/tls and the socket,
// and once it takes the connection the socket is read and written there,
// as a cleartext one is (inline.go):
//
//   - crypto/tls reads the socket only when it holds no whole record, so
//     a read of the base that finds the socket empty finds the reader with
//     nothing to handle: it flushes its queue there and waits;
//   - a record crypto/tls encrypts during an inline pass is written
//     without waiting; what the socket does not take is kept (pending) for
//     a writer goroutine, started then, and every later record goes after
//     it.
//
// Nothing written to the base waits: a record crypto/tls writes out of
// the writer role (an alert, its answer to a key update) holds its write
// lock, which an inline pass takes, and must not hold it for as long as a
// peer that does not read likes. A writer goroutine writes a record, then
// waits until what is pending is written (drain).
type tlsBase struct {
	net.Conn // the TCP connection, through wrappers that hold no bytes
	// c is the engine's connection, set before its reader and writers
	// start; nil while crypto/tls handshakes, and for a connection the
	// engine did not take (HTTP/1.1), which reads and writes through.
	c *conn

	mu sync.Mutex
	// Guarded by mu.
	pending  []byte // encrypted bytes the socket has not taken yet
	draining bool   // drain is writing what was pending: new bytes queue
}

// TLSServer is tls.Server over a base the engine reads and writes the
// socket through once it serves the connection (inline.go): a listener's
// TLS connections made with it are served as cleartext ones are, without
// a goroutine hand-off per write at light load.
func TLSServer(c net.Conn, config *tls.Config) *tls.Conn {
	return tls.Server(&tlsBase{Conn: c}, config)
}

// tlsClient is tls.Client over a base, for an upstream connection.
func tlsClient(c net.Conn, config *tls.Config) *tls.Conn {
	return tls.Client(&tlsBase{Conn: c}, config)
}

// Read is crypto/tls reading the socket: in the read loop, the reader's
// read (rawSock.read), which flushes what the frames it handled queued
// before it waits.
func (b *tlsBase) Read(p []byte) (int, error) {
	if c := b.c; c != nil && c.reading {
		return c.sock.read(p)
	}
	return b.Conn.Read(p)
}

// Write is crypto/tls writing a record: what the socket does not take
// at once, or what would overtake bytes still pending, is kept.
func (b *tlsBase) Write(p []byte) (int, error) {
	c := b.c
	if c == nil {
		return b.Conn.Write(p)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return writeOrKeep(c.sock, p, &b.pending, len(b.pending) == 0 && !b.draining)
}

// left reports whether encrypted bytes wait for the socket.
func (b *tlsBase) left() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending) > 0
}

// drain writes what is pending, waiting for the socket, until nothing is.
// The writer role's; the lock is not held while it waits, so a record
// written meanwhile (crypto/tls's close_notify as the connection closes)
// is kept, not waited for.
func (b *tlsBase) drain() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.pending) > 0 {
		p := b.pending
		b.pending, b.draining = nil, true
		b.mu.Unlock()
		_, err := b.c.sock.writeAll(p)
		b.mu.Lock()
		b.draining = false
		if err != nil {
			b.pending = nil
			return err
		}
	}
	return nil
}
