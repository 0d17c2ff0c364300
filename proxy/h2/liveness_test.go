package h2

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// waitSignal waits for one value on ch, failing the test after a
// generous deadline (a hang, not a timing assertion).
func waitSignal[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// connTracker counts the streams each fake upstream connection holds at
// once, and the most it ever held.
type connTracker struct {
	mu      sync.Mutex
	active  map[int32]int
	most    map[int32]int
	arrived chan int32
	release chan struct{}
}

func newConnTracker(n int) *connTracker {
	return &connTracker{active: map[int32]int{}, most: map[int32]int{}, arrived: make(chan int32, n), release: make(chan struct{})}
}

func (ct *connTracker) onRequest(fc *fakeConn, id uint32) {
	ct.mu.Lock()
	ct.active[fc.n]++
	ct.most[fc.n] = max(ct.most[fc.n], ct.active[fc.n])
	ct.mu.Unlock()
	ct.arrived <- fc.n
	go func() {
		<-ct.release
		ct.mu.Lock()
		ct.active[fc.n]--
		ct.mu.Unlock()
		fc.respond(id, "fine")
	}()
}

func getAll(t *testing.T, addr string, n int) *sync.WaitGroup {
	var wg sync.WaitGroup
	c := h2cClient()
	for range n {
		wg.Go(func() {
			if code, body := get(t, c, addr, "/"); code != 200 || body != "fine" {
				t.Errorf("got %d %q", code, body)
			}
		})
	}
	return &wg
}

// TestPoolMaxConcurrentStreams: with max_concurrent_streams set, a
// connection carries no more streams than that although its peer allows
// more (no SETTINGS_MAX_CONCURRENT_STREAMS: unlimited), and the pool
// dials another connection for the rest; at the pool's connection cap,
// streams over the per-connection cap wait for a slot instead of going
// over it or dialling more.
func TestPoolMaxConcurrentStreams(t *testing.T) {
	tests := []struct {
		name string
		give PoolOptions
		// arrive is how many of 6 requests reach the upstream before
		// any is answered; the others wait for a slot.
		arrive    int
		wantConns int32
	}{
		{name: "dials for the rest", give: PoolOptions{MaxConcurrentStreams: 2}, arrive: 6, wantConns: 3},
		{name: "waits at max_conns", give: PoolOptions{MaxConcurrentStreams: 2, MaxConns: 2}, arrive: 4, wantConns: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := newConnTracker(6)
			fu := startFakeUpstream(t, &fakeUpstream{onRequest: ct.onRequest})
			p := startCountingProxy(t, []string{fu.addr}, config.CircuitBreakers{}, tt.give)
			wg := getAll(t, p.addr, 6)
			for range tt.arrive {
				waitSignal(t, ct.arrived, "a request upstream")
			}
			close(ct.release) // waiting streams follow as slots free
			wg.Wait()
			ct.mu.Lock()
			defer ct.mu.Unlock()
			if n := fu.conns.Load(); n != tt.wantConns {
				t.Errorf("upstream saw %d connections, want %d", n, tt.wantConns)
			}
			for n, most := range ct.most {
				if most > 2 {
					t.Errorf("connection %d carried %d streams at once, want at most 2", n, most)
				}
			}
		})
	}
}

