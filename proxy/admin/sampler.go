package admin

import (
	"math"
	"sync"
	"time"

	"github.com/sightline-proxy/sightline/internal/shrink"
	"github.com/sightline-proxy/sightline/internal/tick"

	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/stats"
)

// The status page shows each host, cluster and listener over the last
// minute: the sampler reads their counters every sampleEvery and keeps what
// changed in each of the last historySlots intervals.
const (
	historySlots = 60
	sampleEvery  = time.Second
)

// Listener is one listener as the status page shows it.
type Listener struct {
	Name       string
	Address    string
	StatPrefix string
	// Stats are the listener's http.<stat_prefix>.* stats; nil shows
	// nothing but the name and address.
	Stats *stats.HTTP
}

// ListenerSource is implemented by a Source that can list its listeners;
// the status page shows listeners only when the Source is one. The admin
// server calls StatusListeners from its own goroutines, concurrently with
// everything else.
type ListenerSource interface {
	StatusListeners() []Listener
}

// history is what changed in one host, cluster or listener in each of the
// last historySlots intervals. Only the last valid() intervals are
// meaningful: a history created since the sampler started has fewer.
//
// Most histories hold little: thousands of hosts that serve nothing, or
// that served a burst and went quiet. So a history starts with nothing,
// holds the few intervals that had something as a short list (few), and
// only once more than maxFew of the window's intervals had something
// switches to slots, a fixed array per interval (1.6 KB). Either is
// dropped once a whole window has gone by without anything. A host that
// served a call keeps about 150 bytes for that minute (its events and its
// counters' baseline), then 100 (the baseline, which the next interval is
// measured from); one that never served, nothing.
type history struct {
	since  uint64 // the sampler's tick when the history was created
	active uint64 // the last tick with something in it
	seen   uint64 // a cluster's: the tick it was last seen at
	few    []event
	*slots // nil unless busy
}

// event is what one interval (tick) of a history had, while the history
// holds few of them: its requests, errors and latencies (non-zero buckets
// only).
type event struct {
	tick          uint64
	total, errors uint32
	lat           []latCount
}

// latCount is one latency bucket's count.
type latCount struct {
	b uint8
	n uint32
}

// maxFew is how many intervals a history keeps as events before it
// switches to slots: a few calls now and then stay a short list, steady
// traffic gets the array.
const maxFew = 6

// slots are a history's intervals.
type slots struct {
	total  [historySlots]uint32
	errors [historySlots]uint32
	hist   [historySlots / histGroup][host.LatencyBuckets]uint32
}

// histGroup is how many slots share a latency histogram. The status page
// shows percentiles over the whole window only, never per second, and a
// histogram per slot cost 11 KB for each host and cluster with traffic:
// 250 MB once 10,000 clusters had served a call. A group is emptied when
// its first slot begins, so the percentiles cover the last 50 to 60
// seconds (the last 60 while a history holds few intervals).
const histGroup = 10

// add adds an interval's figures at tick, whose slot is cur, making the
// history's event or slots if they are the first in the window.
func (h *history) add(tick uint64, cur int, total, errors uint32, hist *[host.LatencyBuckets]uint32) {
	if total == 0 && errors == 0 && (hist == nil || *hist == [host.LatencyBuckets]uint32{}) {
		return
	}
	h.active = tick
	if h.slots == nil {
		if n := len(h.few); n > 0 && h.few[n-1].tick == tick {
			h.few[n-1].merge(total, errors, hist)
			return
		}
		if len(h.few) < maxFew {
			var e event
			e.tick = tick
			e.merge(total, errors, hist)
			h.few = append(h.few, e)
			return
		}
		h.dense(tick, cur)
	}
	h.total[cur] = sat32(uint64(h.total[cur]) + uint64(total))
	h.errors[cur] = sat32(uint64(h.errors[cur]) + uint64(errors))
	if hist != nil {
		g := cur / histGroup
		for i, d := range hist {
			h.hist[g][i] = sat32(uint64(h.hist[g][i]) + uint64(d))
		}
	}
}

// merge adds figures to the event.
func (e *event) merge(total, errors uint32, hist *[host.LatencyBuckets]uint32) {
	e.total = sat32(uint64(e.total) + uint64(total))
	e.errors = sat32(uint64(e.errors) + uint64(errors))
	if hist == nil {
		return
	}
next:
	for b, n := range hist {
		if n == 0 {
			continue
		}
		for i := range e.lat {
			if e.lat[i].b == uint8(b) {
				e.lat[i].n = sat32(uint64(e.lat[i].n) + uint64(n))
				continue next
			}
		}
		e.lat = append(e.lat, latCount{b: uint8(b), n: n})
	}
}

// dense moves the history's events into slots; cur is tick's slot.
func (h *history) dense(tick uint64, cur int) {
	h.slots = &slots{}
	for _, e := range h.few {
		i := slotOf(cur, tick-e.tick)
		h.total[i] = sat32(uint64(h.total[i]) + uint64(e.total))
		h.errors[i] = sat32(uint64(h.errors[i]) + uint64(e.errors))
		if tick-e.tick >= uint64(historySlots-i%histGroup) {
			continue // its group began again since: its latencies are gone, as in slots
		}
		for _, l := range e.lat {
			g := i / histGroup
			h.hist[g][l.b] = sat32(uint64(h.hist[g][l.b]) + uint64(l.n))
		}
	}
	h.few = nil
}

