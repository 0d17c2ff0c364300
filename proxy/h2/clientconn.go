package h2

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/sightline-proxy/sightline/proxy/router"
	"github.com/sightline-proxy/sightline/stats"
)

// clientConn is one upstream HTTP/2 connection of a Pool (h2c, or TLS with
// ALPN h2). Its goroutine dials, then reads; a writer goroutine starts once
// the connection is up.
type clientConn struct {
	conn
	pool  *Pool
	start time.Time  // the dial began
	clock *readClock // the socket, timing what it reads

	// Guarded by mu.
	peerReady  bool   // the peer's SETTINGS arrived: maxStreams is its own
	draining   bool   // no new streams: GOAWAY, retirement or pool close
	maxStreams uint32 // peer's SETTINGS_MAX_CONCURRENT_STREAMS
	nextID     uint32
	waiting    halfList // bound halves waiting for a stream slot
	nWaiting   int      // halves on waiting
	started    uint32   // streams activated, for MaxRequestsPerConn
	drainTimer *time.Timer
	connected  bool // the socket is up (cc.nc set)
	counted    bool // holds a max_connections breaker slot
	// localClose: the proxy decided to close the connection (drained,
	// PING unanswered, protocol error), for upstream_cx_destroy_local.
	localClose bool
	// Keepalive (see keepalive): pingTimer runs while the connection is
	// up; pingSent is set while a PING waits for its ACK.
	pingTimer *time.Timer
	pingSent  bool
	pingSeq   uint64
	kaStopped bool
	// Idle timeout (see markIdleLocked): idleSince is when the last
	// stream ended; idleTimer is armed while the connection may be idle.
	idleSince time.Time
	idleTimer *time.Timer
	idleArmed bool
}

func newClientConn(p *Pool) *clientConn {
	cc := &clientConn{pool: p, start: time.Now(), maxStreams: p.streamCap(), nextID: 1}
	cc.h = cc
	cc.log = &p.log
	cc.headerTimeout = defaultHeaderReadTimeout
	cc.initState(upstreamHeaderList)
	return cc
}

// bind puts h on cc: active at once when cc has a free slot, or waiting
// when cc is still connecting and connecting is set. It reports false when
// cc cannot take h.
func (cc *clientConn) bind(h *half, connecting bool) bool {
	cc.mu.Lock()
	ok := !cc.draining && !cc.failed
	switch {
	case !ok:
	case cc.peerReady:
		ok = int64(cc.nActive) < int64(cc.maxStreams) && cc.waiting.head == nil
		if ok {
			cc.attachLocked(h)
			cc.activateLocked(h)
		}
	case connecting && cc.pool.waitCap() > 0 && cc.nWaiting >= cc.pool.waitCap():
		// The stream cap is known before the peer's SETTINGS: a
		// connecting connection takes no more than it can carry, and
		// the next stream dials another.
		ok = false
	case connecting:
		cc.attachLocked(h)
		cc.waitLocked(h)
	default:
		ok = false
	}
	cc.unlock()
	return ok
}

// bindWaiting queues h on cc even though it is full (the pool is at
// MaxConns); a slot is given as a stream closes.
func (cc *clientConn) bindWaiting(h *half) bool {
	cc.mu.Lock()
	ok := !cc.draining && !cc.failed
	if ok {
		cc.attachLocked(h)
		cc.waitLocked(h)
		cc.activateWaitingLocked()
	}
	cc.unlock()
	return ok
}

func (cc *clientConn) attachLocked(h *half) {
	h.cn.Store(&cc.conn)
	h.attached = true
	cc.queued += int64(h.queued)
}

// waitLocked queues h for a stream slot: a pending request
// (upstream_rq_pending_total, upstream_rq_pending_active) until
// popWaitingLocked or unlistWaitingLocked takes it off the list, with a
// stream or without. Every way off the waiting list goes through those
// two, so the gauge comes back to zero.
func (cc *clientConn) waitLocked(h *half) {
	h.listed = listWaiting
	cc.waiting.push(h)
	cc.nWaiting++
	rq := cc.pool.rq()
	rq.RqPendingTotal.Inc(1)
	rq.RqPendingActive.Inc()
}

