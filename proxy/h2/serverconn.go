package h2

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/sightline-proxy/sightline/proxy/breaker"
)

// Graceful shutdown phases of a server connection.
const (
	goAwayNone  uint8 = iota
	goAwayFirst       // GOAWAY(2^31-1) and PING sent
	goAwayFinal       // GOAWAY(last stream ID) sent: no new streams
)

// shutdownPing is the payload of the PING that follows the first GOAWAY;
// its ACK means the client has seen the GOAWAY, so every stream it opened
// before is known (grpc-go goAwayPing).
var shutdownPing = [8]byte{'s', 'h', 'u', 't', 'd', 'o', 'w', 'n'}

// shutdownPingTimeout bounds the wait for that ACK.
const shutdownPingTimeout = time.Second

// A request still being sent when its response is complete is drained for
// a moment before the proxy resets it with NO_ERROR (RFC 9113 §8.1 allows
// the reset at once). Its last frames are still checked, content-length
// and flow control, and a client about to end its request is not cut off;
// one that goes on sending is stopped after drainLimit bytes or drainGrace.
const (
	drainGrace = time.Second
	drainLimit = 64 << 10
)

// Rapid-reset detection (CVE-2023-44487): among the last resetWindow
// streams, once at least resetMinStreams have closed, more than half
// reset by the client before any response means GOAWAY(ENHANCE_YOUR_CALM).
const (
	resetWindow     = 128
	resetMinStreams = 100
)

// serverConn is one downstream HTTP/2 connection.
type serverConn struct {
	view fieldView // the router's view of the request being routed
	conn
	srv      *Server
	remoteIP string
	// remoteAddr is the client's ip:port, for the access log; set with
	// remoteIP by addrs.
	remoteAddr string
	// done is Serve's callback, run once the connection has ended.
	done func()
	// greeted is when the connection came to the lobby, if it was
	// greeted there (lobby.go); zero otherwise. Set before serve.
	greeted time.Time

	// sweepEvery is the stream idle sweep's period, 0 while it is
	// stopped: set under mu, read without it.
	sweepEvery atomic.Int64

	// Reader-owned.
	shares       map[*breaker.Breakers]*breaker.Share
	recentResets [16]uint32 // streams we reset lately: their frames in flight are ignored
	resetPos     int
	requests     int

	// Guarded by mu.
	maxClientID uint32
	goAway      uint8
	goAwayID    uint32
	idleSince   time.Time
	idleTimer   *time.Timer
	sweepTimer  *time.Timer // the stream idle sweep (idle.go)
	pingTimer   *time.Timer
	drainTimer  *time.Timer
	nDraining   int
	outcomes    [resetWindow / 64]uint64 // 1 bits: streams reset early by the client
	outcomePos  int
	outcomeN    int
	earlyResets int
}

func newServerConn(s *Server, nc net.Conn) *serverConn {
	sc := &serverConn{srv: s}
	sc.nc, sc.server, sc.h = nc, true, sc
	sc.log = &s.log
	sc.headerTimeout = s.headerTimeout
	sc.initState(s.maxHeaderList)
	sc.initIO()
	return sc
}

// addrs sets remoteAddr and remoteIP from the socket, the first time.
// Reader-owned: a connection formats them for its first request or a
// log line, so the many that never send one (clients that connect ahead
// of their calls, a storm of idle connections) never do.
func (sc *serverConn) addrs() {
	if sc.remoteAddr != "" {
		return
	}
	sc.remoteAddr = sc.nc.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(sc.remoteAddr); err == nil {
		sc.remoteIP = host
	}
}

