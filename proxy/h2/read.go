package h2

import (
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"time"

	"golang.org/x/net/http2"
)

// readLoop reads and handles frames until the connection ends. It returns
// why: a connErr for a protocol violation (the caller sends GOAWAY), or
// the I/O error.
//
// The frame header comes from the Framer (which checks the size against
// what we advertised and the HEADERS/CONTINUATION order, RFC 9113 §4.2,
// §6.10). DATA, HEADERS and CONTINUATION payloads are read here: DATA
// straight into a pooled buffer that travels to the other connection
// without a copy, header fragments into the HPACK decoder as they arrive.
// Other frames go through the Framer's parser.
//
// A parkable connection's loop also ends with errParked when it parks
// (park.go); resumeReading runs it again.
func (c *conn) readLoop() error {
	c.reading = true
	c.openFlushQueue()
	err := c.readFrames()
	if err != errParked {
		// A parked connection's reader ended reading before it parked:
		// the next may already be running.
		c.endReading()
	}
	return err
}

// readFrames is the read loop proper.
func (c *conn) readFrames() error {
	yielded := c.frames
	for {
		if c.br.buffered() == 0 {
			if !c.started && c.server {
				// About to wait for the peer's SETTINGS: what we wrote
				// before them goes now, alone.
				c.mu.Lock()
				c.kickLocked()
				c.unlock()
			}
			if c.br.big != nil {
				// About to wait for the peer: the large read buffer is
				// given back, unless streams are open and the last read
				// needed it. A socket read after a wait takes it again
				// (rbuf.grow): an idle connection holds none, and a
				// request or response larger than the small buffer is
				// still one read.
				keep := c.br.w > smallReadBuffer
				if keep {
					c.mu.Lock()
					keep = c.nActive > 0
					c.mu.Unlock()
				}
				if !keep {
					c.br.shrink()
				}
			}
			if c.park.fd >= 0 && c.started && !c.inBlock {
				// At a frame boundary, outside the handshake and any
				// header block (whose deadlines are the reader's).
				if err := c.waitReadable(); err != nil {
					return err
				}
			}
		}
		fh, err := c.fr.ReadFrameHeader()
		if err != nil {
			return c.frameError(err)
		}
		if !c.started {
			// The first frame of either preface is a SETTINGS frame
			// (RFC 9113 §3.4).
			if fh.Type != http2.FrameSettings || fh.Flags.Has(http2.FlagSettingsAck) {
				return connError(http2.ErrCodeProtocol, "first frame is not SETTINGS")
			}
			c.started = true
			_ = c.nc.SetReadDeadline(time.Time{}) // the handshake deadline
		}
		c.countFrames(1)
		switch fh.Type {
		case http2.FrameData:
			err = c.readData(fh)
		case http2.FrameHeaders:
			err = c.readHeaders(fh)
		case http2.FrameContinuation:
			err = c.readContinuation(fh)
		case http2.FrameWindowUpdate, http2.FramePing, http2.FrameRSTStream:
			err = c.readControl(fh)
		default:
			var f http2.Frame
			if f, err = c.fr.ReadFrameForHeader(fh); err == nil {
				err = c.handleFrame(f)
			}
		}
		if err != nil {
			if err = c.frameError(err); err != nil {
				return err
			}
		}
		if code := c.abort.Load(); code != 0 {
			return connError(http2.ErrCode(code-1), c.abortReason)
		}
		if c.frames-yielded >= fairFrames && c.br.buffered() > 0 {
			// A burst of frames from one peer: let the other
			// connections' goroutines run, so that a flood on one
			// connection costs the others a moment, not its length.
			yielded = c.frames
			runtime.Gosched()
		}
	}
}

// fairFrames is how many frames a reader handles in a burst before it
// yields.
const fairFrames = 64

// countFrames counts k frames read; the glitch count halves every
// glitchDecay frames.
func (c *conn) countFrames(k uint32) {
	before := c.frames
	c.frames += k
	if c.frames/glitchDecay != before/glitchDecay {
		c.glitches /= 2
	}
}

// frameError resets the stream for a stream error and returns nil;
// anything else ends the connection and is returned.
func (c *conn) frameError(err error) error {
	ce, se := classify(err, c.fr.ErrorDetail())
	if se != nil {
		if c.log.Debug().Enabled() {
			c.log.Debug().Uint32("stream", se.id).Str("code", se.code.String()).Str("reason", se.reason).Msg("stream error")
		}
		c.h.resetStream(se.id, se.code)
		return c.glitch()
	}
	if ce != nil {
		return *ce
	}
	return err
}

