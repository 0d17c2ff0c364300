package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// evilMode is how the malicious upstream misbehaves.
type evilMode int

const (
	// evilWindow answers every call with headers and then DATA without
	// end, ignoring the flow-control windows the proxy gives it.
	evilWindow evilMode = iota
	// evilRST resets every call at once, then keeps sending RST_STREAM on
	// the streams it already closed.
	evilRST
)

// evilPayload is 3,276 empty gRPC messages: valid gRPC, one full frame.
var evilPayload = make([]byte, 16380)

// serveEvil accepts the proxy's upstream connections on ln until ctx ends.
func serveEvil(ctx context.Context, ln net.Listener, mode evilMode, rec *recorder) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		rec.onConn()
		wg.Add(1)
		go func() {
			defer wg.Done()
			(&evilConn{nc: nc, mode: mode, rec: rec}).serve(ctx)
		}()
	}
}

type evilConn struct {
	nc   net.Conn
	mode evilMode
	rec  *recorder

	wmu  sync.Mutex
	bw   *bufio.Writer
	fr   *http2.Framer
	henc *hpack.Encoder
	hbuf bytes.Buffer

	mu     sync.Mutex
	cond   *sync.Cond
	active []uint32 // evilWindow: streams to push DATA on
	closed []uint32 // evilRST: the last closed streams, a ring
	next   int
	done   bool

	stopping atomic.Bool
}

func (c *evilConn) serve(ctx context.Context) {
	c.cond = sync.NewCond(&c.mu)
	stop := context.AfterFunc(ctx, func() {
		c.stopping.Store(true)
		c.nc.Close()
		c.mu.Lock()
		c.done = true
		c.mu.Unlock()
		c.cond.Broadcast()
	})
	defer stop()
	defer c.nc.Close()
	br := bufio.NewReaderSize(c.nc, 16<<10)
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(br, preface); err != nil {
		c.failed(err)
		return
	}
	c.bw = bufio.NewWriterSize(c.nc, 64<<10)
	c.fr = http2.NewFramer(c.bw, br)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.henc = hpack.NewEncoder(&c.hbuf)
	if err := c.write(func(fr *http2.Framer) error {
		return fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1000})
	}); err != nil {
		c.failed(err)
		return
	}
	go c.writeLoop()
	defer func() {
		c.mu.Lock()
		c.done = true
		c.mu.Unlock()
		c.cond.Broadcast()
	}()
	for {
		f, err := readFrame(c.fr)
		if err != nil {
			c.failed(err)
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = c.write(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = c.write(func(fr *http2.Framer) error { return fr.WritePing(true, f.Data) })
			}
		case *http2.GoAwayFrame:
			c.rec.onGoAway(f.ErrCode, f.DebugData())
		case *http2.RSTStreamFrame:
			c.rec.onReset(f.ErrCode)
			c.mu.Lock()
			for i, id := range c.active {
				if id == f.StreamID {
					c.active = append(c.active[:i], c.active[i+1:]...)
					break
				}
			}
			c.mu.Unlock()
		case *http2.MetaHeadersFrame:
			c.rec.onStream()
			c.onRequest(f.StreamID)
		}
	}
}

// failed records the end of the connection once (its reader and its
// writer both see it), unless the attack is over.
func (c *evilConn) failed(err error) {
	if c.stopping.CompareAndSwap(false, true) {
		c.rec.onClosed(err)
	}
}

func (c *evilConn) write(fn func(*http2.Framer) error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := fn(c.fr); err != nil {
		return err
	}
	return c.bw.Flush()
}

func (c *evilConn) onRequest(id uint32) {
	switch c.mode {
	case evilWindow:
		err := c.write(func(fr *http2.Framer) error {
			c.hbuf.Reset()
			_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
			_ = c.henc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
			return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true})
		})
		if err != nil {
			return
		}
		c.mu.Lock()
		c.active = append(c.active, id)
		c.mu.Unlock()
	case evilRST:
		if c.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(id, http2.ErrCodeInternal) }) != nil {
			return
		}
		c.mu.Lock()
		if len(c.closed) < 256 {
			c.closed = append(c.closed, id)
		} else {
			c.closed[c.next%256] = id
			c.next++
		}
		c.mu.Unlock()
	}
	c.cond.Broadcast()
}

// writeLoop misbehaves as fast as it can, until the connection ends.
func (c *evilConn) writeLoop() {
	var ids []uint32
	for {
		c.mu.Lock()
		for !c.done && len(c.active) == 0 && len(c.closed) == 0 {
			c.cond.Wait()
		}
		if c.done {
			c.mu.Unlock()
			return
		}
		if c.mode == evilWindow {
			ids = append(ids[:0], c.active...)
		} else {
			ids = append(ids[:0], c.closed...)
		}
		c.mu.Unlock()
		var frames, n int64
		err := c.write(func(fr *http2.Framer) error {
			for _, id := range ids {
				var err error
				if c.mode == evilWindow {
					err = fr.WriteData(id, false, evilPayload)
					n += 9 + int64(len(evilPayload))
				} else {
					err = fr.WriteRSTStream(id, http2.ErrCodeInternal)
					n += 13
				}
				if err != nil {
					return err
				}
				frames++
			}
			return nil
		})
		c.rec.sent(frames, n)
		if err != nil {
			c.failed(err)
			return
		}
	}
}

func upstreamWindow(ctx context.Context, e *env) error {
	return upstreamAttack(ctx, e, evilWindow, pathEvilWindow)
}

func upstreamRST(ctx context.Context, e *env) error {
	return upstreamAttack(ctx, e, evilRST, pathEvilRST)
}

// upstreamAttack serves the malicious upstream and drives calls to it
// through the proxy: 100 in flight, at most 500 new ones a second, from a
// client that never returns flow-control credit. A driver connection the
// proxy closes is replaced.
func upstreamAttack(ctx context.Context, e *env, mode evilMode, path string) error {
	ln, err := net.Listen("tcp", e.evilAddr)
	if err != nil {
		return fmt.Errorf("malicious upstream: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	go serveEvil(ctx, ln, mode, e.up)

	const inFlight = 100
	pace := time.NewTicker(2 * time.Millisecond)
	defer pace.Stop()
	for ctx.Err() == nil {
		c, err := e.dial(ctx)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		slots := make(chan struct{}, inFlight)
		var mu sync.Mutex
		live := map[uint32]bool{}  // calls in flight
		ended := map[uint32]bool{} // calls that ended before they were marked live
		c.onFrame = func(f http2.Frame) {
			h := f.Header()
			end := h.Type == http2.FrameRSTStream ||
				(h.Type == http2.FrameHeaders || h.Type == http2.FrameData) && h.Flags.Has(http2.FlagDataEndStream)
			if !end || h.StreamID == 0 {
				return
			}
			mu.Lock()
			if live[h.StreamID] {
				delete(live, h.StreamID)
				<-slots
			} else {
				ended[h.StreamID] = true
			}
			mu.Unlock()
		}
		go c.readLoop()
	driver:
		for {
			select {
			case <-ctx.Done():
				break driver
			case <-c.dead:
				break driver
			case slots <- struct{}{}:
			}
			select {
			case <-ctx.Done():
				break driver
			case <-pace.C:
			}
			id, err := openCall(c, path, true)
			if err != nil {
				c.failed(err)
				break driver
			}
			mu.Lock()
			if ended[id] {
				delete(ended, id)
				<-slots
			} else {
				live[id] = true
			}
			mu.Unlock()
		}
	}
	return nil
}
