package h2

import (
	"bufio"
	"encoding/binary"
	"io"
	"sync"

	"golang.org/x/net/http2"
)

// A connection's I/O buffers are taken on use and given back when it goes
// quiet, so that an idle connection holds a few hundred bytes of buffer
// rather than 64 KiB: the write buffer from the writer's first frame to the
// flush that empties it, the large read buffer while the peer keeps
// sending, and the header-fragment buffer for one frame.

// Buffer sizes. A write buffer holds a writer's whole batch, so that it
// costs one syscall; a large read buffer takes a burst of frames in one.
const (
	writeBufSize    = 32 << 10
	readBufSize     = 16 << 10
	smallReadBuffer = 512
)

var (
	writeBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufSize) }}
	readBufs  = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}
	fragBufs  = sync.Pool{New: func() any { b := make([]byte, maxFrameSize); return &b }}
)

// connWriter is what the Framer writes control frames to: the
// connection's write buffer of the moment (takeWriter).
type connWriter struct{ c *conn }

func (w connWriter) Write(p []byte) (int, error) { return w.c.bw.Write(p) }

// takeWriter gives the writer a write buffer if it has none. Writer-owned.
func (c *conn) takeWriter() {
	if c.bw == nil {
		c.bw = writeBufs.Get().(*bufio.Writer)
		c.bw.Reset(sink{c})
	}
}

// releaseWriter gives back an empty write buffer. Writer-owned.
func (c *conn) releaseWriter() {
	if c.bw != nil && c.bw.Buffered() == 0 {
		c.bw.Reset(nil)
		writeBufs.Put(c.bw)
		c.bw = nil
	}
}

// writeFrameHeader writes a frame header (RFC 9113 §4.1). DATA and header
// blocks are written with it straight from their buffers: through the
// Framer they would be copied into a frame buffer first, which it keeps,
// 16 KiB per connection, after the first large frame.
func (c *conn) writeFrameHeader(length int, t http2.FrameType, flags http2.Flags, id uint32) error {
	h := &c.fhdr // a local array would escape to the heap through Write
	h[0], h[1], h[2] = byte(length>>16), byte(length>>8), byte(length)
	h[3], h[4] = byte(t), byte(flags)
	binary.BigEndian.PutUint32(h[5:], id&(1<<31-1))
	_, err := c.bw.Write(h[:])
	return err
}

// writeFrame writes one frame with payload p.
func (c *conn) writeFrame(t http2.FrameType, flags http2.Flags, id uint32, p []byte) error {
	if err := c.writeFrameHeader(len(p), t, flags, id); err != nil {
		return err
	}
	_, err := c.bw.Write(p)
	return err
}

// rbuf is a connection's buffered reader, as a bufio.Reader but with two
// sizes: a small pooled buffer, in which a quiet connection waits for the
// peer's next bytes, and a large pooled one, taken once the socket is
// readable (grow) or a read fills the small one, and given back (shrink)
// when the connection goes idle. A parked connection holds neither
// (release).
type rbuf struct {
	src   io.Reader
	buf   []byte
	small *[smallReadBuffer]byte
	big   *[]byte
	r, w  int
	err   error
	// filling is set while fill reads the source, the one read that
	// grow may move to the large buffer.
	filling bool
}

var smallReadBufs = sync.Pool{New: func() any { return new([smallReadBuffer]byte) }}

func (b *rbuf) init(src io.Reader) {
	b.src = src
	b.reacquire()
}

// Read reads into p: what is buffered, or else one read of the source.
func (b *rbuf) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.r == b.w {
		if b.err != nil {
			err := b.err
			b.err = nil
			return 0, err
		}
		if len(p) >= len(b.buf) {
			return b.src.Read(p) // a large read goes straight to p
		}
		n, err := b.fill()
		if n == 0 {
			return 0, err
		}
		b.err = err
	}
	n := copy(p, b.buf[b.r:b.w])
	b.r += n
	return n, nil
}

// fill makes one read of the source into the empty buffer and returns
// what it read; the caller keeps an error to return (Read, keep).
func (b *rbuf) fill() (int, error) {
	if b.big == nil && b.w == len(b.small) {
		// The last fill took the whole small buffer: the peer is
		// sending more than it holds.
		b.big = readBufs.Get().(*[]byte)
		b.buf = *b.big
	}
	b.r, b.w = 0, 0
	b.filling = true
	n, err := b.src.Read(b.buf)
	b.filling = false
	b.w = n
	return n, err
}

