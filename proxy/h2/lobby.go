//go:build linux

package h2

import (
	"bytes"
	"encoding/binary"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http2"

	"github.com/sightline-proxy/sightline/internal/shrink"
)

// The lobby. What a client that connects and asks for nothing costs a Go
// server is mostly what its connection gets on arrival: a goroutine to
// read the preface, a timer for the read deadline, the engine's
// connection state, a wake-up of that goroutine for the client's
// SETTINGS ACK, and a timer for the header timeout. 19,000 such clients
// cost the proxy half again the CPU that HAProxy's event loop spent on
// them (bench/README.md, Abuse).
//
// A cleartext listener that serves HTTP/2 hands each new connection to
// Server.Greet on its accept goroutine instead. Greet reads what the client
// sent, without waiting. When that is the client preface and nothing but
// SETTINGS and connection WINDOW_UPDATE frames (a client connecting ahead
// of its calls), the server preface and the ACKs go out in one write, and
// the connection waits in the lobby: registered with the parking poller
// (in an epoll instance of the lobby's own, see poller), with the
// client's handshake bytes kept, and no goroutine. The poller answers
// further SETTINGS, takes the client's ACK, and with the first
// other frame (a request, a PING) hands the connection to the engine,
// which reads the kept bytes before the socket's: it applies the client's
// SETTINGS as if it read them first, without ACKing again what the lobby
// ACKed (conn.ackedEarly), and knows whether ours were ACKed. A connection
// whose first bytes carry more than a handshake goes to the engine at
// once; bytes that are no client preface, or stop short of one, go back to
// the listener, which tells HTTP/1.1 from the rest as before
// (Arrivals.Sniff); a client that has sent nothing yet waits in the lobby
// until it does.
//
// A connection the listener accepted itself (package sock, an FDConn)
// is read and written by its descriptor and joins Go's network poller
// only when the engine or the listener's sniff first uses it: a client
// that asks for nothing never costs the poller's registration, its
// removal at close, or a poll descriptor (memory the runtime keeps for
// reuse and never returns).
//
// A connection stays in the lobby until the header timeout (or the idle
// timeout, when shorter) from its accept, as a parked connection that never
// opened a stream does: then one that was greeted is sent GOAWAY(0,
// NO_ERROR) and its socket half-closed, and the poller drains the client
// until it closes or closeLinger passes; one that never spoke is closed.
// Connections join the lobby in accept order, which is their deadline
// order, so one reaper goroutine for the process closes them from the
// front of each server's list, paced as the sweep is.

// lobbyRead is how much a lobby read takes; what does not fit is read by
// the engine after the hand-over.
const lobbyRead = 2048

// lobbyHeadMax bounds the client bytes a connection keeps in the lobby: a
// client that sends more SETTINGS and WINDOW_UPDATEs than that goes to
// the engine, whose flood limits count them.
const lobbyHeadMax = 512

// lobbyAcksMax is the most SETTINGS frames the lobby ACKs in one read.
const lobbyAcksMax = 8

// Lobby states (lobbyConn.state).
const (
	lobbyNew       uint8 = iota // nothing read yet
	lobbyGreeted                // preface answered, waiting for a request
	lobbyLingering              // GOAWAY sent at the timeout: draining
	lobbyGone                   // closed, or handed on
)

// lobbyConn is a connection in the lobby.
type lobbyConn struct {
	srv *Server
	nc  net.Conn
	a   Arrivals
	fd  int
	cs  counters
	// Guarded by srv.mu: the list the connection is in, and its place.
	prev, next *lobbyConn
	list       *lobbyList
	deadline   int64 // on lobbyNow's clock: the timeout, then the linger's end

	mu sync.Mutex
	// Guarded by mu.
	state    uint8
	acks     uint8  // the client's SETTINGS frames ACKed here
	window   uint32 // the increments of the client's WINDOW_UPDATEs
	ourAcked bool   // the client ACKed our SETTINGS
	id       int32  // the poller's name for the socket; 0 before it has one
	since    int64  // the accept, on lobbyNow's clock
	head     []byte
}

// lobbyList is a server's list of lobby connections in deadline order.
// Guarded by the server's mu.
type lobbyList struct {
	front, back *lobbyConn
	n           int
}

func (l *lobbyList) push(lc *lobbyConn) {
	lc.list, lc.prev, lc.next = l, l.back, nil
	if l.back != nil {
		l.back.next = lc
	} else {
		l.front = lc
	}
	l.back = lc
	l.n++
}

