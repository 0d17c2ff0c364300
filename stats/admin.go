package stats

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"time"
)

// quantiles are the percentiles /stats shows for a histogram.
var quantiles = []struct {
	name string
	q    float64
}{{"P50", 0.50}, {"P90", 0.90}, {"P99", 0.99}, {"P999", 0.999}}

// Handler serves /stats: every stat as a "flat.name: value" line, sorted.
// Counters and gauges are read live, not as of the last flush. A histogram
// line shows P50, P90, P99 and P999 in milliseconds (interpolated within
// its bucket), the sample count and the sum. Query parameters:
// filter=REGEX keeps names the expression matches, usedonly keeps stats
// touched since start, format=json answers in JSON.
func (s *Store) Handler() http.Handler { return http.HandlerFunc(s.serveStats) }

// entry is one stat as /stats shows it.
type entry struct {
	name  string
	kind  Kind
	value int64
	hist  *histEntry // a histogram's; nil otherwise
}

type histEntry struct {
	counts [nBuckets]uint64
	count  uint64
	sum    time.Duration
}

// serveStats writes the stats a section at a time, so that what it holds
// is one cluster's stats, not every stat: with 10,000 clusters that served
// traffic (480,000 stats), reading them all first took 400 MB per request.
func (s *Store) serveStats(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var filter *regexp.Regexp
	if f := q.Get("filter"); f != "" {
		re, err := regexp.Compile(f)
		if err != nil {
			http.Error(w, fmt.Sprintf("filter: %v", err), http.StatusBadRequest)
			return
		}
		filter = re
	}
	_, usedOnly := q["usedonly"]
	bw := bufio.NewWriterSize(w, 32<<10)
	var out statsWriter = textWriter{bw}
	if q.Get("format") == "json" {
		w.Header().Set("Content-Type", "application/json")
		out = newJSONWriter(bw)
	} else {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	out.begin()
	s.sortedSections(filter, usedOnly, out.write)
	out.end()
	_ = bw.Flush() // an error is a client gone away; there is no one to tell
}

// sortedSections calls fn with every stat the filters let through, sorted
// by name, a section at a time: the stats of no cluster, and each
// cluster's, whose flat names all begin with "cluster.NAME.", merged by
// those prefixes. Clusters whose names extend another's past a dot ("a"
// and "a.b") interleave their names, so they make one section.
func (s *Store) sortedSections(filter *regexp.Regexp, usedOnly bool, fn func([]entry)) {
	var buf []entry
	var name []byte
	add := func(p *Point) {
		if usedOnly && !p.Used {
			return
		}
		name = p.Def.AppendFlatName(name[:0], p.Values)
		if filter != nil && !filter.Match(name) {
			return
		}
		e := entry{name: string(name), kind: p.Def.kind, value: p.Value}
		if p.Def.kind == KindHistogram {
			e.hist = &histEntry{count: p.Count(), sum: p.Sum}
			copy(e.hist.counts[:], p.Buckets)
		}
		buf = append(buf, e)
	}
	byName := func(a, b entry) int { return cmp.Compare(a.name, b.name) }

	s.walkGlobal(true, add)
	global := buf
	slices.SortFunc(global, byName)
	buf = nil

	type section struct {
		prefix string
		c      *Cluster
	}
	prefix := anchoredPrefix(filter)
	var clusters []section
	for _, c := range s.clusterSnapshot() {
		if !c.excluded(prefix) {
			clusters = append(clusters, section{c.flatPrefix(), c})
		}
	}
	slices.SortFunc(clusters, func(a, b section) int { return cmp.Compare(a.prefix, b.prefix) })
	for len(clusters) > 0 {
		own := clusters[0].prefix
		n, _ := slices.BinarySearchFunc(global, own, func(e entry, own string) int { return cmp.Compare(e.name, own) })
		if n > 0 {
			fn(global[:n])
			global = global[n:]
		}
		buf = buf[:0]
		for len(clusters) > 0 && strings.HasPrefix(clusters[0].prefix, own) {
			s.walkCluster(clusters[0].c, true, add)
			clusters = clusters[1:]
		}
		slices.SortFunc(buf, byName)
		if len(buf) > 0 {
			fn(buf)
		}
		clear(buf) // the names, for the collector
	}
	if len(global) > 0 {
		fn(global)
	}
}

// statsWriter writes /stats in one format.
type statsWriter interface {
	begin()
	write([]entry)
	end()
}

type textWriter struct{ w *bufio.Writer }

func (textWriter) begin() {}
func (textWriter) end()   {}

func (t textWriter) write(entries []entry) {
	var b [128]byte
	for _, e := range entries {
		line := append(b[:0], e.name...)
		line = append(line, ": "...)
		switch h := e.hist; {
		case h == nil:
			line = strconv.AppendInt(line, e.value, 10)
		case h.count == 0:
			line = append(line, "No recorded values"...)
		default:
			for _, q := range quantiles {
				line = fmt.Appendf(line, "%s(%s) ", q.name, formatMillis(quantile(&h.counts, h.count, q.q)))
			}
			line = fmt.Appendf(line, "count(%d) sum(%s)", h.count, formatMillis(Millis(h.sum)))
		}
		line = append(line, '\n')
		_, _ = t.w.Write(line)
	}
}

type jsonValue struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value int64  `json:"value"`
}

