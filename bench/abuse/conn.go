package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const handshakeTimeout = 5 * time.Second

// clientConn is one attacker connection: a Framer over raw TCP. Writes go
// through wmu; reads happen in readLoop only, on its own goroutine.
type clientConn struct {
	nc        net.Conn
	rec       *recorder
	authority string

	wmu    sync.Mutex
	bw     *bufio.Writer
	fr     *http2.Framer
	henc   *hpack.Encoder
	hbuf   bytes.Buffer
	nextID uint32

	// What the proxy advertised in its first SETTINGS.
	peerMCS      uint32
	peerMaxFrame uint32
	peerInitWin  int64

	// flow, when set, tracks the send windows the proxy grants (the
	// attacks that send DATA respect flow control, like any client).
	flow *sendFlow
	// onFrame, when set, sees every frame read (on the read goroutine)
	// after the recorder did.
	onFrame func(http2.Frame)

	stopping  atomic.Bool // set when we close it or it failed: errors after it are ours
	over      atomic.Bool // set when the attack's time is up and writes were cut short
	gotGoAway atomic.Bool
	dead      chan struct{} // closed when readLoop returns
}

// sources are the loopback addresses the attacker's connections come
// from, taken in turn: eight of 127.0.0.0/8, chosen per run, each bound
// with IP_BIND_ADDRESS_NO_PORT so that the port is chosen at connect,
// for the pair of addresses. From 127.0.0.1 alone, idle-conns' 19,000
// connections and the 19,000 that the run before left in TIME_WAIT (the
// proxy closes first) filled the 28,000 ephemeral ports: the kernel then
// searched the range on every connect (the attacker spent 10 CPU-s in
// the kernel, on the core it shares with the victim and the backend),
// and some runs took 20 s to open what others opened in 7, with dials
// timing out, whichever proxy ran.
var sources = func() []*net.TCPAddr {
	a := make([]*net.TCPAddr, 8)
	b, c := byte(1+rand.IntN(254)), byte(rand.IntN(256))
	for i := range a {
		a[i] = &net.TCPAddr{IP: net.IPv4(127, b, c, byte(1+i))}
	}
	return a
}()

var nextSource atomic.Uint32

// dialH2 connects, sends the preface and settings, waits for the proxy's
// SETTINGS and acknowledges them. The connection does not read after
// that until readLoop runs.
func dialH2(ctx context.Context, addr string, rec *recorder, settings ...http2.Setting) (*clientConn, error) {
	d := net.Dialer{Timeout: handshakeTimeout, Control: bindNoPort,
		LocalAddr: sources[nextSource.Add(1)%uint32(len(sources))]}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &clientConn{
		nc:           nc,
		rec:          rec,
		authority:    addr,
		bw:           bufio.NewWriterSize(nc, 32<<10),
		nextID:       1,
		peerMCS:      1 << 31,
		peerMaxFrame: 16384,
		peerInitWin:  65535,
		dead:         make(chan struct{}),
	}
	c.fr = http2.NewFramer(c.bw, bufio.NewReaderSize(nc, 16<<10))
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = 1 << 20
	c.henc = hpack.NewEncoder(&c.hbuf)
	_ = nc.SetDeadline(time.Now().Add(handshakeTimeout))
	if _, err := c.bw.WriteString(http2.ClientPreface); err != nil {
		nc.Close()
		return nil, err
	}
	if err := c.fr.WriteSettings(settings...); err != nil {
		nc.Close()
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		nc.Close()
		return nil, err
	}
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("reading the proxy's settings: %w", err)
		}
		sf, ok := f.(*http2.SettingsFrame)
		if !ok || sf.IsAck() {
			continue
		}
		_ = sf.ForeachSetting(func(s http2.Setting) error {
			switch s.ID {
			case http2.SettingMaxConcurrentStreams:
				c.peerMCS = s.Val
			case http2.SettingMaxFrameSize:
				c.peerMaxFrame = s.Val
			case http2.SettingInitialWindowSize:
				c.peerInitWin = int64(s.Val)
			}
			return nil
		})
		break
	}
	if err := c.fr.WriteSettingsAck(); err != nil {
		nc.Close()
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	rec.onConn()
	return c, nil
}