// readPayload reads a frame payload of n bytes into a pooled buffer, which
// the caller gives back with fragBufs.Put(buf) once done with p.
func (c *conn) readPayload(n uint32) (p []byte, buf *[]byte, err error) {
	buf = fragBufs.Get().(*[]byte)
	p = (*buf)[:n]
	if _, err := io.ReadFull(&c.br, p); err != nil {
		fragBufs.Put(buf)
		return nil, nil, err
	}
	return p, buf, nil
}

// readData reads a DATA frame (RFC 9113 §6.1) into a pooled buffer,
// accounts for the connection window and hands it to the handler.
//
// On an upstream connection, the DATA frames of the same stream that
// follow it whole in the read buffer join it (dataRun): a backend that
// writes many small messages (gRPC's empty ones are 5 bytes) would
// otherwise cost a buffer, the stream's locks and a hand-off each. Frames
// from clients are taken one by one, as the glitch count of small frames
// needs them (serverConn.handleData).
func (c *conn) readData(fh http2.FrameHeader) error {
	n := int(fh.Length)
	frames, total := 0, n
	if !c.server && fh.Flags&(http2.FlagDataPadded|http2.FlagDataEndStream) == 0 && n > 0 {
		var end bool
		if frames, total, end = c.br.dataRun(fh.StreamID, n, maxFrameSize); end {
			fh.Flags |= http2.FlagDataEndStream
		}
	}
	d := getBuf(total)
	if _, err := io.ReadFull(&c.br, d.b[:n]); err != nil {
		putBuf(d)
		return err
	}
	for range frames {
		n += copy(d.b[n:], c.br.next(frameLength(c.br.next(frameHeaderLen))))
	}
	if frames > 0 {
		c.countFrames(uint32(frames))
		fh.Length = uint32(n)
	}
	d.end = n
	if fh.StreamID == 0 {
		putBuf(d)
		return connError(http2.ErrCodeProtocol, "DATA on stream 0")
	}
	if fh.Flags.Has(http2.FlagDataPadded) {
		if n == 0 || int(d.b[0]) > n-1 {
			putBuf(d)
			return connError(http2.ErrCodeProtocol, "DATA padding longer than the payload")
		}
		d.off, d.end = 1, n-int(d.b[0])
	}
	// Connection flow control (RFC 9113 §6.9.1): the whole frame counts,
	// padding included, and it is refunded on receipt.
	if int64(n) > c.inConn {
		putBuf(d)
		return connError(http2.ErrCodeFlowControl, "connection receive window exceeded")
	}
	c.inConn -= int64(n)
	if err := c.refundConn(int64(n)); err != nil {
		putBuf(d)
		return err
	}
	return c.h.handleData(fh, d)
}

// readHeaders starts a header block (RFC 9113 §6.2).
func (c *conn) readHeaders(fh http2.FrameHeader) error {
	p, buf, err := c.readPayload(fh.Length)
	if err != nil {
		return err
	}
	defer fragBufs.Put(buf) // the decoder keeps what it needs of a fragment
	if fh.StreamID == 0 {
		return connError(http2.ErrCodeProtocol, "HEADERS on stream 0")
	}
	pad := 0
	if fh.Flags.Has(http2.FlagHeadersPadded) {
		if len(p) == 0 {
			return connError(http2.ErrCodeProtocol, "HEADERS padding length missing")
		}
		pad, p = int(p[0]), p[1:]
	}
	selfDep := false
	if fh.Flags.Has(http2.FlagHeadersPriority) {
		if len(p) < 5 {
			return connError(http2.ErrCodeFrameSize, "HEADERS priority fields truncated")
		}
		selfDep = binary.BigEndian.Uint32(p)&0x7fffffff == fh.StreamID
		p = p[5:]
	}
	if pad > len(p) {
		return connError(http2.ErrCodeProtocol, "HEADERS padding longer than the payload")
	}
	p = p[:len(p)-pad]
	end := fh.Flags.Has(http2.FlagHeadersEndStream)
	trailers, err := c.h.beginHeaders(fh.StreamID)
	if err != nil {
		return err
	}
	c.hb.reset(fh.StreamID, end, trailers)
	c.hb.selfDep = selfDep
	c.fields = c.fields[:0]
	c.decoder().SetEmitEnabled(true)
	return c.headerFragment(p, fh.Flags.Has(http2.FlagHeadersEndHeaders))
}

