package h2

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"

	"github.com/sightline-proxy/sightline/internal/roster"
	"github.com/sightline-proxy/sightline/internal/shrink"
	"github.com/sightline-proxy/sightline/internal/tick"
	"github.com/sightline-proxy/sightline/internal/yield"
)

// Parking. A connection whose peer has sent nothing for a while gives up
// its reader goroutine, whose stack (4 KiB or more once it has handled
// frames) is most of what an idle connection costs, and its read buffer:
// the socket is handed to one poller for the whole process (epoll on
// Linux), and the first readable byte, a hang-up or a close by the proxy
// starts a fresh reader where the last one stopped. 19,000 idle clients
// then cost their connection state, not 19,000 goroutines; so do the
// upstream connections of 10,000 clusters that each served a call and
// wait for their idle timeout (the goroutines a process once ran stay
// allocated for good in Go's runtime: a reader per upstream connection
// left their descriptors behind after every burst).
//
// Nothing on the request path pays for it. The reader only says, with two
// atomic stores, that it is waiting for the next frame with nothing
// buffered; a sweep every parkAfter finds the readers that have been
// waiting since its last pass and, under the connection's park lock, sets
// a read deadline in the past. The reader wakes with a timeout at a frame
// boundary (no byte of a frame has been taken), registers the socket and
// returns. A connection is parked after one to two parkAfter periods of
// silence; a busy one never is. A downstream connection whose client has
// opened no stream yet parks as soon as its handshake is read, and its
// writer does not linger: a client that connects and waits costs no
// goroutine. An upstream connection parks by the sweep (a new one is
// dialled for a stream about to be sent), or, in cleartext, as soon as
// its first stream has ended, when it has carried no other (parkAtOnce).
//
// TCP sockets park, reached through wrappers that buffer nothing (see
// Unwrapper), cleartext or under a crypto/tls connection on the engine's
// base (tlsbase.go). crypto/tls may hold a record the socket no longer
// shows, so a TLS connection parks only by a read through it under a past
// deadline: what it holds is read, and the deadline is met only in a
// read of the socket, when it holds no whole record. Its own buffers stay
// with it; the goroutine and the engine's read buffer go.

// parkAfter is the sweep's period.
const parkAfter = time.Second

// Reader wait states (conn.park.state).
const (
	readerBusy    int32 = iota
	readerWaiting       // waiting for the next frame, nothing buffered
	readerToPark        // the sweep set a past read deadline: park
)

// errParked ends a read loop whose connection parked.
var errParked = errors.New("h2: connection parked")

// Unwrapper is a connection wrapper that holds no bytes of its own
// (a byte counter, for one): the engine may look through it to the socket
// and wait for the socket's readiness itself.
type Unwrapper interface {
	Unwrap() net.Conn
}

// parkState is a connection's part in parking; fd < 0 for one that never
// parks.
type parkState struct {
	fd    int
	seq   atomic.Uint32 // counts the reader's waits
	state atomic.Int32
	seen  uint32 // sweep-owned: seq at the sweep's last pass
	// woken is reader-owned: the reader was just started for a parked
	// connection, and reads before it parks again (the socket is
	// readable: parking at once would only be woken again).
	woken bool

	mu sync.Mutex
	// Guarded by mu.
	parked  bool
	closing bool  // the socket is being closed: never park again
	id      int32 // the poller's name for it while parked
	// registered: the poller's epoll holds the socket, armed or not
	// (one-shot: a registration that fired stays, disarmed, until the
	// socket closes), so the next park re-arms it rather than adds it.
	registered bool
	// lingering: the connection was closed while parked (closeParked)
	// and the poller drains its peer; lingerUntil (set with it, read by
	// the sweep without mu) is when it is closed anyway, in Unix
	// nanoseconds.
	lingering   bool
	lingerUntil atomic.Int64
}

// socketFD returns the descriptor of the TCP socket under nc, when every
// layer above it holds no bytes of its own once read through; -1 when not.
func socketFD(nc net.Conn) int {
	for {
		switch c := nc.(type) {
		case *PeekConn:
			// Its peeked bytes are read before the reader ever waits
			// on the socket: a wait reads through it.
			nc = c.Conn
		case FDConn:
			return c.FD()
		case *net.TCPConn:
			rc, err := c.SyscallConn()
			if err != nil {
				return -1
			}
			fd := -1
			if err := rc.Control(func(s uintptr) { fd = int(s) }); err != nil {
				return -1
			}
			return fd
		case *tls.Conn:
			b, ok := c.NetConn().(*tlsBase)
			if !ok {
				return -1
			}
			nc = b.Conn
		case Unwrapper:
			nc = c.Unwrap()
		default:
			return -1
		}
	}
}