func (l *lobbyList) remove(lc *lobbyConn) {
	if lc.prev != nil {
		lc.prev.next = lc.next
	} else {
		l.front = lc.next
	}
	if lc.next != nil {
		lc.next.prev = lc.prev
	} else {
		l.back = lc.prev
	}
	lc.list, lc.prev, lc.next = nil, nil, nil
	l.n--
}

// lobby is a server's part: the connections waiting for their clients and
// the ones lingering after their GOAWAY. Guarded by the server's mu.
type lobby struct {
	waiting, lingering lobbyList
	reaped             bool // in the reaper's set
	// linger replaces closeLinger for the lobby's connections when set
	// (by tests, before the server serves).
	linger time.Duration
	// The server preface, made once.
	greetOnce  sync.Once
	greetBytes []byte
}

// lobbyEpoch starts lobbyNow's clock, which is monotonic.
var lobbyEpoch = time.Now()

func lobbyNow() int64 { return int64(time.Since(lobbyEpoch)) }

// settingsAck is a SETTINGS frame with the ACK flag.
var settingsAck = [9]byte{3: byte(http2.FrameSettings), 4: byte(http2.FlagSettingsAck)}

// greeting is the server preface as the engine writes it: our SETTINGS,
// then the connection window's WINDOW_UPDATE.
func (s *Server) greeting() []byte {
	s.lobby.greetOnce.Do(func() {
		var b bytes.Buffer
		fr := http2.NewFramer(&b, nil)
		_ = fr.WriteSettings(s.settings()...)
		_ = fr.WriteWindowUpdate(0, initialConnWindow-defaultWindow)
		s.lobby.greetBytes = b.Bytes()
	})
	return s.lobby.greetBytes
}

// Greet takes a new cleartext connection from a listener that serves
// HTTP/2 on it, on the listener's accept goroutine, and never waits: see
// the lobby, above. a is told what became of nc.
func (s *Server) Greet(nc net.Conn, a Arrivals) {
	tc, cs, _ := findSocket(nc)
	fd := -1
	if tc != nil && parker.enable() {
		fd = socketFD(tc)
	}
	if fd < 0 {
		a.Sniff(nc, nil)
		return
	}
	lc := &lobbyConn{srv: s, nc: nc, a: a, fd: fd, cs: cs, since: lobbyNow()}
	lc.mu.Lock()
	lc.readLocked()
	lc.mu.Unlock()
}

// woken is the poller's call: the socket is readable or hung up.
func (lc *lobbyConn) woken() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	switch lc.state {
	case lobbyGone:
	case lobbyLingering:
		lc.drainLocked(true)
	default:
		lc.readLocked()
	}
}

// lobbyBufs are the lobby's read buffers.
var lobbyBufs = sync.Pool{New: func() any { return new([lobbyRead]byte) }}