// popWaitingLocked takes the first waiting half off the list; nil when
// none waits.
func (cc *clientConn) popWaitingLocked() *half {
	h := cc.waiting.pop()
	if h != nil {
		cc.nWaiting--
		h.listed = listNone
		cc.pool.rq().RqPendingActive.Dec()
	}
	return h
}

// activateLocked gives h a stream ID and a slot. IDs are taken in the
// order HEADERS are queued, and the ready list keeps that order, so they
// reach the wire increasing (RFC 9113 §5.1.1).
func (cc *clientConn) activateLocked(h *half) {
	h.donePending()
	h.id = cc.nextID
	cc.nextID += 2
	cc.opened.Add(1)
	h.active = true
	cc.nActive++
	cc.addStreamLocked(h)
	h.sendWin = cc.peerInitWin
	h.inWin.Store(0)
	if dc := h.peer.cn.Load(); dc != nil && dc != &transit {
		h.promisedTo = dc
	}
	h.addInWin(upstreamStreamWindow)
	h.win.Store(upstreamStreamWindow)
	cc.scheduleLocked(h)
	cc.started++
	if cc.nextID > cc.pool.maxStreamID && !cc.draining {
		// Stream IDs are running out: new streams go to a new
		// connection, this one closes when its streams are done.
		cc.draining = true
		go cc.pool.retire(cc)
	}
	if lim := cc.pool.opts.MaxRequestsPerConn; lim > 0 && cc.started >= lim && !cc.draining {
		// max_requests_per_connection: the same, counted as Envoy
		// does in upstream_cx_max_requests.
		cc.draining = true
		cc.pool.cx().CxMaxRequests.Inc(1)
		go cc.pool.retire(cc)
	}
}

// activateWaitingLocked gives free slots to waiting halves in order; once
// cc is draining, those still waiting are re-dispatched to other
// connections.
func (cc *clientConn) activateWaitingLocked() {
	if !cc.peerReady {
		return
	}
	for cc.waiting.head != nil && int64(cc.nActive) < int64(cc.maxStreams) && !cc.draining {
		h := cc.popWaitingLocked()
		if h.sendDone {
			cc.maybeCloseLocked(h) // cancelled while it waited
			continue
		}
		cc.activateLocked(h)
	}
	if cc.draining {
		cc.moveWaitingLocked()
	}
}

func (cc *clientConn) unlistWaitingLocked(h *half) {
	cc.waiting.remove(h)
	cc.nWaiting--
	h.listed = listNone
	cc.pool.rq().RqPendingActive.Dec()
}

// moveWaitingLocked sends every waiting half elsewhere.
func (cc *clientConn) moveWaitingLocked() {
	for h := cc.popWaitingLocked(); h != nil; h = cc.popWaitingLocked() {
		cc.moveLocked(h, false)
	}
}

// moveLocked detaches h with its queue so that it is dispatched again: a
// stream the peer refused or never processed is safe to retry (RFC 9113
// §8.7) when none of its body was sent. A half that cannot move is failed.
//
// retry says the peer turned the stream away (REFUSED_STREAM, GOAWAY, a
// lost connection): that counts against maxAttempts. Moving waiting
// halves off a connection that turned out full does not.
func (cc *clientConn) moveLocked(h *half, retry bool) {
	if !h.attached || h.moving {
		return
	}
	if h.reset {
		cc.maybeCloseLocked(h) // cancelled: it only had to leave
		return
	}
	if retry {
		h.call.attempts++
	}
	if h.wroteData || h.gotHeaders || h.call.attempts >= maxAttempts {
		h.failCode = http2.ErrCodeRefusedStream
		cc.failLocked2(h, flagUpstreamRemoteReset, router.ReplyRemoteReset.Message)
		return
	}
	h.moving = true
	h.sendDone, h.recvDone = true, true
	cc.maybeCloseLocked(h)
}

// failLocked2 ends h without a frame and has the client told why once the
// lock is released.
func (cc *clientConn) failLocked2(h *half, f flag, msg string) {
	if !h.attached {
		return
	}
	if !h.reset {
		h.failFlag, h.failMsg = f, msg
	}
	h.rstDone = true
	cc.resetLocked(h, 0, false)
}

