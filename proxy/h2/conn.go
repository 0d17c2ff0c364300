package h2

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/sightline-proxy/sightline/internal/roster"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Protocol constants. A stream's receive window starts at 64 KiB from a
// client and 16 KiB from an upstream (upstreamStreamWindow), which is what
// a peer can make the proxy hold for a stream that is not read on the far
// side, and grows at each WINDOW_UPDATE by what the far side can take at
// once beyond what is queued for it and, for a client, what its other
// streams' upstreams may still send (doubling; an upstream stream's first
// growth goes to 65,535 bytes, see half.credit) to maxStreamWindow for a
// stream whose bytes the far side keeps taking (1 MiB covers 80 Mbit/s at
// 100 ms RTT), while the process's buffers are under a quarter of their
// budget. The connection window is a few stream windows so that a handful
// of busy streams do not starve the others.
const (
	maxFrameSize        = 16 << 10 // advertised and enforced on read (RFC 9113 §4.2)
	defaultWindow       = 65535    // RFC 9113 §6.9.2
	maxWindow           = 1<<31 - 1
	initialStreamWindow = 64 << 10
	// upstreamStreamWindow is where an upstream stream's window starts:
	// one full frame, so a response of up to 16 KiB needs no
	// WINDOW_UPDATE. It is small because the upstream connection is
	// shared: whatever an upstream may send for a client that does not
	// read is read by the proxy ahead of the other clients' responses on
	// that connection, and a client's connection window does not bound
	// it, as it does when the client calls the server itself. A client
	// with 8 unread streams of empty gRPC messages made the proxy read
	// 105,000 5-byte frames (8 × 64 KiB) before the next response, a
	// stall of 100-200 ms for every other caller of that upstream; at 16
	// KiB it reads a quarter as many, and streams whose client keeps
	// reading grow as before.
	upstreamStreamWindow = 16 << 10
	maxStreamWindow      = 1 << 20
	initialConnWindow    = 4 << 20
	// Credit is returned once a quarter of the window is owed, as grpc-go
	// does, so that small messages cost no WINDOW_UPDATE at all.
	connRefresh = initialConnWindow / 4

	// headerTableSize is the HPACK dynamic table we allow the peer to make
	// us keep (RFC 7541 §4.2), and the most we keep for its decoder.
	headerTableSize = 4096

	// maxBatchItems bounds the stream frames one writer pass takes under
	// the lock, so that the lock is never held for long.
	maxBatchItems = 64
	// minFlushBytes: when less than this is buffered, the writer yields
	// once before flushing, so that frames queued by other goroutines in
	// the meantime share the syscall (grpc-go loopyWriter's minBatchSize).
	minFlushBytes = 1000
	// maxQueuedControl caps control frames waiting to be written. A peer
	// that floods PINGs or SETTINGS without reading the answers is cut off
	// (CVE-2019-9512, -9515; Envoy's max_outbound_control_frames).
	maxQueuedControl = 1000
	// maxHeaderFrames caps HEADERS+CONTINUATION frames per header block
	// (CONTINUATION flood, CVE-2024-27316); with 16 KiB frames it admits
	// a maxHeaderBlock block.
	maxHeaderFrames = 80
	// maxHeaderBlock is the largest encoded header block the engine
	// decodes. A block over SETTINGS_MAX_HEADER_LIST_SIZE is refused with
	// 431, a stream error, but only a block that was decoded to its end
	// leaves HPACK in sync for the connection's other streams, and one
	// field is decoded whole (its string must fit in memory), so up to
	// this size a too-large request costs the client one stream, not the
	// connection. Past it, the peer is flooding: ENHANCE_YOUR_CALM.
	maxHeaderBlock = 1 << 20
	// maxSettingsPerFrame caps the entries of one SETTINGS frame, as x/net
	// does, so one frame cannot make us loop for long.
	maxSettingsPerFrame = 100
	// glitchLimit is how many protocol glitches (empty frames, resets of
	// closed streams, …) a connection may cause before it is sent
	// GOAWAY(ENHANCE_YOUR_CALM): glitchBase, and glitchPerStream more for
	// each stream it carried, up to glitchLimit, as glitches are judged
	// against the work done. The count halves every glitchDecay frames so
	// that a long-lived connection is judged on its recent behaviour.
	// A peer that floods a new connection is cut off after glitchBase
	// frames: an upstream that resets every call and then floods resets
	// on a fresh connection each time cost the proxy 1,000 frames read per
	// call.
	glitchBase      = 100
	glitchPerStream = 10
	glitchLimit     = 1000
	glitchDecay     = 1 << 16
	// Control frames are allowed in proportion to the work they serve, by
	// Envoy's formulas (http2_protocol_options): PRIORITY frames up to
	// maxPriorityPerStream × (1 + streams opened), and WINDOW_UPDATE frames
	// up to 5 + 2 × (streams opened + maxControlPerDataSent × DATA frames
	// sent). PING and SETTINGS frames are free when the connection did
	// work since the last one (grpc-go's BDP pings follow the DATA it
	// reads; grpc-go's server forgives pings the same way), and otherwise,
	// as keepalives on a quiet connection, allowed at a rate: a bucket of
	// pingBurst that refills at pingRate per second. A peer past any of
	// these gets
	// GOAWAY(ENHANCE_YOUR_CALM): a flood of frames that ask for nothing
	// costs the proxy a lock and a loop each (a SETTINGS frame that
	// changes INITIAL_WINDOW_SIZE walks every stream), and other clients
	// pay for it.
	maxPriorityPerStream  = 100
	maxControlPerDataSent = 10
	pingBurst             = 200
	pingRate              = 50
	// writerLinger is how long an idle writer goroutine waits for work
	// before it exits; the next frame starts a new one. A connection that
	// carries a call now and then keeps its writer; an idle one costs no
	// goroutine for it.
	writerLinger = time.Second
	// closeLinger is how long a connection keeps reading after its last
	// frame (a GOAWAY) before it closes, so that the peer gets the GOAWAY
	// and not a TCP RST (RFC 9113 §6.8).
	closeLinger = time.Second
)

