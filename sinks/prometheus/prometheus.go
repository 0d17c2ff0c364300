// Package prometheus serves Sightline's stats in the Prometheus exposition
// format at the admin server's /stats/prometheus.
//
// The Sink is a pull sink: a scrape reads every stat from the Store as of
// the last flush (stats.Store.Collect), so it shows what statsd and OTLP
// were sent then (at most stats.flush_interval ago), and the Sink keeps
// nothing per stat. Families are rendered by prometheus/common/expfmt: text 0.0.4 by
// default, OpenMetrics 1.0 when the scraper's Accept header asks for it.
// Every family has HELP and TYPE and one label set, counters end in _total,
// histograms are in milliseconds (_bucket, _sum, _count).
package prometheus

import (
	"cmp"
	"encoding/hex"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/stats"
)

// accepted are the formats served, the first the default.
var accepted = []expfmt.Format{expfmt.FmtText, expfmt.FmtOpenMetrics_1_0_0, expfmt.FmtOpenMetrics_0_0_1}

// Sink serves the stats of the Store it is given to Prometheus. Pass it to
// stats.New among Options.Sinks: the Store binds itself to it.
type Sink struct {
	store     atomic.Pointer[stats.Store]
	namespace string
	ms        bool      // units: ms
	bounds    []float64 // histogram bucket bounds in the unit shown, shared by every scrape
	created   bool      // _created lines in OpenMetrics
	// envoy is set for naming: envoy; ServeHTTP then writes Envoy's
	// exposition instead (envoy.go).
	envoy bool
}

// New returns a Sink that names families under cfg.Namespace. Pass it to
// stats.New among Options.Sinks and mount it at GET /stats/prometheus.
func New(cfg config.Prometheus) *Sink {
	s := &Sink{namespace: cfg.Namespace, ms: cfg.Units == config.PrometheusUnitsMs,
		created: cfg.Created == nil || *cfg.Created, envoy: cfg.Naming == config.PrometheusNamingEnvoy}
	s.bounds = stats.BoundsMillis()
	if !s.ms {
		for i := range s.bounds {
			s.bounds[i] /= 1e3
		}
	}
	return s
}

// BindStats implements the Store's binding: the Sink reads that Store.
func (s *Sink) BindStats(st *stats.Store) { s.store.Store(st) }

// Flush implements stats.Sink: a scrape reads the Store itself.
func (s *Sink) Flush() {}

// KeepsExemplars implements stats.ExemplarKeeper: OpenMetrics scrapes show
// them, except with Envoy's naming, which has none.
func (s *Sink) KeepsExemplars() bool { return !s.envoy }

// pointSet holds the stats of one scrape in chunks: with 10,000 clusters
// (480,000 stats) one slice that grew a quarter at a time allocated five
// times what it kept, 200 MB per scrape.
type pointSet [][]stats.Point

const pointChunk = 1024

// each calls fn with every point, in the order collected.
func (ps pointSet) each(fn func(*stats.Point)) {
	for _, c := range ps {
		for i := range c {
			fn(&c[i])
		}
	}
}

// points returns every stat as of the last flush; none before the Sink is
// bound.
func (s *Sink) points() pointSet {
	st := s.store.Load()
	if st == nil {
		return nil
	}
	var ps pointSet
	st.Collect(func(p *stats.Point) {
		if n := len(ps); n == 0 || len(ps[n-1]) == pointChunk {
			ps = append(ps, make([]stats.Point, 0, pointChunk))
		}
		last := &ps[len(ps)-1]
		*last = append(*last, *p)
	})
	return ps
}

// started is when every stat was 0: each one's creation time
// (OpenMetrics' _created).
func (s *Sink) started() time.Time {
	if st := s.store.Load(); st != nil {
		return st.Started()
	}
	return time.Time{}
}

// name is the family name of d in the Sink's units.
func (s *Sink) name(d *stats.Def) string {
	if s.ms {
		return d.PrometheusMsName(s.namespace)
	}
	return d.PrometheusName(s.namespace)
}

// value converts a histogram's duration to the unit shown.
func (s *Sink) value(d time.Duration) float64 {
	if s.ms {
		return stats.Millis(d)
	}
	return d.Seconds()
}