// grow takes the large buffer for the fill in progress, which reads into
// the small one, and returns it to read into instead; nil: read into the
// buffer given. The socket's read calls it once the socket is readable
// after a wait, so that a connection waits for its peer holding only the
// small buffer and still takes a request or response larger than it in
// one read.
func (b *rbuf) grow() []byte {
	if !b.filling || b.big != nil {
		return nil
	}
	b.big = readBufs.Get().(*[]byte)
	b.buf = *b.big
	return b.buf
}

// keep stores the error of a fill, for Read to return once the bytes it
// read are.
func (b *rbuf) keep(err error) {
	if err != nil {
		b.err = err
	}
}

// buffered is how many bytes can be read without reading the source.
func (b *rbuf) buffered() int { return b.w - b.r }

// frameHeaderLen is the length of an HTTP/2 frame header (RFC 9113 §4.1).
const frameHeaderLen = 9

// frameLength is the payload length in the frame header at the start of
// p (RFC 9113 §4.1).
func frameLength(p []byte) int { return int(p[0])<<16 | int(p[1])<<8 | int(p[2]) }

// dataRun looks past the payload of a DATA frame of stream id, n bytes
// at the start of the buffer, for DATA frames of the same stream that
// follow it whole, unpadded and not empty, while the payloads add up to
// at most limit bytes. It returns how many there are, the payloads' total
// with the first frame's, and whether the last of them ends the stream
// (the run stops there). Frames whose length passes the Framer's limit
// never join: their payload is limited by limit.
func (b *rbuf) dataRun(id uint32, n, limit int) (frames, total int, end bool) {
	total = n
	if b.w-b.r < n {
		return 0, total, false
	}
	for p := b.buf[b.r+n : b.w]; len(p) >= frameHeaderLen; {
		size := frameLength(p)
		flags := http2.Flags(p[4])
		if http2.FrameType(p[3]) != http2.FrameData || binary.BigEndian.Uint32(p[5:9])&(1<<31-1) != id ||
			flags.Has(http2.FlagDataPadded) || size == 0 || total+size > limit || len(p) < frameHeaderLen+size {
			break
		}
		frames++
		total += size
		if flags.Has(http2.FlagDataEndStream) {
			return frames, total, true
		}
		p = p[frameHeaderLen+size:]
	}
	return frames, total, false
}

// next consumes and returns the next n buffered bytes, valid until the
// next read; nil, consuming nothing, when fewer are buffered.
func (b *rbuf) next(n int) []byte {
	if b.w-b.r < n {
		return nil
	}
	p := b.buf[b.r : b.r+n]
	b.r += n
	return p
}

// shrink gives back the large buffer when nothing is buffered.
func (b *rbuf) shrink() {
	if b.big != nil && b.r == b.w {
		readBufs.Put(b.big)
		b.big = nil
		b.buf = b.small[:]
		b.r, b.w = 0, 0
	}
}

// release gives back both buffers of an empty reader, which holds none
// until reacquire.
func (b *rbuf) release() {
	b.shrink()
	if b.small != nil && b.r == b.w {
		smallReadBufs.Put(b.small)
		b.small, b.buf = nil, nil
	}
}

// drop gives back both buffers, whatever they hold, once the reader has
// ended for good (and any linger after it read its last). release keeps
// a buffer that holds unread bytes, and a connection that ends with bytes
// unread (a flood cut off in the middle of a read) held its large buffer
// until the collector took it: 16 KiB for every connection an upstream
// that floods resets got, which under bench/abuse's upstream-rst (500
// such connections a second) made a collection every third of a second.
func (b *rbuf) drop() {
	if b.big != nil {
		readBufs.Put(b.big)
		b.big = nil
	}
	if b.small != nil {
		smallReadBufs.Put(b.small)
		b.small = nil
	}
	b.buf, b.r, b.w = nil, 0, 0
}

// reacquire takes a small buffer for a reader that released its own.
func (b *rbuf) reacquire() {
	if b.small == nil {
		b.small = smallReadBufs.Get().(*[smallReadBuffer]byte)
		b.buf = b.small[:]
		b.r, b.w = 0, 0
	}
}