// readContinuation continues a header block (RFC 9113 §6.10); the Framer
// has checked that one is in progress on this stream.
func (c *conn) readContinuation(fh http2.FrameHeader) error {
	p, buf, err := c.readPayload(fh.Length)
	if err != nil {
		return err
	}
	defer fragBufs.Put(buf)
	// A block already over the list limit is still decoded to its end,
	// keeping nothing, so that HPACK stays in sync and only its stream is
	// refused; headerFragment's caps on frames and bytes bound the work
	// (CVE-2023-45288).
	return c.headerFragment(p, fh.Flags.Has(http2.FlagContinuationEndHeaders))
}

// headerFragment decodes one fragment and finishes the block at
// END_HEADERS. Decoding as fragments arrive keeps only the decoder's state,
// never the whole encoded block; the caps below bound the work a peer can
// cause with CONTINUATIONs.
func (c *conn) headerFragment(p []byte, endHeaders bool) error {
	hb := &c.hb
	hb.frames++
	c.inBlock = !endHeaders
	hb.encoded += len(p)
	if hb.frames > maxHeaderFrames {
		return connError(http2.ErrCodeEnhanceYourCalm, "too many CONTINUATION frames")
	}
	if hb.encoded > c.headerBlockLimit() {
		return connError(http2.ErrCodeEnhanceYourCalm, "header block too large")
	}
	if len(p) == 0 && !endHeaders {
		if err := c.glitch(); err != nil {
			return err
		}
	}
	if !hb.truncated && hb.encoded > int(c.maxHeaderList) {
		// An encoder that Huffman-codes a string only when that makes it
		// shorter, as every client and server in use does, never makes a
		// block longer than its list (each field counts 32 bytes more in
		// the list than its prefixes take on the wire): this list is over
		// the limit. Emission goes off now, before the decoder meets the
		// long strings, which it then skips instead of decoding: a 200 KB
		// header cost 2 ms of Huffman decoding, in one piece, for a
		// request refused anyway.
		hb.truncated = true
		c.dec.SetEmitEnabled(false)
	}
	if _, err := c.dec.Write(p); err != nil {
		return connError(http2.ErrCodeCompression, fmt.Sprintf("decoding headers: %v", err))
	}
	if !endHeaders {
		if hb.frames == 1 {
			_ = c.nc.SetReadDeadline(time.Now().Add(c.headerTimeout))
		}
		return nil
	}
	if hb.frames > 1 {
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	if err := c.dec.Close(); err != nil {
		return connError(http2.ErrCodeCompression, fmt.Sprintf("decoding headers: %v", err))
	}
	return c.h.endHeaders()
}

// handleFrame handles the frames the Framer parsed.
func (c *conn) handleFrame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if !f.IsAck() {
			if err := c.pingFrame(time.Now()); err != nil {
				return err
			}
		}
		return c.handleSettings(f)
	case *http2.GoAwayFrame:
		return c.h.handleGoAway(f)
	case *http2.PriorityFrame:
		// Deprecated (RFC 9113 §5.3.2): checked, counted, then ignored.
		if err := c.priorityFrame(); err != nil {
			return err
		}
		if f.StreamDep == f.StreamID {
			return streamError(f.StreamID, http2.ErrCodeProtocol, "stream depends on itself")
		}
		return nil
	case *http2.PushPromiseFrame:
		// Servers never receive pushes, and we told upstreams
		// SETTINGS_ENABLE_PUSH=0 (RFC 9113 §8.4).
		return connError(http2.ErrCodeProtocol, "PUSH_PROMISE")
	}
	return nil // unknown frame types are ignored (RFC 9113 §5.5)
}

// readControl reads the fixed-size frames that every call brings
// (WINDOW_UPDATE and PING: a grpc-go endpoint sends one of each after the
// DATA of each call) and RST_STREAM, and checks them as the Framer's
// parser does (RFC 9113 §6.4, §6.7, §6.9), without its allocation of a
// frame value for each.
func (c *conn) readControl(fh http2.FrameHeader) error {
	size := uint32(4)
	if fh.Type == http2.FramePing {
		size = 8
	}
	if fh.Length != size {
		return connError(http2.ErrCodeFrameSize, fmt.Sprintf("%v frame of %d bytes, not %d", fh.Type, fh.Length, size))
	}
	var p [8]byte
	if q := c.br.next(int(size)); q != nil {
		copy(p[:], q)
	} else {
		q, buf, err := c.readPayload(size)
		if err != nil {
			return err
		}
		copy(p[:], q)
		fragBufs.Put(buf)
	}
	v := binary.BigEndian.Uint32(p[:4])
	switch fh.Type {
	case http2.FramePing:
		if fh.StreamID != 0 {
			return connError(http2.ErrCodeProtocol, "PING on a stream")
		}
		if fh.Flags.Has(http2.FlagPingAck) {
			c.h.handlePingAck(p)
			return nil
		}
		if err := c.pingFrame(time.Now()); err != nil {
			return err
		}
		return c.queueCtrl(ctrlFrame{kind: ctrlPingAck, data: p})
	case http2.FrameWindowUpdate:
		inc := v & 0x7fffffff // the reserved bit is ignored
		if inc == 0 {
			if fh.StreamID == 0 {
				return connError(http2.ErrCodeProtocol, "connection WINDOW_UPDATE of 0")
			}
			return streamError(fh.StreamID, http2.ErrCodeProtocol, "WINDOW_UPDATE of 0")
		}
		if err := c.windowUpdateFrame(); err != nil {
			return err
		}
		return c.handleWindowUpdate(fh.StreamID, inc)
	}
	if fh.StreamID == 0 {
		return connError(http2.ErrCodeProtocol, "RST_STREAM on stream 0")
	}
	return c.h.handleRST(fh.StreamID, http2.ErrCode(v))
}

