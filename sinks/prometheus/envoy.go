package prometheus

// Envoy naming (stats.prometheus.naming: envoy): /stats/prometheus writes
// what Envoy's admin writes at the same path, so that dashboards, alerts and
// recording rules written for Envoy work against Sightline unchanged.
//
// Sightline's flat names are Envoy's, so each series is named the way Envoy
// names its own: Envoy's stat-name sanitizing (":" to "_"), then Envoy's
// default tag extractors run on the flat name, in Envoy's order, each
// cutting its tag out of the name; what is left, with the characters
// Prometheus refuses as "_" and envoy_ before it, is the family. The labels
// are the tags in the order they were extracted, named as Envoy names them
// (envoy_cluster_name, envoy_response_code, …). Envoy's exposition is
// copied too: counters, then gauges, then histograms, each group sorted by
// the tag-extracted name, the series of a family by stat name; TYPE lines
// and no HELP; counters without a _total suffix; "{}" after a name with no
// labels; histograms in milliseconds with Envoy's default buckets, the sum
// as C's %.32g prints it; a blank line after each family.
//
// Series are named at each scrape: the Sink keeps nothing per stat, so a
// scrape runs the extractors' regexes on every stat (a few microseconds
// each).

import (
	"bufio"
	"cmp"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/sightline-proxy/sightline/stats"
)

// envoyBounds are Envoy's default histogram bucket bounds, in milliseconds
// (Envoy's HistogramSettingsImpl::defaultBuckets).
var envoyBounds = [...]float64{
	0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
	300000, 600000, 1800000, 3600000,
}

// envoyLE holds each bound as Envoy prints it in le (fmt's {:.32g}), and
// envoyBelow how many of the stats' buckets lie at or below it. Every Envoy
// bound up to 60 s is one of the stats' bounds, so those counts are exact;
// the stats have no bucket above 60 s, so a sample beyond it counts only in
// +Inf.
var envoyLE, envoyBelow = func() ([]string, []int) {
	ours := stats.BoundsMillis()
	le := make([]string, len(envoyBounds))
	below := make([]int, len(envoyBounds))
	for i, b := range envoyBounds {
		le[i] = formatG32(b)
		for _, o := range ours {
			if o <= b {
				below[i]++
			}
		}
	}
	return le, below
}()

// formatG32 prints f as Envoy's fmt::format("{:.32g}") does: C's %.32g,
// which Go's 'g' format with precision 32 matches digit for digit.
func formatG32(f float64) string { return strconv.FormatFloat(f, 'g', 32, 64) }

// tagExtractor is one of Envoy's tag extractors: a name whose match group 1
// is cut from the stat name and whose group 2 is the tag's value. Envoy
// skips the regex for a name lacking substr; so does this.
type tagExtractor struct {
	tag    string
	substr string
	re     *regexp.Regexp
}

// envoyWord is Envoy's <CLUSTER_NAME>, <STAT_PREFIX>, <GRPC_SERVICE>…: one
// dot-free segment. A name with dots (a cluster api.example.com) is cut at
// its first dot, as Envoy cuts it; the rest stays in the family name.
const envoyWord = `[^\.]+`

// envoyAddress is Envoy's <ADDRESS>: an IPv4 or bracketed IPv6 address and
// port, after ":" became "_".
const envoyAddress = `(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}_\d+|\[[_aAbBcCdDeEfF[:digit:]]+\]_\d+)`

func extractor(tag, substr, re string) tagExtractor {
	return tagExtractor{tag: tag, substr: substr, re: regexp.MustCompile(re)}
}