// errConnClosed reports a connection that closed without a protocol error.
var errConnClosed = errors.New("h2: connection closed")

// ctrlKind is a kind of control frame.
type ctrlKind uint8

const (
	ctrlSettingsAck ctrlKind = iota
	// ctrlSettingsApply applies what a ctrlSettingsAck would and writes
	// nothing: the lobby ACKed those SETTINGS already (lobby.go).
	ctrlSettingsApply
	ctrlPing
	ctrlPingAck
	ctrlWindowUpdate
	ctrlRST
	ctrlGoAway
)

// ctrlFrame is a control frame waiting for the writer. Control frames go
// out in FIFO order, ahead of DATA (a PING ACK must not wait behind a
// megabyte of DATA, RFC 9113 §6.7).
type ctrlFrame struct {
	kind ctrlKind
	id   uint32
	val  uint32 // WINDOW_UPDATE increment, RST_STREAM or GOAWAY error code
	data [8]byte
	// For ctrlSettingsAck: peer settings the writer applies before the ACK
	// (RFC 9113 §6.5.3: the ACK says they are in force).
	setTable, setFrame bool
	tableSize          uint32
	frameSize          uint32
}

// itemKind is a kind of stream frame in a writer batch.
type itemKind uint8

const (
	itemHeaders itemKind = iota
	itemData
)

// writeItem is one stream frame the writer took from a half's queue.
type writeItem struct {
	kind   itemKind
	h      *half
	id     uint32
	end    bool
	fields []hpack.HeaderField
	data   *dbuf
	credit int32 // flow-controlled bytes to return to the source half
	// room is what the peer can take after this write beyond the bytes
	// queued for it (half.credit): the stream's window less its queue,
	// and the connection's less every stream's.
	room int64
}

// list kinds a half can be on; a half is on at most one.
const (
	listNone uint8 = iota
	listReady
	listBlocked
	listWaiting
)

// halfList is an intrusive FIFO of halves.
type halfList struct{ head, tail *half }

func (l *halfList) push(h *half) {
	h.next = nil
	if l.tail == nil {
		l.head = h
	} else {
		l.tail.next = h
	}
	l.tail = h
}

// remove takes h out of the list; it is O(n), for the rare cases
// (cancellation of a blocked or waiting half) that need it.
func (l *halfList) remove(h *half) {
	var prev *half
	for x := l.head; x != nil; prev, x = x, x.next {
		if x != h {
			continue
		}
		if prev == nil {
			l.head = x.next
		} else {
			prev.next = x.next
		}
		if l.tail == x {
			l.tail = prev
		}
		x.next = nil
		return
	}
}

func (l *halfList) pop() *half {
	h := l.head
	if h == nil {
		return nil
	}
	l.head = h.next
	if l.head == nil {
		l.tail = nil
	}
	h.next = nil
	return h
}

// handler is the side-specific part of a connection: the downstream
// server connection or an upstream client connection. Its methods run on
// the connection's reader goroutine.
type handler interface {
	// beginHeaders checks the stream of a HEADERS frame and reports
	// whether the block is trailers. Only connection errors are returned.
	beginHeaders(id uint32) (trailers bool, err error)
	// endHeaders handles the complete block in c.hb and c.fields.
	endHeaders() error
	// handleData takes d (ownership included) for stream fh.StreamID;
	// fh.Length is the flow-controlled length, padding included.
	handleData(fh http2.FrameHeader, d *dbuf) error
	// handleRST takes the peer's RST_STREAM of stream id.
	handleRST(id uint32, code http2.ErrCode) error
	// resetStream handles a stream error found by the reader: RST_STREAM
	// to the peer, and the other half of the call told.
	resetStream(id uint32, code http2.ErrCode)
	handleGoAway(f *http2.GoAwayFrame) error
	handlePingAck(data [8]byte)
	// idleLocked reports whether a stream ID has never been opened (RFC
	// 9113 §5.1): frames other than HEADERS and PRIORITY on it are
	// connection errors. c.mu is held.
	idleLocked(id uint32) bool
	// applySettingLocked handles the settings the core does not, and
	// settingsAppliedLocked runs after a whole SETTINGS frame (under c.mu).
	applySettingLocked(s http2.Setting) error
	settingsAppliedLocked()
	// streamClosedLocked runs as a half leaves the connection (under c.mu).
	streamClosedLocked(h *half)
	// sentEndLocked runs once our END_STREAM on h is taken to be written
	// while the peer is still sending (under c.mu): before the write, so
	// that what the peer sends once it has read the end is never taken
	// for more of the stream.
	sentEndLocked(h *half)
	// unlistWaitingLocked takes a cancelled half off the waiting list
	// (upstream connections only; under c.mu).
	unlistWaitingLocked(h *half)
	// resumeReading is a parked connection's new reader (park.go): it
	// runs the read loop on a goroutine of its own.
	resumeReading()
}