// slotOf returns the slot k intervals before cur.
func slotOf(cur int, k uint64) int {
	return (cur - int(k%historySlots) + historySlots) % historySlots
}

// turn empties slot cur for a new interval at tick, drops the events that
// left the window, and drops everything once the window holds nothing.
func (h *history) turn(tick uint64, cur int) {
	if h.slots == nil {
		for len(h.few) > 0 && tick-h.few[0].tick >= historySlots {
			h.few = h.few[1:]
		}
		if len(h.few) == 0 {
			h.few = nil
		}
		return
	}
	if tick-h.active >= historySlots {
		h.slots = nil
		return
	}
	h.total[cur], h.errors[cur] = 0, 0
	if cur%histGroup == 0 {
		h.hist[cur/histGroup] = [host.LatencyBuckets]uint32{}
	}
}

// empty reports whether the history holds nothing.
func (h *history) empty() bool { return h.slots == nil && h.few == nil }

// hostHistory is the history of a host that served in the last window.
// It needs no baseline: the sampler takes the host's counts and latencies
// since its last sample from the host (host.Host.TakeCounts,
// TakeLatency).
type hostHistory struct {
	history
	seen uint64 // the tick the host was last seen at
}

type listenerHistory struct {
	history
	seen      uint64
	lastTotal uint64
}

// sampler keeps a minute of history for the status page. Its goroutine
// calls sample every second; handlers read the window under mu.
type sampler struct {
	src Source

	mu    sync.Mutex
	ticks uint64                      // samples taken after the first
	last  time.Time                   // when the last sample was taken; zero before the first
	cur   int                         // the newest slot
	span  [historySlots]time.Duration // how long each slot covers
	// hosts holds the hosts that served something; the others, whose
	// counters are all zero, are not kept (a host's counters start at
	// zero, so the first interval it serves in is measured from zero).
	hosts     map[*host.Host]*hostHistory
	hostsPeak int // shrink.Map's: a burst to every host leaves none
	clusters  map[string]*history
	listeners map[string]*listenerHistory
	scratch   [host.LatencyBuckets]uint64 // latencies taken from a host

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

func newSampler(src Source) *sampler {
	return &sampler{
		src:       src,
		cur:       historySlots - 1,
		hosts:     map[*host.Host]*hostHistory{},
		clusters:  map[string]*history{},
		listeners: map[string]*listenerHistory{},
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
}

// start takes the first sample, the baseline the first interval is
// measured from, and samples every sampleEvery until close.
func (s *sampler) start() {
	s.sample(time.Now())
	go func() {
		defer close(s.done)
		t := tick.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case now := <-t.C:
				s.sample(now)
			}
		}
	}()
}

// close stops the sampling goroutine and waits for it. It is idempotent;
// started says whether start ran.
func (s *sampler) close(started bool) {
	s.stopOnce.Do(func() {
		close(s.stop)
		if started {
			<-s.done
		}
	})
}

// valid returns how many of h's slots hold measured intervals.
func (s *sampler) valid(h *history) int {
	return int(min(s.ticks-h.since, historySlots))
}