type jsonHistogram struct {
	Name      string             `json:"name"`
	Type      string             `json:"type"`
	Count     uint64             `json:"count"`
	Sum       float64            `json:"sum"`
	Quantiles map[string]float64 `json:"quantiles,omitempty"`
}

// jsonWriter writes {"stats": [...]}, one element at a time, through one
// encoder and one value of each kind, so that an element costs no
// allocation of its own.
type jsonWriter struct {
	w    *bufio.Writer
	next bool // an element was written: the next one needs a comma
	buf  bytes.Buffer
	enc  *json.Encoder
	v    jsonValue
	h    jsonHistogram
}

func newJSONWriter(w *bufio.Writer) *jsonWriter {
	j := &jsonWriter{w: w}
	j.enc = json.NewEncoder(&j.buf)
	return j
}

func (j *jsonWriter) begin() { _, _ = j.w.WriteString(`{"stats":[`) }
func (j *jsonWriter) end()   { _, _ = j.w.WriteString("]}\n") }

func (j *jsonWriter) write(entries []entry) {
	for _, e := range entries {
		j.buf.Reset()
		var err error
		if h := e.hist; h == nil {
			j.v = jsonValue{Name: e.name, Type: e.kind.String(), Value: e.value}
			err = j.enc.Encode(&j.v)
		} else {
			q := j.h.Quantiles
			j.h = jsonHistogram{Name: e.name, Type: e.kind.String(), Count: h.count, Sum: roundMillis(Millis(h.sum))}
			if h.count > 0 {
				if q == nil {
					q = make(map[string]float64, len(quantiles))
				}
				for _, qt := range quantiles {
					q[qt.name] = roundMillis(quantile(&h.counts, h.count, qt.q))
				}
				j.h.Quantiles = q
			}
			err = j.enc.Encode(&j.h)
			j.h.Quantiles = q
		}
		if err != nil {
			continue // cannot happen: strings, numbers and a map of them
		}
		if j.next {
			_ = j.w.WriteByte(',')
		}
		j.next = true
		_, _ = j.w.Write(bytes.TrimSuffix(j.buf.Bytes(), []byte("\n")))
	}
}

// quantile estimates the q-quantile in milliseconds from bucket counts, as
// Prometheus' histogram_quantile does: linearly within the bucket the rank
// falls in, from 0 for the first bucket, and the last finite bound for the
// +Inf bucket.
func quantile(counts *[nBuckets]uint64, total uint64, q float64) float64 {
	rank := q * float64(total)
	var below uint64
	for i, n := range counts {
		if n == 0 || float64(below+n) < rank {
			below += n
			continue
		}
		if i == len(bounds) {
			return Millis(bounds[len(bounds)-1])
		}
		lo := 0.0
		if i > 0 {
			lo = Millis(bounds[i-1])
		}
		hi := Millis(bounds[i])
		return lo + (hi-lo)*(rank-float64(below))/float64(n)
	}
	return Millis(bounds[len(bounds)-1])
}

// roundMillis keeps three decimals: microseconds, finer than any bucket.
func roundMillis(ms float64) float64 { return math.Round(ms*1000) / 1000 }

func formatMillis(ms float64) string {
	return strconv.FormatFloat(roundMillis(ms), 'f', -1, 64)
}

// anchoredPrefix returns what every name filter matches begins with, when
// filter is anchored at the start ("^server\\.config_reload$": "server.config_reload"),
// so that /stats reads only the clusters such names can be of; "" when it
// cannot tell.
func anchoredPrefix(filter *regexp.Regexp) string {
	if filter == nil {
		return ""
	}
	re, err := syntax.Parse(filter.String(), syntax.Perl)
	if err != nil {
		return ""
	}
	re = re.Simplify()
	if re.Op != syntax.OpConcat || len(re.Sub) == 0 || re.Sub[0].Op != syntax.OpBeginText {
		return ""
	}
	prefix, _ := filter.LiteralPrefix()
	return prefix
}