// conn is the frame-level core that the downstream server connection and
// the upstream client connection share: the framer, HPACK state, flow
// control and the writer goroutine.
//
// Goroutines: the reader (the caller of serve for downstream, the dial
// goroutine for upstream) reads and handles frames inline; the writer
// (writeLoop) owns the HPACK encoder and the bufio.Writer. Other
// connections' goroutines touch a conn only through methods that take mu.
type conn struct {
	roster.Slot // in the live set (serverConn) or the poller's clients (clientConn)
	nc          net.Conn
	br          rbuf          // reader-owned
	bw          *bufio.Writer // writer-owned; nil while the writer is idle
	fr          *http2.Framer
	server      bool
	h           handler
	// log is the server's or the pool's, which outlive the connection:
	// a copy here would cost every connection the logger's size.
	log *zerolog.Logger

	// maxHeaderList is our advertised SETTINGS_MAX_HEADER_LIST_SIZE.
	maxHeaderList uint32
	// headerTimeout bounds a header block split over CONTINUATIONs, so a
	// peer cannot hold the connection mid-block (slowloris).
	headerTimeout time.Duration

	// Reader-owned. dec is made with the first header block (decoder).
	dec          *hpack.Decoder
	hb           headerBlock
	fields       []hpack.HeaderField
	inConn       int64 // bytes the peer may still send on the connection
	inConnUnsent int64 // received bytes not yet returned with WINDOW_UPDATE
	frames       uint32
	glitches     int
	unacked      int // our SETTINGS frames the peer has not ACKed
	priorities   int64
	controls     int64     // WINDOW_UPDATE frames received
	pingTokens   float64   // PING and SETTINGS frames allowed now
	pingLast     time.Time // when pingTokens was last refilled
	pingWork     int64     // streams opened plus DATA sent at the last one

	// ackedEarly counts the peer's first SETTINGS frames that the lobby
	// ACKed before the connection came to the engine: they are applied
	// without another ACK. Reader-owned.
	ackedEarly int

	// opened counts the streams of the connection (the peer's on a
	// server connection, ours on a client one) and dataSent the DATA
	// frames the writer wrote: what the control-frame allowance grows
	// with.
	opened   atomic.Int64
	dataSent atomic.Int64

	// abort, when non-zero, is an error code plus one that another
	// goroutine wants the connection closed with (rapid-reset detection
	// runs where streams close); the reader checks it after each frame.
	abort       atomic.Uint32
	abortReason string

	// promised is, on a client's connection, what the upstreams of its
	// calls may still send: the sum of their streams' receive windows
	// (half.promisedTo). A stream's window grows only into the client's
	// room less what is queued for it and what the others were promised
	// (half.credit).
	promised atomic.Int64

	// Writer-owned. enc is made with the first header block sent, or the
	// peer's first change to its table's size (encoder); an idle
	// connection lets it go (dropEncoderLocked). encTable is the size of
	// the peer's decoder's table, as enc was last told; encDropped says
	// the next enc must empty that table first.
	enc        *hpack.Encoder
	encBuf     bytes.Buffer
	encTable   uint32
	encDropped bool
	freshSeen  freshNames // fresh names already in enc's dynamic table
	memo       encMemo    // enc's indexes of the last blocks' fields
	fhdr       [9]byte    // a frame header being written
	wMaxFrame  uint32
	items      []writeItem
	ctrlW      []ctrlFrame

	wake       chan struct{}
	writerDone chan struct{} // closed when the writer stopped for good
	wtimer     *time.Timer   // writer-owned: writerLinger

	// Inline writes (inline.go). sock is nil when every write goes
	// through a writer goroutine; tlsb is set when it is under TLS
	// (tlsbase.go). fq is the reader's flush queue, open (non-nil) while
	// the reader handles frames; nextFlush links the queue a connection
	// whose writer role was given to it is on. inlining and over are
	// writer-owned: a pass is being written without waiting, and the
	// bytes the socket did not take (under TLS, tlsb keeps them).
	sock      *rawSock
	tlsb      *tlsBase
	fq        atomic.Pointer[conn]
	nextFlush *conn
	inlining  bool
	over      []byte
	// reading is reader-owned: the read loop runs, and its reads flush
	// and open the queue.
	reading bool

	mu sync.Mutex
	// Guarded by mu. streams is made for the first stream (addStreamLocked).
	ctrl         []ctrlFrame
	ready        halfList // halves with a frame the writer can send now
	blocked      halfList // halves with DATA waiting for connection window
	streams      map[uint32]*half
	nActive      int   // halves holding a stream (RFC 9113 §5.1.2)
	sendConn     int64 // connection send window (RFC 9113 §6.9)
	peerInitWin  int64 // peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerMaxFrame uint32
	queued       int64 // DATA bytes waiting in this connection's halves
	writerIdle   bool  // the writer waits for wake
	writerUp     bool  // the connection is up: a writer may be started
	writerOn     bool  // a writer goroutine is running
	// dropLater: the reader parked while a writer held the role, which
	// lets the encoder and the poller go as it gives the role back.
	dropLater  bool
	stopWriter bool  // write what is queued, then exit
	closeWrite bool  // with stopWriter: half-close the socket afterwards
	ctrlOnly   bool  // a connection error's GOAWAY is queued: no stream frame after it (RFC 9113 §5.4.1)
	failed     bool  // the connection is gone: drop all output
	failErr    error // why it failed
	detached   *half // halves that left the connection, handled by unlock
	// closedIDs are the streams that closed last (a ring): a peer's
	// RST_STREAM on one of them crossed our end of the stream on the
	// wire, which is normal once per stream (a client resets a request
	// whose response came before its body was sent; a server resets a
	// request it answered early) and no glitch. It grows with the streams
	// that close, to closedRing: a connection that carried one call, one
	// of thousands parked after a burst, keeps one entry, not 512 bytes.
	closedIDs []uint32
	closedPos int

	// park is the connection's part in parking (park.go); server
	// connections only.
	park parkState
	// Reader-owned: the peer's first SETTINGS frame has been read; a
	// header block awaits its CONTINUATION.
	started, inBlock bool
}

// initState sets up the state both sides share; it does no I/O.
func (c *conn) initState(maxHeaderList uint32) {
	c.maxHeaderList = maxHeaderList
	c.wMaxFrame = maxFrameSize
	c.inConn = defaultWindow
	c.sendConn = defaultWindow
	c.peerInitWin = defaultWindow
	c.peerMaxFrame = maxFrameSize
	c.encTable = headerTableSize
	c.wake = make(chan struct{}, 1)
	c.writerDone = make(chan struct{})
}

