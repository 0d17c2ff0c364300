package h2

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sightline-proxy/sightline/internal/testnet"
	"github.com/sightline-proxy/sightline/proxy/config"
)

// TestControlFrameFloods: a client that floods frames asking for no work
// (WINDOW_UPDATE, PRIORITY, SETTINGS that change INITIAL_WINDOW_SIZE, PING,
// RST_STREAM on closed streams) is sent GOAWAY(ENHANCE_YOUR_CALM) and
// counted, long before it has cost much; meanwhile another client on its
// own connection is served.
func TestControlFrameFloods(t *testing.T) {
	p := okProxy(t, okHandler, proxyOpts{})
	tests := []struct {
		name string
		// frame writes one flood frame; i counts them from 0.
		frame func(fr *http2.Framer, i int)
		// open, when set, opens this many streams first.
		open int
	}{
		{"WINDOW_UPDATE", func(fr *http2.Framer, _ int) { fr.WriteWindowUpdate(0, 1) }, 0},
		{"PRIORITY", func(fr *http2.Framer, i int) {
			fr.WritePriority(uint32(2*i+101), http2.PriorityParam{StreamDep: 0, Weight: 15})
		}, 0},
		{"SETTINGS over open streams", func(fr *http2.Framer, i int) {
			fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(65535 + i%2)})
		}, 100},
		{"PING", func(fr *http2.Framer, _ int) { fr.WritePing(false, [8]byte{}) }, 0},
		{"RST_STREAM on closed streams", func(fr *http2.Framer, _ int) { fr.WriteRSTStream(1, http2.ErrCodeCancel) }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, addr := statsServer(t, p, proxyOpts{})
			c := dialRaw(t, addr, true)
			if tt.name == "RST_STREAM on closed streams" {
				c.request(1, true)
				if status, _, _ := c.response(1); status != "200" {
					t.Fatalf("status %s", status)
				}
			}
			for i := range tt.open {
				c.post(uint32(2*i + 3))
			}
			// The flood goes in batches from another goroutine, as fast
			// as the proxy reads; the GOAWAY must come well within it.
			const frames = 20000
			var buf bytes.Buffer
			fr := http2.NewFramer(&buf, nil)
			for i := range frames {
				tt.frame(fr, i)
			}
			go func() {
				c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				c.c.Write(buf.Bytes())
			}()
			victim := dialRaw(t, addr, true)
			victim.request(1, true)
			if status, _, _ := victim.response(1); status != "200" {
				t.Errorf("the other client got %s, want 200", status)
			}
			c.wantGoAway(http2.ErrCodeEnhanceYourCalm)
			wantCounts(t, st, 1, 0)
		})
	}
}

