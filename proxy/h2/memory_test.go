package h2

import (
	"bytes"
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/internal/testnet"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/overload"
	"github.com/sightline-proxy/sightline/stats"
)

// waitBuffered waits until the engine's buffer memory, less base, is at
// least want, and returns it; it fails the test if that never happens.
func waitBuffered(t *testing.T, base, want int64) int64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := BufferedBytes() - base
		if got >= want {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("buffers hold %d bytes, waited for %d", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// windowFiller is an upstream that answers every request with response
// headers and then as much of a 2 MiB body as the stream window the proxy
// gave it allows, never ending: what a server stream sends to a client
// that does not read.
func windowFiller() *fakeUpstream {
	chunk := bytes.Repeat([]byte("w"), 16<<10)
	return &fakeUpstream{onRequest: func(fc *fakeConn, id uint32) {
		window := min(int(fc.window.Load()), 2<<20)
		fc.mu.Lock()
		defer fc.mu.Unlock()
		fc.encBuf.Reset()
		fc.enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		fc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: fc.encBuf.Bytes(), EndHeaders: true})
		for range window / len(chunk) {
			fc.fr.WriteData(id, false, chunk)
		}
	}}
}

// openStalled has a client that never reads (stream windows 0) open n
// streams through p.
func openStalled(t *testing.T, addr string, n int) *rawPeer {
	t.Helper()
	c := slowReader(t, addr, 0)
	for i := range n {
		c.request(uint32(2*i+1), true)
	}
	return c
}

// TestZeroWindowReaderBounded: a client that opens streams and never
// reads makes the proxy hold no more than each upstream stream's initial
// window, 16 KiB, because the window the upstream gets grows only while
// the client takes the bytes (before: 1 MiB per stream, then 64 KiB).
func TestZeroWindowReaderBounded(t *testing.T) {
	p := fakeProxy(t, windowFiller())
	base := BufferedBytes()
	const streams = 20
	openStalled(t, p.addr, streams)
	waitBuffered(t, base, streams*upstreamStreamWindow)
	time.Sleep(50 * time.Millisecond) // anything more would arrive now
	got := BufferedBytes() - base
	if limit := int64(streams * 2 * upstreamStreamWindow); got > limit {
		t.Errorf("buffers hold %d bytes for %d stalled streams, want at most %d", got, streams, limit)
	}
}

// TestUpstreamWindowsShareClientRoom: a client with HTTP/2's default
// windows that opens 8 server streams and reads none of them lets their
// upstreams send what the proxy holds for it (each stream's first 16 KiB)
// and what its connection window takes (64 KiB), and no more: a stream's
// window grows only into the client's room less what is queued for it and
// what its other streams' upstreams were promised (before: a stream's
// first credit grew it to 64 KiB, judged against the whole connection
// window).
func TestUpstreamWindowsShareClientRoom(t *testing.T) {
	const streams = 8
	chunk := bytes.Repeat([]byte("s"), 1<<10)
	var allowed atomic.Int64
	send := func(fc *fakeConn, id uint32, n int) {
		fc.write(func(fr *http2.Framer) {
			for ; n > 0; n -= len(chunk) {
				fr.WriteData(id, false, chunk[:min(n, len(chunk))])
			}
		})
	}
	var mu sync.Mutex
	var ids []uint32
	p := fakeProxy(t, &fakeUpstream{
		onRequest: func(fc *fakeConn, id uint32) {
			// The responses start once every stream is open, so that the
			// bound does not depend on how requests and responses
			// interleave.
			mu.Lock()
			ids = append(ids, id)
			all := len(ids) == streams
			mu.Unlock()
			if !all {
				return
			}
			window := int(fc.window.Load())
			for _, id := range ids {
				allowed.Add(int64(window))
				fc.write(func(fr *http2.Framer) {
					fc.encBuf.Reset()
					fc.enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
					fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: fc.encBuf.Bytes(), EndHeaders: true})
				})
			}
			for _, id := range ids {
				send(fc, id, window)
			}
		},
		onWindowUpdate: func(fc *fakeConn, id, inc uint32) {
			if id != 0 {
				allowed.Add(int64(inc))
				send(fc, id, int(inc))
			}
		},
	})
	c := slowReader(t, p.addr, defaultWindow)
	for i := range streams {
		c.request(uint32(2*i+1), true)
	}
	// Wait for every stream's first window, then for the grants to stop.
	low := int64(streams * upstreamStreamWindow)
	last, since := int64(-1), time.Now()
	for deadline := time.Now().Add(10 * time.Second); last < low || time.Since(since) < 300*time.Millisecond; {
		if got := allowed.Load(); got != last {
			last, since = got, time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s the upstream is allowed %d bytes, still changing or under the streams' first windows (%d)", last, low)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if limit := int64(streams*upstreamStreamWindow + defaultWindow); last > limit {
		t.Errorf("the upstream was allowed %d bytes for a client that reads nothing with a %d-byte connection window, want at most %d", last, defaultWindow, limit)
	}
}

