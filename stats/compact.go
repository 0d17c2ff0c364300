package stats

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
)

// Compaction: a cluster that served a burst and went quiet keeps every
// stat it made (counters never go back while the process lives), but
// holding them as objects cost about 19 KB a cluster: a *Counter, *Gauge
// or *Histogram each, with its label set and its push sinks' handles, for
// some sixty stats, most of them zero. So a family of a cluster's stats
// (its Upstream, Connections, Membership, CircuitBreakers, a zone pair's
// Upstream, a gRPC method's stats) that no flush has seen change for
// stats.compact_after is compacted: its values, as the last flush read
// them, are written into the cluster's cold bytes (a few bytes a stat,
// varints), the family's slot is emptied, and its objects are left to the
// garbage collector. Its next use makes the family again, seeded from the
// cold bytes, so nothing a sink shows changes: /stats, Collect (Prometheus,
// OTLP) and the push sinks read the same values before, during and after.
//
// Envoy's nearest setting, stats_eviction_interval, evicts instead: an
// evicted counter comes back from zero, which Prometheus sees as a reset.
// Compaction keeps the values, so counters stay monotonic in every sink.
//
// A goroutine may have loaded the family just before its slot was emptied
// and count on it just after (the request path holds a family for the few
// instructions between loading it and counting). So the compacted family
// is kept aside, retired, for another second (retireGrace): a flush that
// finds a retired family's stats moved adds what moved to the family made
// again.
// Only families whose users load them afresh for each use are compacted;
// those a component holds for its life (HealthCheck, OutlierDetection,
// LoadBalancer, RateLimit) and the process's own are never.

// famID names a compactable family of a cluster in its cold bytes.
type famID uint8

const (
	famUpstream famID = iota + 1
	famConnections
	famMembership
	famBreakers
	famZone      // key: the to-zone
	famGRPC      // key: the request path
	famGRPCOther // the calls past the method cap, or not gRPC paths
)

// keyed reports whether the family's key says which one it is.
func (id famID) keyed() bool { return id == famZone || id == famGRPC }

// slot is where a compactable family is published; unpublish empties it,
// so that the next use makes the family again.
type slot interface {
	unpublish(key string)
}

// unseen is a group's changed before its first flush.
const unseen = math.MaxUint64

// group is a compactable family's stats, as one unit: made together,
// flushed together, compacted together.
type group struct {
	id   famID
	key  string
	slot slot
	m    atomic.Pointer[members]
	// pend gathers the stats while the family is being made; the
	// finished set is published in m.
	pend *members
	// keyed are the family's per-code sets, which make their counters on
	// first sight of a value: thawing a family makes those it had again.
	keyed []*keyed
	// changed is the last flush that saw a stat of the group change, and
	// changedAt when it ran. Only the flush touches them.
	changed   uint64
	changedAt time.Time
}

// members are a group's stats. A published members is never modified: a
// stat made later (a new status code) publishes a copy.
type members struct {
	counters   []*Counter
	gauges     []*Gauge
	histograms []*Histogram
}

func newGroup(id famID, key string, sl slot) *group {
	return &group{id: id, key: key, slot: sl, pend: &members{}, changed: unseen}
}

// add runs f on the members being made or, once published, on a copy it
// then publishes. The Store's lock is held.
func (g *group) add(f func(*members)) {
	if g.pend != nil {
		f(g.pend)
		return
	}
	m := *g.m.Load()
	m.counters, m.gauges, m.histograms = slices.Clip(m.counters), slices.Clip(m.gauges), slices.Clip(m.histograms)
	f(&m)
	g.m.Store(&m)
}

func (g *group) addCounter(c *Counter) {
	g.add(func(m *members) { m.counters = append(m.counters, c) })
}
func (g *group) addGauge(v *Gauge) { g.add(func(m *members) { m.gauges = append(m.gauges, v) }) }
func (g *group) addHistogram(h *Histogram) {
	g.add(func(m *members) { m.histograms = append(m.histograms, h) })
}