// readLocked reads what the client sent and acts on it.
func (lc *lobbyConn) readLocked() {
	buf := lobbyBufs.Get().(*[lobbyRead]byte)
	defer lobbyBufs.Put(buf)
	for {
		n, err := lobbySysRead(lc.fd, buf[:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			lc.waitLocked()
		case err != nil || n == 0:
			lc.closeLocked()
		default:
			lc.cs.read(n)
			lc.takeLocked(buf[:n])
		}
		return
	}
}

// takeLocked acts on b, what one read took.
func (lc *lobbyConn) takeLocked(b []byte) {
	s := lc.srv
	if lc.state == lobbyNew {
		if !bytes.HasPrefix(b, prefaceBytes) {
			lc.leaveLocked()
			lc.a.Sniff(lc.nc, newPeekConnHead(lc.nc, b))
			return
		}
		// A client may ACK our SETTINGS before it reads them, as it
		// may send a request: the engine allows it.
		settings, acks, ok := lc.frames(b[len(prefaceBytes):], true, true)
		if !ok || len(b) > lobbyHeadMax {
			// More than a handshake: the engine's from the start.
			lc.leaveLocked()
			nc, a := lc.nc, lc.a
			go s.ServeCounted(newPeekConnHead(nc, b), func() { a.Opened(nc) }, func() { a.Closed(nc) })
			return
		}
		if !lc.writeLocked(s.greeting(), settings) || lc.list == nil && !s.joinLobby(lc) {
			lc.closeLocked()
			return
		}
		lc.head = appendUnacked(append(make([]byte, 0, len(b)), prefaceBytes...), b[len(prefaceBytes):])
		lc.acks = uint8(settings)
		lc.ourAcked = acks > 0
		lc.state = lobbyGreeted
		lc.a.Opened(lc.nc)
		lc.waitLocked()
		return
	}
	settings, acks, ok := lc.frames(b, lc.acks == 0, !lc.ourAcked)
	if !ok || len(lc.head)+len(b) > lobbyHeadMax || int(lc.acks)+settings > 255 {
		lc.adoptLocked(b)
		return
	}
	if settings > 0 && !lc.writeLocked(nil, settings) {
		lc.closeLocked()
		return
	}
	lc.ourAcked = lc.ourAcked || acks > 0
	lc.acks += uint8(settings)
	lc.head = appendUnacked(lc.head, b)
	lc.waitLocked()
}

// lobbySysRead and lobbySysWrite are sysRead and sysWrite, but for the
// race detector: it learns that a write to a socket comes before the read
// of its bytes at the other end only from syscall.Read and Write (as
// net.Conn's reads and writes are made), and the lobby's read is the
// first a connection gets.
func lobbySysRead(fd int, p []byte) (int, error) {
	if raceEnabled {
		return syscall.Read(fd, p)
	}
	return sysRead(uintptr(fd), p)
}

func lobbySysWrite(fd int, p []byte) (int, error) {
	if raceEnabled {
		return syscall.Write(fd, p)
	}
	return sysWrite(uintptr(fd), p)
}

// prefaceBytes is the client preface.
var prefaceBytes = []byte(http2.ClientPreface)

// frames reports whether b is whole frames the lobby answers itself:
// SETTINGS (first, when first says the client has sent none yet), valid
// and at most lobbyAcksMax of them; at most one SETTINGS ACK, when ackOK;
// connection WINDOW_UPDATEs that keep the window valid. It counts the
// SETTINGS and the ACKs, and adds the increments to lc.window when b is
// all such frames. Anything else is the engine's to read, and to judge.
func (lc *lobbyConn) frames(b []byte, first, ackOK bool) (settings, acks int, ok bool) {
	window := int64(lc.window)
	for len(b) > 0 {
		if len(b) < frameHeaderLen {
			return 0, 0, false
		}
		n := frameLength(b)
		typ, flags := http2.FrameType(b[3]), http2.Flags(b[4])
		stream := binary.BigEndian.Uint32(b[5:9]) & (1<<31 - 1)
		if n > maxFrameSize || len(b) < frameHeaderLen+n || stream != 0 {
			return 0, 0, false
		}
		p := b[frameHeaderLen : frameHeaderLen+n]
		switch {
		case typ == http2.FrameSettings && flags.Has(http2.FlagSettingsAck):
			if first || !ackOK || acks > 0 || n != 0 {
				return 0, 0, false
			}
			acks++
		case typ == http2.FrameSettings:
			if n%6 != 0 || n/6 > maxSettingsPerFrame || settings == lobbyAcksMax {
				return 0, 0, false
			}
			for i := 0; i < n; i += 6 {
				st := http2.Setting{ID: http2.SettingID(binary.BigEndian.Uint16(p[i:])), Val: binary.BigEndian.Uint32(p[i+2:])}
				if st.Valid() != nil {
					return 0, 0, false
				}
			}
			settings++
		case typ == http2.FrameWindowUpdate && !first:
			if n != 4 {
				return 0, 0, false
			}
			inc := int64(binary.BigEndian.Uint32(p) & (1<<31 - 1))
			if window += inc; inc == 0 || defaultWindow+window > maxWindow {
				return 0, 0, false
			}
		default:
			return 0, 0, false
		}
		first = false
		b = b[frameHeaderLen+n:]
	}
	lc.window = uint32(window)
	return settings, acks, true
}

// appendUnacked appends b's frames but SETTINGS ACKs to head: the kept
// bytes hold none, the lobby having taken the one the client sent.
func appendUnacked(head, b []byte) []byte {
	for len(b) > 0 {
		n := frameHeaderLen + frameLength(b)
		if http2.FrameType(b[3]) != http2.FrameSettings || !http2.Flags(b[4]).Has(http2.FlagSettingsAck) {
			head = append(head, b[:n]...)
		}
		b = b[n:]
	}
	return head
}

// writeLocked writes pre and then an ACK for each of acks SETTINGS frames,
// in one write, and reports whether the socket took all of it (a new
// socket's buffer takes a few hundred bytes; one that does not has failed).
func (lc *lobbyConn) writeLocked(pre []byte, acks int) bool {
	var out [128 + lobbyAcksMax*len(settingsAck)]byte
	w := copy(out[:], pre)
	for range acks {
		w += copy(out[w:], settingsAck[:])
	}
	return lc.writeAllLocked(out[:w])
}

func (lc *lobbyConn) writeAllLocked(p []byte) bool {
	for {
		n, err := lobbySysWrite(lc.fd, p)
		if err == syscall.EINTR {
			continue
		}
		if n > 0 {
			lc.cs.written(n)
		}
		return n == len(p)
	}
}

// waitLocked waits for the client's next bytes: the connection joins the
// lobby if it is new to it, and its registration is armed. It closes the
// connection instead when the server is shutting down or the poller
// failed.
func (lc *lobbyConn) waitLocked() {
	if lc.list == nil && !lc.srv.joinLobby(lc) {
		lc.closeLocked()
		return
	}
	var err error
	if lc.id == 0 {
		lc.id, err = parker.register(&parker.lobbyOS, lc, lc.fd, false)
	} else {
		err = parker.lobbyOS.add(lc.fd, lc.id, true)
	}
	if err != nil {
		lc.closeLocked()
	}
}

// leaveLocked takes the connection out of the lobby for good.
func (lc *lobbyConn) leaveLocked() {
	lc.state = lobbyGone
	s := lc.srv
	s.mu.Lock()
	if lc.list != nil {
		lc.list.remove(lc)
	}
	s.mu.Unlock()
	if lc.id != 0 {
		parker.forget(lc.id)
	}
}

// closeLocked closes the connection: one the client never spoke on goes
// back to the listener unserved.
func (lc *lobbyConn) closeLocked() {
	was := lc.state
	lc.leaveLocked()
	if was == lobbyNew {
		lc.a.Dropped(lc.nc)
		return
	}
	lc.nc.Close()
	lc.a.Closed(lc.nc)
}

// adoptLocked hands a greeted connection to the engine, with b, the bytes
// of its last read, to be read after the client's handshake bytes.
func (lc *lobbyConn) adoptLocked(b []byte) {
	lc.leaveLocked()
	s, nc, a := lc.srv, lc.nc, lc.a
	sc := newServerConn(s, newPeekConnHead(nc, append(lc.head, b...)))
	sc.greeted = lobbyEpoch.Add(time.Duration(lc.since))
	sc.ackedEarly = int(lc.acks)
	if !lc.ourAcked {
		sc.unacked = 1
	}
	sc.park.fd = lc.fd
	sc.done = func() { a.Closed(nc) }
	s.mu.Lock()
	s.conns[sc] = struct{}{}
	shrink.Grew(s.conns, &s.connsPeak)
	shut := s.shutdown
	s.mu.Unlock()
	addLive(sc)
	if shut {
		sc.startShutdown()
	}
	go sc.serve()
}

// drainLocked reads and drops what a lingering connection's client sent,
// and closes it once the client has closed, failed, or sent more than
// one with a request in flight would; otherwise, with rearm, it waits for
// more.
func (lc *lobbyConn) drainLocked(rearm bool) {
	buf := lobbyBufs.Get().(*[lobbyRead]byte)
	n, done := discardFD(uintptr(lc.fd), buf[:], 1<<20)
	lobbyBufs.Put(buf)
	if n > 0 {
		lc.cs.read(n)
	}
	if done || rearm && parker.lobbyOS.add(lc.fd, lc.id, true) != nil {
		lc.closeLocked()
	}
}

// expireLocked acts on a connection whose deadline has passed: a greeted
// one is sent its GOAWAY and lingers, the others close.
func (lc *lobbyConn) expireLocked(now int64) {
	if lc.state == lobbyLingering {
		if lc.drainLocked(false); lc.state == lobbyGone {
			return
		}
	}
	if lc.state != lobbyGreeted {
		lc.closeLocked()
		return
	}
	// Lingering before the client can see the GOAWAY: what it does next
	// finds the connection so.
	lc.state = lobbyLingering
	s := lc.srv
	s.mu.Lock()
	lc.list.remove(lc)
	linger := closeLinger
	if s.lobby.linger > 0 {
		linger = s.lobby.linger
	}
	lc.deadline = now + int64(linger)
	s.lobby.lingering.push(lc)
	s.mu.Unlock()
	// MSG_MORE: the GOAWAY waits for the FIN, and both go in one segment.
	n, err := sysSend(uintptr(lc.fd), goAwayNoError[:], syscall.MSG_MORE)
	if n > 0 {
		lc.cs.written(n)
	}
	if err != nil || n < len(goAwayNoError) {
		lc.closeLocked()
		return
	}
	if cw, ok := lc.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	// The registration is armed: the client's close, or its bytes, wake
	// the connection.
}

// joinLobby puts lc at the back of the waiting list, with the deadline its
// accept gives it; false when the server is shutting down.
func (s *Server) joinLobby(lc *lobbyConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		return false
	}
	lc.deadline = lc.since + int64(s.lobbyTimeout())
	s.lobby.waiting.push(lc)
	if !s.lobby.reaped {
		s.lobby.reaped = true
		reaper.add(s)
	}
	return true
}