// The HPACK decoder and encoder and the stream map are made on first use:
// a connection that never carries a request (a client that connects
// ahead of its calls, or 19,000 that connect and say nothing) holds none
// of them, about 700 bytes and eight allocations fewer. HPACK's dynamic
// tables live as long as the connection once made: the peer's encoder
// and decoder count on them.

// decoder returns the connection's HPACK decoder. Reader-owned.
func (c *conn) decoder() *hpack.Decoder {
	if c.dec == nil {
		c.dec = hpack.NewDecoder(headerTableSize, c.onField)
		// A string longer than the list limit still has to be decoded
		// (to keep the table in sync) before the request is refused
		// with 431; the encoded-block cap in headerFragment bounds it.
		c.dec.SetMaxStringLength(c.headerBlockLimit())
	}
	return c.dec
}

// encoder returns the connection's HPACK encoder. Writer-owned.
func (c *conn) encoder() *hpack.Encoder {
	if c.enc == nil {
		c.enc = hpack.NewEncoder(&c.encBuf)
		c.enc.SetMaxDynamicTableSizeLimit(headerTableSize)
		if c.encDropped {
			// The peer's decoder still holds what the dropped encoder
			// added. The first block starts with two table size
			// updates, to 0 (which empties it) and back to its size
			// (RFC 7541 §4.2, §6.3), and the new encoder indexes
			// afresh.
			c.enc.SetMaxDynamicTableSize(0)
			c.enc.SetMaxDynamicTableSize(c.encTable)
			c.encDropped = false
		}
	}
	return c.enc
}

// setEncoderTable applies the peer's new SETTINGS_HEADER_TABLE_SIZE: the
// next block starts with the size update, which the memo must not skip.
// Writer role only.
func (c *conn) setEncoderTable(size uint32) {
	c.encoder().SetMaxDynamicTableSize(size)
	c.encTable = size
	c.memo.clear()
}

// dropEncoderLocked lets an idle connection's HPACK encoder go, with its
// dynamic table: about 2.3 KiB on a connection that has sent one header
// block (x/net's encoder keeps two maps beside the table, to look fields
// up), held for nothing by a parked connection, one of ten thousand
// after a burst of calls to as many clusters. The peer's decoder keeps
// its copy of the table until the next block empties it (encoder); that
// block carries literals where it would have had indexes, once per time
// the connection parks. Only while no goroutine holds the writer role,
// which owns the encoder: else the role's holder drops it as it gives the
// role back, if the connection is still parked then (dropDeferredLocked).
// Under c.mu.
func (c *conn) dropEncoderLocked() {
	if c.enc == nil {
		return
	}
	if c.writerOn {
		c.dropLater = true
		return
	}
	c.enc, c.encBuf, c.freshSeen, c.encDropped = nil, bytes.Buffer{}, 0, true
	c.memo = encMemo{}
}

// addStreamLocked puts h, whose id is set, in the stream map.
func (c *conn) addStreamLocked(h *half) {
	if c.streams == nil {
		c.streams = make(map[uint32]*half)
	}
	c.streams[h.id] = h
}

// headerBlockLimit is the largest encoded header block the connection
// decodes: maxHeaderBlock, or more when the advertised list limit is
// configured above it (an encoded block may be up to twice its list, as
// x/net allows).
func (c *conn) headerBlockLimit() int {
	return max(maxHeaderBlock, 2*int(c.maxHeaderList)+maxFrameSize)
}

// initIO wraps the socket c.nc in the buffered reader and the framer; the
// write buffer is taken when there is something to write (connio.go).
func (c *conn) initIO() {
	c.park.fd = -1
	c.br.init(readSrc{c})
	c.sock, c.tlsb = newRawSock(c.nc, c.closeIdleQueue, c.flushDeferred, !c.server)
	switch {
	case c.tlsb != nil:
		// crypto/tls reads into buffers of its own.
		c.tlsb.c = c
	case c.sock != nil:
		c.sock.grow = c.br.grow
	}
	c.fr = http2.NewFramer(connWriter{c}, &c.br)
	c.fr.SetMaxReadFrameSize(maxFrameSize)
}

// writePreface writes prefix (the client preface, or nothing), our
// SETTINGS and the connection WINDOW_UPDATE that raises the connection
// window to initialConnWindow, before the writer starts (so it runs on the
// goroutine that owns the framer then). With flush unset the frames stay
// in the write buffer for the writer's first write (see
// serverConn.serve).
func (c *conn) writePreface(prefix string, settings []http2.Setting, flush bool) error {
	c.takeWriter()
	defer c.releaseWriter()
	if _, err := c.bw.WriteString(prefix); err != nil {
		return err
	}
	if err := c.fr.WriteSettings(settings...); err != nil {
		return err
	}
	c.unacked = 1
	if err := c.fr.WriteWindowUpdate(0, initialConnWindow-defaultWindow); err != nil {
		return err
	}
	c.inConn = initialConnWindow
	if !flush {
		return nil
	}
	return c.bw.Flush()
}

// transit is the connection of an upstream half while it is moved to
// another connection with its queue (re-dispatch after REFUSED_STREAM or
// GOAWAY); lock waits it out, which takes a few microseconds.
var transit conn

// lock returns h's connection with its mutex held, or nil when h was never
// bound to one (a call answered locally).
func (h *half) lock() *conn {
	for {
		c := h.cn.Load()
		if c == nil {
			return nil
		}
		if c == &transit {
			runtime.Gosched()
			continue
		}
		c.mu.Lock()
		if h.cn.Load() == c {
			return c
		}
		c.mu.Unlock()
	}
}