// TestResetsOfAStreamBeingWritten: a client that asks for an endless
// response, stops reading it and resets its stream again and again is
// sent GOAWAY(ENHANCE_YOUR_CALM). The writer, blocked on the full socket,
// holds the stream's frames, so the stream stays known until it lets go;
// only the first reset is free all the same (each cost a lock and a
// cancel, and none was counted).
func TestResetsOfAStreamBeingWritten(t *testing.T) {
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	p := okProxy(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}), proxyOpts{})
	st, addr := statsServer(t, p, proxyOpts{})
	c := dialRaw(t, addr, false)
	c.write([]byte(http2.ClientPreface))
	const maxWindow = 1<<31 - 1
	c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: maxWindow})
	c.fr.WriteWindowUpdate(0, maxWindow-65535)
	c.request(1, true)
	sc := serverConnFor(t, c)
	// Wait until the writer is stuck on the full socket in the middle of
	// a batch of the stream's frames, which it then holds. Stuck between
	// batches, it holds none: a few frames read let it go on to stop
	// somewhere else.
	deadline := time.Now().Add(10 * time.Second)
	for stuck := 0; stuck < 3; {
		if time.Now().After(deadline) {
			t.Fatal("the writer never stopped holding the stream's frames")
		}
		sent := sc.dataSent.Load()
		time.Sleep(20 * time.Millisecond)
		sc.mu.Lock()
		h := sc.streams[1]
		holding := h != nil && h.inFlight > 0
		sc.mu.Unlock()
		switch {
		case sent != sc.dataSent.Load():
			stuck = 0 // still writing
		case holding:
			stuck++
		default:
			stuck = 0
			for range 16 {
				c.next()
			}
		}
	}
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	for range 2 * glitchBase {
		fr.WriteRSTStream(1, http2.ErrCodeCancel)
	}
	fr.WritePing(false, [8]byte{'a', 'f', 't', 'e', 'r'})
	c.write(buf.Bytes())
	// Read nothing until the proxy has handled it all and queued its
	// answer, the PING's ACK or a GOAWAY: what is read lets the writer
	// go, and the resets after that would find the stream gone.
	for answered := false; !answered; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the proxy did not answer the resets and the PING")
		}
		sc.mu.Lock()
		answered = sc.ctrlOnly || slices.ContainsFunc(sc.ctrl, func(f ctrlFrame) bool { return f.kind == ctrlPingAck })
		sc.mu.Unlock()
	}
	for {
		switch f := c.next(http2.FramePing).(type) {
		case nil:
			t.Fatal("connection closed without GOAWAY")
		case *http2.PingFrame:
			if f.IsAck() {
				t.Fatalf("the PING after %d resets of a stream was answered: want GOAWAY(%v)", 2*glitchBase, http2.ErrCodeEnhanceYourCalm)
			}
		case *http2.GoAwayFrame:
			if f.ErrCode != http2.ErrCodeEnhanceYourCalm {
				t.Fatalf("GOAWAY %v, want %v", f.ErrCode, http2.ErrCodeEnhanceYourCalm)
			}
			wantCounts(t, st, 1, 0)
			return
		}
	}
}

// serverConnFor finds the proxy's side of a raw client's connection.
func serverConnFor(t *testing.T, c *rawPeer) *serverConn {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		live.mu.Lock()
		conns := live.conns.Chunk(nil, 0, live.conns.Len())
		live.mu.Unlock()
		for _, sc := range conns {
			if sc.nc.RemoteAddr().String() == c.c.LocalAddr().String() {
				return sc
			}
		}
	}
	t.Fatal("the proxy has no connection from the client")
	return nil
}

// TestConnectionShare: a client holding many streams open on one
// connection takes at most its share of the cluster's max_requests; its
// excess is refused on it (503, flag UO), and another client's call still
// goes through.
func TestConnectionShare(t *testing.T) {
	release := make(chan struct{})
	addr := testnet.Serve(t, blockingHandler(release), testnet.HTTP1|testnet.H2C)
	p := startProxy(t, []testCluster{{name: "slow", addrs: []string{addr}, breakers: config.CircuitBreakers{MaxRequests: 64}}},
		[]testRoute{{prefix: "/", cluster: "slow"}}, proxyOpts{})
	hog := dialRaw(t, p.addr, true)
	const streams = 60
	for i := range streams {
		hog.request(uint32(2*i+1), true)
	}
	refused := 0
	for refused < streams-32 {
		f := hog.next()
		mh, ok := f.(*http2.MetaHeadersFrame)
		if !ok {
			if f == nil {
				t.Fatal("connection closed")
			}
			continue
		}
		if mh.PseudoValue("status") != "503" || field(mh.Fields, "x-sightline-response-flags") != "UO" {
			t.Fatalf("stream %d: %s %q before the share was used", mh.StreamID, mh.PseudoValue("status"), field(mh.Fields, "x-sightline-response-flags"))
		}
		refused++
	}
	victim := dialRaw(t, p.addr, true)
	victim.request(1, true)
	close(release)
	if status, _, body := victim.response(1); status != "200" || string(body) != "late" {
		t.Errorf("the other client got %s %q, want 200", status, body)
	}
}

