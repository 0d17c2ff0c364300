package h2

import (
	"sync"
	"sync/atomic"
)

// dbuf holds one DATA payload on its way from the connection that read it
// to the connection that writes it. The reader reads the frame straight
// into a dbuf (no copy out of the Framer's reused frame buffer), the
// payload waits in the receiving half's queue, and the writer returns the
// dbuf to its pool once the bytes are in its bufio.Writer. Exactly one
// goroutine owns a dbuf at a time: the reader, then the queue (under the
// queue's connection mutex), then the writer.
type dbuf struct {
	b    []byte // len(b) is the size class
	off  int    // payload is b[off:end]
	end  int
	next *dbuf
	// local marks proxy-made payloads (local reply bodies): no peer
	// gave flow-control credit for them, so none is returned.
	local bool
}

// bufClasses are the dbuf sizes. gRPC unary messages are mostly small, and
// DATA frames are at most maxFrameSize (16 KiB, what we advertise), so three
// classes keep a small message from pinning 16 KiB while it is queued.
var bufClasses = [...]int{512, 4 << 10, maxFrameSize}

var bufPools [len(bufClasses)]sync.Pool

// bufMem is the memory of the dbufs in use, wherever they are (queues, a
// writer's batch, a retry's copy of a request): what the engine holds for
// its peers, counted by buffer size, not payload. The overload manager
// watches it, and streams stop growing their windows as it rises.
var bufMem atomic.Int64

// BufferedBytes returns the memory the engine's DATA buffers hold now.
func BufferedBytes() int64 { return bufMem.Load() }

// bufAlarm is the overload manager's one-shot alarm (overload.Engine's
// Alarm): getBuf takes it and sends on its channel once bufMem reaches
// its mark. A nil alarm costs getBuf one atomic load.
var bufAlarm atomic.Pointer[alarm]

type alarm struct {
	at int64
	c  chan<- struct{}
}

// setAlarm arms bufAlarm, replacing an alarm still armed.
func setAlarm(at int64, c chan<- struct{}) { bufAlarm.Store(&alarm{at: at, c: c}) }

// ring sends a's signal, once, when the buffers hold at least its mark.
func (a *alarm) ring(held int64) {
	if held >= a.at && bufAlarm.CompareAndSwap(a, nil) {
		select {
		case a.c <- struct{}{}:
		default:
		}
	}
}

func init() {
	for i, size := range bufClasses {
		bufPools[i].New = func() any { return &dbuf{b: make([]byte, size)} }
	}
}

// getBuf returns an empty dbuf that holds at least n bytes (n ≤
// maxFrameSize).
func getBuf(n int) *dbuf {
	for i, size := range bufClasses {
		if n <= size {
			d := bufPools[i].Get().(*dbuf)
			d.off, d.end, d.next, d.local = 0, 0, nil, false
			held := bufMem.Add(int64(size))
			if a := bufAlarm.Load(); a != nil {
				a.ring(held)
			}
			return d
		}
	}
	panic("h2: buffer request larger than the maximum frame size")
}

// putBuf returns d to its pool. d must not be used afterwards.
func putBuf(d *dbuf) {
	for i, size := range bufClasses {
		if len(d.b) == size {
			d.next = nil
			bufMem.Add(-int64(size))
			bufPools[i].Put(d)
			return
		}
	}
}

// bytes returns the payload.
func (d *dbuf) bytes() []byte { return d.b[d.off:d.end] }

// len returns the payload length.
func (d *dbuf) len() int { return d.end - d.off }

// freeChain returns every dbuf of a queue to its pool.
func freeChain(d *dbuf) {
	for d != nil {
		next := d.next
		putBuf(d)
		d = next
	}
}