// unlock releases mu, then handles the halves that left the connection
// while it was held: their follow-up (re-dispatch, call completion) takes
// other connections' locks, which must not nest in mu.
func (c *conn) unlock() {
	h := c.detached
	c.detached = nil
	c.mu.Unlock()
	for h != nil {
		next := h.nextDetached
		h.nextDetached = nil
		h.afterDetach()
		h = next
	}
}

// kickLocked wakes the writer if it is waiting for work, or starts one if
// the last exited idle.
func (c *conn) kickLocked() { c.kickViaLocked(nil) }

// kickViaLocked is kickLocked for a frame of a stream whose other half is
// on via (nil if none): when no writer runs, the connection's own reader
// or via's, if handling frames, writes it inline (inline.go) instead of a
// new writer goroutine.
func (c *conn) kickViaLocked(via *conn) {
	switch {
	case c.writerIdle:
		c.writerIdle = false
		c.wake <- struct{}{}
	case c.writerUp && !c.writerOn:
		c.writerOn = true
		if c.sock != nil && (c.deferFlush(c) || via != nil && via.deferFlush(c)) {
			return
		}
		go c.writeLoop()
	}
}

// startWriter starts the writer goroutine once the connection is up.
func (c *conn) startWriter() {
	c.mu.Lock()
	c.writerUp, c.writerOn = true, true
	c.mu.Unlock()
	go c.writeLoop()
}

// queueCtrlLocked queues a control frame. It reports false when the queue
// is over its cap; the caller then fails the connection.
func (c *conn) queueCtrlLocked(f ctrlFrame) bool {
	if c.failed {
		return true
	}
	if len(c.ctrl) >= maxQueuedControl {
		return false
	}
	c.ctrl = append(c.ctrl, f)
	c.kickLocked()
	return true
}

// queueCtrl queues a control frame from the reader, failing the
// connection with ENHANCE_YOUR_CALM when the peer does not read.
func (c *conn) queueCtrl(f ctrlFrame) error {
	c.mu.Lock()
	ok := c.queueCtrlLocked(f)
	c.unlock()
	if !ok {
		return connError(http2.ErrCodeEnhanceYourCalm, "too many queued control frames")
	}
	return nil
}

// scheduleLocked puts h on the ready or blocked list if it has something
// the writer can send.
func (c *conn) scheduleLocked(h *half) {
	if h.listed != listNone || !h.active || h.sendDone || c.failed {
		return
	}
	switch {
	case h.interimPending, h.hdrsPending, h.head == nil && (h.trailersPending || h.endPending):
		h.listed = listReady
		c.ready.push(h)
	case h.head != nil && h.sendWin > 0:
		if c.sendConn <= 0 {
			h.listed = listBlocked
			c.blocked.push(h)
			return
		}
		h.listed = listReady
		c.ready.push(h)
	default:
		return
	}
	var via *conn
	if h.peer != nil {
		if p := h.peer.cn.Load(); p != &transit {
			via = p
		}
	}
	c.kickViaLocked(via)
}

// enqueueDataLocked appends d (which may be nil) to h's output and, with
// end, ends the stream after it. It takes d and reports true, or reports
// false and leaves d with the caller when h no longer sends.
func (c *conn) enqueueDataLocked(h *half, d *dbuf, end bool) bool {
	if h.sendDone || h.endPending || !h.attached || c.failed {
		return false
	}
	if d != nil {
		if n := d.len(); n > 0 {
			h.queued += n
			c.queued += int64(n)
			switch t := h.tail; {
			case t != nil && t.local == d.local && n <= len(t.b)-t.end:
				// Small frames share the last buffer: a peer sending
				// 1-byte DATA frames must not make each byte hold a
				// buffer. Frame boundaries carry no meaning (RFC 9113
				// §6.1), so the bytes go out in fewer, larger frames.
				t.end += copy(t.b[t.end:], d.bytes())
				putBuf(d)
			default:
				d.next = nil
				if t == nil {
					h.head = d
				} else {
					t.next = d
				}
				h.tail = d
			}
		} else {
			putBuf(d)
		}
	}
	if end {
		h.endPending = true
	}
	c.scheduleLocked(h)
	return true
}

// dropOutputLocked discards what h has queued.
func (c *conn) dropOutputLocked(h *half) {
	freeChain(h.head)
	h.head, h.tail = nil, nil
	c.queued -= int64(h.queued)
	h.queued = 0
	h.hdrsPending, h.trailersPending, h.endPending, h.interimPending = false, false, false, false
}

// resetLocked ends h at once, with RST_STREAM(code) when send is set and
// the peer knows the stream, and closes it once nothing references it. It
// never answers a RST_STREAM with one (the caller sets h.rstDone first).
func (c *conn) resetLocked(h *half, code http2.ErrCode, send bool) {
	if !h.attached {
		return
	}
	if send && !h.rstDone && h.id != 0 && (c.server || h.wroteHeaders) && !(h.sendDone && h.recvDone) {
		c.queueCtrlLocked(ctrlFrame{kind: ctrlRST, id: h.id, val: uint32(code)})
	}
	h.rstDone, h.reset = true, true
	c.dropOutputLocked(h)
	h.sendDone, h.recvDone = true, true
	// A ready half is dropped by the writer soon; blocked and waiting
	// ones might wait for a window or a slot that never comes.
	switch h.listed {
	case listBlocked:
		c.blocked.remove(h)
		h.listed = listNone
	case listWaiting:
		c.h.unlistWaitingLocked(h)
	}
	c.maybeCloseLocked(h)
}

