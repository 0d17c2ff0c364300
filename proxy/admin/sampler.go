package admin

import (
	"math"
	"sync"
	"time"

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
// last historySlots intervals. Slot s.cur is the newest; the ones before it
// wrap around. Only the last valid() slots are meaningful: a history
// created since the sampler started has fewer.
//
// The slots are made when something happens and dropped once a whole
// window has gone by without anything: with thousands of idle hosts, the
// status page costs nothing for those that serve nothing.
type history struct {
	since  uint64 // the sampler's tick when the history was created
	active uint64 // the last tick with something in it
	*slots        // nil: nothing in the window
}

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
// seconds.
const histGroup = 10

// add adds an interval's figures to slot cur at tick, making the slots
// if they are the first in the window.
func (h *history) add(tick uint64, cur int, total, errors uint32, hist *[host.LatencyBuckets]uint32) {
	if total == 0 && errors == 0 && (hist == nil || *hist == [host.LatencyBuckets]uint32{}) {
		return
	}
	if h.slots == nil {
		h.slots = &slots{}
	}
	h.active = tick
	h.total[cur] = sat32(uint64(h.total[cur]) + uint64(total))
	h.errors[cur] = sat32(uint64(h.errors[cur]) + uint64(errors))
	if hist != nil {
		for i, d := range hist {
			g := cur / histGroup
			h.hist[g][i] = sat32(uint64(h.hist[g][i]) + uint64(d))
		}
	}
}

// turn empties slot cur for a new interval at tick, and drops the slots
// once the window holds nothing.
func (h *history) turn(tick uint64, cur int) {
	if h.slots == nil {
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

// hostHistory is a host's history and its counters at the last sample.
type hostHistory struct {
	history
	seen      uint64 // the tick the host was last seen at
	lastTotal uint64
	lastError uint64
	lastHist  [host.LatencyBuckets]uint64
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
	hosts map[*host.Host]*hostHistory
	// idle holds the hosts whose counters were all zero when last seen
	// (the tick they were seen at), which have no hostHistory.
	idle      map[*host.Host]uint64
	clusters  map[string]*history
	listeners map[string]*listenerHistory
	scratch   [host.LatencyBuckets]uint64

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

func newSampler(src Source) *sampler {
	return &sampler{
		src:       src,
		cur:       historySlots - 1,
		hosts:     map[*host.Host]*hostHistory{},
		idle:      map[*host.Host]uint64{},
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
		t := time.NewTicker(sampleEvery)
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

	seenClusters := make(map[string]bool, len(clusters))
	for _, c := range clusters {
		ch := s.clusters[c.Name]
		if ch == nil {
			ch = &history{since: s.ticks}
			s.clusters[c.Name] = ch
		}
		seenClusters[c.Name] = true
		ch.turn(s.ticks, cur)
		for _, h := range c.Hosts() {
			hh := s.hosts[h]
			total, errs := h.RqTotal.Load(), h.RqError.Load()
			h.Latency.Load(&s.scratch)
			if hh == nil {
				_, wasIdle := s.idle[h]
				if total == 0 && errs == 0 && s.scratch == ([host.LatencyBuckets]uint64{}) {
					// Never used: its baseline is all zeros, and
					// an entry would cost a history per idle host.
					s.idle[h] = s.ticks
					continue
				}
				hh = &hostHistory{history: history{since: s.ticks}}
				s.hosts[h] = hh
				if wasIdle {
					// All zeros at the last sample: this interval
					// is measured from them.
					delete(s.idle, h)
					hh.since = s.ticks - 1
				}
			}
			if hh.since < s.ticks {
				hh.turn(s.ticks, cur)
				dt, de := delta(total, hh.lastTotal), delta(errs, hh.lastError)
				var d [host.LatencyBuckets]uint32
				for i := range s.scratch {
					d[i] = delta(s.scratch[i], hh.lastHist[i])
				}
				hh.add(s.ticks, cur, dt, de, &d)
				ch.add(s.ticks, cur, dt, de, &d)
			}
			hh.seen = s.ticks
			hh.lastTotal, hh.lastError, hh.lastHist = total, errs, s.scratch
		}
	}
	for h, hh := range s.hosts {
		if hh.seen != s.ticks {
			delete(s.hosts, h)
		}
	}
	for h, seen := range s.idle {
		if seen != s.ticks {
			delete(s.idle, h)
		}
	}
	for name := range s.clusters {
		if !seenClusters[name] {
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

// windowLocked sums h's last valid slots. s.mu must be held.
func (s *sampler) windowLocked(h *history) window {
	var w window
	n := s.valid(h)
	w.perSecond = make([]float64, n)
	var summed [historySlots / histGroup]bool
	for k := 0; k < n; k++ {
		i := (s.cur - k + historySlots) % historySlots
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