// run dials, handshakes and then reads until the connection ends. It
// counts the connection in the cluster's upstream_cx_* stats as Envoy
// does: an attempt when the dial begins, connect_ms once the peer's
// SETTINGS arrive, and one end, a connect failure when it never got
// there.
func (cc *clientConn) run() {
	p := cc.pool
	p.cx().Opened(true)
	deadline := cc.start.Add(p.opts.ConnectTimeout)
	nc, err := cc.dial(deadline)
	if err != nil {
		p.log.Debug().Err(err).Msg("upstream connect failed")
		var le localDialError
		cc.countEnd(stats.ConnEnd{ConnectFail: true, Timeout: isTimeout(err), Local: isTimeout(err) || errors.As(err, &le)})
		cc.connectFailed()
		cc.giveBackSlot()
		return
	}
	cc.clock = &readClock{Conn: nc, start: cc.start}
	cc.mu.Lock()
	cc.nc = cc.clock
	cc.initIO()
	cc.connected = true
	cc.mu.Unlock()
	_ = cc.nc.SetReadDeadline(deadline) // cleared when the peer's SETTINGS arrive
	err = cc.writePreface(http2.ClientPreface, []http2.Setting{
		{ID: http2.SettingEnablePush, Val: 0},
		{ID: http2.SettingInitialWindowSize, Val: upstreamStreamWindow},
		{ID: http2.SettingMaxHeaderListSize, Val: upstreamHeaderList},
	}, true)
	if err != nil {
		p.log.Debug().Err(err).Msg("writing the connection preface upstream failed")
		cc.nc.Close()
		cc.countEnd(stats.ConnEnd{ConnectFail: true, Timeout: isTimeout(err), Local: isTimeout(err)})
		cc.connectFailed()
		cc.giveBackSlot()
		return
	}
	cc.startWriter()
	cc.mu.Lock()
	cc.closeIfDoneLocked() // the pool may have closed while we dialled
	cc.unlock()
	parker.addClient(cc)
	cc.read()
}

// read runs the read loop until the connection parks (park.go) or ends,
// and then ends it.
func (cc *clientConn) read() {
	err := cc.readLoop()
	if err == errParked {
		return
	}
	parker.removeClient(cc)
	cc.mu.Lock()
	cc.stopKeepaliveLocked()
	if cc.idleTimer != nil {
		cc.idleTimer.Stop()
	}
	var ce connErr
	end := stats.ConnEnd{
		ConnectFail: !cc.peerReady,
		Timeout:     !cc.peerReady && isTimeout(err),
		// The proxy closed it: it chose to (drain, PING timeout), found
		// a protocol error, or a deadline it set passed. Otherwise the
		// peer closed it or it broke.
		Local: cc.localClose || errors.As(err, &ce) || isTimeout(err),
	}
	cc.mu.Unlock()
	cc.countEnd(end)
	cc.teardown(err)
	cc.br.drop()
	cc.giveBackSlot()
}

// giveBackSlot gives back the connection's max_connections slot once it
// has closed: a parked connection is open and keeps its slot, as Envoy
// counts every open connection.
func (cc *clientConn) giveBackSlot() {
	if cc.counted {
		cc.pool.opts.Breakers.DoneConnection()
	}
}

// resumeReading is a parked connection's new reader.
func (cc *clientConn) resumeReading() {
	cc.park.woken = true
	cc.read()
}

// countEnd counts the end of the connection (stats.Connections.Ended).
func (cc *clientConn) countEnd(e stats.ConnEnd) { cc.pool.cx().Ended(e, cc.start) }

// isTimeout reports whether err is a deadline passing: the connect
// timeout, or a read deadline the connection set.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// localDialError is a dial the proxy gave up on although the peer
// answered (a TLS peer that does not speak h2).
type localDialError struct{ error }

func (e localDialError) Unwrap() error { return e.error }

// h2Dialer dials the engine's upstream connections without TCP
// keep-alive, as Envoy does unless upstream_connection_options asks for
// it: the connection's PINGs (keepalive_interval) find a dead peer, and
// Go's default costs four setsockopt calls a connection, of about thirty
// system calls for one that lives for a call (an upstream that resets
// every stream gets a connection a call).
var h2Dialer = net.Dialer{KeepAlive: -1}