// drained reports whether the layers above the socket hold no bytes,
// and gives back a drained PeekConn's buffer (its next read would). Reader
// only.
func drained(nc net.Conn) bool {
	for {
		switch c := nc.(type) {
		case *PeekConn:
			if c.r != nil {
				if c.r.Buffered() > 0 {
					return false
				}
				c.release()
			}
			nc = c.Conn
		case Unwrapper:
			nc = c.Unwrap()
		default:
			return true
		}
	}
}

// waitReadable waits, at a frame boundary with nothing buffered, for the
// peer's next bytes, and reads them into the buffer. It returns errParked
// when the sweep asked the connection to park and it did; any other error
// is left in the buffer for the frame reader to find.
func (c *conn) waitReadable() error {
	p := &c.park
	state := readerWaiting
	if !p.woken && c.parkAtOnce() {
		if c.tlsb != nil {
			// crypto/tls may hold what the client sent next: read
			// through it under a past deadline, as the sweep asks a
			// reader to park, which finds what it holds, or parks.
			p.mu.Lock()
			if !p.closing {
				_ = c.nc.SetReadDeadline(pastDeadline)
				state = readerToPark
			}
			p.mu.Unlock()
		} else {
			// What the reader's frames queued is written before the
			// connection can be woken with a new reader.
			c.endReading()
			c.mu.Lock()
			c.shedLocked(false)
			c.mu.Unlock()
			p.mu.Lock()
			if !p.closing && drained(c.nc) && parker.add(c) == nil {
				c.br.release()
				p.parked = true
				p.mu.Unlock()
				return c.parked()
			}
			c.resumeReadingLocal()
			p.mu.Unlock()
			return nil
		}
	}
	p.woken = false
	p.seq.Add(1)
	p.state.Store(state)
	n, err := c.br.fill()
	if p.state.Swap(readerBusy) != readerToPark {
		c.br.keep(err)
		return nil
	}
	// The sweep set a read deadline in the past; it did so holding p.mu.
	if n == 0 && isTimeout(err) {
		c.endReading() // as above, before a new reader can run
		c.forgetClosed()
	}
	p.mu.Lock()
	if n > 0 || !isTimeout(err) || p.closing {
		// Bytes came first, or the socket failed, or a closer has set a
		// deadline of its own: carry on reading.
		if !p.closing {
			_ = c.nc.SetReadDeadline(time.Time{})
		}
		if n > 0 || !isTimeout(err) {
			c.br.keep(err)
		} else {
			c.resumeReadingLocal()
		}
		p.mu.Unlock()
		return nil
	}
	if err := parker.add(c); err != nil {
		_ = c.nc.SetReadDeadline(time.Time{})
		c.resumeReadingLocal()
		p.mu.Unlock()
		return nil
	}
	c.br.release()
	p.parked = true
	p.mu.Unlock()
	return c.parked()
}

// parked ends a reader that has just parked: it returns errParked, after
// what a writer still running as it parked left it to drop
// (dropDeferredLocked). The connection may have been woken meanwhile,
// with a new reader.
func (c *conn) parked() error {
	c.mu.Lock()
	c.dropDeferredLocked()
	c.mu.Unlock()
	return errParked
}

// parkAtOnce reports whether a reader about to wait for its peer parks
// now rather than when the sweep finds it waiting, once its handshake is
// done (our SETTINGS are acknowledged: the peer's ACK comes a moment
// after its preface, and would only wake the connection):
//   - a downstream connection whose client has asked for nothing: a
//     client that sends its first request with its preface never waits
//     here; one that connects ahead of its calls (grpc-go) is woken once
//     by its first;
//   - a cleartext upstream connection whose one stream so far has ended:
//     one call to each of thousands of hosts, in a burst, would
//     otherwise keep a reader goroutine per host until the sweep's next
//     pass, and the runtime keeps the descriptor of every goroutine it
//     ever ran at once. A connection that carries a second stream parks
//     by the sweep, as a busy one should.
//
// Not for a reader started for a parked connection (park.woken): the
// socket had something to read, and parking at once would only be woken
// again.
func (c *conn) parkAtOnce() bool {
	if c.unacked != 0 {
		return false
	}
	if c.server {
		return c.opened.Load() == 0
	}
	// Over TLS an upstream connection parks by the sweep only: parking
	// through crypto/tls (a read under a past deadline) can leave frames
	// queued for a writer goroutine, where calls one at a time are
	// written by the readers themselves.
	return c.tlsb == nil && c.park.fd >= 0 && c.opened.Load() == 1 && c.streamless()
}