// Envoy's default extractors that can match a Sightline stat name, from
// Envoy's source/common/config/well_known_names.cc, in its order. Those
// whose regex starts with "^<token>\." run only on names starting with that
// token, after the ones without a prefix, as Envoy's TagProducerImpl runs
// them; the order they run in is the order of the labels.
var (
	envoyUnprefixed = []tagExtractor{
		extractor("envoy.response_code", "_rq_", `_rq(_(\d{3}))$`),
		extractor("envoy.response_code_class", "_rq_", `_rq_((\d))xx$`),
		// Envoy's "$.http_local_rate_limit.**": a local rate limit's
		// stat_prefix leads its stats.
		extractor("envoy.local_http_ratelimit_prefix", ".http_local_rate_limit.", `^((`+envoyWord+`)\.)http_local_rate_limit\.`),
	}
	envoyPrefixed = map[string][]tagExtractor{
		"cluster": {
			extractor("envoy.grpc_bridge_method", ".grpc.", `^cluster\.`+envoyWord+`\.grpc\.`+envoyWord+`\.((`+envoyWord+`)\.)`),
			extractor("envoy.grpc_bridge_service", ".grpc.", `^cluster\.`+envoyWord+`\.grpc\.((`+envoyWord+`)\.)`),
			extractor("envoy.cluster_name", "", `^cluster\.((`+envoyWord+`)\.)`),
		},
		"http": {
			extractor("envoy.http_conn_manager_prefix", "", `^http\.((`+envoyWord+`)\.)`),
		},
		"listener": {
			extractor("envoy.listener_address", "", `^listener\.((`+envoyAddress+`)\.)`),
		},
		// Stats Envoy has not: their tags are extracted as an Envoy
		// bootstrap's stats_tags would, named envoy_<tag key>. The name is
		// the whole middle, dots and all, since these names are Sightline's.
		"accesslog": {
			extractor("envoy."+stats.TagAccessLog, "", `^accesslog\.((.+)\.)[^\.]+$`),
		},
		"sink": {
			extractor("envoy."+stats.TagSink, "", `^sink\.((.+)\.)[^\.]+$`),
		},
	}
)

// envoyStatName is the name Envoy would give the stat: the flat name with
// ":" as "_" (Envoy's Stats::Utility::sanitizeStatsName).
var envoyStatName = strings.NewReplacer("://", "_", ":/", "_", ":", "_")

// promInvalid is what Envoy's sanitizeName replaces with "_".
var promInvalid = regexp.MustCompile(`[^a-zA-Z0-9_]`)

// envoyLabelValue escapes a tag value as Envoy's sanitizeValue does.
var envoyLabelValue = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)

// envoyName is how Envoy names one series.
type envoyName struct {
	stat      string   // Envoy's stat name, which filter= matches
	statParts []string // its segments: a family's series sort by them
	family    string   // envoy_<tag-extracted name>
	keyParts  []string // the tag-extracted name's segments: families sort by them
	labels    string   // envoy_response_code="200",envoy_cluster_name="x"
}

// nameEnvoy runs Envoy's tag extraction on one stat.
func nameEnvoy(d *stats.Def, values []string) *envoyName {
	stat := envoyStatName.Replace(d.FlatName(values))
	extractors := envoyUnprefixed
	if token, _, ok := strings.Cut(stat, "."); ok {
		extractors = slices.Concat(extractors, envoyPrefixed[token])
	}
	// Every extractor reads the whole name, as in Envoy; the cuts are made
	// once all have run.
	cut := make([]bool, len(stat))
	var labels []string
	for _, e := range extractors {
		if e.substr != "" && !strings.Contains(stat, e.substr) {
			continue
		}
		m := e.re.FindStringSubmatchIndex(stat)
		if m == nil {
			continue
		}
		for i := m[2]; i < m[3]; i++ {
			cut[i] = true
		}
		labels = append(labels, promInvalid.ReplaceAllString(e.tag, "_")+`="`+envoyLabelValue.Replace(stat[m[4]:m[5]])+`"`)
	}
	var key strings.Builder
	for i := range stat {
		if !cut[i] {
			key.WriteByte(stat[i])
		}
	}
	return &envoyName{
		stat:      stat,
		statParts: strings.Split(stat, "."),
		family:    "envoy_" + promInvalid.ReplaceAllString(key.String(), "_"),
		keyParts:  strings.Split(key.String(), "."),
		labels:    strings.Join(labels, ","),
	}
}

// envoyFamily is the series of one family, as they are written.
type envoyFamily struct {
	*envoyName // the first series': family and keyParts are the family's
	series     []envoySeries
}

type envoySeries struct {
	*envoyName
	x *stats.Point
}

// envoyKinds are the sections of Envoy's exposition, in its order, with the
// TYPE each is written with.
var envoyKinds = []struct {
	kind stats.Kind
	typ  string
}{{stats.KindCounter, "counter"}, {stats.KindGauge, "gauge"}, {stats.KindHistogram, "histogram"}}