// TestPoolMaxRequestsPerConnection: a connection that carried
// max_requests_per_connection streams is retired for a new one and counted
// in upstream_cx_max_requests.
func TestPoolMaxRequestsPerConnection(t *testing.T) {
	fu := startFakeUpstream(t, &fakeUpstream{})
	p := startCountingProxy(t, []string{fu.addr}, config.CircuitBreakers{}, PoolOptions{MaxRequestsPerConn: 2})
	c := h2cClient()
	for i := range 5 {
		if code, _ := get(t, c, p.addr, "/"); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	if n := fu.conns.Load(); n != 3 {
		t.Errorf("upstream saw %d connections, want 3 (2, 2, then 1 request)", n)
	}
	if n := p.cs.Connections().CxMaxRequests.Value(); n != 2 {
		t.Errorf("upstream_cx_max_requests = %d, want 2", n)
	}
}

// TestPoolKeepaliveDefault: a pool's connections send keepalive PINGs
// unless told not to: 30s without a read, 15s for the ACK.
func TestPoolKeepaliveDefault(t *testing.T) {
	p := NewPool("127.0.0.1:1", PoolOptions{})
	if p.opts.SendPingTimeout != 30*time.Second || p.opts.PingTimeout != 15*time.Second {
		t.Errorf("keepalive %v/%v, want 30s/15s", p.opts.SendPingTimeout, p.opts.PingTimeout)
	}
	if p := NewPool("127.0.0.1:1", PoolOptions{SendPingTimeout: -1}); p.opts.SendPingTimeout > 0 {
		t.Errorf("SendPingTimeout -1 became %v, want off", p.opts.SendPingTimeout)
	}
}

// TestPoolEnhanceYourCalm: a stream the upstream resets with
// ENHANCE_YOUR_CALM before answering goes to another connection, and the
// connection that sent it takes no new stream and closes once empty.
func TestPoolEnhanceYourCalm(t *testing.T) {
	ended := make(chan int32, 4)
	fu := startFakeUpstream(t, &fakeUpstream{
		onEnd: func(n int32) { ended <- n },
		onRequest: func(fc *fakeConn, id uint32) {
			if fc.n == 1 {
				fc.write(func(fr *http2.Framer) { fr.WriteRSTStream(id, http2.ErrCodeEnhanceYourCalm) })
				return
			}
			fc.respond(id, "fine")
		},
	})
	p := startCountingProxy(t, []string{fu.addr}, config.CircuitBreakers{}, PoolOptions{})
	c := h2cClient()
	for i := range 3 {
		if code, body := get(t, c, p.addr, "/"); code != 200 || body != "fine" {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	if n := fu.conns.Load(); n != 2 {
		t.Errorf("upstream saw %d connections, want 2 (the calm one drained)", n)
	}
	if n := waitSignal(t, ended, "the calm connection to close"); n != 1 {
		t.Errorf("connection %d closed, want the first", n)
	}
}

// TestPoolUpstreamFlowControlViolation: an upstream that sends DATA past
// the stream window it was given loses the connection
// (GOAWAY(FLOW_CONTROL_ERROR)), counted in upstream_cx_protocol_error.
func TestPoolUpstreamFlowControlViolation(t *testing.T) {
	ended := make(chan int32, 2)
	fu := startFakeUpstream(t, &fakeUpstream{
		onEnd:     func(n int32) { ended <- n },
		onRequest: overrunWindow,
	})
	p := startCountingProxy(t, []string{fu.addr}, config.CircuitBreakers{}, PoolOptions{})
	slowReader(t, p.addr, 0).request(1, true)
	waitSignal(t, ended, "the connection to close")
	waitCounter(t, func() int64 { return p.cs.Connections().CxProtocolError.Value() }, 1, "upstream_cx_protocol_error")
}

// overrunWindow answers request id with response headers and one DATA
// frame more than the stream window the proxy gives an upstream stream
// holds: a flow-control violation when the client's window is 0, so that
// nothing is written to it and nothing refunded.
func overrunWindow(fc *fakeConn, id uint32) {
	fc.write(func(fr *http2.Framer) {
		fc.encBuf.Reset()
		fc.enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: fc.encBuf.Bytes(), EndHeaders: true})
		chunk := make([]byte, maxFrameSize)
		for range upstreamStreamWindow/maxFrameSize + 1 {
			if fr.WriteData(id, false, chunk) != nil {
				return
			}
		}
	})
}

// TestPoolHoldsOffAHostThatBrokeHTTP2: after closing a connection for the
// host's flow-control violation the pool connects to it again only once
// its hold-off has passed; a call meanwhile fails at once as a connect
// failure (503), counted in upstream_cx_backoff. The test holds the
// hold-off open, or ends it, by setting its end.
func TestPoolHoldsOffAHostThatBrokeHTTP2(t *testing.T) {
	ended := make(chan int32, 4)
	var requests atomic.Int32
	fu := startFakeUpstream(t, &fakeUpstream{
		onEnd: func(n int32) { ended <- n },
		onRequest: func(fc *fakeConn, id uint32) {
			if requests.Add(1) == 1 {
				fc.respond(id, "fine") // the pool is made
				return
			}
			overrunWindow(fc, id)
		},
	})
	p := startCountingProxy(t, []string{fu.addr}, config.CircuitBreakers{}, PoolOptions{})
	if code, _ := get(t, h2cClient(), p.addr, "/"); code != 200 {
		t.Fatalf("status %d", code)
	}
	p.mu.Lock()
	pool := p.pools[fu.addr]
	p.mu.Unlock()
	cx := p.cs.Connections()
	holdUntil := func(at time.Time) {
		pool.mu.Lock()
		pool.holdUntil = at
		pool.mu.Unlock()
	}
	for n := int32(1); n <= 2; n++ {
		before := time.Now()
		slowReader(t, p.addr, 0).request(1, true)
		if got := waitSignal(t, ended, "the connection to close"); got != n {
			t.Fatalf("connection %d closed, want %d", got, n)
		}
		waitCounter(t, cx.CxProtocolError.Value, int64(n), "upstream_cx_protocol_error")
		pool.mu.Lock()
		until, strikes := pool.holdUntil, pool.strikes
		pool.mu.Unlock()
		if !until.After(before) || strikes != uint8(n) {
			t.Fatalf("after the close of connection %d: held off until %v (the call began at %v), %d strikes", n, until, before, strikes)
		}
		holdUntil(time.Now().Add(time.Hour))
		if code, _ := get(t, h2cClient(), p.addr, "/"); code != 503 {
			t.Errorf("a call during the hold-off: status %d, want 503", code)
		}
		if got := fu.conns.Load(); got != n {
			t.Errorf("the host saw %d connections, want %d: one was made during the hold-off", got, n)
		}
		if got := cx.CxBackoff.Value(); got != int64(n) {
			t.Errorf("upstream_cx_backoff = %d, want %d", got, n)
		}
		holdUntil(time.Now()) // over: the next call connects
	}
}

// TestHoldOffWaits: a host's hold-off doubles with each close for breaking
// HTTP/2, up to 10 s, and starts over after a close more than 10 s after
// the last hold-off ended.
func TestHoldOffWaits(t *testing.T) {
	p := NewPool("127.0.0.1:1", PoolOptions{})
	t0 := time.Now()
	for _, step := range []struct {
		after time.Duration // since the hold-off before ended
		want  time.Duration
	}{
		{0, 100 * time.Millisecond},
		{0, 200 * time.Millisecond},
		{time.Second, 400 * time.Millisecond},
		{10 * time.Second, 800 * time.Millisecond},
		{0, 1600 * time.Millisecond},
		{0, 3200 * time.Millisecond},
		{0, 6400 * time.Millisecond},
		{0, 10 * time.Second},
		{0, 10 * time.Second},
		{0, 10 * time.Second},
		{10*time.Second + time.Millisecond, 100 * time.Millisecond},
		{0, 200 * time.Millisecond},
	} {
		now := t0
		if !p.holdUntil.IsZero() {
			now = p.holdUntil.Add(step.after)
		}
		p.holdOff(now)
		if got := p.holdUntil.Sub(now); got != step.want {
			t.Fatalf("a close %v after the last hold-off ended (strike %d): held off %v, want %v", step.after, p.strikes, got, step.want)
		}
	}
}

// TestPoolUpstreamResetFlood: an upstream that keeps resetting streams
// already closed runs into the glitch limit of a connection that carried
// one stream: GOAWAY(ENHANCE_YOUR_CALM), counted in
// upstream_cx_protocol_error.
func TestPoolUpstreamResetFlood(t *testing.T) {
	ended := make(chan int32, 2)
	fu := startResetFlooder(t, ended, nil)
	p := startCountingProxy(t, []string{fu.addr}, config.CircuitBreakers{}, PoolOptions{})
	if code, _ := get(t, h2cClient(), p.addr, "/"); code != 200 {
		t.Fatalf("status %d", code)
	}
	waitSignal(t, ended, "the connection to close")
	waitCounter(t, func() int64 { return p.cs.Connections().CxProtocolError.Value() }, 1, "upstream_cx_protocol_error")
}

// startResetFlooder starts an upstream that answers each request, then
// resets the closed stream past the glitch limit, in one write with the
// answer; ended hears of each connection's end, and seen, when set, of
// each request before it is answered.
func startResetFlooder(t *testing.T, ended chan int32, seen func()) *fakeUpstream {
	return startFakeUpstream(t, &fakeUpstream{
		onEnd: func(n int32) { ended <- n },
		onRequest: func(fc *fakeConn, id uint32) {
			if seen != nil {
				seen()
			}
			fc.respond(id, "fine")
			fc.write(func(fr *http2.Framer) {
				// The first reset after the stream closed crossed it on the
				// wire: normal; the rest are glitches.
				for range glitchBase + glitchPerStream + 3 {
					if fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
						return
					}
				}
			})
		},
	})
}