// publish ends the making of g.
func (g *group) publish() {
	g.m.Store(g.pend)
	g.pend = nil
}

// flush flushes every stat of m and reports whether one changed.
func (m *members) flush() bool {
	changed := false
	for _, c := range m.counters {
		changed = c.flush() || changed
	}
	for _, v := range m.gauges {
		changed = v.flush() || changed
	}
	for _, h := range m.histograms {
		changed = h.flush() || changed
	}
	return changed
}

// settled reports whether every stat of m holds what the last flush read.
func (m *members) settled() bool {
	for _, c := range m.counters {
		if !c.settled() {
			return false
		}
	}
	for _, v := range m.gauges {
		if !v.settled() {
			return false
		}
	}
	for _, h := range m.histograms {
		if !h.settled() {
			return false
		}
	}
	return true
}

// retireGrace is how long a compacted family stays retired, at least (and
// two flushes): a goroutine counts on a family it loaded within
// nanoseconds, unless it is descheduled right then, and even a machine
// short of CPU runs it again within a second.
const retireGrace = time.Second

// retired is a compacted family kept aside, in case a goroutine that
// loaded it before it was compacted counts on it after (see above).
type retired struct {
	g *group
	// m are the stats whose push sink handles were released: those of
	// the family when compacted, and those a late goroutine made since.
	m *members
	// quiet is the last flush that found it moved (or compacted it),
	// and quietAt when that flush ran.
	quiet   uint64
	quietAt time.Time
}

// thaw makes a compactable family: the first time, or again after it was
// compacted, seeded from the cluster's cold bytes. sc is the family's
// scope (the cluster's, or a zone pair's); build makes the family's stats
// with the scope it is given.
func thaw[T any](c *Cluster, l *lazy[T], id famID, key string, sc scope, build func(scope) *T) *T {
	s := c.sc.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := l.p.Load(); v != nil {
		return v
	}
	if id == famGRPC || id == famGRPCOther {
		// A goroutine that loaded the method table before it was
		// compacted may hold another slot for a method made since.
		for _, h := range c.hot {
			if h.id == id && h.key == key {
				return h.slot.(*lazy[T]).p.Load()
			}
		}
	}
	g := newGroup(id, key, l)
	v := build(sc.in(g))
	c.seedLocked(g)
	l.p.Store(v)
	return v
}

// seedLocked gives g, just made, the values its cold section holds, if the
// family was compacted, and makes it one of the cluster's hot families.
// The Store's lock is held.
func (c *Cluster) seedLocked(g *group) {
	if sec, ok := c.takeColdLocked(g.id, g.key); ok {
		seed(c.sc.s, g, &sec)
	}
	g.publish()
	c.hot = append(slices.Clip(c.hot), g)
}

// seed sets the stats of g, being made, to the values of sec, making the
// per-code counters sec has. The Store's lock is held.
func seed(s *Store, g *group, sec *coldSection) {
	for _, cc := range sec.counters {
		c := findCounter(g.pend.counters, cc.def, cc.k)
		if c == nil {
			if t := findKeyed(g.keyed, cc.def); t != nil {
				c = t.addLocked(cc.k)
			}
		}
		if c != nil {
			c.v.base.Store(cc.v)
			c.flushed.Store(cc.v)
		}
	}
	for _, cg := range sec.gauges {
		for _, v := range g.pend.gauges {
			if v.def != cg.def {
				continue
			}
			v.v.base.Store(cg.v)
			v.flushed.Store(cg.v)
			v.used.Store(cg.used)
			v.reported.Store(cg.used)
			// Push sinks got new handles: the next flush tells them
			// the value, as statsd sends every gauge once set.
			v.resend.Store(cg.used && len(s.push) > 0)
		}
	}
	for i := range sec.hists {
		ch := &sec.hists[i]
		for _, h := range g.pend.histograms {
			if h.def != ch.def {
				continue
			}
			for b, n := range ch.counts {
				h.counts[b].Store(n)
				h.flushed[b].Store(n)
			}
			h.sum.Store(ch.sum)
			h.flushedSum.Store(ch.sum)
		}
	}
}