// maybeCloseLocked detaches h from the connection once both directions are
// done and neither the writer nor a list holds it.
func (c *conn) maybeCloseLocked(h *half) {
	if !h.attached || !h.sendDone || !h.recvDone || h.inFlight > 0 || h.listed != listNone {
		return
	}
	h.attached = false
	h.donePending()
	if p := h.promisedTo; p != nil {
		p.promised.Add(-int64(h.inWin.Load()))
		h.promisedTo = nil
	}
	if h.id != 0 && c.streams[h.id] == h {
		delete(c.streams, h.id)
		c.rememberClosedLocked(h.id)
	}
	if h.active {
		h.active = false
		c.nActive--
	}
	if h.moving {
		// The queue goes with the half to its next connection.
		c.queued -= int64(h.queued)
		h.cn.Store(&transit)
	} else {
		c.dropOutputLocked(h)
	}
	c.h.streamClosedLocked(h)
	h.nextDetached = c.detached
	c.detached = h
}

// failLocked marks the connection unusable; the reader tears it down.
func (c *conn) failLocked(err error) {
	if c.failed {
		return
	}
	c.failed, c.failErr = true, err
	c.stopWriter = true
	c.kickLocked()
}

// writeLoop is the writer goroutine: it drains control frames and stream
// frames into the bufio.Writer and flushes when there is nothing more to
// write, so that a burst of frames costs one syscall. It exits once idle
// for writerLinger (kickLocked starts another), and for good, closing
// writerDone, once stopped or failed.
func (c *conn) writeLoop() {
	if err := c.drainOver(); err != nil {
		c.writeFailed(err)
		c.writerStopped()
		return
	}
	yielded := false
	for {
		c.mu.Lock()
		for len(c.ctrl) == 0 && (c.ready.head == nil || c.ctrlOnly) {
			if c.bw != nil && c.bw.Buffered() > 0 && !c.failed {
				c.mu.Unlock()
				if !yielded && c.bw.Buffered() < minFlushBytes {
					yielded = true
					runtime.Gosched()
				} else if err := c.bw.Flush(); err != nil {
					c.writeFailed(err)
					c.writerStopped()
					return
				}
				c.mu.Lock()
				continue
			}
			if c.stopWriter {
				closeWrite := c.closeWrite && !c.failed
				c.mu.Unlock()
				if closeWrite {
					c.halfClose()
				}
				c.writerStopped()
				return
			}
			c.writerIdle = true
			c.mu.Unlock()
			c.releaseWriter()
			if !c.waitWork() {
				return
			}
			c.mu.Lock()
		}
		yielded = false
		ctrl, items := c.takeBatchLocked()
		failed := c.failed
		c.mu.Unlock()

		var err error
		if !failed {
			c.takeWriter()
			err = c.writeBatch(ctrl, items)
		}
		c.endBatch(ctrl, items)
		if err != nil {
			c.writeFailed(err)
			c.writerStopped()
			return
		}
	}
}

// takeBatchLocked takes what one writer pass writes: the queued control
// frames and a batch of stream frames. Under c.mu.
func (c *conn) takeBatchLocked() ([]ctrlFrame, []writeItem) {
	ctrl := c.ctrl
	c.ctrl = c.ctrlW[:0]
	items := c.items[:0]
	if !c.ctrlOnly {
		items = c.pickLocked(items)
	}
	return ctrl, items
}

// endBatch ends a writer pass: it releases what the items held and keeps
// the slices for the next pass.
func (c *conn) endBatch(ctrl []ctrlFrame, items []writeItem) {
	clear(ctrl)
	c.ctrlW = ctrl[:0]
	c.finishItems(items)
	c.items = items[:0]
}

// waitWork waits for a kick, or exits the writer after writerLinger
// without one: it reports false when the writer is to return.
//
// A connection that readers write for (inline.go) never lingers: a
// writer goroutine runs there only for what a reader could not write. A
// server connection whose client has opened no stream yet does not
// linger either: its handshake's frames are all it writes until a request comes,
// and a client that connects and waits should cost no goroutine.
func (c *conn) waitWork() bool {
	if c.sock == nil && (!c.server || c.opened.Load() > 0) {
		if c.wtimer == nil {
			c.wtimer = time.NewTimer(writerLinger)
		} else {
			c.wtimer.Reset(writerLinger)
		}
		select {
		case <-c.wake:
			c.wtimer.Stop()
			return true
		case <-c.wtimer.C:
		}
	}
	c.mu.Lock()
	if c.writerIdle {
		// Nobody kicked: the next kick starts a new writer, with a
		// timer of its own (an idle connection keeps none).
		c.writerIdle = false
		c.writerGoneLocked()
		c.wtimer = nil
		c.mu.Unlock()
		return false
	}
	c.mu.Unlock()
	<-c.wake // kicked as the timer fired: the wake is on its way
	return true
}

// writerStopped ends the writer for good.
func (c *conn) writerStopped() {
	if c.wtimer != nil {
		c.wtimer.Stop()
	}
	close(c.writerDone)
}