// dial opens the TCP (and TLS) connection.
func (cc *clientConn) dial(deadline time.Time) (net.Conn, error) {
	p := cc.pool
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	nc, err := h2Dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", p.addr, err)
	}
	if p.tls == nil {
		return offPoller(nc), nil
	}
	tc := tlsClient(nc, p.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", p.addr, err)
	}
	if proto := tc.ConnectionState().NegotiatedProtocol; proto != "h2" {
		tc.Close()
		return nil, localDialError{fmt.Errorf("TLS handshake with %s: ALPN chose %q, not h2", p.addr, proto)}
	}
	return tc, nil
}

// connectFailed fails every stream waiting for a connection that never
// came up: the client gets UF (nothing was sent, RFC 9113 §8.7).
func (cc *clientConn) connectFailed() {
	cc.mu.Lock()
	cc.failed = true
	for h := cc.popWaitingLocked(); h != nil; h = cc.popWaitingLocked() {
		cc.failLocked2(h, flagUpstreamConnectFailure, router.ReplyConnectFailure.Message)
	}
	close(cc.writerDone)
	cc.unlock()
	cc.pool.forget(cc)
}

// teardown closes an established connection after its read loop ended.
// Streams that never reached the wire go to another connection; the others
// fail with UC.
func (cc *clientConn) teardown(err error) {
	var ce connErr
	if errors.As(err, &ce) {
		// The host broke the protocol (or flooded us): the connection
		// ends with GOAWAY, counted as Envoy does.
		cc.pool.holdOff(time.Now())
		cc.pool.cx().CxProtocolError.Inc(1)
		cc.log.Debug().Str("code", ce.code.String()).Str("reason", ce.reason).Msg("upstream connection error")
		cc.mu.Lock()
		cc.queueCtrlLocked(ctrlFrame{kind: ctrlGoAway, val: uint32(ce.code)})
		cc.unlock()
		_ = cc.nc.SetWriteDeadline(time.Now().Add(closeLinger))
		cc.stopAndWait(true)
		// The calls go elsewhere now, not after the linger.
		defer func() {
			if ce.code == http2.ErrCodeEnhanceYourCalm {
				// A flooding host: reading on to be polite would
				// only read its flood (up to a MiB per connection,
				// most of the proxy's CPU under an RST_STREAM
				// flood), and it has earned no care for its GOAWAY.
				cc.nc.Close()
				return
			}
			cc.linger()
		}()
	} else {
		cc.mu.Lock()
		cc.failLocked(err)
		cc.unlock()
		cc.nc.Close()
		<-cc.writerDone
	}
	cc.mu.Lock()
	cc.failed, cc.draining = true, true
	if cc.drainTimer != nil {
		cc.drainTimer.Stop()
	}
	for _, l := range []*halfList{&cc.ready, &cc.blocked} {
		for h := l.pop(); h != nil; h = l.pop() {
			h.listed = listNone
		}
	}
	if !cc.peerReady {
		// The peer never sent its SETTINGS: a connect failure.
		for h := cc.popWaitingLocked(); h != nil; h = cc.popWaitingLocked() {
			cc.failLocked2(h, flagUpstreamConnectFailure, router.ReplyConnectFailure.Message)
		}
	}
	cc.moveWaitingLocked()
	for _, h := range cc.streams {
		h.rstDone = true
		if !h.wroteHeaders {
			cc.moveLocked(h, true)
		} else {
			h.failCode = http2.ErrCodeInternal
			cc.failLocked2(h, flagUpstreamConnectionTerm, router.ReplyConnTermination.Message)
		}
	}
	cc.unlock()
	cc.pool.forget(cc)
}

// drain stops new streams and closes cc once its streams are done.
func (cc *clientConn) drain() {
	cc.mu.Lock()
	if !cc.draining {
		cc.draining = true
		cc.moveWaitingLocked()
		cc.drainTimer = time.AfterFunc(drainTimeout, func() {
			cc.mu.Lock()
			cc.localClose = true
			cc.failLocked(errConnClosed)
			connected := cc.connected
			cc.unlock()
			if connected {
				cc.closeSocket()
			}
		})
	}
	cc.closeIfDoneLocked()
	cc.unlock()
}

// closeIfDoneLocked half-closes a draining connection without streams; the
// reader then sees EOF (or the linger deadline) and tears it down.
func (cc *clientConn) closeIfDoneLocked() {
	if cc.draining && cc.nActive == 0 && cc.waiting.head == nil && cc.connected && !cc.stopWriter {
		cc.localClose = true
		cc.queueCtrlLocked(ctrlFrame{kind: ctrlGoAway, val: uint32(http2.ErrCodeNo)})
		cc.stopWriter, cc.closeWrite = true, true
		cc.kickLocked()
	}
}