// lobbyTimeout is how long a connection may stay in the lobby: the header
// timeout, or the idle timeout when shorter (serverConn.idleLimitLocked
// for a connection without requests).
func (s *Server) lobbyTimeout() time.Duration {
	if s.idleTimeout > 0 && s.idleTimeout < s.headerTimeout {
		return s.idleTimeout
	}
	return s.headerTimeout
}

// reapLobby closes the lobby connections whose deadline is before now,
// front first, and returns the next deadline, or 0 (and leaves the
// reaper's set) when the lobby is empty.
func (s *Server) reapLobby(now int64, pace *pacer) int64 {
	for {
		s.mu.Lock()
		lc := s.lobby.waiting.front
		if lc == nil || lc.deadline > now {
			lc = s.lobby.lingering.front
		}
		if lc == nil || lc.deadline > now {
			next := int64(0)
			for _, f := range [...]*lobbyConn{s.lobby.waiting.front, s.lobby.lingering.front} {
				if f != nil && (next == 0 || f.deadline < next) {
					next = f.deadline
				}
			}
			if next == 0 {
				s.lobby.reaped = false
				reaper.remove(s)
			}
			s.mu.Unlock()
			return next
		}
		s.mu.Unlock()
		lc.mu.Lock()
		if lc.state != lobbyGone && lc.deadline <= now {
			lc.expireLocked(now)
		}
		lc.mu.Unlock()
		pace.step()
	}
}

