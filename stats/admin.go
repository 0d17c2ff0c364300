package stats

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
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
	name   string
	kind   Kind
	value  int64
	counts [nBuckets]uint64
	count  uint64
	sum    time.Duration
}

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
	entries := s.entries(filter, usedOnly)
	if q.Get("format") == "json" {
		w.Header().Set("Content-Type", "application/json")
		writeJSON(w, entries)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	writeText(w, entries)
}

// entries reads every stat the filters let through, sorted by name.
func (s *Store) entries(filter *regexp.Regexp, usedOnly bool) []entry {
	var out []entry
	s.walk(true, anchoredPrefix(filter), func(p *Point) {
		if usedOnly && !p.Used {
			return
		}
		name := p.Def.FlatName(p.Values)
		if filter != nil && !filter.MatchString(name) {
			return
		}
		e := entry{name: name, kind: p.Def.kind, value: p.Value}
		if p.Buckets != nil {
			copy(e.counts[:], p.Buckets)
			e.count, e.sum = p.Count(), p.Sum
		}
		out = append(out, e)
	})
	slices.SortFunc(out, func(a, b entry) int { return cmp.Compare(a.name, b.name) })
	return out
}

func writeText(w io.Writer, entries []entry) {
	var b []byte
	for _, e := range entries {
		b = append(b[:0], e.name...)
		b = append(b, ": "...)
		switch {
		case e.kind != KindHistogram:
			b = strconv.AppendInt(b, e.value, 10)
		case e.count == 0:
			b = append(b, "No recorded values"...)
		default:
			for _, q := range quantiles {
				b = fmt.Appendf(b, "%s(%s) ", q.name, formatMillis(quantile(&e.counts, e.count, q.q)))
			}
			b = fmt.Appendf(b, "count(%d) sum(%s)", e.count, formatMillis(Millis(e.sum)))
		}
		b = append(b, '\n')
		if _, err := w.Write(b); err != nil {
			return // the client went away
		}
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

func writeJSON(w io.Writer, entries []entry) {
	stats := make([]any, 0, len(entries))
	for _, e := range entries {
		if e.kind != KindHistogram {
			stats = append(stats, jsonValue{Name: e.name, Type: e.kind.String(), Value: e.value})
			continue
		}
		h := jsonHistogram{Name: e.name, Type: e.kind.String(), Count: e.count, Sum: roundMillis(Millis(e.sum))}
		if e.count > 0 {
			h.Quantiles = make(map[string]float64, len(quantiles))
			for _, q := range quantiles {
				h.Quantiles[q.name] = roundMillis(quantile(&e.counts, e.count, q.q))
			}
		}
		stats = append(stats, h)
	}
	// An encoding error here is a client gone away; there is no one to tell.
	_ = json.NewEncoder(w).Encode(struct {
		Stats []any `json:"stats"`
	}{stats})
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