func (cc *clientConn) idleLocked(id uint32) bool {
	return id%2 == 0 || id >= cc.nextID // even: pushes are disabled
}

func (cc *clientConn) applySettingLocked(s http2.Setting) error {
	switch s.ID {
	case http2.SettingMaxConcurrentStreams:
		cc.maxStreams = min(s.Val, cc.pool.streamCap())
	case http2.SettingEnablePush:
		if s.Val != 0 {
			return connError(http2.ErrCodeProtocol, "server sent SETTINGS_ENABLE_PUSH=1")
		}
	}
	return nil
}

// settingsAppliedLocked activates waiting streams once the peer's limits
// are known, and whenever its SETTINGS_MAX_CONCURRENT_STREAMS grows. The
// first SETTINGS make the connection ready: upstream_cx_connect_ms is the
// time from the dial to here, and the keepalive starts.
func (cc *clientConn) settingsAppliedLocked() {
	first := !cc.peerReady
	if first {
		cc.pool.cx().CxConnectMs.RecordDuration(time.Since(cc.start))
		cc.startKeepaliveLocked()
	}
	cc.peerReady = true
	cc.activateWaitingLocked()
	if first && cc.nActive == 0 {
		cc.markIdleLocked()
	}
	if int64(cc.nActive) >= int64(cc.maxStreams) {
		cc.moveWaitingLocked()
	}
}

// errPingTimeout ends a connection whose PING went unanswered.
var errPingTimeout = errors.New("h2: upstream PING timed out")

// startKeepaliveLocked arms the keepalive once the connection is ready.
func (cc *clientConn) startKeepaliveLocked() {
	if d := cc.pool.opts.SendPingTimeout; d > 0 && !cc.kaStopped {
		cc.pingTimer = time.AfterFunc(d, cc.keepalive)
	}
}

// stopKeepaliveLocked stops the keepalive for good.
func (cc *clientConn) stopKeepaliveLocked() {
	cc.kaStopped = true
	if cc.pingTimer != nil {
		cc.pingTimer.Stop()
	}
}

// keepalive runs on the keepalive timer. A connection that has read
// nothing for SendPingTimeout sends a PING; if the ACK has not come
// PingTimeout later, the peer or the path is gone and the connection is
// closed: the proxy closes it (upstream_cx_destroy_local), and its streams
// fail as a connection termination, which the router may retry. Reading
// anything, not only the ACK, postpones the next PING.
func (cc *clientConn) keepalive() {
	opts := &cc.pool.opts
	cc.mu.Lock()
	if cc.kaStopped || cc.failed {
		cc.mu.Unlock()
		return
	}
	if cc.pingSent {
		cc.kaStopped = true
		cc.localClose = true
		cc.failLocked(errPingTimeout)
		cc.unlock()
		cc.log.Debug().Dur("ping_timeout", opts.PingTimeout).Msg("upstream did not answer PING; closing the connection")
		cc.closeSocket() // the reader tears the connection down
		return
	}
	if idle := cc.clock.idle(); idle < opts.SendPingTimeout {
		cc.pingTimer.Reset(opts.SendPingTimeout - idle)
		cc.mu.Unlock()
		return
	}
	cc.pingSeq++
	f := ctrlFrame{kind: ctrlPing}
	binary.BigEndian.PutUint64(f.data[:], cc.pingSeq)
	cc.pingSent = true
	cc.queueCtrlLocked(f)
	cc.pingTimer.Reset(opts.PingTimeout)
	cc.unlock()
}

// handlePingAck takes the ACK of our PING: the peer is alive, and the next
// PING waits for another SendPingTimeout without reads.
func (cc *clientConn) handlePingAck(data [8]byte) {
	cc.mu.Lock()
	if cc.pingSent && binary.BigEndian.Uint64(data[:]) == cc.pingSeq {
		cc.pingSent = false
		if !cc.kaStopped {
			cc.pingTimer.Reset(cc.pool.opts.SendPingTimeout)
		}
	}
	cc.mu.Unlock()
}

// readClock is an upstream socket that notes when it last read
// something, for the keepalive: one clock read per socket read.
type readClock struct {
	net.Conn
	start time.Time
	last  atomic.Int64 // time since start of the last read that returned bytes
}