// writeBatch writes control frames, then stream frames.
func (c *conn) writeBatch(ctrl []ctrlFrame, items []writeItem) error {
	for i := range ctrl {
		if err := c.writeCtrl(&ctrl[i]); err != nil {
			return err
		}
	}
	// DATA is counted before it is written: the peer answers each frame
	// with WINDOW_UPDATEs as it reads it, and the reader must not find
	// them in excess of a batch still being written.
	data := 0
	for i := range items {
		if items[i].kind == itemData {
			data++
		}
	}
	c.dataSent.Add(int64(data))
	for i := range items {
		it := &items[i]
		var err error
		if it.kind == itemHeaders {
			err = c.writeHeaders(it.id, it.fields, it.end)
		} else {
			var p []byte
			if it.data != nil {
				p = it.data.bytes()
			}
			var flags http2.Flags
			if it.end {
				flags = http2.FlagDataEndStream
			}
			err = c.writeFrame(http2.FrameData, flags, it.id, p)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *conn) writeCtrl(f *ctrlFrame) error {
	switch f.kind {
	case ctrlSettingsAck, ctrlSettingsApply:
		if f.setTable {
			c.setEncoderTable(f.tableSize)
		}
		if f.setFrame {
			c.wMaxFrame = f.frameSize
		}
		if f.kind == ctrlSettingsApply {
			return nil
		}
		return c.fr.WriteSettingsAck()
	case ctrlPing:
		return c.fr.WritePing(false, f.data)
	case ctrlPingAck:
		return c.fr.WritePing(true, f.data)
	case ctrlWindowUpdate:
		return c.fr.WriteWindowUpdate(f.id, f.val)
	case ctrlRST:
		return c.fr.WriteRSTStream(f.id, http2.ErrCode(f.val))
	case ctrlGoAway:
		return c.fr.WriteGoAway(f.id, http2.ErrCode(f.val), nil)
	}
	return fmt.Errorf("h2: unknown control frame kind %d", f.kind)
}

// writeHeaders HPACK-encodes fields and writes them as HEADERS plus
// CONTINUATIONs cut to the peer's SETTINGS_MAX_FRAME_SIZE, back to back
// (RFC 9113 §6.10). Encoding here, on the writer, keeps the encoder's
// dynamic table in wire order.
func (c *conn) writeHeaders(id uint32, fields []hpack.HeaderField, end bool) error {
	block, err := c.encode(fields)
	if err != nil {
		return err
	}
	max := int(c.wMaxFrame)
	n := min(len(block), max)
	var flags http2.Flags
	if end {
		flags |= http2.FlagHeadersEndStream
	}
	if n == len(block) {
		flags |= http2.FlagHeadersEndHeaders
	}
	err = c.writeFrame(http2.FrameHeaders, flags, id, block[:n])
	block = block[n:]
	for err == nil && len(block) > 0 {
		n = min(len(block), max)
		flags = 0
		if n == len(block) {
			flags = http2.FlagContinuationEndHeaders
		}
		err = c.writeFrame(http2.FrameContinuation, flags, id, block[:n])
		block = block[n:]
	}
	return err
}

// pickLocked takes up to maxBatchItems stream frames from the ready list,
// one per half per turn (round robin, as x/net's writesched_roundrobin),
// debiting the send windows as it goes.
func (c *conn) pickLocked(items []writeItem) []writeItem {
	for len(items) < maxBatchItems {
		h := c.ready.pop()
		if h == nil {
			break
		}
		h.listed = listNone
		it := writeItem{h: h, id: h.id}
		switch {
		case h.sendDone || !h.active:
			c.maybeCloseLocked(h)
			continue
		case h.interimPending:
			it.kind, it.fields = itemHeaders, h.interim
			h.interimPending = false
		case h.hdrsPending:
			it.kind, it.fields = itemHeaders, h.hdrs
			h.hdrsPending, h.wroteHeaders = false, true
			if h.endPending && h.head == nil && !h.trailersPending {
				it.end = true
			}
		case h.head != nil:
			w := min(h.sendWin, c.sendConn, int64(c.peerMaxFrame))
			if w <= 0 {
				c.scheduleLocked(h)
				continue
			}
			d := h.head
			n := d.len()
			if int64(n) <= w {
				h.head = d.next
				if h.head == nil {
					h.tail = nil
				}
				d.next = nil
			} else {
				// Cut the frame to the window: the writer gets its own
				// copy so that the queue keeps sole ownership of d.
				n = int(w)
				part := getBuf(n)
				part.end = copy(part.b, d.b[d.off:d.off+n])
				part.local = d.local
				d.off += n
				d = part
			}
			it.kind, it.data = itemData, d
			if !d.local {
				it.credit = int32(n)
			}
			h.call.touch()
			h.sendWin -= int64(n)
			c.sendConn -= int64(n)
			h.queued -= n
			c.queued -= int64(n)
			it.room = min(h.sendWin-int64(h.queued), c.sendConn-c.queued)
			h.wroteData = true
			if h.head == nil && h.endPending && !h.trailersPending {
				it.end = true
			}
		case h.trailersPending:
			it.kind, it.fields, it.end = itemHeaders, h.trailers, true
			h.trailersPending, h.wroteData = false, true
		case h.endPending:
			it.kind, it.end = itemData, true
			h.wroteData = true
		default:
			continue
		}
		if it.end {
			h.sendDone = true
			if !h.recvDone {
				c.h.sentEndLocked(h)
			}
		}
		h.inFlight++
		items = append(items, it)
		c.scheduleLocked(h)
	}
	return items
}

// finishItems returns written buffers, credits the sources of the bytes
// written and releases the halves the batch held.
func (c *conn) finishItems(items []writeItem) {
	for i := range items {
		it := &items[i]
		if it.data != nil {
			if cl := it.h.call; it.h == &cl.down {
				cl.sentBytes.Add(int64(it.data.len())) // written: the client has them
			}
			putBuf(it.data)
			it.data = nil
		}
		if it.credit > 0 {
			it.h.peer.credit(it.credit, it.room)
		}
	}
	c.mu.Lock()
	for i := range items {
		h := items[i].h
		h.inFlight--
		c.maybeCloseLocked(h)
		items[i] = writeItem{}
	}
	c.unlock()
}

// writeFailed handles an error from the socket on the writer.
func (c *conn) writeFailed(err error) {
	c.mu.Lock()
	c.failLocked(fmt.Errorf("writing: %w", err))
	c.unlock()
	c.closing()
	c.nc.Close() // unblocks the reader
}

// halfClose flushes and half-closes the socket after the last frame (a
// GOAWAY), and bounds how long the reader keeps draining the peer.
func (c *conn) halfClose() {
	c.closing()
	if c.bw != nil {
		err := c.bw.Flush()
		c.releaseWriter()
		if err != nil {
			c.nc.Close()
			return
		}
	}
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(closeLinger))
}

// stopAndWait asks the writer to write what is queued and exit, and waits.
func (c *conn) stopAndWait(closeWrite bool) {
	c.mu.Lock()
	c.stopWriter = true
	c.closeWrite = c.closeWrite || closeWrite
	c.kickLocked()
	c.unlock()
	<-c.writerDone
}

// linger half-closes the socket and drains the peer until it closes or
// closeLinger passes, then closes: closing with unread bytes would send a
// TCP RST, which may destroy our last frames (a GOAWAY) before the peer
// reads them.
func (c *conn) linger() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(closeLinger))
	_, _ = io.Copy(io.Discard, io.LimitReader(&c.br, 1<<20))
	c.nc.Close()
}