// lobbyShutdown hands every greeted connection in the lobby to the engine,
// which drains it as it drains the others, and closes the ones that never
// spoke. Called with s.shutdown set.
func (s *Server) lobbyShutdown() { s.emptyLobby(true) }

// lobbyClose closes every connection in the lobby.
func (s *Server) lobbyClose() { s.emptyLobby(false) }

func (s *Server) emptyLobby(adopt bool) {
	s.mu.Lock()
	var all []*lobbyConn
	for lc := s.lobby.waiting.front; lc != nil; lc = lc.next {
		all = append(all, lc)
	}
	if !adopt {
		for lc := s.lobby.lingering.front; lc != nil; lc = lc.next {
			all = append(all, lc)
		}
	}
	s.mu.Unlock()
	for _, lc := range all {
		lc.mu.Lock()
		switch {
		case lc.state == lobbyGone:
		case adopt && lc.state == lobbyGreeted:
			lc.adoptLocked(nil)
		default:
			lc.closeLocked()
		}
		lc.mu.Unlock()
	}
}

// lobbyLenLocked counts the connections in the lobby. Under s.mu.
func (s *Server) lobbyLenLocked() int { return s.lobby.waiting.n + s.lobby.lingering.n }

// lobbyReaper closes the lobby connections of every server at their
// deadlines, from one goroutine, paced: its timer is set for the earliest
// front of the servers in its set, the ones with a lobby.
type lobbyReaper struct {
	once    sync.Once
	mu      sync.Mutex
	servers map[*Server]struct{}
	kick    chan struct{}
}

var reaper lobbyReaper

// add puts s in the set and wakes the reaper, whose timer may be set for
// later than s's front. Under s.mu.
func (r *lobbyReaper) add(s *Server) {
	r.once.Do(func() {
		r.servers = make(map[*Server]struct{})
		r.kick = make(chan struct{}, 1)
		go r.run()
	})
	r.mu.Lock()
	r.servers[s] = struct{}{}
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// remove takes s out of the set. Under s.mu.
func (r *lobbyReaper) remove(s *Server) {
	r.mu.Lock()
	delete(r.servers, s)
	r.mu.Unlock()
}

func (r *lobbyReaper) run() {
	pace := newPacer()
	t := time.NewTimer(time.Hour)
	var servers []*Server
	for {
		select {
		case <-t.C:
		case <-r.kick:
		}
		now := lobbyNow()
		pace.start = time.Now()
		r.mu.Lock()
		for s := range r.servers {
			servers = append(servers, s)
		}
		r.mu.Unlock()
		next := int64(0)
		for _, s := range servers {
			if n := s.reapLobby(now, pace); n != 0 && (next == 0 || n < next) {
				next = n
			}
		}
		clear(servers)
		servers = servers[:0]
		if next != 0 {
			t.Reset(time.Duration(next - lobbyNow()))
		}
	}
}