func (c *readClock) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.CountRead(n)
	return n, err
}

// CountRead notes a read of n bytes, through Read or by the engine on the
// socket itself (ReadCounter).
func (c *readClock) CountRead(n int) {
	if n > 0 {
		c.last.Store(int64(time.Since(c.start)))
	}
}

// Unwrap is the socket: a readClock holds no bytes, so the engine may
// write to the socket without it (inline.go).
func (c *readClock) Unwrap() net.Conn { return c.Conn }

// idle is how long ago the socket last read something.
func (c *readClock) idle() time.Duration {
	return time.Since(c.start) - time.Duration(c.last.Load())
}

// CloseWrite half-closes the socket when it can (halfClose, linger).
func (c *readClock) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// sentEndLocked: the request is complete and the response still coming,
// which is how every call goes.
func (cc *clientConn) sentEndLocked(*half) {}

// handleGoAway stops new streams; streams above the last ID were not
// processed and go elsewhere when nothing of their body was sent (RFC 9113
// §6.8, §8.7), the others finish.
func (cc *clientConn) handleGoAway(f *http2.GoAwayFrame) error {
	if f.ErrCode != http2.ErrCodeNo {
		cc.log.Debug().Str("code", f.ErrCode.String()).Uint32("last_stream", f.LastStreamID).Msg("upstream sent GOAWAY")
	}
	cc.mu.Lock()
	cc.draining = true
	cc.moveWaitingLocked()
	for id, h := range cc.streams {
		if id > f.LastStreamID {
			h.peerReset, h.rstDone = true, true
			cc.moveLocked(h, true)
		}
	}
	cc.closeIfDoneLocked()
	cc.unlock()
	cc.pool.retire(cc)
	return nil
}

func (cc *clientConn) beginHeaders(id uint32) (bool, error) {
	cc.mu.Lock()
	idle := cc.idleLocked(id)
	cc.mu.Unlock()
	if idle {
		return false, connError(http2.ErrCodeProtocol, "HEADERS on an idle stream")
	}
	return false, nil
}

// endHeaders handles a response header block: the response headers, an
// interim 1xx (dropped), or trailers.
func (cc *clientConn) endHeaders() error {
	hb := &cc.hb
	id := hb.streamID
	cc.mu.Lock()
	h := cc.streams[id]
	switch {
	case h == nil || h.rstDone:
		cc.mu.Unlock()
		return nil // we reset it; frames in flight are ignored
	case h.recvDone:
		cc.mu.Unlock()
		return streamError(id, http2.ErrCodeStreamClosed, "HEADERS after END_STREAM")
	case hb.invalid != "":
		cc.mu.Unlock()
		return streamError(id, http2.ErrCodeProtocol, hb.invalid)
	case hb.truncated:
		cc.mu.Unlock()
		return streamError(id, http2.ErrCodeProtocol, "response header list too large")
	}
	cl := h.call
	cl.touch()
	trailers := h.gotHeaders
	if !trailers {
		if msg := checkResponse(hb); msg != "" {
			cc.mu.Unlock()
			return streamError(id, http2.ErrCodeProtocol, msg)
		}
		if hb.status[0] == '1' {
			cc.mu.Unlock()
			if hb.status == "101" || hb.endStream {
				return streamError(id, http2.ErrCodeProtocol, "invalid interim response")
			}
			if hb.status != "100" {
				cl.onInterim(hb.status, cc.fields)
			}
			return nil
		}
		h.gotHeaders = true
		if cl.rc.Retry.On != 0 && cl.retryResponseLocked(cc, h, hb.status, cc.fields, hb.endStream) {
			cc.unlock()
			return nil // not forwarded: the request goes to another host
		}
		if !cl.head && hb.status != "204" && hb.status != "304" {
			h.contentLen = hb.clen
		}
	} else if !hb.endStream {
		cc.mu.Unlock()
		return streamError(id, http2.ErrCodeProtocol, "trailers without END_STREAM")
	}
	if hb.endStream {
		if h.contentLen >= 0 && h.recvLen != h.contentLen {
			cc.mu.Unlock()
			return streamError(id, http2.ErrCodeProtocol, "response body shorter than content-length")
		}
		h.recvDone = true
		cc.stopRequestLocked(h)
	}
	cl.refs.Add(1)
	cc.maybeCloseLocked(h)
	cc.unlock()
	if trailers {
		cl.onResponseTrailers(cc.fields)
	} else {
		cl.onResponseHeaders(hb.status, hb.endStream, cc.fields)
	}
	cl.release()
	return nil
}