// findCounter returns the counter of def among cs, for a per-code def the
// one of code k.
func findCounter(cs []*Counter, def *Def, k int) *Counter {
	for _, c := range cs {
		if c.def == def && (k < 0 || c.labels.values[len(c.labels.values)-1] == strconv.Itoa(k)) {
			return c
		}
	}
	return nil
}

func findKeyed(ts []*keyed, def *Def) *keyed {
	for _, t := range ts {
		if t.def == def {
			return t
		}
	}
	return nil
}

// flushCluster flushes the cluster's hot families, compacts those that
// have not changed for compact_after, and settles its retired ones. now is
// when the flush began.
func (s *Store) flushCluster(c *Cluster, now time.Time) {
	s.mu.Lock()
	ret := c.retired
	s.mu.Unlock()
	// Retired families first: what they add to the hot ones is in this
	// flush.
	for _, r := range ret {
		s.settle(c, r, now)
	}
	s.mu.Lock()
	hot := c.hot
	s.mu.Unlock()
	for _, g := range hot {
		if g.m.Load().flush() || g.changed == unseen {
			g.changed, g.changedAt = s.flushes, now
		}
		if s.idleFor(g.changed, g.changedAt, now) {
			s.compact(c, g, now)
		}
	}
}

// idleFor reports whether something last changed at flush n, at time at,
// has been unchanged for compact_after: that long, and two flushes at
// least, so that a family the last flush saw change is never the one
// compacted.
func (s *Store) idleFor(n uint64, at, now time.Time) bool {
	return s.compactAfter > 0 && s.flushes-n >= 2 && now.Sub(at) >= s.compactAfter
}

// compact writes g's values into the cluster's cold bytes, empties its
// slot and hands its push sink handles back, unless a stat moved since the
// flush read it.
func (s *Store) compact(c *Cluster, g *group, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := g.m.Load()
	if !m.settled() {
		return
	}
	g.slot.unpublish(g.key)
	// The section is written apart and the cold bytes made again at their
	// exact size: appending would leave up to as much again unused.
	s.scratch = appendSection(s.scratch[:0], g.id, g.key, m)
	c.cold = slices.Concat(c.cold, s.scratch)
	c.hot = slices.DeleteFunc(slices.Clone(c.hot), func(h *group) bool { return h == g })
	if len(c.hot) == 0 {
		c.hot = nil
	}
	if g.id == famGRPC || g.id == famGRPCOther {
		// Once every method is compacted, so is the method table: it is
		// made again, with a slot for each, on the next gRPC call.
		if !slices.ContainsFunc(c.hot, func(h *group) bool { return h.id == famGRPC || h.id == famGRPCOther }) {
			c.grpc.p.Store(nil)
		}
	}
	c.retired = append(slices.Clip(c.retired), &retired{g: g, m: m, quiet: s.flushes, quietAt: now})
	s.release(m)
}