// stop marks the end of the attack on this connection and closes it.
func (c *clientConn) stop() {
	c.stopping.Store(true)
	c.nc.Close()
}

// failed records a read or write error unless the attack is ending.
func (c *clientConn) failed(err error) {
	if c.stopping.Load() || c.over.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
		return
	}
	if c.stopping.CompareAndSwap(false, true) {
		c.rec.onClosed(err)
	}
}

// readLoop reads frames until the connection ends, recording GOAWAY,
// RST_STREAM, responses and received DATA, answering PINGs and SETTINGS
// as any client would, and feeding WINDOW_UPDATEs to c.flow.
func (c *clientConn) readLoop() {
	defer close(c.dead)
	for {
		f, err := readFrame(c.fr)
		if err != nil {
			c.failed(err)
			if c.flow != nil {
				c.flow.kill()
			}
			return
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			if c.gotGoAway.CompareAndSwap(false, true) {
				c.rec.onGoAway(f.ErrCode, f.DebugData())
			}
		case *http2.RSTStreamFrame:
			c.rec.onReset(f.ErrCode)
			if c.flow != nil {
				c.flow.remove(f.StreamID)
			}
		case *http2.MetaHeadersFrame:
			c.rec.onResponse(responseKey(f))
			if f.StreamEnded() && c.flow != nil {
				c.flow.remove(f.StreamID)
			}
		case *http2.DataFrame:
			c.rec.dataRecv.Add(int64(len(f.Data())))
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = c.write(func(fr *http2.Framer) error { return fr.WritePing(true, f.Data) })
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if v, ok := f.Value(http2.SettingInitialWindowSize); ok && c.flow != nil {
					c.flow.setInitial(int64(v))
				}
				_ = c.write(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
			}
		case *http2.WindowUpdateFrame:
			if c.flow != nil {
				c.flow.add(f.StreamID, int64(f.Increment))
			}
		}
		if c.onFrame != nil {
			c.onFrame(f)
		}
	}
}

// drain reads what the proxy sent, for up to d, looking for a GOAWAY: the
// attacks that never read use it once they stop writing.
func (c *clientConn) drain(d time.Duration) {
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	for {
		f, err := readFrame(c.fr)
		if err != nil {
			if !errors.Is(err, errDeadline) && !isTimeout(err) {
				c.failed(err)
			}
			return
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			if c.gotGoAway.CompareAndSwap(false, true) {
				c.rec.onGoAway(f.ErrCode, f.DebugData())
			}
			return
		case *http2.RSTStreamFrame:
			c.rec.onReset(f.ErrCode)
		}
	}
}

var errDeadline = errors.New("deadline")

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// write runs fn on the framer under the write lock and flushes.
func (c *clientConn) write(fn func(*http2.Framer) error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := fn(c.fr); err != nil {
		return err
	}
	return c.bw.Flush()
}

// openStream sends a request's HEADERS (split into CONTINUATION frames at
// the proxy's MAX_FRAME_SIZE) on a new stream and returns its ID.
func (c *clientConn) openStream(path string, endStream bool, extra ...hpack.HeaderField) (uint32, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	id := c.nextID
	c.nextID += 2
	c.hbuf.Reset()
	for _, hf := range []hpack.HeaderField{
		{Name: ":method", Value: "POST"},
		{Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: c.authority},
		{Name: ":path", Value: path},
		{Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"},
	} {
		_ = c.henc.WriteField(hf)
	}
	for _, hf := range extra {
		_ = c.henc.WriteField(hf)
	}
	block := c.hbuf.Bytes()
	max := int(c.peerMaxFrame)
	first := block
	if len(first) > max {
		first = first[:max]
	}
	rest := block[len(first):]
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID:      id,
		BlockFragment: first,
		EndStream:     endStream,
		EndHeaders:    len(rest) == 0,
	})
	frames := int64(1)
	for err == nil && len(rest) > 0 {
		n := min(len(rest), max)
		err = c.fr.WriteContinuation(id, n == len(rest), rest[:n])
		rest = rest[n:]
		frames++
	}
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		return 0, err
	}
	c.rec.sent(frames, int64(len(block))+9*frames)
	c.rec.onStream()
	return id, nil
}