// TestEndedConnectionsGiveBackReadBuffers: a connection that ends gives
// its read buffers back for the next one, whatever they still hold. One
// closed for a flood, with the flood's last frames in its buffer, and any
// other that took the large buffer to read its end, left 16 KiB to the
// collector: under bench/abuse's upstream-rst, a connection a call and a
// collection every third of a second, which the other clients' calls
// waited for.
func TestEndedConnectionsGiveBackReadBuffers(t *testing.T) {
	holds := func(b *rbuf) string {
		switch {
		case b.big != nil && b.small != nil:
			return "both read buffers"
		case b.big != nil:
			return "the large read buffer"
		case b.small != nil:
			return "the small read buffer"
		}
		return ""
	}
	t.Run("upstream cut off for a flood", func(t *testing.T) {
		ended := make(chan int32, 1)
		var (
			px atomic.Pointer[countingProxy]
			cc atomic.Pointer[clientConn]
		)
		var fu *fakeUpstream
		fu = startResetFlooder(t, ended, func() {
			// The connection the request came on is the pool's one.
			p := px.Load()
			p.mu.Lock()
			pool := p.pools[fu.addr]
			p.mu.Unlock()
			cc.Store((*pool.conns.Load())[0])
		})
		p := startCountingProxy(t, []string{fu.addr}, config.CircuitBreakers{}, PoolOptions{})
		px.Store(p)
		if code, _ := get(t, h2cClient(), p.addr, "/"); code != 200 {
			t.Fatalf("status %d", code)
		}
		waitSignal(t, ended, "the connection to close")
		p.mu.Lock()
		pool := p.pools[fu.addr]
		p.mu.Unlock()
		// The breaker's slot is given back after the reader has ended.
		waitCounter(t, func() int64 { return pool.opts.Breakers.Snapshot().Connections.Active }, 0, "connections held")
		if h := holds(&cc.Load().br); h != "" {
			t.Errorf("the connection closed for a flood holds %s", h)
		}
	})
	t.Run("downstream closed by its client", func(t *testing.T) {
		p := okProxy(t, okHandler, proxyOpts{})
		c := dialRaw(t, p.addr, true)
		c.request(1, true)
		if status, _, _ := c.response(1); status != "200" {
			t.Fatalf("status %s", status)
		}
		p.srv.mu.Lock()
		var sc *serverConn
		for x := range p.srv.conns {
			sc = x
		}
		p.srv.mu.Unlock()
		if sc == nil {
			t.Fatal("no engine connection")
		}
		c.c.Close()
		// The connection leaves the server's set after its reader ended.
		waitCounter(t, func() int64 { return int64(engineConns(p.srv)) }, 0, "engine connections")
		if h := holds(&sc.br); h != "" {
			t.Errorf("the connection its client closed holds %s", h)
		}
	})
}