// TestEarlyAnswersAreNoGlitches: a backend that answers before reading the
// request body resets each stream after its response (RST_STREAM
// NO_ERROR, as Go's server does), and a client whose response came before
// its body was sent resets its stream (CANCEL, as Go's client does): once
// per stream, normal, however many streams a connection carries. Neither
// side's connection is closed for it.
func TestEarlyAnswersAreNoGlitches(t *testing.T) {
	addr := testnet.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("early")) // the request body is never read
	}), testnet.HTTP1|testnet.H2C)
	p := startCountingProxy(t, []string{addr}, config.CircuitBreakers{}, PoolOptions{})
	c := dialRaw(t, p.addr, true)
	const calls = 1500 // over glitchLimit
	for i := range calls {
		id := uint32(2*i + 1)
		c.post(id)
		c.fr.WriteData(id, false, []byte("part of a body"))
		if status, _, body := c.response(id); status != "200" || string(body) != "early" {
			t.Fatalf("call %d: %s %q", i, status, body)
		}
		if err := c.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	cx := p.cs.Connections()
	if n := cx.CxProtocolError.Value(); n != 0 {
		t.Errorf("upstream_cx_protocol_error = %d, want 0", n)
	}
	if n := cx.CxTotal.Value(); n != 1 {
		t.Errorf("upstream_cx_total = %d, want 1: the connection was never closed", n)
	}
}

// TestPingRate: PING and SETTINGS frames are free on a busy connection
// (grpc-go pings after the DATA it reads, to size its window) and allowed
// at a rate on a quiet one: a keepalive every few seconds never trips it,
// however long the connection lives; a burst over the bucket does.
func TestPingRate(t *testing.T) {
	var c conn
	start := time.Now()
	for i := range 10000 { // a PING every 5 s for 14 hours
		if err := c.pingFrame(start.Add(time.Duration(i) * 5 * time.Second)); err != nil {
			t.Fatalf("keepalive PING %d refused: %v", i, err)
		}
	}
	var busy conn
	for i := range 100 * pingBurst { // all at once, each after a DATA frame
		busy.dataSent.Add(1)
		if err := busy.pingFrame(start); err != nil {
			t.Fatalf("PING %d after DATA refused: %v", i, err)
		}
	}
	var burst conn
	for i := range pingBurst + 10 {
		if err := burst.pingFrame(start); err != nil {
			if i < pingBurst {
				t.Fatalf("PING %d of a burst refused, want %d allowed", i, pingBurst)
			}
			return
		}
	}
	t.Fatalf("a burst of %d PINGs was allowed", pingBurst+10)
}

// TestIdleBeforeFirstRequest: a connection that finishes its handshake and
// asks nothing is closed (GOAWAY NO_ERROR, last stream 0) after the header
// read timeout; one that made a request keeps the idle timeout.
func TestIdleBeforeFirstRequest(t *testing.T) {
	p := okProxy(t, okHandler, proxyOpts{limits: config.Limits{HeaderReadTimeout: config.Duration(100 * time.Millisecond), IdleTimeout: config.Duration(time.Hour)}})
	quiet := dialRaw(t, p.addr, true)
	busy := dialRaw(t, p.addr, true)
	busy.request(1, true)
	if status, _, _ := busy.response(1); status != "200" {
		t.Fatalf("status %s", status)
	}
	// One GOAWAY, last stream 0, and the close: with no stream ever
	// opened there is nothing a graceful two-step shutdown would save.
	var goAways []*http2.GoAwayFrame
	for f := quiet.next(); f != nil; f = quiet.next() {
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			goAways = append(goAways, ga)
		}
	}
	if len(goAways) != 1 || goAways[0].ErrCode != http2.ErrCodeNo || goAways[0].LastStreamID != 0 {
		for _, ga := range goAways {
			t.Logf("GOAWAY %v last stream %d", ga.ErrCode, ga.LastStreamID)
		}
		t.Errorf("the quiet connection got %d GOAWAYs, want one, NO_ERROR, last stream 0", len(goAways))
	}
	// The connection that made a request is still served.
	busy.request(3, true)
	if status, _, _ := busy.response(3); status != "200" {
		t.Errorf("after the quiet one was closed: status %s", status)
	}
}