// settle looks at a retired family: what a late goroutine counted on it
// since is added to the family as it is now (made again if need be, with
// new push sink handles, which report it); once it has been quiet for
// retireGrace, it is dropped. Its own push sink handles were released
// when it was compacted: a late sample reaches statsd's every-sample lines
// (histograms: samples) only if statsd's next batch had not left yet, and
// always reaches its counts and every other sink.
func (s *Store) settle(c *Cluster, r *retired, now time.Time) {
	m := r.g.m.Load()
	if m.settled() {
		if s.flushes-r.quiet < 2 || now.Sub(r.quietAt) < s.retireGrace {
			return
		}
		s.mu.Lock()
		c.retired = slices.DeleteFunc(slices.Clone(c.retired), func(x *retired) bool { return x == r })
		if len(c.retired) == 0 {
			c.retired = nil
		}
		s.mu.Unlock()
		return
	}
	r.quiet, r.quietAt = s.flushes, now
	if m != r.m {
		// A late goroutine made a per-code counter on the old family:
		// its push handles go back before the new family makes its own.
		s.release(&members{counters: slices.DeleteFunc(slices.Clone(m.counters), func(c *Counter) bool {
			return slices.Contains(r.m.counters, c)
		})})
		r.m = m
	}
	hot := c.warm(r.g.id, r.g.key)
	if hot == nil {
		return
	}
	hm := hot.m.Load()
	for _, old := range m.counters {
		v := old.v.load()
		d := v - old.flushed.Load()
		if d == 0 {
			continue
		}
		old.flushed.Store(v)
		k := keyOf(old.def, old.labels, r.g.id)
		nc := findCounter(hm.counters, old.def, k)
		if nc == nil && k >= 0 {
			if t := findKeyed(hot.keyed, old.def); t != nil {
				nc = t.get(k)
			}
		}
		nc.Inc(d)
	}
	for _, old := range m.gauges {
		v := old.v.load()
		d := v - old.flushed.Load()
		old.flushed.Store(v)
		old.reported.Store(old.used.Load())
		for _, ng := range hm.gauges {
			if ng.def == old.def {
				ng.Add(d)
			}
		}
	}
	for _, old := range m.histograms {
		counts, sum := old.load()
		flushed, flushedSum := old.loadFlushed()
		for _, nh := range hm.histograms {
			if nh.def != old.def {
				continue
			}
			for i := range counts {
				if d := counts[i] - flushed[i]; d != 0 {
					nh.add(i, d, 0)
				}
			}
			nh.add(0, 0, sum-flushedSum)
		}
		for i := range counts {
			old.flushed[i].Store(counts[i])
		}
		old.flushedSum.Store(sum)
	}
}

// keyOf returns the code a per-code counter of family id counts, or -1 for
// a counter of the family's own labels.
func keyOf(def *Def, l *labels, id famID) int {
	if len(def.tags) <= baseTags(id) {
		return -1
	}
	k, err := strconv.Atoi(l.values[len(l.values)-1])
	if err != nil {
		panic(fmt.Sprintf("stats: %s has a tag %q that is not a number", def.flat, l.values[len(l.values)-1]))
	}
	return k
}

// baseTags is how many tags the family's own stats have: the cluster, the
// zone pair's two zones, a gRPC method's service and method.
func baseTags(id famID) int {
	switch id {
	case famZone, famGRPC, famGRPCOther:
		return 3
	}
	return 1
}

// release hands every push sink handle of m back to its sink.
func (s *Store) release(m *members) {
	if len(s.push) == 0 {
		return
	}
	rel := func(i int, h any) {
		if r := s.releasers[i]; r != nil {
			r.Release(h)
		}
	}
	for _, c := range m.counters {
		for i, h := range c.out {
			rel(i, h)
		}
	}
	for _, g := range m.gauges {
		for i, h := range g.out {
			rel(i, h)
		}
	}
	for _, h := range m.histograms {
		if h.push != nil {
			for i, ch := range h.push.handles {
				rel(i, ch)
			}
		}
	}
}

// The cold bytes are the cluster's compacted families, one section each:
//
//	section:   uvarint famID, [uvarint len, key], counters, gauges, histograms
//	counters:  uvarint n, n × (uvarint catalog index, [uvarint code], uvarint value)
//	gauges:    uvarint n, n × (uvarint catalog index, byte used, varint value)
//	histograms: uvarint n, n × (uvarint catalog index, uvarint bitmap of the
//	           buckets with samples, uvarint count of each, varint sum in ns)
//
// The code is there for the per-code counters (a def with one tag more
// than its family's own). An idle cluster's membership is eight bytes; a
// cluster that served a gRPC call and went quiet, about two hundred.