// waitCounter waits until read returns want; the stat is written by the
// connection's goroutine as it ends, a moment after the socket closes.
func waitCounter(t *testing.T, read func() int64, want int64, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for read() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d", name, read(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPoolIdleTimeout: a connection that carried no stream for
// idle_timeout is closed by the proxy (upstream_cx_destroy_local); one
// with a stream in flight longer than that is not; the next request after
// the close opens a new connection.
func TestPoolIdleTimeout(t *testing.T) {
	var slow atomic.Bool
	release := make(chan struct{})
	fu := startFakeUpstream(t, &fakeUpstream{onRequest: func(fc *fakeConn, id uint32) {
		if !slow.Load() {
			fc.respond(id, "fine")
			return
		}
		go func() {
			<-release
			fc.respond(id, "fine")
		}()
	}})
	p := startCountingProxy(t, []string{fu.addr}, config.CircuitBreakers{}, PoolOptions{IdleTimeout: 50 * time.Millisecond})
	c := h2cClient()

	slow.Store(true)
	done := make(chan int, 1)
	go func() { code, _ := get(t, c, p.addr, "/"); done <- code }()
	time.Sleep(300 * time.Millisecond) // six idle timeouts with the stream in flight
	close(release)
	if code := waitSignal(t, done, "the slow call"); code != 200 {
		t.Fatalf("a call longer than idle_timeout: %d, want 200", code)
	}
	if n := p.cs.Connections().CxDestroyLocal.Value(); n != 0 {
		t.Fatalf("upstream_cx_destroy_local = %d while a stream was in flight, want 0", n)
	}

	deadline := time.Now().Add(10 * time.Second)
	for p.pools[fu.addr].Stats().Conns != 0 {
		if time.Now().After(deadline) {
			t.Fatal("an idle connection was kept past idle_timeout")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := p.cs.Connections().CxDestroyLocal.Value(); n != 1 {
		t.Errorf("upstream_cx_destroy_local = %d after the idle close, want 1", n)
	}
	if n := p.cs.Connections().CxIdleTimeout.Value(); n != 1 {
		t.Errorf("upstream_cx_idle_timeout = %d after the idle close, want 1", n)
	}
	slow.Store(false)
	if code, body := get(t, c, p.addr, "/"); code != 200 || body != "fine" {
		t.Fatalf("after the idle close: %d %q", code, body)
	}
	if n := fu.conns.Load(); n != 2 {
		t.Errorf("upstream saw %d connections, want 2 (the idle one closed, then a new one)", n)
	}
}

// TestGlitchLimit: a connection's glitches are judged against the streams
// it carried: glitchBase on a connection that carried none, glitchPerStream
// more per stream, never more than glitchLimit.
func TestGlitchLimit(t *testing.T) {
	tests := []struct {
		opened  int64
		allowed int
	}{
		{0, glitchBase},
		{1, glitchBase + glitchPerStream},
		{50, glitchBase + 50*glitchPerStream},
		{1000, glitchLimit},
	}
	for _, tt := range tests {
		var c conn
		c.opened.Store(tt.opened)
		for i := range tt.allowed {
			if err := c.glitch(); err != nil {
				t.Fatalf("%d streams: glitch %d refused (%v), want %d allowed", tt.opened, i+1, err, tt.allowed)
			}
		}
		var ce connErr
		if err := c.glitch(); !errors.As(err, &ce) || ce.code != http2.ErrCodeEnhanceYourCalm {
			t.Errorf("%d streams: glitch %d: %v, want ENHANCE_YOUR_CALM", tt.opened, tt.allowed+1, err)
		}
	}
}

// TestParkedConnectionHoldsItsSlot: an upstream connection waiting for
// its host without a reader (parked) is open, and holds its
// max_connections slot until it closes, as Envoy counts open connections.
func TestParkedConnectionHoldsItsSlot(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is Linux-only")
	}
	fu := startFakeUpstream(t, &fakeUpstream{onRequest: func(fc *fakeConn, id uint32) { fc.respond(id, "fine") }})
	p := startCountingProxy(t, []string{fu.addr}, config.CircuitBreakers{MaxConnections: 4}, PoolOptions{})
	if code, _ := get(t, h2cClient(), p.addr, "/"); code != 200 {
		t.Fatalf("status %d", code)
	}
	p.mu.Lock()
	pool := p.pools[fu.addr]
	p.mu.Unlock()
	waitCounter(t, func() int64 { return int64(pool.Stats().Parked) }, 1, "parked connections")
	if n := pool.opts.Breakers.Snapshot().Connections.Active; n != 1 {
		t.Errorf("max_connections slots held with one parked connection: %d, want 1", n)
	}
	pool.Close()
	waitCounter(t, func() int64 { return pool.opts.Breakers.Snapshot().Connections.Active }, 0, "max_connections slots held after the close")
}