// ServeHTTP writes every family, sorted by name. filter=REGEX keeps the
// families that print a name the expression matches (for a histogram, its
// _bucket, _sum or _count name counts too); usedonly keeps the series
// that were ever touched, as Envoy's /stats/prometheus?usedonly does.
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.envoy {
		serveEnvoy(w, r, s.points())
		return
	}
	var filter *regexp.Regexp
	if f := r.URL.Query().Get("filter"); f != "" {
		re, err := regexp.Compile(f)
		if err != nil {
			http.Error(w, fmt.Sprintf("filter: %v", err), http.StatusBadRequest)
			return
		}
		filter = re
	}
	format := expfmt.NegotiateAccept(r.Header, accepted...)
	w.Header().Set("Content-Type", string(format))
	var opts []expfmt.EncoderOption
	if s.created {
		opts = append(opts, expfmt.WithCreatedLines())
	}
	enc := expfmt.NewEncoder(w, format, opts...)
	om := format.FormatType() == expfmt.TypeOpenMetrics
	// One family's protobuf form at a time, in objects reused family after
	// family: with 10,000 clusters that served traffic, building them all
	// first held some 200 MB per scrape, and a new object per series still
	// allocated as much.
	sc := &scratch{om: om}
	if om && s.created {
		sc.created = timestamppb.New(s.started())
	}
	for _, f := range s.families(filter, r.URL.Query().Has("usedonly")) {
		if enc.Encode(s.family(f, sc)) != nil {
			return // the scraper went away
		}
	}
	if c, ok := enc.(expfmt.Closer); ok {
		_ = c.Close() // writes OpenMetrics' # EOF; an error is a scraper gone
	}
}

type family struct {
	name   string
	def    *stats.Def
	series []*stats.Point
}

// families groups the stats by Def, one family each, sorted by name, the
// series of a family sorted by label values.
func (s *Sink) families(filter *regexp.Regexp, usedOnly bool) []*family {
	byDef := map[*stats.Def]*family{} // nil for a family the filter drops
	var fams []*family
	s.points().each(func(x *stats.Point) {
		if usedOnly && !x.Used {
			return
		}
		f, seen := byDef[x.Def]
		if !seen {
			name := s.name(x.Def)
			if filter == nil || printsMatch(filter, name, x.Def.Kind()) {
				f = &family{name: name, def: x.Def}
				fams = append(fams, f)
			}
			byDef[x.Def] = f
		}
		if f != nil {
			f.series = append(f.series, x)
		}
	})
	slices.SortFunc(fams, func(a, b *family) int { return cmp.Compare(a.name, b.name) })
	for _, f := range fams {
		slices.SortFunc(f.series, func(a, b *stats.Point) int {
			return slices.Compare(a.Values, b.Values)
		})
	}
	return fams
}

// printsMatch reports whether filter matches a name the family prints.
func printsMatch(filter *regexp.Regexp, name string, kind stats.Kind) bool {
	if filter.MatchString(name) {
		return true
	}
	if kind != stats.KindHistogram {
		return false
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if filter.MatchString(name + suffix) {
			return true
		}
	}
	return false
}

// family renders one family in sc's objects, valid until the next call.
// In an OpenMetrics scrape (sc.om) the family gets its UNIT, and counters
// and histograms their exemplars and creation time, which the text format
// has no place for.
func (s *Sink) family(f *family, sc *scratch) *dto.MetricFamily {
	sc.reset(f, len(s.bounds))
	mf := &sc.mf
	*mf = dto.MetricFamily{Name: &f.name, Help: &sc.help, Metric: sc.metrics}
	sc.help = f.def.Help()
	if u := f.def.PrometheusUnit(); sc.om && !s.ms && u != "" {
		sc.unit = u
		mf.Unit = &sc.unit
	}
	switch f.def.Kind() {
	case stats.KindCounter:
		mf.Type = dto.MetricType_COUNTER.Enum()
		for i, x := range f.series {
			c := &sc.counters[i]
			c.v = float64(x.Value)
			c.c.Value, c.c.CreatedTimestamp = &c.v, sc.created
			c.m.Counter, c.m.Label = &c.c, sc.labels(i, x)
			mf.Metric[i] = &c.m
		}
	case stats.KindGauge:
		mf.Type = dto.MetricType_GAUGE.Enum()
		for i, x := range f.series {
			g := &sc.gauges[i]
			g.v = float64(x.Value)
			g.g.Value = &g.v
			g.m.Gauge, g.m.Label = &g.g, sc.labels(i, x)
			mf.Metric[i] = &g.m
		}
	case stats.KindHistogram:
		mf.Type = dto.MetricType_HISTOGRAM.Enum()
		for i, x := range f.series {
			mf.Metric[i] = s.histogram(i, x, sc)
		}
	}
	return mf
}