// serve runs the connection: preface, then the read loop on this goroutine
// and the writer on another, then teardown.
func (sc *serverConn) serve() {
	_ = sc.nc.SetReadDeadline(time.Now().Add(sc.headerTimeout))
	var pre [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(&sc.br, pre[:]); err != nil || string(pre[:]) != http2.ClientPreface {
		// Not HTTP/2: close without a word (RFC 9113 §3.4 allows a
		// GOAWAY, but the peer may not speak frames at all). A wrong
		// preface is a protocol error; a client that went away or
		// timed out before sending one is not.
		if err == nil {
			sc.srv.stats.DownstreamCxProtocolError.Inc(1)
		}
		sc.linger()
		sc.br.drop()
		sc.ended()
		return
	}
	if sc.greeted.IsZero() {
		// Our preface waits in the write buffer: the client's SETTINGS
		// usually came with its preface, and the writer, started by the
		// ACK they call for, sends the two in one write; the reader
		// starts the writer before waiting for the client (read.go), so
		// the preface never waits on it.
		if err := sc.writePreface("", sc.srv.settings(), false); err != nil {
			sc.nc.Close()
			sc.ended()
			return
		}
	} else {
		// The lobby wrote our preface (lobby.go); unacked and
		// ackedEarly say what it and the client ACKed.
		sc.takeWriter()
		sc.inConn = initialConnWindow
		sc.releaseWriter()
	}
	sc.mu.Lock()
	sc.idleSince = time.Now()
	if !sc.greeted.IsZero() {
		sc.idleSince = sc.greeted // the header timeout runs from the accept
	}
	if d := sc.idleLimitLocked(); d > 0 {
		sc.idleTimer = time.AfterFunc(d, sc.onIdle)
	}
	sc.writerUp = true // started by the first frame queued, or by the reader
	sc.mu.Unlock()
	sc.read()
}

// read runs the read loop until the connection parks or ends.
func (sc *serverConn) read() {
	err := sc.readLoop()
	if err == errParked {
		return
	}
	sc.teardown(err)
	sc.br.drop()
	sc.ended()
}

// resumeReading is a parked connection's new reader.
func (sc *serverConn) resumeReading() {
	sc.park.woken = true
	sc.read()
}

// teardown closes the connection after the read loop ended with err. A
// connection error is answered with GOAWAY and counted in
// downstream_cx_protocol_error, whatever its code (floods and rapid
// resets, ENHANCE_YOUR_CALM, included).
func (sc *serverConn) teardown(err error) {
	var ce connErr
	if errors.As(err, &ce) {
		if ce.code != http2.ErrCodeNo {
			sc.srv.stats.DownstreamCxProtocolError.Inc(1)
		}
		if sc.log.Debug().Enabled() {
			sc.addrs()
			sc.log.Debug().Str("remote", sc.remoteIP).Str("code", ce.code.String()).Str("reason", ce.reason).Msg("connection error")
		}
		sc.mu.Lock()
		sc.queueCtrlLocked(ctrlFrame{kind: ctrlGoAway, id: sc.maxClientID, val: uint32(ce.code)})
		sc.ctrlOnly = true
		sc.unlock()
		_ = sc.nc.SetWriteDeadline(time.Now().Add(closeLinger))
		sc.stopAndWait(true)
		sc.linger()
	} else {
		sc.mu.Lock()
		sc.failLocked(err)
		sc.unlock()
		sc.nc.Close()
		<-sc.writerDone
	}
	sc.mu.Lock()
	if sc.idleTimer != nil {
		sc.idleTimer.Stop()
	}
	if sc.pingTimer != nil {
		sc.pingTimer.Stop()
	}
	if sc.drainTimer != nil {
		sc.drainTimer.Stop()
	}
	if sc.sweepTimer != nil {
		sc.sweepTimer.Stop()
	}
	sc.unlock()
	sc.closeStreams()
}

// closeStreams ends every stream of a closed connection; their upstream
// halves are cancelled as the calls finish.
func (sc *serverConn) closeStreams() {
	sc.mu.Lock()
	sc.failed = true
	for _, l := range []*halfList{&sc.ready, &sc.blocked} {
		for h := l.pop(); h != nil; h = l.pop() {
			h.listed = listNone
		}
	}
	for _, h := range sc.streams {
		h.rstDone = true
		sc.resetLocked(h, 0, false)
	}
	sc.unlock()
}

// onIdle runs on a timer goroutine: a connection without streams for the
// idle timeout is shut down gracefully.
func (sc *serverConn) onIdle() {
	sc.mu.Lock()
	defer sc.unlock()
	if sc.failed || sc.goAway != goAwayNone {
		return
	}
	idle := sc.idleLimitLocked()
	if idle <= 0 {
		return // it has had its first request and never idles out
	}
	if sc.nActive == 0 {
		if since := time.Since(sc.idleSince); since >= idle {
			if sc.requests == 0 {
				// It never opened a stream: nothing can be in flight,
				// so the final GOAWAY goes at once, without the PING
				// that a graceful shutdown waits for; a parked one is
				// closed right here (park.go).
				if sc.closeParkedLocked() {
					return
				}
				sc.goAway, sc.goAwayID = goAwayFinal, 0
				sc.queueCtrlLocked(ctrlFrame{kind: ctrlGoAway, id: 0, val: uint32(http2.ErrCodeNo)})
				sc.closeIfDoneLocked()
				return
			}
			sc.startShutdownLocked()
			return
		} else {
			idle -= since
		}
	}
	sc.idleTimer.Reset(idle)
}

// idleLimitLocked is how long the connection may go without streams: the
// header read timeout until its first request (a client that connects and
// asks nothing holds a connection for nothing, as nginx's
// client_header_timeout and HAProxy's timeout http-request see it), then
// the idle timeout; 0: no limit.
func (sc *serverConn) idleLimitLocked() time.Duration {
	if sc.requests == 0 {
		if idle := sc.srv.idleTimeout; idle > 0 && idle < sc.headerTimeout {
			return idle
		}
		return sc.headerTimeout
	}
	return sc.srv.idleTimeout
}

// startShutdown begins a graceful shutdown; any goroutine may call it.
func (sc *serverConn) startShutdown() {
	sc.mu.Lock()
	sc.startShutdownLocked()
	sc.unlock()
}

func (sc *serverConn) startShutdownLocked() {
	if sc.goAway != goAwayNone || sc.failed {
		return
	}
	sc.goAway = goAwayFirst
	sc.queueCtrlLocked(ctrlFrame{kind: ctrlGoAway, id: 1<<31 - 1, val: uint32(http2.ErrCodeNo)})
	sc.queueCtrlLocked(ctrlFrame{kind: ctrlPing, data: shutdownPing})
	sc.pingTimer = time.AfterFunc(shutdownPingTimeout, sc.finishShutdown)
}

// finishShutdown sends the final GOAWAY, on the PING ACK or its timeout.
func (sc *serverConn) finishShutdown() {
	sc.mu.Lock()
	defer sc.unlock()
	if sc.goAway != goAwayFirst || sc.failed {
		return
	}
	sc.goAway = goAwayFinal
	sc.goAwayID = sc.maxClientID
	sc.queueCtrlLocked(ctrlFrame{kind: ctrlGoAway, id: sc.goAwayID, val: uint32(http2.ErrCodeNo)})
	sc.closeIfDoneLocked()
}

// closeIfDoneLocked closes a drained connection after the final GOAWAY.
func (sc *serverConn) closeIfDoneLocked() {
	if sc.goAway == goAwayFinal && sc.nActive == 0 {
		sc.stopWriter, sc.closeWrite = true, true
		sc.kickLocked()
	}
}

func (sc *serverConn) unlistWaitingLocked(*half) {}

// sentEndLocked starts draining a request whose response is complete.
func (sc *serverConn) sentEndLocked(h *half) {
	h.draining = true
	h.drainSince = time.Now()
	sc.nDraining++
	if sc.drainTimer == nil {
		sc.drainTimer = time.AfterFunc(drainGrace, sc.sweepDrains)
	} else if sc.nDraining == 1 {
		sc.drainTimer.Reset(drainGrace)
	}
}

// sweepDrains runs on a timer goroutine while requests drain: those
// draining for drainGrace are reset with NO_ERROR.
func (sc *serverConn) sweepDrains() {
	sc.mu.Lock()
	defer sc.unlock()
	if sc.failed {
		return
	}
	now := time.Now()
	for _, h := range sc.streams {
		if h.draining && !h.recvDone && now.Sub(h.drainSince) >= drainGrace {
			sc.resetLocked(h, http2.ErrCodeNo, true)
		}
	}
	if sc.nDraining > 0 {
		sc.drainTimer.Reset(drainGrace)
	}
}

func (sc *serverConn) handlePingAck(data [8]byte) {
	if data == shutdownPing {
		sc.finishShutdown()
	}
}

func (sc *serverConn) handleGoAway(f *http2.GoAwayFrame) error {
	if f.ErrCode != http2.ErrCodeNo && sc.log.Debug().Enabled() {
		sc.addrs()
		sc.log.Debug().Str("remote", sc.remoteIP).Str("code", f.ErrCode.String()).Msg("client sent GOAWAY")
	}
	return nil // the client opens no more streams; ours finish as usual
}

// idle reports stream IDs the client has not opened (RFC 9113 §5.1.1):
// odd ones above the highest it used, and every even one (we never push).
func (sc *serverConn) idleLocked(id uint32) bool {
	return id%2 == 0 || id > sc.maxClientID
}

func (sc *serverConn) applySettingLocked(http2.Setting) error { return nil }

func (sc *serverConn) settingsAppliedLocked() {}

// beginHeaders checks the stream of a HEADERS frame. Errors that leave
// HPACK in sync wait for endHeaders, which sees the decoded block.
func (sc *serverConn) beginHeaders(id uint32) (bool, error) {
	if id%2 == 0 {
		return false, connError(http2.ErrCodeProtocol, "client opened an even stream ID")
	}
	sc.mu.Lock()
	_, open := sc.streams[id]
	closed := !open && id <= sc.maxClientID
	sc.mu.Unlock()
	if closed {
		// A new stream must have a higher ID (RFC 9113 §5.1.1); HEADERS on
		// a stream that is gone is a connection error too (§5.1).
		return false, connError(http2.ErrCodeProtocol, "HEADERS on a closed stream")
	}
	return open, nil
}

// endHeaders handles a complete request header block: trailers of an
// open stream, or a new stream.
func (sc *serverConn) endHeaders() error {
	hb := &sc.hb
	id := hb.streamID
	sc.mu.Lock()
	h := sc.streams[id]
	if h != nil {
		return sc.requestTrailersLocked(h)
	}
	if id <= sc.maxClientID {
		// It was open when its HEADERS began (beginHeaders), and left the
		// table since: the writer that sent our END_STREAM let go of it
		// while the block was read. Closed, as for a fast peer above.
		sc.mu.Unlock()
		return connError(http2.ErrCodeStreamClosed, "HEADERS on a closed stream")
	}
	sc.maxClientID = id
	sc.opened.Add(1)
	refuse := sc.goAway == goAwayFinal || int64(sc.nActive) >= int64(sc.srv.mcs) || sc.failed
	sc.mu.Unlock()
	switch {
	case hb.invalid != "":
		return streamError(id, http2.ErrCodeProtocol, hb.invalid)
	case hb.selfDep:
		return streamError(id, http2.ErrCodeProtocol, "stream depends on itself")
	}
	if msg := checkRequest(hb); msg != "" {
		return streamError(id, http2.ErrCodeProtocol, msg)
	}
	if refuse {
		// Over MAX_CONCURRENT_STREAMS, or draining: REFUSED_STREAM tells
		// the client the request was not processed and may be retried
		// (RFC 9113 §5.1.2, §8.7).
		return streamError(id, http2.ErrCodeRefusedStream, "stream refused")
	}

	cl := newCall(sc)
	cl.refs.Add(1) // held while this goroutine works on the call
	h = &cl.down
	h.id = id
	h.cn.Store(&sc.conn)
	h.contentLen = hb.clen
	h.inWin.Store(initialStreamWindow)
	h.win.Store(initialStreamWindow)
	sc.mu.Lock()
	h.attached, h.active = true, true
	h.recvDone = hb.endStream
	h.sendWin = sc.peerInitWin
	sc.addStreamLocked(h)
	sc.nActive++
	sc.requests++
	sc.addrs()
	if sc.srv.maxRequests > 0 && sc.requests >= sc.srv.maxRequests {
		sc.startShutdownLocked()
	}
	sc.mu.Unlock()

	if hb.truncated {
		sc.headersTooLarge(cl)
	} else {
		sc.proxy(cl)
	}
	cl.release()
	return nil
}

// requestTrailersLocked handles a second header block on an open stream:
// it must end the stream and carry no pseudo-headers (RFC 9113 §8.1).
func (sc *serverConn) requestTrailersLocked(h *half) error {
	hb := &sc.hb
	id := hb.streamID
	switch {
	case h.recvDone && h.sendDone:
		// Our END_STREAM is written or on its way: the stream is closed
		// for the peer, which sends frames after its own END_STREAM
		// (RFC 9113 §5.1, closed). It leaves the map only after the
		// write, which a fast peer can outrun.
		sc.mu.Unlock()
		return connError(http2.ErrCodeStreamClosed, "HEADERS on a closed stream")
	case h.recvDone:
		sc.mu.Unlock()
		return streamError(id, http2.ErrCodeStreamClosed, "HEADERS on a half-closed stream")
	case !hb.endStream:
		sc.mu.Unlock()
		return streamError(id, http2.ErrCodeProtocol, "second HEADERS without END_STREAM")
	case hb.invalid != "":
		sc.mu.Unlock()
		return streamError(id, http2.ErrCodeProtocol, hb.invalid)
	case hb.truncated:
		sc.mu.Unlock()
		return streamError(id, http2.ErrCodeProtocol, "trailers over the header list size")
	case h.contentLen >= 0 && h.recvLen != h.contentLen:
		sc.mu.Unlock()
		return streamError(id, http2.ErrCodeProtocol, "request body shorter than content-length")
	}
	h.recvDone = true
	cl := h.call
	cl.refs.Add(1)
	cl.touch()
	sc.maybeCloseLocked(h)
	sc.unlock()
	cl.forwardTrailers(sc.fields)
	cl.release()
	return nil
}

// handleData takes a request DATA frame.
func (sc *serverConn) handleData(fh http2.FrameHeader, d *dbuf) error {
	id := fh.StreamID
	sc.mu.Lock()
	h := sc.streams[id]
	if h == nil || h.recvDone {
		closed := h == nil && id%2 == 1 && id <= sc.maxClientID
		sc.mu.Unlock()
		putBuf(d)
		switch {
		case h != nil:
			return streamError(id, http2.ErrCodeStreamClosed, "DATA on a half-closed stream")
		case !closed:
			return connError(http2.ErrCodeProtocol, "DATA on an idle stream")
		case sc.resetLately(id):
			return nil // in flight when we reset it (RFC 9113 §5.1)
		}
		return streamError(id, http2.ErrCodeStreamClosed, "DATA on a closed stream")
	}
	flow := int32(fh.Length)
	if h.inWin.Add(-flow) < 0 {
		sc.mu.Unlock()
		putBuf(d)
		return streamError(id, http2.ErrCodeFlowControl, "stream receive window exceeded")
	}
	n := d.len()
	end := fh.Flags.Has(http2.FlagDataEndStream)
	h.recvLen += int64(n)
	h.call.rxBytes.Add(int64(n))
	if h.contentLen >= 0 && (h.recvLen > h.contentLen || end && h.recvLen != h.contentLen) {
		// RFC 9113 §8.1.1: a body that disagrees with content-length is
		// malformed, too long (checked as it comes) or too short (at
		// END_STREAM).
		sc.mu.Unlock()
		putBuf(d)
		return streamError(id, http2.ErrCodeProtocol, "request body length differs from content-length")
	}
	if end {
		h.recvDone = true
	}
	drop := h.draining
	if drop {
		h.drainedBytes += int64(n)
		if !end && h.drainedBytes > drainLimit {
			sc.resetLocked(h, http2.ErrCodeNo, true)
		}
	}
	cl := h.call
	cl.refs.Add(1)
	cl.touch()
	sc.maybeCloseLocked(h)
	sc.unlock()
	if pad := flow - int32(n); pad > 0 {
		h.credit(pad, 0) // padding is never forwarded: return it now
	}
	if drop {
		putBuf(d)
		if !end {
			h.credit(int32(n), 0)
		}
		cl.release()
		return nil
	}
	if n == 0 && !end {
		putBuf(d)
		cl.release()
		return sc.glitch()
	}
	behind := cl.forwardData(d, end)
	cl.release()
	if behind && n < minDataFrame && !end {
		// A sliver of a frame that the upstream is not even taking:
		// the proxy pays a frame's work for a byte or two. Now and
		// then it happens (the tail of a split message); a stream of
		// them is a flood, and a glitch each.
		return sc.glitch()
	}
	return nil
}

// minDataFrame is the smallest DATA payload that is never a glitch: a gRPC
// message, even empty, is 5 bytes, and other clients send what they have
// read, kilobytes at a time.
const minDataFrame = 5

// handleRST takes the client's RST_STREAM: the call is cancelled upstream.
func (sc *serverConn) handleRST(id uint32, _ http2.ErrCode) error {
	sc.mu.Lock()
	h := sc.streams[id]
	if h == nil || h.peerReset {
		// A stream the client has reset stays in the map while the
		// writer still holds its frames (on a socket the client does
		// not read, for as long as it likes): its resets from then on
		// are glitches, as on a stream long gone.
		idle := h == nil && sc.idleLocked(id)
		crossed := h == nil && !idle && sc.crossedLocked(id)
		sc.mu.Unlock()
		switch {
		case idle:
			return connError(http2.ErrCodeProtocol, "RST_STREAM on an idle stream")
		case crossed:
			return nil // it crossed our end of the stream on the wire
		}
		return sc.glitch() // again, or on a stream long gone
	}
	h.peerReset, h.rstDone = true, true
	cl := h.call
	cl.refs.Add(1)
	if !cl.respEnded {
		cl.addFlag(flagDownstreamConnTerm)
	}
	cl.respEnded = true
	sc.resetLocked(h, 0, false)
	sc.unlock()
	cl.cancelUpstream(http2.ErrCodeCancel)
	cl.release()
	return nil
}

// resetStream answers a stream error with RST_STREAM and ends the call.
// The reset of a request counts in downstream_rq_tx_reset; that of a
// stream that is not a request (refused, malformed headers, or already
// closed) does not.
func (sc *serverConn) resetStream(id uint32, code http2.ErrCode) {
	sc.mu.Lock()
	sc.recentResets[sc.resetPos%len(sc.recentResets)] = id
	sc.resetPos++
	h := sc.streams[id]
	if h == nil || h.rstDone || h.sendDone && h.recvDone {
		// Gone, reset, or closed both ways and waiting for the writer to
		// let go of it: the frame that caused this still gets its
		// RST_STREAM (a closed stream's error is STREAM_CLOSED, RFC 9113
		// §5.1), which resetLocked would not send for a closed stream.
		sc.queueCtrlLocked(ctrlFrame{kind: ctrlRST, id: id, val: uint32(code)})
		sc.unlock()
		return
	}
	cl := h.call
	cl.refs.Add(1)
	cl.respEnded = true
	cl.failed.Store(true)
	if code != http2.ErrCodeNo && !sc.failed {
		sc.srv.stats.DownstreamRqTxReset.Inc(1)
	}
	sc.resetLocked(h, code, true)
	sc.unlock()
	cl.cancelUpstream(http2.ErrCodeCancel)
	cl.release()
}

// resetLately reports whether we reset stream id recently.
func (sc *serverConn) resetLately(id uint32) bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, r := range sc.recentResets {
		if r == id {
			return true
		}
	}
	return false
}

// streamClosedLocked keeps the rapid-reset window and the idle and drain
// state as streams close.
func (sc *serverConn) streamClosedLocked(h *half) {
	if h.draining {
		sc.nDraining--
	}
	early := h.peerReset && !h.call.respStarted
	i := sc.outcomePos % resetWindow
	word, bit := i/64, uint64(1)<<(i%64)
	if sc.outcomes[word]&bit != 0 {
		sc.earlyResets--
	}
	if early {
		sc.outcomes[word] |= bit
		sc.earlyResets++
	} else {
		sc.outcomes[word] &^= bit
	}
	sc.outcomePos++
	sc.outcomeN = min(sc.outcomeN+1, resetWindow)
	if sc.outcomeN >= resetMinStreams && sc.earlyResets*2 > sc.outcomeN && sc.abort.Load() == 0 {
		sc.abortReason = "too many streams reset before a response (rapid reset)"
		sc.abort.Store(uint32(http2.ErrCodeEnhanceYourCalm) + 1)
	}
	if sc.nActive == 0 {
		sc.idleSince = time.Now()
		sc.closeIfDoneLocked()
	}
}