// appendSection appends the family's section, the values as the last flush
// read them.
func appendSection(b []byte, id famID, key string, m *members) []byte {
	b = binary.AppendUvarint(b, uint64(id))
	if id.keyed() {
		b = binary.AppendUvarint(b, uint64(len(key)))
		b = append(b, key...)
	}
	b = binary.AppendUvarint(b, uint64(len(m.counters)))
	for _, c := range m.counters {
		b = binary.AppendUvarint(b, uint64(c.def.idx))
		if k := keyOf(c.def, c.labels, id); k >= 0 {
			b = binary.AppendUvarint(b, uint64(k))
		}
		b = binary.AppendUvarint(b, uint64(c.flushed.Load()))
	}
	b = binary.AppendUvarint(b, uint64(len(m.gauges)))
	for _, g := range m.gauges {
		b = binary.AppendUvarint(b, uint64(g.def.idx))
		used := byte(0)
		if g.reported.Load() {
			used = 1
		}
		b = append(b, used)
		b = binary.AppendVarint(b, g.flushed.Load())
	}
	b = binary.AppendUvarint(b, uint64(len(m.histograms)))
	for _, h := range m.histograms {
		b = binary.AppendUvarint(b, uint64(h.def.idx))
		counts, sum := h.loadFlushed()
		var bitmap uint64
		for i, n := range counts {
			if n != 0 {
				bitmap |= 1 << i
			}
		}
		b = binary.AppendUvarint(b, bitmap)
		for _, n := range counts {
			if n != 0 {
				b = binary.AppendUvarint(b, n)
			}
		}
		b = binary.AppendVarint(b, sum)
	}
	return b
}

// coldSection is one compacted family, read back.
type coldSection struct {
	id       famID
	key      string
	counters []coldCounter
	gauges   []coldGauge
	hists    []coldHist
}

type coldCounter struct {
	def *Def
	k   int // the code of a per-code counter; -1 otherwise
	v   int64
}

type coldGauge struct {
	def  *Def
	used bool
	v    int64
}

type coldHist struct {
	def    *Def
	counts [nBuckets]uint64
	sum    int64
}

// coldReader reads sections; the bytes are this package's own, so a
// malformed one is a bug, and panics.
type coldReader struct{ b []byte }

func (r *coldReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		panic("stats: malformed cold bytes")
	}
	r.b = r.b[n:]
	return v
}

func (r *coldReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		panic("stats: malformed cold bytes")
	}
	r.b = r.b[n:]
	return v
}

func (r *coldReader) def() *Def {
	i := r.uvarint()
	if i >= uint64(len(catalog)) {
		panic("stats: malformed cold bytes")
	}
	return catalog[i]
}

// skipKey reads a section's head and reports whether it is the family id,
// key, without reading the rest.
func (r *coldReader) head() (famID, string) {
	id := famID(r.uvarint())
	var key string
	if id.keyed() {
		n := r.uvarint()
		if n > uint64(len(r.b)) {
			panic("stats: malformed cold bytes")
		}
		key, r.b = string(r.b[:n]), r.b[n:]
	}
	return id, key
}

// section reads the next section.
func (r *coldReader) section() coldSection {
	var sec coldSection
	sec.id, sec.key = r.head()
	base := baseTags(sec.id)
	sec.counters = make([]coldCounter, r.uvarint())
	for i := range sec.counters {
		c := &sec.counters[i]
		c.def, c.k = r.def(), -1
		if len(c.def.tags) > base {
			c.k = int(r.uvarint())
		}
		c.v = int64(r.uvarint())
	}
	sec.gauges = make([]coldGauge, r.uvarint())
	for i := range sec.gauges {
		g := &sec.gauges[i]
		g.def = r.def()
		if len(r.b) == 0 {
			panic("stats: malformed cold bytes")
		}
		g.used, r.b = r.b[0] == 1, r.b[1:]
		g.v = r.varint()
	}
	sec.hists = make([]coldHist, r.uvarint())
	for i := range sec.hists {
		h := &sec.hists[i]
		h.def = r.def()
		bitmap := r.uvarint()
		for b := range h.counts {
			if bitmap&(1<<b) != 0 {
				h.counts[b] = r.uvarint()
			}
		}
		h.sum = r.varint()
	}
	return sec
}