// histogram renders series i of a histogram family: cumulative counts for
// each finite bound (+Inf is the sample count), the sum in the unit shown;
// in OpenMetrics, each bucket's exemplar and the creation time.
func (s *Sink) histogram(i int, x *stats.Point, sc *scratch) *dto.Metric {
	counts, n := x.Buckets, len(s.bounds)
	h := &sc.hists[i]
	h.count, h.sum = x.Count(), s.value(x.Sum)
	buckets := sc.buckets[i*n : (i+1)*n]
	ptrs := sc.bucketPtrs[i*(n+1) : i*(n+1)+n : (i+1)*(n+1)]
	cum := sc.cums[i*n : (i+1)*n]
	var below uint64
	for b := range s.bounds {
		below += counts[b]
		cum[b] = below
		buckets[b].CumulativeCount, buckets[b].UpperBound = &cum[b], &s.bounds[b]
		if sc.om {
			buckets[b].Exemplar = s.exemplar(x.Exemplar(b))
		}
		ptrs[b] = &buckets[b]
	}
	h.h.SampleCount, h.h.SampleSum, h.h.Bucket = &h.count, &h.sum, ptrs
	if sc.om {
		// The encoder writes the +Inf bucket itself, without an exemplar,
		// unless it is given one.
		if e := s.exemplar(x.Exemplar(n)); e != nil {
			h.h.Bucket = append(h.h.Bucket, &dto.Bucket{CumulativeCount: &h.count, UpperBound: &posInf, Exemplar: e})
		}
		h.h.CreatedTimestamp = sc.created
	}
	h.m.Histogram, h.m.Label = &h.h, sc.labels(i, x)
	return &h.m
}

// scratch holds the protobuf form of one family during a scrape, reused
// for the next family once the encoder has written it. Every series'
// objects live in slices sized for the largest family so far; reset
// zeroes what the family about to be built uses.
type scratch struct {
	om      bool
	created *timestamppb.Timestamp // every series' creation, when shown

	mf         dto.MetricFamily
	help, unit string
	metrics    []*dto.Metric
	counters   []struct {
		m dto.Metric
		c dto.Counter
		v float64
	}
	gauges []struct {
		m dto.Metric
		g dto.Gauge
		v float64
	}
	hists []struct {
		m     dto.Metric
		h     dto.Histogram
		count uint64
		sum   float64
	}
	buckets    []dto.Bucket
	bucketPtrs []*dto.Bucket // a series' room has one more, for an exemplar's +Inf bucket
	cums       []uint64
	pairs      []dto.LabelPair
	pairPtrs   []*dto.LabelPair
	nLabels    int
}

// grown returns buf with room for n elements, zeroed: buf itself when it
// has the room, a new slice otherwise (never a copy, which protobuf
// messages forbid).
func grown[T any](buf []T, n int) []T {
	if cap(buf) < n {
		return make([]T, n)
	}
	buf = buf[:n]
	clear(buf)
	return buf
}

// reset makes room for f's series, zeroed, histograms of nBounds buckets.
func (sc *scratch) reset(f *family, nBounds int) {
	n := len(f.series)
	sc.metrics = grown(sc.metrics, n)
	switch f.def.Kind() {
	case stats.KindCounter:
		sc.counters = grown(sc.counters, n)
	case stats.KindGauge:
		sc.gauges = grown(sc.gauges, n)
	case stats.KindHistogram:
		sc.hists = grown(sc.hists, n)
		sc.buckets = grown(sc.buckets, n*nBounds)
		sc.bucketPtrs = grown(sc.bucketPtrs, n*(nBounds+1))
		sc.cums = grown(sc.cums, n*nBounds)
	}
	sc.nLabels = len(f.def.TagKeys())
	sc.pairs = grown(sc.pairs, n*sc.nLabels)
	sc.pairPtrs = grown(sc.pairPtrs, n*sc.nLabels)
}

// labels returns series i's label pairs, pointing into the Def's keys and
// the series' values, which never change.
func (sc *scratch) labels(i int, x *stats.Point) []*dto.LabelPair {
	keys, k := x.Def.TagKeys(), sc.nLabels
	pairs, ptrs := sc.pairs[i*k:(i+1)*k], sc.pairPtrs[i*k:(i+1)*k:(i+1)*k]
	for j := range x.Values {
		pairs[j].Name, pairs[j].Value = &keys[j], &x.Values[j]
		ptrs[j] = &pairs[j]
	}
	return ptrs[:len(x.Values)]
}

var posInf = math.Inf(1)

// traceIDLabel is the exemplar label Grafana's Prometheus data source
// links to a trace by default.
var traceIDLabel = "trace_id"

// exemplar renders e as OpenMetrics wants it: the trace id in hex, the
// duration in the unit shown, when the call ended. nil gives nil.
func (s *Sink) exemplar(e *stats.Exemplar) *dto.Exemplar {
	if e == nil {
		return nil
	}
	id := hex.EncodeToString(e.Trace[:])
	v := s.value(e.Value)
	return &dto.Exemplar{
		Label:     []*dto.LabelPair{{Name: &traceIDLabel, Value: &id}},
		Value:     &v,
		Timestamp: timestamppb.New(e.At),
	}
}