// TestUpstreamWindowGrowsForReader: an upstream stream starts with 16 KiB
// of window. Once a client that reads has taken them, the window grows at
// once to HTTP/2's default window (65,535 bytes) if the client can take
// that much more at once, so a large response waits for one
// WINDOW_UPDATE, not a ramp of them; if it cannot, the window only
// doubles.
func TestUpstreamWindowGrowsForReader(t *testing.T) {
	body := bytes.Repeat([]byte("r"), upstreamStreamWindow)
	tests := []struct {
		name string
		// call makes a request through the proxy and reads the whole
		// response, body then "end".
		call func(t *testing.T, addr string) string
		want uint32 // the first WINDOW_UPDATE's increment
	}{
		{"a client with room", func(t *testing.T, addr string) string {
			code, got := get(t, h2cClient(), addr, "/") // windows of 4 MiB and more
			if code != 200 {
				t.Errorf("status %d", code)
			}
			return got
		}, defaultWindow},
		{"a client with the default windows", func(t *testing.T, addr string) string {
			return readRaw(t, addr, defaultWindow)
		}, defaultWindow},
		{"a client a byte short", func(t *testing.T, addr string) string {
			// 49,150 bytes of room once 16 KiB are written, where the
			// jump takes 49,151.
			return readRaw(t, addr, defaultWindow-1)
		}, 2 * upstreamStreamWindow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var settings atomic.Uint32
			grants := make(chan uint32, 16)
			fu := &fakeUpstream{
				onRequest: func(fc *fakeConn, id uint32) {
					settings.Store(fc.window.Load())
					fc.write(func(fr *http2.Framer) {
						fc.encBuf.Reset()
						fc.enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
						fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: fc.encBuf.Bytes(), EndHeaders: true})
						fr.WriteData(id, false, body) // the whole first window
					})
				},
				onWindowUpdate: func(fc *fakeConn, id, inc uint32) {
					if id == 0 {
						return
					}
					grants <- inc
					fc.write(func(fr *http2.Framer) { fr.WriteData(id, true, []byte("end")) })
				},
			}
			p := fakeProxy(t, fu)
			if got := tt.call(t, p.addr); got != string(body)+"end" {
				t.Fatalf("got %d bytes, want %d", len(got), len(body)+3)
			}
			if w := settings.Load(); w != upstreamStreamWindow {
				t.Errorf("the upstream was given SETTINGS_INITIAL_WINDOW_SIZE %d, want %d", w, upstreamStreamWindow)
			}
			select {
			case inc := <-grants:
				// The 16 KiB taken are credited, and the window grows.
				if inc != tt.want {
					t.Errorf("the first WINDOW_UPDATE gave %d bytes, want %d (a window of %d after %d taken)",
						inc, tt.want, tt.want, upstreamStreamWindow)
				}
			default:
				t.Fatal("no WINDOW_UPDATE for the stream")
			}
		})
	}
}

