package h2

import (
	"slices"
	"sync"

	"golang.org/x/net/http2"

	"github.com/sightline-proxy/sightline/internal/roster"
	"github.com/sightline-proxy/sightline/proxy/overload"
)

// Engine returns what the overload manager watches in the engine. Its
// buffer budget decides when stream windows stop growing: once a quarter
// of it is in use.
func Engine() overload.Engine {
	return overload.Engine{
		Buffered: BufferedBytes,
		Reset:    resetLargest,
		Budget:   func(b int64) { growLimit.Store(b / 4) },
		Alarm:    setAlarm,
	}
}

// live is every downstream connection being served, of every Server: the
// overload manager's reset looks through their streams, and the park
// sweep through the connections, a chunk at a time.
var live struct {
	mu    sync.Mutex
	conns roster.Roster[*serverConn]
}

func addLive(sc *serverConn) {
	live.mu.Lock()
	live.conns.Add(sc)
	live.mu.Unlock()
}

func removeLive(sc *serverConn) {
	live.mu.Lock()
	live.conns.Remove(sc)
	live.mu.Unlock()
}

// minResetBytes: a call holding less than this is never reset for memory.
// A response stalled by a client that does not read holds the upstream
// stream's first window, 16 KiB, and is the kind of call to reset; a
// well-behaved call holds less, for a moment.
const minResetBytes = upstreamStreamWindow

// resetLargest resets the calls holding the most buffered bytes, each way
// (the response queued for the client and the request queued for the
// upstream), until about free bytes are released, and returns how many it
// reset. It runs on the overload manager's goroutine, taking one
// connection's lock at a time.
func resetLargest(free int64) int {
	live.mu.Lock()
	conns := live.conns.Chunk(make([]*serverConn, 0, live.conns.Len()), 0, live.conns.Len())
	live.mu.Unlock()
	type candidate struct {
		cl *call
		n  int
	}
	var cs []candidate
	for _, sc := range conns {
		sc.mu.Lock()
		for _, h := range sc.streams {
			if h.reset {
				continue
			}
			h.call.refs.Add(1)
			cs = append(cs, candidate{h.call, h.queued})
		}
		sc.mu.Unlock()
	}
	for i := range cs {
		up := &cs[i].cl.up
		if c := up.lock(); c != nil {
			cs[i].n += up.queued
			c.unlock()
		}
	}
	slices.SortFunc(cs, func(a, b candidate) int { return b.n - a.n })
	reset := 0
	for _, c := range cs {
		if free > 0 && c.n >= minResetBytes {
			c.cl.overloadReset()
			free -= int64(c.n)
			reset++
		}
		c.cl.release()
	}
	return reset
}

// overloadReset ends a call for the overload manager: its client's stream
// is reset with ENHANCE_YOUR_CALM (what a peer that makes the proxy hold
// too much has earned; gRPC clients see RESOURCE_EXHAUSTED), its upstream
// stream cancelled, and the bytes both held are freed.
func (cl *call) overloadReset() {
	cl.addFlag(flagOverload)
	cl.failed.Store(true)
	if c := cl.down.lock(); c != nil {
		if cl.down.attached && !cl.down.reset {
			cl.respEnded = true
			cl.sc.srv.stats.DownstreamRqTxReset.Inc(1)
			c.resetLocked(&cl.down, http2.ErrCodeEnhanceYourCalm, true)
		}
		c.unlock()
	}
	cl.cancelUpstream(http2.ErrCodeCancel)
}