// forgetClosed drops the ring of the streams that closed last, as the
// connection is about to park: its reader waited a sweep's pass without a
// byte, so a reset crossing one of their ends has come or will count as
// a glitch, one, and a parked connection that served requests keeps 512
// bytes fewer. The next stream to close takes the ring again. An empty
// stream map goes too: a Go map keeps the room of the most streams it
// held, and the next stream makes a new one. So does the HPACK encoder
// (dropEncoderLocked).
func (c *conn) forgetClosed() {
	c.mu.Lock()
	c.closedIDs, c.closedPos = nil, 0
	if len(c.streams) == 0 {
		c.streams = nil
	}
	c.shedLocked(false)
	c.mu.Unlock()
}

// pollerLeaver is a socket that can leave Go's poller and come back on
// its next use: package sock's Conn, which upstream connections are made
// of in cleartext (offPoller).
type pollerLeaver interface {
	syscall.Conn
	LeavePoller() (int, error)
}

// leavePollerLocked takes the socket of an upstream connection about to
// park off Go's poller: the runtime keeps a poll descriptor (about 530
// bytes with what goes with it) for every socket it ever watched at once,
// and the upstream connections of 10,000 clusters that each served a
// call, parked until their idle timeout, kept 5.5 MiB of them for good.
// Parked, the connection waits on the parker's epoll set, under the new
// descriptor LeavePoller gives; its next read or write joins the poller
// again. Only while no writer runs (a writer holds the socket's raw
// connection). Downstream connections keep theirs (newRawSock gives them
// no leaver): the sweep reads their park.fd without the locks. Under
// c.mu, by the reader as it parks (parked false), or once it has parked
// (parked true) by the writer that was running then: only if the
// connection is still parked, since a reader woken meanwhile may be
// waiting on the socket.
func (c *conn) leavePollerLocked(parked bool) {
	if c.sock == nil || c.sock.leaver == nil {
		return
	}
	if c.writerOn {
		c.dropLater = true
		return
	}
	p := &c.park
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing || p.fd < 0 || p.parked != parked {
		return
	}
	if p.registered {
		parker.os.del(p.fd)
		p.registered = false
	}
	if fd, err := c.sock.leaver.LeavePoller(); err == nil {
		p.fd = fd
	}
	if !parked {
		return
	}
	// A writer held the socket as the reader parked (writerGoneLocked):
	// the poller watches the new descriptor instead, or, failing that,
	// the connection gets its reader back, which finds what went wrong.
	if parker.os.add(p.fd, p.id, false) == nil {
		p.registered = true
	} else if c.unparkLocked() {
		c.br.reacquire()
		go c.h.resumeReading()
	}
}

// writerGoneLocked gives the writer role back.
func (c *conn) writerGoneLocked() {
	c.writerOn = false
	c.dropDeferredLocked()
}

// dropDeferredLocked lets the HPACK encoder and the socket's place on Go's
// poller go, when the reader parked while a writer held the role
// (dropEncoderLocked, leavePollerLocked need it free) and the role is
// free now. Both the writer giving the role back and the reader once
// parked call it, so that the later of the two does it: without it, a
// connection whose last frames a writer goroutine was still writing as
// it parked kept both for as long as it stayed parked. Under c.mu.
func (c *conn) dropDeferredLocked() {
	if !c.dropLater || c.writerOn {
		return
	}
	c.park.mu.Lock()
	parked := c.park.parked && !c.park.closing
	c.park.mu.Unlock()
	if parked {
		c.shedLocked(true)
	}
}

// shedLocked lets the HPACK encoder and the socket's place on Go's poller
// go, as the connection parks or once it has (parked; dropDeferredLocked);
// what a writer holding the role keeps, it leaves to dropLater. Under
// c.mu.
func (c *conn) shedLocked(parked bool) {
	c.dropLater = false
	c.dropEncoderLocked()
	c.leavePollerLocked(parked)
}

// unpark takes a parked connection off the poller and clears the sweep's
// deadline; the caller starts its reader. Under c.park.mu.
func (c *conn) unparkLocked() bool {
	if !c.park.parked {
		return false
	}
	c.park.parked = false
	parker.remove(c)
	_ = c.nc.SetReadDeadline(time.Time{})
	return true
}