// serveEnvoy writes all stats as Envoy's admin does. filter=REGEX keeps the
// stats whose Envoy stat name it matches and usedonly those that were ever
// touched, as Envoy's parameters of the same names do.
func serveEnvoy(w http.ResponseWriter, r *http.Request, all pointSet) {
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
	usedOnly := q.Has("usedonly")
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	bw := bufio.NewWriterSize(w, 32<<10)
	for _, k := range envoyKinds {
		for _, f := range envoyFamilies(all, k.kind, filter, usedOnly) {
			writeEnvoyFamily(bw, f, k.typ)
		}
	}
	_ = bw.Flush() // an error is a scraper gone
}

// families groups the series of one kind by family, families sorted by
// tag-extracted name and series by stat name, segment by segment, as
// Envoy's symbol table orders them.
func envoyFamilies(all pointSet, kind stats.Kind, filter *regexp.Regexp, usedOnly bool) []*envoyFamily {
	byFamily := map[string]*envoyFamily{}
	var out []*envoyFamily
	all.each(func(x *stats.Point) {
		if x.Def.Kind() != kind || (usedOnly && !x.Used) {
			return
		}
		n := nameEnvoy(x.Def, x.Values)
		if filter != nil && !filter.MatchString(n.stat) {
			return
		}
		f, ok := byFamily[n.family]
		if !ok {
			f = &envoyFamily{envoyName: n}
			byFamily[n.family] = f
			out = append(out, f)
		}
		f.series = append(f.series, envoySeries{envoyName: n, x: x})
	})
	slices.SortFunc(out, func(a, b *envoyFamily) int {
		return cmp.Or(slices.Compare(a.keyParts, b.keyParts), cmp.Compare(a.family, b.family))
	})
	for _, f := range out {
		slices.SortFunc(f.series, func(a, b envoySeries) int { return slices.Compare(a.statParts, b.statParts) })
	}
	return out
}

func writeEnvoyFamily(w *bufio.Writer, f *envoyFamily, typ string) {
	w.WriteString("# TYPE " + f.family + " " + typ + "\n")
	for _, s := range f.series {
		switch s.x.Def.Kind() {
		case stats.KindCounter:
			writeEnvoySample(w, f.family, "", s.labels, "", strconv.FormatInt(s.x.Value, 10))
		case stats.KindGauge:
			writeEnvoySample(w, f.family, "", s.labels, "", strconv.FormatInt(s.x.Value, 10))
		case stats.KindHistogram:
			writeEnvoyHistogram(w, f.family, s)
		}
	}
	w.WriteString("\n")
}

// writeEnvoyHistogram writes one histogram series as Envoy's
// PrometheusStatsRender does: a cumulative count for each of Envoy's
// bounds, +Inf, the sum in milliseconds and the count.
func writeEnvoyHistogram(w *bufio.Writer, family string, s envoySeries) {
	counts, count, sum := s.x.Buckets, s.x.Count(), s.x.Sum
	var below uint64
	next := 0 // the first of the stats' buckets not yet in below
	for i, le := range envoyLE {
		for ; next < envoyBelow[i]; next++ {
			below += counts[next]
		}
		writeEnvoySample(w, family, "_bucket", s.labels, `le="`+le+`"`, strconv.FormatUint(below, 10))
	}
	n := strconv.FormatUint(count, 10)
	writeEnvoySample(w, family, "_bucket", s.labels, `le="+Inf"`, n)
	writeEnvoySample(w, family, "_sum", s.labels, "", formatG32(stats.Millis(sum)))
	writeEnvoySample(w, family, "_count", s.labels, "", n)
}

// writeEnvoySample writes name{labels,le} value: the braces even when
// empty, as Envoy writes them.
func writeEnvoySample(w *bufio.Writer, family, suffix, labels, le, value string) {
	w.WriteString(family)
	w.WriteString(suffix)
	w.WriteByte('{')
	w.WriteString(labels)
	if le != "" {
		if labels != "" {
			w.WriteByte(',')
		}
		w.WriteString(le)
	}
	w.WriteString("} ")
	w.WriteString(value)
	w.WriteByte('\n')
}
