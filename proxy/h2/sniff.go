package h2

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"sync"

	"golang.org/x/net/http2"
)

// Proto is what a plaintext connection turned out to speak.
type Proto uint8

const (
	// ProtoUnknown is neither: the listener should close the connection.
	ProtoUnknown Proto = iota
	// ProtoH2 starts with the HTTP/2 client preface (h2c with prior
	// knowledge, RFC 9113 §3.3).
	ProtoH2
	// ProtoHTTP1 starts with an HTTP/1.x request line.
	ProtoHTTP1
)

// PeekConn is a plaintext connection whose first bytes have been looked at.
// Reads return the peeked bytes first, then read the connection itself:
// the peek buffer, pooled, is given back once its bytes are read, so a
// connection does not keep it for its lifetime.
type PeekConn struct {
	net.Conn
	r *bufio.Reader // nil once drained
}

// peekBufs are the peek buffers: a request line up to maxRequestLine fits.
var peekBufs = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, maxRequestLine+1024) }}

// NewPeekConn wraps c for Sniff.
func NewPeekConn(c net.Conn) *PeekConn {
	r := peekBufs.Get().(*bufio.Reader)
	r.Reset(c)
	return &PeekConn{Conn: c, r: r}
}

// newPeekConnHead wraps c, whose first bytes, head, were read already (by
// the lobby): they are read first, and Sniff looks at them and on into c.
// head fits the peek buffer.
func newPeekConnHead(c net.Conn, head []byte) *PeekConn {
	r := peekBufs.Get().(*bufio.Reader)
	r.Reset(io.MultiReader(bytes.NewReader(head), c))
	_, _ = r.Peek(len(head)) // one fill: head into the buffer, nothing of c
	return &PeekConn{Conn: c, r: r}
}

// Read reads the peeked bytes, then the connection. Reads must not be
// concurrent (net/http and the engine read from one goroutine at a time);
// Close may come from anywhere, so an undrained buffer is left to the
// garbage collector rather than put back.
func (c *PeekConn) Read(p []byte) (int, error) {
	if c.r == nil {
		return c.Conn.Read(p)
	}
	if c.r.Buffered() == 0 {
		c.release()
		return c.Conn.Read(p)
	}
	return c.r.Read(p)
}

// release gives the peek buffer back.
func (c *PeekConn) release() {
	c.r.Reset(nil)
	peekBufs.Put(c.r)
	c.r = nil
}

// CloseWrite half-closes the connection when the underlying one can (TCP
// can), so that a GOAWAY is followed by a FIN, not a reset.
func (c *PeekConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// maxRequestLine bounds how far Sniff looks for the end of an HTTP/1.x
// request line; a longer one is handed to net/http, which answers 414.
const maxRequestLine = 8 << 10

// Sniff reads just enough of the connection to tell HTTP/2 prior knowledge
// from HTTP/1.x, so that one plaintext port serves both (h2c and http1 in a
// listener's protocols): ProtoH2 goes to Server.ServeConn, ProtoHTTP1 to
// net/http. Anything else is ProtoUnknown and should be closed: answering
// garbage that merely resembles a bad preface with an HTTP/1.1 400 would
// make an HTTP/2 client read an HTTP/1 response as frames (h2spec 3.5/2
// expects the connection to close). Sniff blocks until it can decide;
// the caller sets a read deadline (header_read_timeout) first.
//
// It returns early: an HTTP/1.1 request shorter than the 24-byte preface is
// recognised as soon as its bytes stop matching the preface, without
// waiting for bytes the client will never send.
func (c *PeekConn) Sniff() (Proto, error) {
	preface := []byte(http2.ClientPreface)
	n := 1
	for {
		b, err := c.r.Peek(n)
		if !bytes.HasPrefix(preface, b) {
			break
		}
		if len(b) == len(preface) {
			return ProtoH2, nil
		}
		if err != nil {
			return ProtoUnknown, err
		}
		n = min(len(preface), max(n+1, c.r.Buffered()))
	}
	return c.sniffHTTP1()
}

// sniffHTTP1 checks for "METHOD SP target SP HTTP/1.x" up to the first
// CRLF (RFC 9112 §3).
func (c *PeekConn) sniffHTTP1() (Proto, error) {
	n := 1
	for {
		b, err := c.r.Peek(n)
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			if looksHTTP1(b[:i]) {
				return ProtoHTTP1, nil
			}
			return ProtoUnknown, nil
		}
		if !tokenPrefix(b) {
			return ProtoUnknown, nil
		}
		if len(b) >= maxRequestLine || len(b) >= c.r.Size() {
			return ProtoHTTP1, nil
		}
		if err != nil {
			return ProtoUnknown, err
		}
		n = min(c.r.Size(), max(n+1, c.r.Buffered()))
	}
}

// tokenPrefix reports whether b can still start a request line: the method
// so far is token characters (RFC 9110 §5.6.2).
func tokenPrefix(b []byte) bool {
	for _, c := range b {
		if c == ' ' {
			return true
		}
		if c >= 'A' && c <= 'Z' || validNameByte[c] {
			continue
		}
		return false
	}
	return true
}

// looksHTTP1 checks a complete request line (without its LF).
func looksHTTP1(line []byte) bool {
	line = bytes.TrimSuffix(line, []byte("\r"))
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1+1 {
		return false
	}
	v := line[sp2+1:]
	return bytes.Equal(v, []byte("HTTP/1.1")) || bytes.Equal(v, []byte("HTTP/1.0"))
}