// emptyMessage is a gRPC message of zero bytes: the 5-byte prefix.
var emptyMessage = []byte{0, 0, 0, 0, 0}

func responseKey(f *http2.MetaHeadersFrame) string {
	if gs := f.PseudoValue("status"); gs != "" && f.StreamEnded() {
		if s := firstValue(f, "grpc-status"); s != "" {
			return "trailers-only grpc-status " + s
		}
		return "HTTP " + gs + " (ended)"
	} else if gs != "" {
		return "HTTP " + gs
	}
	if s := firstValue(f, "grpc-status"); s != "" {
		return "grpc-status " + s
	}
	return "headers"
}

func firstValue(f *http2.MetaHeadersFrame, name string) string {
	for _, hf := range f.RegularFields() {
		if hf.Name == name {
			return hf.Value
		}
	}
	return ""
}

// sendFlow is the client's view of the send windows the proxy granted.
type sendFlow struct {
	mu      sync.Mutex
	cond    *sync.Cond
	initial int64
	conn    int64
	streams map[uint32]int64
	dead    bool
}

func newSendFlow(initial int64) *sendFlow {
	f := &sendFlow{initial: initial, conn: 65535, streams: map[uint32]int64{}}
	f.cond = sync.NewCond(&f.mu)
	return f
}

func (f *sendFlow) open(id uint32) {
	f.mu.Lock()
	f.streams[id] = f.initial
	f.mu.Unlock()
}

func (f *sendFlow) remove(id uint32) {
	f.mu.Lock()
	delete(f.streams, id)
	f.mu.Unlock()
}

func (f *sendFlow) add(id uint32, n int64) {
	f.mu.Lock()
	if id == 0 {
		f.conn += n
	} else if _, ok := f.streams[id]; ok {
		f.streams[id] += n
	}
	f.mu.Unlock()
	f.cond.Broadcast()
}

func (f *sendFlow) setInitial(v int64) {
	f.mu.Lock()
	for id := range f.streams {
		f.streams[id] += v - f.initial
	}
	f.initial = v
	f.mu.Unlock()
	f.cond.Broadcast()
}

func (f *sendFlow) kill() {
	f.mu.Lock()
	f.dead = true
	f.mu.Unlock()
	f.cond.Broadcast()
}

// take waits until some of ids may send one byte, debits them and returns
// the IDs granted (one byte each), at most max. It returns nil when the
// connection is gone or ctx ended.
func (f *sendFlow) take(ctx context.Context, ids []uint32, max int) []uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		if f.dead || ctx.Err() != nil {
			return nil
		}
		var got []uint32
		for _, id := range ids {
			if len(got) >= max || f.conn <= 0 {
				break
			}
			if w, ok := f.streams[id]; ok && w > 0 {
				f.streams[id] = w - 1
				f.conn--
				got = append(got, id)
			}
		}
		if len(got) > 0 {
			return got
		}
		f.cond.Wait()
	}
}

// wakeOnDone wakes take's waiters when ctx ends. It broadcasts under the
// lock, so a waiter between its ctx check and Wait cannot miss it.
func (f *sendFlow) wakeOnDone(ctx context.Context) {
	<-ctx.Done()
	f.mu.Lock()
	f.cond.Broadcast()
	f.mu.Unlock()
}

// readFrame reads the next frame, passing over stream errors (a frame the
// Framer refused on one stream leaves the connection readable).
func readFrame(fr *http2.Framer) (http2.Frame, error) {
	for {
		f, err := fr.ReadFrame()
		var se http2.StreamError
		if err != nil && errors.As(err, &se) {
			continue
		}
		return f, err
	}
}