// woken is the poller's call for a parked connection whose socket became
// readable or hung up.
func (c *conn) woken() {
	c.park.mu.Lock()
	if c.park.lingering {
		c.lingerWokenLocked()
		return
	}
	resume := c.unparkLocked()
	c.park.mu.Unlock()
	if resume {
		c.br.reacquire()
		// The socket is readable: the first read takes the large
		// buffer, so that a request over the small one is one read.
		c.sock.readable = true
		go c.h.resumeReading()
	}
}

// closing is called before anyone but the reader closes or half-closes
// the socket: the connection never parks again, and a parked one gets a
// reader back, which finds the close and tears the connection down. The
// caller sets its own deadline, if any, after this.
func (c *conn) closing() {
	c.park.mu.Lock()
	c.park.closing = true
	resume := c.unparkLocked()
	c.park.mu.Unlock()
	if resume {
		c.br.reacquire()
		go c.h.resumeReading()
	}
}

// closeSocket closes the socket from outside the reader: a parked
// connection gets its reader back to find the close.
func (c *conn) closeSocket() {
	c.closing()
	c.nc.Close()
}

// pastDeadline is a read deadline that has passed: a read waiting under it
// returns a timeout at once.
var pastDeadline = time.Unix(1, 0)

// sweepPark asks a reader that has waited since the last pass to park,
// and closes a lingering connection whose time is up. An upstream
// connection that carries no stream parks the first time the sweep finds
// its reader waiting: it has had its answers (one that carried a single
// stream has parked already, see parkAtOnce). A busy connection is woken
// at most once a pass for it.
func (c *conn) sweepPark(now int64) {
	p := &c.park
	if until := p.lingerUntil.Load(); until != 0 {
		if now >= until {
			p.mu.Lock()
			c.endLingerLocked()
		}
		return
	}
	seq := p.seq.Load()
	if p.state.Load() == readerWaiting && (seq == p.seen || !c.server && c.streamless()) {
		p.mu.Lock()
		if !p.closing && p.state.CompareAndSwap(readerWaiting, readerToPark) {
			_ = c.nc.SetReadDeadline(pastDeadline)
		}
		p.mu.Unlock()
	}
	p.seen = seq
}

// streamless reports whether c carries no stream.
func (c *conn) streamless() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nActive == 0
}

// parker is the process's poller and its sweep.
var parker poller

// poller is what watches parked sockets: pollerOS, one per platform, and
// the sweep.
type poller struct {
	once sync.Once
	err  error
	// os watches parked connections, lobbyOS the lobby's (lobby.go): two
	// instances, each with its goroutine. With one, a parked connection's
	// wake-up waited behind every lobby connection readied before it,
	// and a storm of new connections readies thousands, each a read, a
	// write and a re-arm: a victim client's upstream connection, parked
	// between its calls, got its answers 2 to 9 ms late, up to 180 ms
	// under tracing. A parked connection's wake-up only starts a reader.
	os, lobbyOS pollerOS

	mu    sync.Mutex
	conns map[int32]sleeper
	next  int32
	// clients are the parkable upstream connections, for the sweep (the
	// downstream ones are the live set, overload.go). Guarded by mu.
	clients roster.Roster[*clientConn]
	// The most conns held since it was made (shrink.Map).
	connsPeak int
}