// readRaw makes a GET through the proxy at addr from a raw client with
// the given stream window and the default connection window, and reads
// the response body to its end without crediting either window.
func readRaw(t *testing.T, addr string, window uint32) string {
	t.Helper()
	c := slowReader(t, addr, window)
	c.request(1, true)
	var got []byte
	for {
		switch f := c.next().(type) {
		case nil:
			t.Fatal("connection closed")
		case *http2.DataFrame:
			got = append(got, f.Data()...)
			if f.StreamEnded() {
				return string(got)
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("RST_STREAM %v", f.ErrCode)
		}
	}
}

// TestTinyFramesShareBuffers: a client that sends its request in tiny
// DATA frames (5 bytes, an empty gRPC message each) to an upstream that
// does not read makes the proxy hold about the bytes, not a buffer per
// frame (before: 512 bytes per frame).
func TestTinyFramesShareBuffers(t *testing.T) {
	stalled := make(chan struct{})
	defer close(stalled)
	p := fakeProxy(t, &fakeUpstream{onRequest: func(*fakeConn, uint32) {}})
	base := BufferedBytes()
	c := dialRaw(t, p.addr, true)
	const streams, perStream = 4, 48 << 10
	for i := range streams {
		c.post(uint32(2*i + 1))
	}
	msg := []byte{0, 0, 0, 0, 0}
	for range perStream / len(msg) {
		for i := range streams {
			if err := c.fr.WriteData(uint32(2*i+1), false, msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The upstream takes its 64 KiB connection window; the rest waits.
	want := int64(streams*(perStream/len(msg)*len(msg)) - defaultWindow)
	p.waitQueued(t, want)
	if got, limit := BufferedBytes()-base, int64(streams*perStream*2); got > limit {
		t.Errorf("buffers hold %d bytes for %d bytes of 5-byte frames, want at most %d", got, streams*perStream, limit)
	}
}

// TestSliverFloodCutOff: DATA frames of a byte or two into streams whose
// upstream takes nothing are a flood: the proxy pays a frame's work per
// byte. The client gets GOAWAY(ENHANCE_YOUR_CALM) after the glitch limit.
func TestSliverFloodCutOff(t *testing.T) {
	p := fakeProxy(t, &fakeUpstream{ // a stream window of 1 byte, never refunded
		settings: []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1}}, onRequest: func(*fakeConn, uint32) {}})
	c := dialRaw(t, p.addr, true)
	c.post(1)
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	for range 60000 { // under the stream window the proxy gives
		fr.WriteData(1, false, []byte{'x'})
	}
	go func() {
		c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		c.c.Write(buf.Bytes())
	}()
	c.wantGoAway(http2.ErrCodeEnhanceYourCalm)
}

// waitQueued waits until the proxy's queues hold at least want payload
// bytes, downstream and upstream.
func (p *testProxy) waitQueued(t *testing.T, want int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for p.bufferedBytes() < want {
		if time.Now().After(deadline) {
			t.Fatalf("queues hold %d bytes, waited for %d", p.bufferedBytes(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOverloadResetsLargestStreams: past the reset threshold of the buffer
// budget, the overload manager resets the calls holding the most bytes
// (the stalled client's, with ENHANCE_YOUR_CALM) and counts them, and
// another client's calls still succeed.
func TestOverloadResetsLargestStreams(t *testing.T) {
	st := realStore(t)
	const streams = 16
	budget := int64(streams * upstreamStreamWindow) // the stalled streams fill it
	m := overload.New(overload.Config{MaxBufferedBytes: budget, StopRequests: 10, StopConnections: 10,
		RefreshInterval: 5 * time.Millisecond}, Engine(), st.Overload())
	defer growLimit.Store(overload.DefaultMaxBufferedBytes / 4)
	fu := startFakeUpstream(t, windowFiller())
	victim := testnet.Serve(t, okHandler, testnet.HTTP1|testnet.H2C)
	p := startProxy(t, []testCluster{{name: "fake", addrs: []string{fu.addr}, connect: time.Second}, {name: "ok", addrs: []string{victim}}},
		[]testRoute{{prefix: "/ok", cluster: "ok"}, {prefix: "/", cluster: "fake"}}, proxyOpts{overload: m})
	m.Start()
	defer m.Stop()
	c := openStalled(t, p.addr, streams)
	resets := 0
	for resets < streams/4 {
		f := c.next()
		if f == nil {
			t.Fatalf("connection closed after %d resets", resets)
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok {
			if rst.ErrCode != http2.ErrCodeEnhanceYourCalm {
				t.Fatalf("RST_STREAM %v, want ENHANCE_YOUR_CALM", rst.ErrCode)
			}
			resets++
		}
	}
	// Counted once the manager's pass is over, a moment after the
	// resets left.
	deadline := time.Now().Add(10 * time.Second)
	for st.Overload().ResetStreams.Value() < int64(resets) {
		if time.Now().After(deadline) {
			t.Fatalf("overload.reset_high_memory_stream.count = %d, want at least %d", st.Overload().ResetStreams.Value(), resets)
		}
		time.Sleep(time.Millisecond)
	}
	if code, body := get(t, h2cClient(), p.addr, "/ok"); code != 200 || body != "ok from the backend\n" {
		t.Errorf("another client got %d %q, want 200", code, body)
	}
}

// TestBufferAlarm: the overload manager's alarm rings once, when the
// engine's buffers reach its mark, and not below it.
func TestBufferAlarm(t *testing.T) {
	c := make(chan struct{}, 1)
	setAlarm(BufferedBytes()+1<<40, c)
	putBuf(getBuf(maxFrameSize))
	select {
	case <-c:
		t.Fatal("the alarm rang below its mark")
	default:
	}
	setAlarm(BufferedBytes()+1, c)
	d := getBuf(maxFrameSize)
	defer putBuf(d)
	select {
	case <-c:
	default:
		t.Fatal("the alarm did not ring at its mark")
	}
	if bufAlarm.Load() != nil {
		t.Error("the alarm is still armed once it rang")
	}
	putBuf(getBuf(maxFrameSize))
	select {
	case <-c:
		t.Error("the alarm rang twice")
	default:
	}
}

// TestOverloadStopsRequests: while stop_accepting_requests is on, a new
// request gets 503 (UNAVAILABLE for gRPC) with flag OM, counted in
// downstream_rq_overload_close, and nothing goes upstream.
func TestOverloadStopsRequests(t *testing.T) {
	st := realStore(t)
	hold := make([]*dbuf, 0, 8)
	defer func() {
		for _, d := range hold {
			putBuf(d)
		}
	}()
	for range 8 {
		hold = append(hold, getBuf(maxFrameSize)) // 128 KiB in use
	}
	m := overload.New(overload.Config{MaxBufferedBytes: 64 << 10, ResetStreams: 10, StopConnections: 10,
		RefreshInterval: time.Hour}, overload.Engine{Buffered: BufferedBytes}, st.Overload())
	m.Start()
	defer m.Stop()
	if !m.Active(overload.StopRequests) {
		t.Fatal("stop_accepting_requests is off at twice the budget")
	}
	fu := startFakeUpstream(t, &fakeUpstream{})
	p := startProxy(t, []testCluster{{name: "fake", addrs: []string{fu.addr}, connect: time.Second}},
		[]testRoute{{prefix: "/", cluster: "fake"}}, proxyOpts{})
	hst := st.HTTP("test")
	srv := NewServer(ServerOptions{Routes: p.srv.routes.Load(), Stats: hst, Overload: m, Log: zerolog.Nop()})
	c := dialRaw(t, serve(t, srv, false), true)
	c.request(1, true)
	status, fields, _ := c.response(1)
	if status != "503" || field(fields, "x-sightline-response-flags") != "OM" {
		t.Errorf("got %s flags %q, want 503 OM", status, field(fields, "x-sightline-response-flags"))
	}
	c.request(3, true, "content-type", "application/grpc")
	status, fields, _ = c.response(3)
	if status != "200" || field(fields, "grpc-status") != "14" {
		t.Errorf("gRPC: got %s grpc-status %q, want 200 and 14", status, field(fields, "grpc-status"))
	}
	if n := hst.DownstreamRqOverloadClose.Value(); n != 2 {
		t.Errorf("downstream_rq_overload_close = %d, want 2", n)
	}
	if n := fu.streams.Load(); n != 0 {
		t.Errorf("upstream saw %d streams, want none", n)
	}
}

// realStore is a stats store that keeps values, flushed by nothing.
func realStore(t *testing.T) *stats.Store {
	t.Helper()
	store, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// TestStalledUpstreamHoldsOneWindow: uploads to an upstream that stops
// reading make the proxy hold about one stream window each: the client's
// window grows only while the upstream can take another window's worth
// (before: it doubled as the upstream took its first bytes, to 256 KiB and
// more).
func TestStalledUpstreamHoldsOneWindow(t *testing.T) {
	// Takes each stream's first 64 KiB (its connection window is large),
	// then nothing, and never answers.
	var opened sync.Map
	p := fakeProxy(t, &fakeUpstream{onRequest: func(fc *fakeConn, _ uint32) {
		if _, done := opened.LoadOrStore(fc, true); !done {
			fc.write(func(fr *http2.Framer) { fr.WriteWindowUpdate(0, 16<<20) })
		}
	}})
	const uploads = 4
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // the uploads end before the proxy shuts down
	for range uploads {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+p.addr+"/", bytes.NewReader(make([]byte, 4<<20)))
			if resp, err := h2cClient().Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	// Each upload's first 64 KiB go out; the next wait in the proxy.
	p.waitQueued(t, uploads*initialStreamWindow/2)
	time.Sleep(100 * time.Millisecond) // what more the clients may send arrives
	if got, limit := p.bufferedBytes(), int64(uploads*2*initialStreamWindow); got > limit {
		t.Errorf("the proxy holds %d bytes of %d stalled uploads, want at most %d", got, uploads, limit)
	}
}