// TestWindowUpdatesDuringLargeUpload: an upstream that returns credit for
// every DATA frame as it reads it (a WINDOW_UPDATE for the stream and one
// for the connection, as Go's server does) is within Envoy's allowance
// even while the proxy is still writing a long run of DATA frames; it
// must not be taken for a flood and cut off mid-upload.
func TestWindowUpdatesDuringLargeUpload(t *testing.T) {
	const size = 8 << 20
	var got atomic.Int64
	addr := testnet.ServeConns(t, func(c net.Conn) {
		fr := http2.NewFramer(c, c)
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		pre := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(c, pre); err != nil {
			return
		}
		// Room for the whole body at once: the proxy writes it as one
		// run of frames, which fills the socket while this side reads.
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: size})
		fr.WriteWindowUpdate(0, size)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					fr.WriteSettingsAck()
				}
			case *http2.DataFrame:
				got.Add(int64(len(f.Data())))
				if n := uint32(len(f.Data())); n > 0 {
					fr.WriteWindowUpdate(f.StreamID, n)
					fr.WriteWindowUpdate(0, n)
				}
				if f.StreamEnded() {
					var buf bytes.Buffer
					enc := hpack.NewEncoder(&buf)
					enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
					fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: buf.Bytes(), EndHeaders: true, EndStream: true})
				}
				// A slow reader: the proxy's writes back up meanwhile.
				if got.Load()%(1<<20) == 0 {
					time.Sleep(5 * time.Millisecond)
				}
			}
		}
	})
	pool := NewPool(addr, PoolOptions{})
	t.Cleanup(func() { pool.Close() })
	req, _ := http.NewRequest("POST", "http://"+addr+"/upload", bytes.NewReader(bytes.Repeat([]byte("u"), size)))
	resp, err := pool.RoundTrip(req)
	if err != nil {
		t.Fatalf("upload cut off after %d of %d bytes: %v", got.Load(), size, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || got.Load() != size {
		t.Fatalf("status %d, the upstream got %d of %d bytes", resp.StatusCode, got.Load(), size)
	}
}

// TestClosedStreamsRing: a connection remembers the streams that closed
// last, up to closedRing, in as many entries as streams closed, and
// takes a crossing RST_STREAM once per stream remembered.
func TestClosedStreamsRing(t *testing.T) {
	for _, tt := range []struct {
		name      string
		closed    int // streams 1, 3, 5, … closed in order
		entries   int
		crossed   []uint32 // each asked twice: true, then false
		forgotten []uint32
	}{
		{"one call", 1, 1, []uint32{1}, []uint32{3}},
		{"a few", 5, 5, []uint32{1, 9}, []uint32{11}},
		{"past the ring", 200, closedRing, []uint32{2*(200-closedRing) + 1, 399}, []uint32{1, 2*(200-closedRing) - 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &conn{}
			for i := range tt.closed {
				c.rememberClosedLocked(uint32(2*i + 1))
			}
			if len(c.closedIDs) != tt.entries {
				t.Errorf("%d entries, want %d", len(c.closedIDs), tt.entries)
			}
			for _, id := range tt.crossed {
				if !c.crossedLocked(id) {
					t.Errorf("stream %d: not remembered", id)
				}
				if c.crossedLocked(id) {
					t.Errorf("stream %d: a second RST_STREAM taken as crossing too", id)
				}
			}
			for _, id := range tt.forgotten {
				if c.crossedLocked(id) {
					t.Errorf("stream %d: remembered, want it forgotten", id)
				}
			}
		})
	}
}