// enable starts the poller and the sweep the first time a parkable
// connection asks, and reports whether parking works here.
func (p *poller) enable() bool {
	p.once.Do(func() {
		p.conns = make(map[int32]sleeper)
		if p.err = p.os.init(p.wake, p.fail); p.err != nil {
			return
		}
		if p.err = p.lobbyOS.init(p.wake, p.fail); p.err == nil {
			go p.sweep()
		}
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err == nil
}

// A sleeper is what the poller wakes: a parked connection, or one in the
// lobby (lobby.go).
type sleeper interface {
	woken()
}

// add registers c's socket. Under c.park.mu.
func (p *poller) add(c *conn) error {
	id, err := p.register(&p.os, c, c.park.fd, c.park.registered)
	if err != nil {
		return err
	}
	c.park.id, c.park.registered = id, true
	return nil
}

// register arms a one-shot registration of fd for x in os under a new id,
// and returns the id; rearm says fd has a registration in os already (see
// pollerOS.add).
func (p *poller) register(os *pollerOS, x sleeper, fd int, rearm bool) (int32, error) {
	p.mu.Lock()
	if p.err != nil {
		p.mu.Unlock()
		return 0, p.err
	}
	for {
		p.next++
		if _, used := p.conns[p.next]; !used && p.next != 0 {
			break
		}
	}
	id := p.next
	p.conns[id] = x
	shrink.Grew(p.conns, &p.connsPeak)
	p.mu.Unlock()
	if err := os.add(fd, id, rearm); err != nil {
		p.forget(id)
		return 0, err
	}
	return id, nil
}

// forget drops id: an event for it finds no one.
func (p *poller) forget(id int32) {
	p.mu.Lock()
	delete(p.conns, id)
	p.conns = shrink.Map(p.conns, &p.connsPeak)
	p.mu.Unlock()
}

// addClient makes an upstream connection parkable, when parking works
// here.
func (p *poller) addClient(cc *clientConn) {
	if !p.enable() {
		return
	}
	if fd := socketFD(cc.nc); fd >= 0 {
		cc.park.fd = fd
		p.mu.Lock()
		p.clients.Add(cc)
		p.mu.Unlock()
	}
}

// removeClient forgets an upstream connection whose reader has ended (or
// one that never was parkable: it is in no roster). It does not read
// park.fd, which the reader changes as the connection parks
// (leavePollerLocked).
func (p *poller) removeClient(cc *clientConn) {
	p.mu.Lock()
	p.clients.Remove(cc)
	p.mu.Unlock()
}

// remove forgets c's socket. Under c.park.mu. The registration stays: one
// that fired is disarmed, one that did not (the proxy is closing the
// connection) can only fire for an id nobody answers to any more, and the
// socket's close takes it out of the epoll set. A system call saved per
// wake-up, where 19,000 idle clients each cost a handful.
func (p *poller) remove(c *conn) { p.forget(c.park.id) }

// wake is the OS poller's callback for a registration that fired. A
// stale one (the connection was unparked meanwhile, or the id reused)
// finds nothing, or a connection that then reads and waits as usual.
func (p *poller) wake(id int32) {
	p.mu.Lock()
	c := p.conns[id]
	p.mu.Unlock()
	if c != nil {
		c.woken()
	}
}

// fail stops parking for good and wakes every parked connection.
func (p *poller) fail(err error) {
	p.mu.Lock()
	p.err = err
	conns := make([]sleeper, 0, len(p.conns))
	for _, c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.woken()
	}
}

// sweep runs forever, every parkAfter, over every parkable connection:
// the live set's downstream ones, then the upstream ones.
func (p *poller) sweep() {
	var (
		downs []*serverConn
		ups   []*clientConn
	)
	pace := newPacer()
	for t := range tick.NewTicker(parkAfter).C {
		now := t.UnixNano()
		pace.start = time.Now()
		downs = walk(&live.mu, &live.conns, downs, pace, func(sc *serverConn) {
			if sc.park.fd >= 0 {
				sc.sweepPark(now)
			}
		})
		ups = walk(&p.mu, &p.clients, ups, pace, func(cc *clientConn) { cc.sweepPark(now) })
	}
}

// sweepChunk is how many connections a sweep copies from a roster under
// its lock at a time: a few microseconds of holding it.
const sweepChunk = 256

// walk calls each for every member of r, copied a chunk at a time into
// buf under mu, pacing the work; it returns buf, emptied, for the next
// walk.
func walk[T roster.Member](mu *sync.Mutex, r *roster.Roster[T], buf []T, pace *pacer, each func(T)) []T {
	for from := 0; ; from += len(buf) {
		mu.Lock()
		buf = r.Chunk(buf[:0], from, sweepChunk)
		mu.Unlock()
		if len(buf) == 0 {
			return buf
		}
		for _, x := range buf {
			each(x)
			pace.step()
		}
		clear(buf) // hold no connection until the next walk
	}
}

// A pacer keeps a loop over thousands of connections from holding the
// process's only P (GOMAXPROCS=1, or every P busy) for long: when 2,500
// connections' linger ended in one sweep, closing them took 50 ms in one
// run of the sweep, and every other client's bytes waited for it (a
// victim's p99 went from 2 to 20 ms). After paceSlice of work, step
// gives way to the network (package yield), then the loop goes on.
type pacer struct {
	y     *yield.Yielder
	start time.Time
	n     int
}

// paceSlice is how long a paced loop runs before it gives way.
const paceSlice = 250 * time.Microsecond

// newPacer makes the pacer of one loop, which uses it from one goroutine.
func newPacer() *pacer { return &pacer{y: yield.New()} }

// step counts one item of work and, past paceSlice since start (set
// when a loop begins) or the last yield, yields. The clock is read every
// 2 items: a lobby connection's wake-up (a read, a write through the
// loopback, an epoll_ctl) takes tens of microseconds, and reading it every
// 8 let a turn run to a millisecond in a storm of new connections.
func (p *pacer) step() {
	if p.n++; p.n%2 != 0 {
		return
	}
	if time.Since(p.start) < paceSlice {
		return
	}
	p.y.Yield()
	p.start = time.Now()
}

// Closing a parked connection. A client that connected and asked for
// nothing is sent its GOAWAY when the header read timeout passes; when
// 19,000 of them time out together, giving each a reader to find the
// close, a writer to write the GOAWAY and their buffers, as any other
// close does, made the process's peak memory and a burst of goroutines
// that delayed every other client. A parked connection that has nothing
// queued is closed where its timer fires instead: the GOAWAY goes out in
// one non-blocking write, the socket is half-closed, and the poller
// drains the peer until it closes or closeLinger passes (closing with
// unread bytes would send a TCP RST, which may destroy the GOAWAY before
// the peer reads it), then the socket closes.

// goAwayNoError is GOAWAY(last stream 0, NO_ERROR): a frame header with
// an eight-byte payload.
var goAwayNoError = [9 + 8]byte{2: 8, 3: byte(http2.FrameGoAway)}

// closeParkedLocked closes a parked connection that never opened a stream
// as the section above says, and reports whether it did; false when the
// connection is not parked, has frames queued, or its socket would not
// take the GOAWAY at once, and the caller closes it the usual way. Under
// sc.mu.
func (sc *serverConn) closeParkedLocked() bool {
	if sc.sock == nil || sc.tlsb != nil || sc.writerOn || len(sc.ctrl) > 0 || sc.failed || sc.nActive > 0 {
		return false // under TLS, the GOAWAY is a record crypto/tls writes
	}
	p := &sc.park
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.parked || p.closing {
		return false
	}
	n, err := sc.sock.write(goAwayNoError[:])
	if n == 0 && err == nil {
		return false // the socket is full: the writer waits for it
	}
	sc.goAway, sc.goAwayID = goAwayFinal, 0
	sc.failed, sc.failErr = true, errIdleClosed
	sc.writerUp = false
	p.parked, p.closing, p.lingering = false, true, true
	p.lingerUntil.Store(time.Now().Add(closeLinger).UnixNano())
	if n < len(goAwayNoError) {
		// The socket failed, or took part of the frame: nothing more
		// can be said on it. The sweep closes it.
		p.lingerUntil.Store(1)
		return true
	}
	if cw, ok := sc.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	// The sweep's past deadline, or the header timeout's, would fail
	// the drain's reads.
	_ = sc.nc.SetReadDeadline(time.Time{})
	// The parked registration, under the same id, is still armed for
	// the peer's bytes or its close: one that fired has its wake on the
	// way, which waits for p.mu and then finds the connection lingering.
	return true
}

// errIdleClosed is the failure of a connection closed, parked, at its
// idle limit.
var errIdleClosed = errors.New("h2: closed idle")

// lingerWokenLocked drains a lingering connection's peer: it closes the
// connection when the peer has closed its side, failed, or sent more
// than a peer with a request in flight would, and otherwise re-arms the
// registration. Called under c.park.mu; it unlocks it.
func (c *conn) lingerWokenLocked() {
	p := &c.park
	if !p.lingering {
		p.mu.Unlock()
		return
	}
	if c.sock.discard(1<<20) || parker.os.add(p.fd, p.id, true) != nil {
		c.endLingerLocked()
		return
	}
	p.mu.Unlock()
}

// endLingerLocked closes a lingering connection, once, and ends it as a
// reader's teardown would. Called under c.park.mu; it unlocks it.
func (c *conn) endLingerLocked() {
	p := &c.park
	if !p.lingering {
		p.mu.Unlock()
		return
	}
	p.lingering = false
	p.lingerUntil.Store(0)
	parker.remove(c)
	p.mu.Unlock()
	c.nc.Close()
	sc := c.h.(*serverConn)
	sc.mu.Lock()
	if sc.idleTimer != nil {
		sc.idleTimer.Stop()
	}
	sc.unlock()
	sc.ended()
}