// closedRing is how many of the streams that closed last a connection
// remembers (closedIDs).
const closedRing = 128

// rememberClosedLocked puts id, a stream that just closed, in the ring.
func (c *conn) rememberClosedLocked(id uint32) {
	if len(c.closedIDs) < closedRing {
		c.closedIDs = append(c.closedIDs, id)
	} else {
		c.closedIDs[c.closedPos%closedRing] = id
	}
	c.closedPos++
}

// crossedLocked reports whether id closed lately and has not had a
// RST_STREAM since: the first one after its end is normal, a second, or
// one on a stream long gone, a glitch.
func (c *conn) crossedLocked(id uint32) bool {
	for i := range c.closedIDs {
		if c.closedIDs[i] == id {
			c.closedIDs[i] = 0
			return true
		}
	}
	return false
}

// glitch counts a protocol glitch and reports a connection error once the
// peer has caused too many.
func (c *conn) glitch() error {
	c.glitches++
	if c.glitches > glitchBase && int64(c.glitches) > min(glitchLimit, glitchBase+glitchPerStream*c.opened.Load()) {
		return connError(http2.ErrCodeEnhanceYourCalm, "too many protocol glitches")
	}
	return nil
}

// priorityFrame charges a PRIORITY frame against the connection's
// allowance.
func (c *conn) priorityFrame() error {
	c.priorities++
	if c.priorities > maxPriorityPerStream*(1+c.opened.Load()) {
		return connError(http2.ErrCodeEnhanceYourCalm, "too many PRIORITY frames")
	}
	return nil
}

// windowUpdateFrame charges a WINDOW_UPDATE frame against the
// connection's allowance.
func (c *conn) windowUpdateFrame() error {
	c.controls++
	if c.controls > 5+2*(c.opened.Load()+maxControlPerDataSent*c.dataSent.Load()) {
		return connError(http2.ErrCodeEnhanceYourCalm, "too many WINDOW_UPDATE frames for the data sent")
	}
	return nil
}

// pingFrame charges a PING or SETTINGS frame, read at now, against the
// connection's rate.
func (c *conn) pingFrame(now time.Time) error {
	if work := c.opened.Load() + c.dataSent.Load(); work != c.pingWork {
		c.pingWork = work
		return nil // the connection is busy: BDP estimation, not a flood
	}
	if c.pingLast.IsZero() {
		c.pingTokens = pingBurst
	} else {
		c.pingTokens = min(pingBurst, c.pingTokens+now.Sub(c.pingLast).Seconds()*pingRate)
	}
	c.pingLast = now
	if c.pingTokens < 1 {
		return connError(http2.ErrCodeEnhanceYourCalm, "too many PING or SETTINGS frames")
	}
	c.pingTokens--
	return nil
}

// refundConn returns n received bytes to the connection window at once:
// the bytes now sit in a stream's bounded queue, and holding connection
// credit for them would let one stalled stream starve its siblings
// (grpc-go trInFlow.onData).
func (c *conn) refundConn(n int64) error {
	c.inConnUnsent += n
	if c.inConnUnsent < connRefresh {
		return nil
	}
	v := c.inConnUnsent
	c.inConnUnsent = 0
	c.inConn += v
	return c.queueCtrl(ctrlFrame{kind: ctrlWindowUpdate, val: uint32(v)})
}

// connErr is a connection error (RFC 9113 §5.4.1) with the reason logged.
type connErr struct {
	code   http2.ErrCode
	reason string
}

func (e connErr) Error() string { return fmt.Sprintf("h2: connection error %v: %s", e.code, e.reason) }

func connError(code http2.ErrCode, reason string) error { return connErr{code, reason} }

// streamErr is a stream error (RFC 9113 §5.4.2).
type streamErr struct {
	id     uint32
	code   http2.ErrCode
	reason string
}

func (e streamErr) Error() string {
	return fmt.Sprintf("h2: stream %d error %v: %s", e.id, e.code, e.reason)
}

func streamError(id uint32, code http2.ErrCode, reason string) error {
	return streamErr{id, code, reason}
}

// classify maps an error from the framer or a handler to a connection or
// stream error, or to nil for plain I/O errors.
func classify(err error, detail error) (ce *connErr, se *streamErr) {
	var c connErr
	var s streamErr
	switch {
	case errors.As(err, &c):
		return &c, nil
	case errors.As(err, &s):
		return nil, &s
	}
	var hc http2.ConnectionError
	var hs http2.StreamError
	reason := ""
	if detail != nil {
		reason = detail.Error()
	}
	switch {
	case errors.As(err, &hc):
		return &connErr{http2.ErrCode(hc), reason}, nil
	case errors.As(err, &hs):
		if reason == "" && hs.Cause != nil {
			reason = hs.Cause.Error()
		}
		return nil, &streamErr{hs.StreamID, hs.Code, reason}
	case errors.Is(err, http2.ErrFrameTooLarge):
		// The payload was not read, so the stream cannot be resynced:
		// a connection error whatever the frame (RFC 9113 §4.2).
		return &connErr{http2.ErrCodeFrameSize, "frame larger than SETTINGS_MAX_FRAME_SIZE"}, nil
	}
	return nil, nil
}