// handleSettings applies the peer's SETTINGS in wire order, the last value
// winning (RFC 9113 §6.5.3), and queues the ACK, which the writer sends
// after applying the values it owns.
func (c *conn) handleSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		if c.unacked == 0 {
			return connError(http2.ErrCodeProtocol, "SETTINGS ACK without SETTINGS")
		}
		c.unacked--
		return nil
	}
	if f.NumSettings() > maxSettingsPerFrame {
		return connError(http2.ErrCodeEnhanceYourCalm, "too many settings in one frame")
	}
	ack := ctrlFrame{kind: ctrlSettingsAck}
	if c.ackedEarly > 0 {
		c.ackedEarly--
		ack.kind = ctrlSettingsApply
	}
	c.mu.Lock()
	defer c.unlock()
	for i := range f.NumSettings() {
		s := f.Setting(i)
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingHeaderTableSize:
			ack.setTable, ack.tableSize = true, min(s.Val, headerTableSize)
		case http2.SettingMaxFrameSize:
			ack.setFrame, ack.frameSize = true, s.Val
			c.peerMaxFrame = s.Val
		case http2.SettingInitialWindowSize:
			if err := c.setInitialWindowLocked(int64(s.Val)); err != nil {
				return err
			}
		default:
			if err := c.h.applySettingLocked(s); err != nil {
				return err
			}
		}
	}
	c.h.settingsAppliedLocked()
	if !c.queueCtrlLocked(ack) {
		return connError(http2.ErrCodeEnhanceYourCalm, "too many queued control frames")
	}
	return nil
}

// setInitialWindowLocked applies a new SETTINGS_INITIAL_WINDOW_SIZE: the
// difference goes to every open stream's send window, which may go
// negative; overflow is a connection error (RFC 9113 §6.9.2).
func (c *conn) setInitialWindowLocked(v int64) error {
	delta := v - c.peerInitWin
	c.peerInitWin = v
	if delta == 0 {
		return nil
	}
	for _, h := range c.streams {
		if !h.active {
			continue
		}
		h.sendWin += delta
		if h.sendWin > maxWindow {
			return connError(http2.ErrCodeFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream window")
		}
		if delta > 0 {
			c.scheduleLocked(h)
		}
	}
	return nil
}

// handleWindowUpdate credits a send window (RFC 9113 §6.9.1).
func (c *conn) handleWindowUpdate(id uint32, increment uint32) error {
	inc := int64(increment)
	c.mu.Lock()
	defer c.unlock()
	if id == 0 {
		c.sendConn += inc
		if c.sendConn > maxWindow {
			return connError(http2.ErrCodeFlowControl, "connection send window overflow")
		}
		if c.sendConn > 0 {
			for h := c.blocked.pop(); h != nil; h = c.blocked.pop() {
				h.listed = listNone
				c.scheduleLocked(h)
			}
		}
		return nil
	}
	h := c.streams[id]
	if h == nil {
		if c.h.idleLocked(id) {
			return connError(http2.ErrCodeProtocol, "WINDOW_UPDATE on an idle stream")
		}
		return nil // closed: allowed (RFC 9113 §6.9)
	}
	if !h.active {
		return nil
	}
	// Tracked even once our side is done: the peer's window must still
	// not overflow (RFC 9113 §6.9.1).
	h.sendWin += inc
	if h.sendWin > maxWindow {
		return streamError(id, http2.ErrCodeFlowControl, "stream send window overflow")
	}
	c.scheduleLocked(h)
	return nil
}