// sample reads every host's and listener's counters at now and stores what
// changed since the last sample in a new slot. Hosts and listeners seen for
// the first time only get their baseline; those gone are forgotten.
func (s *sampler) sample(now time.Time) {
	clusters := s.src.Clusters()
	var listeners []Listener
	if ls, ok := s.src.(ListenerSource); ok {
		listeners = ls.StatusListeners()
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.last.IsZero() {
		s.ticks++
		s.cur = (s.cur + 1) % historySlots
		s.span[s.cur] = max(now.Sub(s.last), 0)
	}
	s.last = now
	cur := s.cur

	for _, c := range clusters {
		ch := s.clusters[c.Name]
		// A cluster seen for the first time (at the first sample, every
		// cluster) gives its hosts their baselines; a host of a cluster
		// seen before that has no history had all zeros at the last
		// sample.
		first := ch == nil
		if ch == nil {
			ch = &history{since: s.ticks}
			s.clusters[c.Name] = ch
		}
		ch.seen = s.ticks
		ch.turn(s.ticks, cur)
		for _, h := range c.Hosts() {
			hh := s.hosts[h]
			dt, de := h.TakeCounts()
			took := h.TakeLatency(&s.scratch)
			if hh == nil {
				if first || dt == 0 && de == 0 && !took {
					// A host of a cluster seen for the first time has
					// had its baseline taken; one without traffic needs
					// no entry: its baseline is the host's own.
					continue
				}
				// A host's window begins with its first interval
				// with calls; one that served before the window, quiet
				// since, is measured, at zero, as long as its cluster.
				since := s.ticks - 1
				if h.RqTotal.Load() > uint64(dt) || h.RqError.Load() > uint64(de) {
					since = ch.since
				}
				hh = &hostHistory{history: history{since: since}}
				s.hosts[h] = hh
				shrink.Grew(s.hosts, &s.hostsPeak)
			}
			hh.turn(s.ticks, cur)
			var d [host.LatencyBuckets]uint32
			for i, n := range s.scratch {
				d[i] = sat32(n)
			}
			hh.add(s.ticks, cur, dt, de, &d)
			ch.add(s.ticks, cur, dt, de, &d)
			if hh.empty() {
				// Quiet for the whole window: forgotten until its next
				// request.
				delete(s.hosts, h)
				continue
			}
			hh.seen = s.ticks
		}
	}
	for h, hh := range s.hosts {
		if hh.seen != s.ticks {
			delete(s.hosts, h)
		}
	}
	s.hosts = shrink.Map(s.hosts, &s.hostsPeak)
	for name, ch := range s.clusters {
		if ch.seen != s.ticks {
			delete(s.clusters, name)
		}
	}

	for _, l := range listeners {
		if l.Stats == nil {
			continue
		}
		total := uint64(max(l.Stats.DownstreamRqTotal.Value(), 0))
		lh := s.listeners[l.Name]
		if lh == nil {
			lh = &listenerHistory{history: history{since: s.ticks}}
			s.listeners[l.Name] = lh
		} else {
			lh.turn(s.ticks, cur)
			lh.add(s.ticks, cur, delta(total, lh.lastTotal), 0, nil)
		}
		lh.seen = s.ticks
		lh.lastTotal = total
	}
	for name, lh := range s.listeners {
		if lh.seen != s.ticks {
			delete(s.listeners, name)
		}
	}
}

// delta is now-before as a slot value: 0 if a counter went backwards (it
// never should), capped at the largest uint32.
func delta(now, before uint64) uint32 {
	if now < before {
		return 0
	}
	return sat32(now - before)
}

func sat32(v uint64) uint32 {
	if v > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(v)
}

// window is a history summed over its valid slots of the last minute.
type window struct {
	seconds float64 // the time the slots cover
	total   uint64
	errors  uint64
	hist    [host.LatencyBuckets]uint64
	// perSecond is the rate of each slot, oldest first.
	perSecond []float64
}

// windowLocked sums h's last valid intervals. s.mu must be held.
func (s *sampler) windowLocked(h *history) window {
	var w window
	n := s.valid(h)
	w.perSecond = make([]float64, n)
	var summed [historySlots / histGroup]bool
	for k := 0; k < n; k++ {
		i := slotOf(s.cur, uint64(k))
		span := s.span[i].Seconds()
		w.seconds += span
		if h.slots == nil {
			continue
		}
		w.total += uint64(h.total[i])
		w.errors += uint64(h.errors[i])
		if g := i / histGroup; !summed[g] {
			summed[g] = true
			for b := range h.hist[g] {
				w.hist[b] += uint64(h.hist[g][b])
			}
		}
		if span > 0 {
			w.perSecond[n-1-k] = float64(h.total[i]) / span
		}
	}
	for _, e := range h.few {
		k := s.ticks - e.tick
		if k >= uint64(n) {
			continue
		}
		w.total += uint64(e.total)
		w.errors += uint64(e.errors)
		for _, l := range e.lat {
			w.hist[l.b] += uint64(l.n)
		}
		if span := s.span[slotOf(s.cur, k)].Seconds(); span > 0 {
			w.perSecond[uint64(n)-1-k] = float64(e.total) / span
		}
	}
	return w
}

// windowSecondsLocked returns the time the whole window covers: the last
// minute, or less when the sampler started less than a minute ago. s.mu
// must be held.
func (s *sampler) windowSecondsLocked() float64 {
	var sec float64
	for k := 0; k < int(min(s.ticks, historySlots)); k++ {
		sec += s.span[(s.cur-k+historySlots)%historySlots].Seconds()
	}
	return sec
}

// rates are the window's figures as the status page shows them.
type rates struct {
	RqPerSec  float64  `json:"rq_per_sec"`
	ErrorRate *float64 `json:"error_rate"` // errors per request, 0 to 1; null without requests
	P50       *float64 `json:"p50_ms"`     // null without requests
	P99       *float64 `json:"p99_ms"`
}

func (w *window) rates() rates {
	var r rates
	if w.seconds > 0 {
		r.RqPerSec = round(float64(w.total)/w.seconds, 3)
	}
	if w.total > 0 {
		e := round(float64(min(w.errors, w.total))/float64(w.total), 6)
		r.ErrorRate = &e
	}
	r.P50 = quantileMillis(&w.hist, 0.5)
	r.P99 = quantileMillis(&w.hist, 0.99)
	return r
}

func quantileMillis(counts *[host.LatencyBuckets]uint64, q float64) *float64 {
	d, ok := host.LatencyQuantile(counts, q)
	if !ok {
		return nil
	}
	ms := round(stats.Millis(d), 3)
	return &ms
}

func round(v float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(v*p) / p
}