// handleData takes a response DATA frame.
func (cc *clientConn) handleData(fh http2.FrameHeader, d *dbuf) error {
	id := fh.StreamID
	cc.mu.Lock()
	h := cc.streams[id]
	if h == nil || h.rstDone || h.recvDone {
		idle := h == nil && cc.idleLocked(id)
		cc.mu.Unlock()
		putBuf(d)
		switch {
		case idle:
			return connError(http2.ErrCodeProtocol, "DATA on an idle stream")
		case h != nil && !h.rstDone:
			return streamError(id, http2.ErrCodeStreamClosed, "DATA after END_STREAM")
		}
		return nil
	}
	flow := int32(fh.Length)
	if h.addInWin(-flow) < 0 {
		// A connection error, not a stream error (RFC 9113 §6.9.1
		// allows either): an upstream that ignores the windows it was
		// given would otherwise cost a reset per frame and keep going.
		cc.mu.Unlock()
		putBuf(d)
		return connError(http2.ErrCodeFlowControl, "stream receive window exceeded")
	}
	if !h.gotHeaders {
		cc.mu.Unlock()
		putBuf(d)
		return streamError(id, http2.ErrCodeProtocol, "DATA before response headers")
	}
	n := d.len()
	end := fh.Flags.Has(http2.FlagDataEndStream)
	h.recvLen += int64(n)
	if h.contentLen >= 0 && (h.recvLen > h.contentLen || end && h.recvLen != h.contentLen) {
		cc.mu.Unlock()
		putBuf(d)
		return streamError(id, http2.ErrCodeProtocol, "response body length differs from content-length")
	}
	if end {
		h.recvDone = true
		cc.stopRequestLocked(h)
	}
	cl := h.call
	cl.refs.Add(1)
	cl.touch()
	cc.maybeCloseLocked(h)
	cc.unlock()
	if pad := flow - int32(n); pad > 0 {
		h.credit(pad, 0)
	}
	if n == 0 && !end {
		putBuf(d)
		cl.release()
		return cc.glitch()
	}
	cl.onResponseData(d, end)
	cl.release()
	return nil
}

// stopRequestLocked ends a request the upstream no longer wants: its
// response is complete (RFC 9113 §8.1), so the rest of the request is
// dropped and the stream reset with CANCEL, as x/net's Transport does.
// Request frames crossing the server's own reset on the wire are the
// peer's to ignore; Go's server even treats HEADERS there (trailers) as a
// connection error, so the sooner nothing more is sent, the better.
func (cc *clientConn) stopRequestLocked(h *half) {
	if !h.sendDone {
		cc.resetLocked(h, http2.ErrCodeCancel, true)
	}
}

// handleRST takes the upstream's RST_STREAM: REFUSED_STREAM is retried on
// another connection when safe; otherwise the client is told.
func (cc *clientConn) handleRST(id uint32, code http2.ErrCode) error {
	cc.mu.Lock()
	h := cc.streams[id]
	if h == nil || h.rstDone {
		idle := h == nil && cc.idleLocked(id)
		// A reset of a stream we just closed, or reset ourselves,
		// crossed ours on the wire: normal once. Again, or on a stream
		// long gone, it counts toward the glitch limit.
		crossed := h == nil && cc.crossedLocked(id) || h != nil && !h.peerReset
		if h != nil {
			h.peerReset = true
		}
		cc.mu.Unlock()
		switch {
		case idle:
			return connError(http2.ErrCodeProtocol, "RST_STREAM on an idle stream")
		case crossed:
			return nil
		}
		return cc.glitch()
	}
	h.peerReset, h.rstDone = true, true
	switch {
	case code == http2.ErrCodeRefusedStream:
		cc.moveLocked(h, true)
	case code == http2.ErrCodeEnhanceYourCalm && !h.gotHeaders:
		// The host is overloaded on this connection (Node's http2
		// refuses new streams so past maxSessionMemory): the stream
		// goes elsewhere as a refused one would, and the connection
		// takes no new stream and closes once its streams are done.
		cc.calmLocked()
		cc.moveLocked(h, true)
		cc.unlock()
		cc.pool.retire(cc)
		return nil
	case code == http2.ErrCodeNo && h.gotHeaders && !h.recvDone && (h.contentLen < 0 || h.recvLen == h.contentLen):
		// All of a response, then RST_STREAM(NO_ERROR) instead of
		// END_STREAM (Node's http2 server ends most streams so). RFC
		// 9113 §8.1 lets a server stop the request without error after
		// a complete response: the response ends here, and what is
		// queued for the client is delivered before its END_STREAM.
		// A body shorter than its content-length is not complete and
		// takes the reset path below.
		h.recvDone = true
		cl := h.call
		cl.refs.Add(1)
		cc.resetLocked(h, 0, false)
		cc.unlock()
		cl.onResponseData(nil, true)
		cl.release()
		return nil
	case h.recvDone:
		// The response is complete: the server only asks us to stop
		// sending the request (RFC 9113 §8.1).
		cc.resetLocked(h, 0, false)
	default:
		h.failCode = code
		cc.failLocked2(h, flagUpstreamRemoteReset, router.ReplyRemoteReset.Message)
	}
	cc.unlock()
	return nil
}

