package stats

import (
	"strconv"
	"strings"
	"time"
)

// Point is one stat as a pull sink reads it (Collect).
type Point struct {
	Def *Def
	// Values are the tag values, in Def.TagKeys order. They are never
	// modified and may be kept.
	Values []string
	// Value is a counter's total or a gauge's value.
	Value int64
	// Used says the stat was ever touched: a counter that counted, a
	// gauge that was set, a histogram with samples. Push sinks leave the
	// others out unless told to emit zeros.
	Used bool
	// Buckets are a histogram's counts per bucket, the last +Inf (not
	// cumulative), and Sum the sum of its samples; nil and 0 otherwise.
	Buckets []uint64
	Sum     time.Duration

	ex *exemplars
}

// Count returns a histogram's number of samples.
func (p *Point) Count() uint64 {
	var n uint64
	for _, b := range p.Buckets {
		n += b
	}
	return n
}

// Exemplar returns the last sampled call kept in bucket i of a histogram,
// or nil. Only a Store with a sink that keeps exemplars has any.
func (p *Point) Exemplar(i int) *Exemplar {
	if p.ex == nil {
		return nil
	}
	return p.ex[i].Load()
}

// Collect calls fn with every stat as of the last flush, in no particular
// order: what every sink was told then, so that a pull sink shows the same
// numbers as the push sinks. fn runs on the caller's goroutine while
// flushes may run; it must not call the Store. Compacted families cost a
// decoding, which allocates: Collect is for scrapes and exports, not the
// request path.
func (s *Store) Collect(fn func(*Point)) { s.walk(false, "", fn) }

// walk calls fn with every stat: as of the last flush, or live (/stats).
// A cluster's stats are left out when no flat name that begins with
// prefix can be one of them, without reading them.
func (s *Store) walk(live bool, prefix string, fn func(*Point)) {
	s.walkGlobal(live, fn)
	for _, c := range s.clusterSnapshot() {
		if c.excluded(prefix) {
			continue
		}
		s.walkCluster(c, live, fn)
	}
}

// walkGlobal calls fn with every stat that belongs to no cluster.
func (s *Store) walkGlobal(live bool, fn func(*Point)) {
	counters, gauges, histograms := s.instruments()
	var p Point
	for _, c := range counters {
		c.point(live, &p)
		fn(&p)
	}
	for _, g := range gauges {
		g.point(live, &p)
		fn(&p)
	}
	for _, h := range histograms {
		h.point(live, &p)
		fn(&p)
	}
}

// flatPrefix is what the flat name of each of c's stats begins with.
func (c *Cluster) flatPrefix() string { return "cluster." + c.sc.labels.values[0] + "." }

// excluded reports whether no flat name that begins with prefix can be
// one of c's stats.
func (c *Cluster) excluded(prefix string) bool {
	if prefix == "" {
		return false
	}
	own := c.flatPrefix()
	return !strings.HasPrefix(prefix, own) && !strings.HasPrefix(own, prefix)
}

// walkCluster calls fn with every stat of cl.
func (s *Store) walkCluster(cl *Cluster, live bool, fn func(*Point)) {
	var p Point
	s.mu.Lock()
	hot, cold := cl.hot, cl.cold
	s.mu.Unlock()
	for _, g := range hot {
		m := g.m.Load()
		for _, c := range m.counters {
			c.point(live, &p)
			fn(&p)
		}
		for _, g := range m.gauges {
			g.point(live, &p)
			fn(&p)
		}
		for _, h := range m.histograms {
			h.point(live, &p)
			fn(&p)
		}
	}
	if len(cold) > 0 {
		cl.coldPoints(cold, fn)
	}
}

func (c *Counter) point(live bool, p *Point) {
	v := c.flushed.Load()
	if live {
		v = c.v.load()
	}
	*p = Point{Def: c.def, Values: c.labels.values, Value: v, Used: v != 0}
}

func (g *Gauge) point(live bool, p *Point) {
	*p = Point{Def: g.def, Values: g.labels.values}
	if live {
		p.Value, p.Used = g.v.load(), g.used.Load()
	} else {
		p.Value, p.Used = g.flushed.Load(), g.reported.Load()
	}
}

func (h *Histogram) point(live bool, p *Point) {
	var counts [nBuckets]uint64
	var sum int64
	if live {
		counts, sum = h.load()
	} else {
		counts, sum = h.loadFlushed()
	}
	*p = Point{Def: h.def, Values: h.labels.values, Buckets: counts[:], Sum: time.Duration(sum), ex: h.ex.Load()}
	p.Used = p.Count() != 0
}

// coldPoints calls fn with each stat of the compacted families in cold.
func (c *Cluster) coldPoints(cold []byte, fn func(*Point)) {
	name := c.sc.labels.values[0]
	fromZone := c.sc.s.fromZone
	var p Point
	for _, sec := range sections(cold) {
		var base []string
		switch sec.id {
		case famZone:
			base = []string{name, fromZone, sec.key}
		case famGRPC:
			service, method, _ := splitGRPCPath(sec.key)
			base = []string{name, service, method}
		case famGRPCOther:
			base = []string{name, "other", "other"}
		default:
			base = c.sc.labels.values
		}
		for _, cc := range sec.counters {
			values := base
			if cc.k >= 0 {
				values = append(base[:len(base):len(base)], strconv.Itoa(cc.k))
			}
			p = Point{Def: cc.def, Values: values, Value: cc.v, Used: cc.v != 0}
			fn(&p)
		}
		for _, cg := range sec.gauges {
			p = Point{Def: cg.def, Values: base, Value: cg.v, Used: cg.used}
			fn(&p)
		}
		for i := range sec.hists {
			ch := &sec.hists[i]
			p = Point{Def: ch.def, Values: base, Buckets: ch.counts[:], Sum: time.Duration(ch.sum)}
			p.Used = p.Count() != 0
			fn(&p)
		}
	}
}

// Started returns when the Store was built: every stat was 0 then, which
// makes it each stat's creation time (OpenMetrics' _created, OTLP's start
// time).
func (s *Store) Started() time.Time { return s.started }