// sections reads every section of b.
func sections(b []byte) []coldSection {
	var out []coldSection
	r := coldReader{b}
	for len(r.b) > 0 {
		out = append(out, r.section())
	}
	return out
}

// takeColdLocked removes the family's section from the cold bytes and
// returns it. The Store's lock is held.
func (c *Cluster) takeColdLocked(id famID, key string) (coldSection, bool) {
	r := coldReader{c.cold}
	for len(r.b) > 0 {
		start := len(c.cold) - len(r.b)
		sec := r.section()
		if sec.id != id || sec.key != key {
			continue
		}
		end := len(c.cold) - len(r.b)
		rest := append(slices.Clip(c.cold[:start:start]), c.cold[end:]...)
		if len(rest) == 0 {
			rest = nil
		}
		c.cold = rest
		return sec, true
	}
	return coldSection{}, false
}

// coldPathsLocked returns the request paths of the cluster's compacted
// gRPC methods. The Store's lock is held.
func (c *Cluster) coldPathsLocked() []string {
	var paths []string
	r := coldReader{c.cold}
	for len(r.b) > 0 {
		sec := r.section()
		if sec.id == famGRPC {
			paths = append(paths, sec.key)
		}
	}
	return paths
}

// warm makes the family id, key of the cluster if it is compacted, and
// returns its group; nil if it has none (every stat excluded: no family).
func (c *Cluster) warm(id famID, key string) *group {
	switch id {
	case famUpstream:
		c.Upstream()
	case famConnections:
		c.Connections()
	case famMembership:
		c.Membership()
	case famBreakers:
		c.CircuitBreakers()
	case famZone:
		c.Zone(key).Upstream()
	case famGRPC:
		c.GRPC(key)
	case famGRPCOther:
		t := c.grpc.get(c.sc.s, func() *grpcMethods { return c.newGRPCMethodsLocked() })
		if t.other.p.Load() == nil {
			thaw(c, t.other, famGRPCOther, "", c.sc, buildOther)
		}
	}
	s := c.sc.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range c.hot {
		if g.id == id && g.key == key {
			return g
		}
	}
	return nil
}

// setColdMembership writes the membership gauges into the cold bytes, and
// reports whether it could: not once the family has been made again.
func (c *Cluster) setColdMembership(total, healthy int64) bool {
	s := c.sc.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.membership.p.Load() != nil {
		return false
	}
	c.takeColdLocked(famMembership, "")
	b := binary.AppendUvarint(nil, uint64(famMembership))
	b = binary.AppendUvarint(b, 0) // counters
	var gauges []byte
	n := 0
	for _, g := range []struct {
		def *Def
		v   int64
	}{{membershipTotal, total}, {membershipHealthy, healthy}} {
		if (len(s.exclude) != 0 || len(s.include) != 0) && !s.allowed(g.def.FlatName(c.sc.labels.values)) {
			continue
		}
		gauges = binary.AppendUvarint(gauges, uint64(g.def.idx))
		gauges = append(gauges, 1) // used
		gauges = binary.AppendVarint(gauges, g.v)
		n++
	}
	b = binary.AppendUvarint(b, uint64(n))
	b = append(b, gauges...)
	b = binary.AppendUvarint(b, 0) // histograms
	c.cold = slices.Concat(c.cold, b)
	return true
}