// calmLocked drains a connection whose host answered a stream with
// RST_STREAM(ENHANCE_YOUR_CALM): no new streams (the caller retires it
// from the pool), waiting ones go elsewhere, and it closes when empty.
func (cc *clientConn) calmLocked() {
	if cc.draining {
		return
	}
	cc.log.Debug().Msg("upstream sent RST_STREAM(ENHANCE_YOUR_CALM); draining the connection")
	cc.draining = true
	cc.moveWaitingLocked()
	cc.closeIfDoneLocked()
}

// resetStream answers a stream error found in the upstream's frames.
func (cc *clientConn) resetStream(id uint32, code http2.ErrCode) {
	cc.mu.Lock()
	h := cc.streams[id]
	if h == nil {
		cc.queueCtrlLocked(ctrlFrame{kind: ctrlRST, id: id, val: uint32(code)})
		cc.unlock()
		return
	}
	if !h.recvDone && !h.reset {
		h.failCode = code
		h.failFlag, h.failMsg = flagUpstreamRemoteReset, router.ReplyRemoteReset.Message
	}
	cc.resetLocked(h, code, true)
	cc.unlock()
}

// streamClosedLocked gives the freed slot to a waiting stream, and closes
// a draining connection once it is empty.
func (cc *clientConn) streamClosedLocked(*half) {
	cc.activateWaitingLocked()
	cc.closeIfDoneLocked()
	if cc.nActive == 0 {
		cc.markIdleLocked()
	}
}

// markIdleLocked notes that cc has no stream from now. A connection idle
// for the pool's IdleTimeout drains. The timer is armed once per idle
// period, not per stream: when it fires on a connection that was busy
// meanwhile, it waits again from the last stream's end, or disarms while
// a stream is in flight (the stream's end arms it again).
func (cc *clientConn) markIdleLocked() {
	d := cc.pool.opts.IdleTimeout
	if d <= 0 || cc.draining || cc.failed {
		return
	}
	cc.idleSince = time.Now()
	if cc.idleArmed {
		return
	}
	cc.idleArmed = true
	if cc.idleTimer == nil {
		cc.idleTimer = time.AfterFunc(d, cc.idleCheck)
	} else {
		cc.idleTimer.Reset(d)
	}
}

// idleCheck runs on the idle timer.
func (cc *clientConn) idleCheck() {
	cc.mu.Lock()
	cc.idleArmed = false
	if cc.failed || cc.draining || cc.nActive > 0 || cc.waiting.head != nil {
		cc.mu.Unlock()
		return
	}
	if left := cc.pool.opts.IdleTimeout - time.Since(cc.idleSince); left > 0 {
		cc.idleArmed = true
		cc.idleTimer.Reset(left)
		cc.mu.Unlock()
		return
	}
	cc.mu.Unlock()
	cc.pool.cx().CxIdleTimeout.Inc(1)
	cc.log.Debug().Dur("idle_timeout", cc.pool.opts.IdleTimeout).Msg("upstream connection idle: closing it")
	cc.pool.retire(cc)
	cc.drain()
}
