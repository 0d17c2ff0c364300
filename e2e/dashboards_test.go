package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/sightline-proxy/sightline/internal/backend"
	"github.com/sightline-proxy/sightline/internal/testnet"
	"github.com/sightline-proxy/sightline/internal/testtool"
	"github.com/sightline-proxy/sightline/stats"
)

// The dashboard checks keep dashboards/*.json true to what Sightline
// emits. The static one parses every query with the PromQL parser and holds
// each metric, label and function against the stats catalog; the live one
// runs every query against a real Prometheus scraping a real proxy under
// varied traffic, and wants a series back from each.

// promNamespace is the default stats.prometheus.namespace, the one the
// dashboards are written for.
const promNamespace = "sightline"

// staticRateInterval stands for $__rate_interval in the static check: an
// odd value, so that a range written any other way shows.
const staticRateInterval = 93 * time.Second

// dashboardsWaitingOn lists the metric families (by prefix) that exist in
// the catalog but that no code creates yet, and the feature each waits on.
// A query whose missing families are all listed here may come back empty
// from the live check; any other empty query fails it.
var dashboardsWaitingOn = []struct{ prefix, feature string }{
	// An entry reads {"sightline_cluster_health_check_", "active health checking"}.
}

func waitingFeature(family string) string {
	for _, w := range dashboardsWaitingOn {
		if strings.HasPrefix(family, w.prefix) {
			return w.feature
		}
	}
	return ""
}

// Grafana dashboard JSON, the parts the checks read.
type (
	grafanaDashboard struct {
		file          string
		Inputs        []grafanaInput `json:"__inputs"`
		UID           string         `json:"uid"`
		Title         string         `json:"title"`
		SchemaVersion int            `json:"schemaVersion"`
		Panels        []grafanaPanel `json:"panels"`
		Templating    struct {
			List []grafanaVariable `json:"list"`
		} `json:"templating"`
	}
	grafanaInput struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		PluginID string `json:"pluginId"`
	}
	grafanaDatasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	}
	grafanaPanel struct {
		ID          int                      `json:"id"`
		Type        string                   `json:"type"`
		Title       string                   `json:"title"`
		Description string                   `json:"description"`
		Datasource  *grafanaDatasource       `json:"datasource"`
		GridPos     struct{ H, W, X, Y int } `json:"gridPos"`
		FieldConfig struct {
			Defaults struct {
				Unit string `json:"unit"`
			} `json:"defaults"`
		} `json:"fieldConfig"`
		Options struct {
			YAxis *struct {
				Unit string `json:"unit"`
			} `json:"yAxis"` // a heatmap's
		} `json:"options"`
		Targets []grafanaTarget `json:"targets"`
		Panels  []grafanaPanel  `json:"panels"` // a collapsed row's
	}
	grafanaTarget struct {
		Datasource   *grafanaDatasource `json:"datasource"`
		Expr         string             `json:"expr"`
		LegendFormat string             `json:"legendFormat"`
		Format       string             `json:"format"`
		RefID        string             `json:"refId"`
		Exemplar     bool               `json:"exemplar"`
	}
	grafanaVariable struct {
		Name       string             `json:"name"`
		Type       string             `json:"type"`
		Datasource *grafanaDatasource `json:"datasource"`
		Definition string             `json:"definition"`
		Query      json.RawMessage    `json:"query"`
		IncludeAll bool               `json:"includeAll"`
		AllValue   string             `json:"allValue"`
		Multi      bool               `json:"multi"`
	}
)

// query returns the variable's query, whichever of Grafana's two forms it
// is stored in.
func (v grafanaVariable) query() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var obj struct {
		Query string `json:"query"`
	}
	if json.Unmarshal(v.Query, &obj) == nil && obj.Query != "" {
		return obj.Query
	}
	return v.Definition
}

// where names a panel's target in messages.
func (d *grafanaDashboard) where(p grafanaPanel, tg grafanaTarget) string {
	return fmt.Sprintf("%s: panel %q target %s", d.file, p.Title, tg.RefID)
}

// allPanels returns the dashboard's panels, those inside collapsed rows
// too.
func (d *grafanaDashboard) allPanels() []grafanaPanel {
	var out []grafanaPanel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

func loadDashboards(t *testing.T) []*grafanaDashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "dashboards", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out []*grafanaDashboard
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		d := &grafanaDashboard{file: filepath.Join("dashboards", filepath.Base(f))}
		if err := json.Unmarshal(b, d); err != nil {
			t.Fatalf("%s: %v", d.file, err)
		}
		out = append(out, d)
	}
	for _, want := range []string{"sightline-overview.json", "sightline-cluster.json", "sightline-grpc.json"} {
		if !slices.ContainsFunc(out, func(d *grafanaDashboard) bool { return filepath.Base(d.file) == want }) {
			t.Errorf("dashboards/%s is missing", want)
		}
	}
	return out
}

// promFamily is one Prometheus metric name Sightline emits.
type promFamily struct {
	kind   stats.Kind
	sample string // "", "bucket", "sum" or "count" for a histogram's series
	labels []string
	unit   string // Prometheus' base unit the family is in: "seconds", "bytes" or ""
}

// emittedFamilies returns every Prometheus metric name Sightline can emit,
// derived from the stats catalog: a histogram's _bucket, _sum and _count.
func emittedFamilies() map[string]promFamily {
	out := map[string]promFamily{}
	for _, d := range stats.Catalog() {
		name := d.PrometheusName(promNamespace)
		lbls, unit := d.TagKeys(), d.PrometheusUnit()
		if d.Kind() != stats.KindHistogram {
			out[name] = promFamily{kind: d.Kind(), labels: lbls, unit: unit}
			continue
		}
		out[name+"_bucket"] = promFamily{kind: d.Kind(), sample: "bucket", labels: append(slices.Clone(lbls), "le"), unit: unit}
		out[name+"_sum"] = promFamily{kind: d.Kind(), sample: "sum", labels: lbls, unit: unit}
		out[name+"_count"] = promFamily{kind: d.Kind(), sample: "count", labels: lbls}
	}
	return out
}

// scrapeLabels are the labels Prometheus adds to every scraped series.
var scrapeLabels = []string{"job", "instance"}

// grafanaBuiltins are Grafana's own variables, with the value the static
// check gives them.
var grafanaBuiltins = map[string]string{
	"__rate_interval": staticRateInterval.String(),
	"__interval":      "1m",
	"__range":         "1h",
}

var grafanaVarRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}|\$([A-Za-z_][A-Za-z0-9_]*)|\[\[([A-Za-z_][A-Za-z0-9_]*)\]\]`)

// substitute replaces Grafana variable references in s with vals; it
// returns the names it found no value for.
func substitute(s string, vals map[string]string) (string, []string) {
	var missing []string
	out := grafanaVarRef.ReplaceAllStringFunc(s, func(ref string) string {
		m := grafanaVarRef.FindStringSubmatch(ref)
		name := m[1] + m[2] + m[3]
		if v, ok := vals[name]; ok {
			return v
		}
		missing = append(missing, name)
		return ref
	})
	return out, missing
}

// promRegexValue writes a variable value as Grafana does into a regex
// matcher: regex-escaped, then escaped again for a PromQL string.
func promRegexValue(v string) string {
	return strings.ReplaceAll(regexp.QuoteMeta(v), `\`, `\\`)
}

var labelValuesCall = regexp.MustCompile(`^\s*label_values\(\s*(?:(.*\S)\s*,\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$`)

// parseLabelValues splits label_values(selector, label) (or
// label_values(label)).
func parseLabelValues(q string) (selector, label string, ok bool) {
	m := labelValuesCall.FindStringSubmatch(q)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

var legendRef = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)

// exprFacts is what checkExpr learned of an expression.
type exprFacts struct {
	families []string // metric names selected, sorted, unique
	labels   []string // labels of those metrics, and the scrape labels
}

// checkExpr parses a query (variables already substituted) and returns
// what is wrong with it against the families Sightline emits:
//   - every selector names an emitted metric, with labels it has;
//   - counters and histogram series are read through rate() over
//     $__rate_interval, gauges are never;
//   - histogram_quantile is given buckets summed by le;
//   - aggregations group by labels their input has.
func checkExpr(expr string, fams map[string]promFamily, rateInterval time.Duration) (exprFacts, []string) {
	var facts exprFacts
	node, err := parser.ParseExpr(expr)
	if err != nil {
		return facts, []string{fmt.Sprintf("does not parse: %v", err)}
	}
	var problems []string
	labelSet := map[string]bool{}
	for _, l := range scrapeLabels {
		labelSet[l] = true
	}
	famSet := map[string]bool{}
	parser.Inspect(node, func(n parser.Node, path []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			name, f, selProblems := checkSelector(n, fams)
			problems = append(problems, selProblems...)
			if name == "" {
				return nil
			}
			famSet[name] = true
			for _, l := range f.labels {
				labelSet[l] = true
			}
			inRate := inRateCall(path)
			cumulative := f.kind == stats.KindCounter || f.kind == stats.KindHistogram
			switch {
			case cumulative && !inRate:
				problems = append(problems, fmt.Sprintf("%s is cumulative: read it through rate(...[$__rate_interval])", name))
			case !cumulative && inRate:
				problems = append(problems, fmt.Sprintf("%s is a gauge: rate() of it means nothing", name))
			}
		case *parser.MatrixSelector:
			if n.Range != rateInterval {
				problems = append(problems, fmt.Sprintf("range [%v]: every range should be [$__rate_interval]", n.Range))
			}
		case *parser.SubqueryExpr:
			problems = append(problems, "subqueries are not used in Sightline's dashboards")
		case *parser.Call:
			if n.Func.Name == "histogram_quantile" && len(n.Args) == 2 {
				agg, ok := unparen(n.Args[1]).(*parser.AggregateExpr)
				if !ok || agg.Without || !slices.Contains(agg.Grouping, "le") {
					problems = append(problems, "histogram_quantile wants buckets summed by (…, le)")
				}
			}
		}
		return nil
	})
	// Grouping labels and legends are checked against the labels of every
	// metric selected, a loose bound but one that catches a misspelling.
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		if agg, ok := n.(*parser.AggregateExpr); ok {
			for _, l := range agg.Grouping {
				if !labelSet[l] {
					problems = append(problems, fmt.Sprintf("grouping by %q, which none of the metrics has", l))
				}
			}
		}
		return nil
	})
	for f := range famSet {
		facts.families = append(facts.families, f)
	}
	for l := range labelSet {
		facts.labels = append(facts.labels, l)
	}
	sort.Strings(facts.families)
	sort.Strings(facts.labels)
	return facts, problems
}

// checkSelector checks that a selector names a metric Sightline emits and
// matches only labels it has; it returns the metric's name and family, or
// "" when it is not one Sightline emits.
func checkSelector(vs *parser.VectorSelector, fams map[string]promFamily) (string, promFamily, []string) {
	name := vs.Name
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			name = m.Value
		}
	}
	f, ok := fams[name]
	if !ok {
		return "", f, []string{fmt.Sprintf("metric %q is not one Sightline emits", name)}
	}
	var problems []string
	for _, m := range vs.LabelMatchers {
		if m.Name != model.MetricNameLabel && !slices.Contains(f.labels, m.Name) && !slices.Contains(scrapeLabels, m.Name) {
			problems = append(problems, fmt.Sprintf("%s has no label %q (it has %v)", name, m.Name, f.labels))
		}
	}
	return name, f, problems
}

func unparen(e parser.Expr) parser.Expr {
	for {
		p, ok := e.(*parser.ParenExpr)
		if !ok {
			return e
		}
		e = p.Expr
	}
}

// inRateCall reports whether the selector at the end of path is the range
// argument of rate, irate or increase.
func inRateCall(path []parser.Node) bool {
	for i := len(path) - 1; i >= 1; i-- {
		if _, ok := path[i].(*parser.MatrixSelector); ok {
			c, ok := path[i-1].(*parser.Call)
			return ok && (c.Func.Name == "rate" || c.Func.Name == "irate" || c.Func.Name == "increase")
		}
	}
	return false
}

// TestDashboardsStatic checks every dashboard without a network: its
// Grafana structure (the DS_PROMETHEUS input, a title, unit and
// description on every panel, no overlapping panels, a cluster variable)
// and every query and template query against the stats catalog.
func TestDashboardsStatic(t *testing.T) {
	fams := emittedFamilies()
	uids := map[string]string{}
	for _, d := range loadDashboards(t) {
		t.Run(filepath.Base(d.file), func(t *testing.T) {
			if d.Title == "" || d.UID == "" {
				t.Errorf("%s: title %q uid %q: want both", d.file, d.Title, d.UID)
			}
			if other, dup := uids[d.UID]; dup {
				t.Errorf("%s: uid %q is %s's too", d.file, d.UID, other)
			}
			uids[d.UID] = d.file
			if d.SchemaVersion < 36 {
				t.Errorf("%s: schemaVersion %d, want a current one (36 or later)", d.file, d.SchemaVersion)
			}
			if !slices.ContainsFunc(d.Inputs, func(in grafanaInput) bool {
				return in.Name == "DS_PROMETHEUS" && in.Type == "datasource" && in.PluginID == "prometheus"
			}) {
				t.Errorf("%s: __inputs has no DS_PROMETHEUS Prometheus datasource input", d.file)
			}
			checkDS := func(what string, ds *grafanaDatasource) {
				if ds == nil || ds.UID != "${DS_PROMETHEUS}" {
					t.Errorf("%s: datasource %+v, want uid ${DS_PROMETHEUS}", what, ds)
				}
			}

			vals := map[string]string{}
			for k, v := range grafanaBuiltins {
				vals[k] = v
			}
			hasCluster := false
			for _, v := range d.Templating.List {
				what := fmt.Sprintf("%s: variable %s", d.file, v.Name)
				if v.Type != "query" {
					vals[v.Name] = "x"
					continue
				}
				checkDS(what, v.Datasource)
				q, missing := substitute(v.query(), vals)
				vals[v.Name] = ".*" // whatever is wrong with it, later queries may use it
				if len(missing) > 0 {
					t.Errorf("%s: refers to %v, not defined before it", what, missing)
					continue
				}
				sel, label, ok := parseLabelValues(q)
				if !ok {
					t.Errorf("%s: query %q: want label_values(selector, label)", what, q)
					continue
				}
				if sel == "" {
					t.Errorf("%s: label_values(%s) without a metric reads every series Prometheus has; name a Sightline metric", what, label)
					continue
				}
				node, err := parser.ParseExpr(sel)
				vs, isVS := node.(*parser.VectorSelector)
				if err != nil || !isVS {
					t.Errorf("%s: %q is not a series selector: %v", what, sel, err)
					continue
				}
				name, f, problems := checkSelector(vs, fams)
				for _, pr := range problems {
					t.Errorf("%s: %s", what, pr)
				}
				if name != "" && !slices.Contains(f.labels, label) && !slices.Contains(scrapeLabels, label) {
					t.Errorf("%s: %s has no label %q", what, name, label)
				}
				if label == stats.TagCluster && v.Name == "cluster" {
					hasCluster = true
				}
			}
			if !hasCluster {
				t.Errorf("%s: no template variable cluster from label_values(<a cluster metric>, cluster_name)", d.file)
			}

			type rect struct {
				title      string
				x, y, w, h int
			}
			var placed []rect
			ids := map[int]bool{}
			for _, p := range d.allPanels() {
				if ids[p.ID] {
					t.Errorf("%s: panel id %d used twice", d.file, p.ID)
				}
				ids[p.ID] = true
				g := p.GridPos
				if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
					t.Errorf("%s: panel %q at %+v: outside the 24-column grid", d.file, p.Title, g)
				}
				for _, o := range placed {
					if g.X < o.x+o.w && o.x < g.X+g.W && g.Y < o.y+o.h && o.y < g.Y+g.H {
						t.Errorf("%s: panels %q and %q overlap", d.file, p.Title, o.title)
					}
				}
				placed = append(placed, rect{p.Title, g.X, g.Y, g.W, g.H})
				if strings.TrimSpace(p.Title) == "" {
					t.Errorf("%s: panel %d has no title", d.file, p.ID)
				}
				if p.Type == "row" {
					continue // a row holds panels; it shows no data
				}
				if strings.TrimSpace(p.Description) == "" {
					t.Errorf("%s: panel %q has no description", d.file, p.Title)
				}
				if p.FieldConfig.Defaults.Unit == "" {
					t.Errorf("%s: panel %q has no unit (fieldConfig.defaults.unit)", d.file, p.Title)
				}
				checkDS(fmt.Sprintf("%s: panel %q", d.file, p.Title), p.Datasource)
				if len(p.Targets) == 0 {
					t.Errorf("%s: panel %q has no query", d.file, p.Title)
				}
				for _, tg := range p.Targets {
					where := d.where(p, tg)
					checkDS(where, tg.Datasource)
					if strings.Contains(tg.Expr, "[") && strings.Count(tg.Expr, "[") != strings.Count(tg.Expr, "[$__rate_interval]") {
						t.Errorf("%s: %q: every range should be [$__rate_interval]", where, tg.Expr)
					}
					expr, missing := substitute(tg.Expr, vals)
					if len(missing) > 0 {
						t.Errorf("%s: refers to undefined variables %v", where, missing)
						continue
					}
					facts, problems := checkExpr(expr, fams, staticRateInterval)
					for _, pr := range problems {
						t.Errorf("%s: %s\n\t%s", where, pr, tg.Expr)
					}
					for _, m := range legendRef.FindAllStringSubmatch(tg.LegendFormat, -1) {
						if !slices.Contains(facts.labels, m[1]) {
							t.Errorf("%s: legend {{%s}}: no metric of the query has that label", where, m[1])
						}
					}
					if p.Type == "heatmap" && (tg.Format != "heatmap" || !strings.Contains(tg.Expr, "_bucket")) {
						t.Errorf("%s: a heatmap target wants format heatmap over _bucket series", where)
					}
					for _, pr := range checkUnits(p, tg, facts.families, fams) {
						t.Errorf("%s: %s", where, pr)
					}
				}
			}
		})
	}
}

// grafanaUnits are the Grafana units of Prometheus' base units.
var grafanaUnits = map[string]string{"seconds": "s", "bytes": "bytes"}

// checkUnits holds a panel's unit against the families its target reads: a
// latency or a gauge in seconds is shown in s, one in bytes in bytes, on
// the panel and on a heatmap's y axis; a query of latency buckets asks
// Grafana for exemplars, so a dot on the panel opens a call's trace.
func checkUnits(p grafanaPanel, tg grafanaTarget, read []string, fams map[string]promFamily) []string {
	var problems []string
	for _, name := range read {
		f := fams[name]
		want, ok := grafanaUnits[f.unit]
		if !ok || f.kind == stats.KindCounter || f.sample == "sum" {
			continue // a rate of a count or a sum has a unit of its own
		}
		if p.FieldConfig.Defaults.Unit != want {
			problems = append(problems, fmt.Sprintf("reads %s (in %s): unit %q, want %q", name, f.unit, p.FieldConfig.Defaults.Unit, want))
		}
		if y := p.Options.YAxis; y != nil && y.Unit != want {
			problems = append(problems, fmt.Sprintf("reads %s (in %s): y axis unit %q, want %q", name, f.unit, y.Unit, want))
		}
		if f.sample == "bucket" && !tg.Exemplar {
			problems = append(problems, fmt.Sprintf("reads %s without exemplar: true", name))
		}
	}
	return problems
}

// TestDashboardsLive runs every dashboard query against a real Prometheus
// that scrapes a real proxy every second while traffic of every kind goes
// through it, and wants at least one series from each (but those waiting
// on a feature not built yet, which are logged).
func TestDashboardsLive(t *testing.T) {
	promBin := testtool.Look(t, "prometheus")
	dashboards := loadDashboards(t)
	env := startObservedEnv(t, "")
	if code, out, errOut := runCLI(t, "validate", "-c", env.p.cfgPath); code != 0 {
		t.Fatalf("sightline validate: exit %d\n%s%s", code, out, errOut)
	}
	prom := startPrometheus(t, promBin, env.p.admin)

	// A few scrapes, with traffic of every kind in each interval.
	prom.waitScrapes(t, 6)
	env.traffic.check(t)

	present := map[string]bool{} // metric name → has series in Prometheus
	hasSeries := func(name string) bool {
		if v, ok := present[name]; ok {
			return v
		}
		n, _, err := prom.query(fmt.Sprintf(`count({__name__=%q})`, name))
		present[name] = err == nil && n > 0
		return present[name]
	}

	fams := emittedFamilies()
	preferred := map[string]string{"cluster": "primary", "grpc_service": "grpc.testing.TestService"}
	var empty, waiting, elsewhere []string
	for _, d := range dashboards {
		// Grafana's $__rate_interval at a 1s scrape is 4s; 10s leaves room
		// for a scrape the loaded machine was late with. vals holds one
		// selection of the variables, as a user would make it; every
		// selects everything, for the queries whose data is elsewhere (the
		// errors of a cluster whose retries and health checks hide them).
		vals := map[string]string{"__rate_interval": "10s", "__interval": "1s", "__range": "1m"}
		every := maps.Clone(vals)
		for _, v := range d.Templating.List {
			every[v.Name] = ".*"
			q, missing := substitute(v.query(), vals)
			sel, label, ok := parseLabelValues(q)
			if len(missing) > 0 || !ok {
				t.Errorf("%s: variable %s: query %q cannot be run", d.file, v.Name, q)
				vals[v.Name] = ".*"
				continue
			}
			values, err := prom.labelValues(label, sel)
			if err != nil || len(values) == 0 {
				t.Errorf("%s: variable %s: %s returned no values (%v)", d.file, v.Name, q, err)
				vals[v.Name] = ".*"
				continue
			}
			switch want := preferred[v.Name]; {
			case want != "" && slices.Contains(values, want):
				vals[v.Name] = promRegexValue(want)
			case v.IncludeAll && v.AllValue != "":
				vals[v.Name] = v.AllValue
			case v.IncludeAll || v.Multi:
				esc := make([]string, len(values))
				for i, x := range values {
					esc[i] = promRegexValue(x)
				}
				vals[v.Name] = "(" + strings.Join(esc, "|") + ")"
			default:
				vals[v.Name] = promRegexValue(values[0])
			}
			t.Logf("%s: $%s = %s (of %q)", d.file, v.Name, vals[v.Name], values)
		}
		for _, p := range d.allPanels() {
			for _, tg := range p.Targets {
				where := d.where(p, tg)
				expr, _ := substitute(tg.Expr, vals)
				n, _, err := prom.query(expr)
				if err != nil {
					t.Errorf("%s: %v\n\t%s", where, err, expr)
					continue
				}
				if n > 0 {
					continue
				}
				if all, _ := substitute(tg.Expr, every); all != expr {
					if n, _, err := prom.query(all); err == nil && n > 0 {
						elsewhere = append(elsewhere, where)
						continue
					}
				}
				facts, _ := checkExpr(expr, fams, 10*time.Second)
				var absent, features []string
				for _, f := range facts.families {
					if !hasSeries(f) {
						absent = append(absent, f)
						if w := waitingFeature(f); w != "" && !slices.Contains(features, w) {
							features = append(features, w)
						}
					}
				}
				if len(absent) > 0 && len(features) > 0 && slices.IndexFunc(absent, func(f string) bool { return waitingFeature(f) == "" }) < 0 {
					waiting = append(waiting, fmt.Sprintf("%s (waits on %s: %v)", where, strings.Join(features, ", "), absent))
					continue
				}
				empty = append(empty, fmt.Sprintf("%s: no series (metrics without any series: %v)\n\t%s", where, absent, expr))
			}
		}
	}
	for _, w := range dashboardsWaitingOn {
		for name := range fams {
			if strings.HasPrefix(name, w.prefix) && hasSeries(name) {
				t.Logf("%s now has series: %q can leave dashboardsWaitingOn", name, w.prefix)
				break
			}
		}
	}
	if len(elsewhere) > 0 {
		t.Logf("%d queries return series only with every variable on All:\n\t%s", len(elsewhere), strings.Join(elsewhere, "\n\t"))
	}
	if len(waiting) > 0 {
		t.Logf("%d queries return nothing yet, waiting on features still being built:\n\t%s", len(waiting), strings.Join(waiting, "\n\t"))
	}
	if len(empty) > 0 {
		t.Errorf("%d queries returned no series:\n%s", len(empty), strings.Join(empty, "\n"))
	}
	// The ingress listener's calls, which its access log has.
	for _, sel := range []string{`sightline_cluster_upstream_rq_time_seconds_bucket{cluster_name="primary"}`,
		`sightline_http_downstream_rq_time_seconds_bucket{http_conn_manager_prefix="ingress_http"}`} {
		checkExemplars(t, prom, sel, env.accessLog)
	}
}

// checkExemplars wants Prometheus to hold exemplars on the latency buckets
// selected, each in its bucket and naming the trace of a call the proxy
// logged: what a Grafana latency panel links to a trace with.
func checkExemplars(t *testing.T, prom *promServer, sel, accessLog string) {
	t.Helper()
	now := time.Now()
	data, err := prom.get("/api/v1/query_exemplars", url.Values{"query": {sel},
		"start": {strconv.FormatInt(now.Add(-10*time.Minute).Unix(), 10)}, "end": {strconv.FormatInt(now.Unix(), 10)}})
	if err != nil {
		t.Errorf("exemplars of %s: %v", sel, err)
		return
	}
	var series []struct {
		SeriesLabels map[string]string `json:"seriesLabels"`
		Exemplars    []struct {
			Labels map[string]string `json:"labels"`
			Value  string            `json:"value"`
		} `json:"exemplars"`
	}
	if err := json.Unmarshal(data, &series); err != nil {
		t.Fatalf("exemplars of %s: %v\n%s", sel, err, data)
	}
	var ids []string
	for _, s := range series {
		le, _ := strconv.ParseFloat(s.SeriesLabels["le"], 64)
		for _, e := range s.Exemplars {
			ids = append(ids, e.Labels["trace_id"])
			if v, _ := strconv.ParseFloat(e.Value, 64); v > le || v <= 0 {
				t.Errorf("%s exemplar %v s in the bucket le=%s", sel, v, s.SeriesLabels["le"])
			}
		}
	}
	if len(ids) == 0 {
		t.Errorf("Prometheus holds no exemplar of %s: %s", sel, data)
		return
	}
	// The access log is written every 200ms: a call Prometheus scraped
	// the exemplar of a moment ago may not be in it yet.
	err = eventually(5*time.Second, func() error {
		logged := loggedTraceIDs(t, accessLog)
		for _, id := range ids {
			if !logged[id] {
				return fmt.Errorf("%s exemplar trace_id %q: no call in the access log has that trace", sel, id)
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
		return
	}
	t.Logf("%s: %d exemplars, each the trace of a logged call", sel, len(ids))
}

// loggedTraceIDs returns the trace ids of the access log's lines.
func loggedTraceIDs(t *testing.T, path string) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, line := range bytes.Split(raw, []byte("\n")) {
		var e struct {
			TraceID string `json:"trace_id"`
		}
		if json.Unmarshal(line, &e) == nil && e.TraceID != "" {
			ids[e.TraceID] = true
		}
	}
	return ids
}

// observedEnv is a proxy configured with every feature there is config
// for, its backends, and traffic of every kind running through it until
// the test ends.
type observedEnv struct {
	p         *proxy
	backends  []*backend.Backend // primary's, zone-a then zone-b
	dead      string             // a primary endpoint nothing listens on
	canary    *backend.Backend
	shadow    *backend.Backend
	web       string // the HTTP/1.1 backend
	accessLog string // the ingress listener's access log
	traffic   *trafficLoop
}

// startObservedEnv starts the backends and sinks, the proxy, and the
// traffic loop. prometheus is the stats.prometheus mapping in YAML, or ""
// for the defaults.
func startObservedEnv(t *testing.T, prometheus string) *observedEnv {
	t.Helper()
	dir := t.TempDir()
	e := &observedEnv{dead: testnet.ClosedPort(t), accessLog: filepath.Join(dir, "access.log")}
	for i, z := range []string{"zone-a", "zone-a", "zone-b", "zone-b"} {
		b, err := backend.Start("127.0.0.1:0", fmt.Sprintf("primary-%d", i+1), z)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Stop)
		e.backends = append(e.backends, b)
	}
	e.canary = startBackend(t, "127.0.0.1:0", "canary")
	e.shadow = startBackend(t, "127.0.0.1:0", "shadow")
	e.web = startWebBackend(t)
	statsd := startDiscardUDP(t)
	otlp := startDiscardHTTP(t)

	cfg := fmt.Sprintf(`node: {id: observed, zone: zone-a}
server: {drain_time: 1ms, drain_timeout: 3s}
stats:
  flush_interval: 250ms
  emit_zeros: true
  prometheus: {%[13]s}
  sinks:
    - statsd: {address: %[1]q, prefix: sightline, protocol: udp, tags: none}
    - otlp: {endpoint: %[2]q, protocol: http, insecure: true}
tracing:
  sampling: 100
  propagation: [tracecontext, baggage, b3]
  otlp: {endpoint: %[2]q, protocol: http, insecure: true}
  service_name: sightline-e2e
listeners:
  - name: ingress
    address: 127.0.0.1:0
    stat_prefix: ingress_http
    request_id: {generate: true, preserve_external: true, set_in_response: true}
    access_log:
      - {path: %[3]q, flush_interval: 200ms}
    virtual_hosts:
      - name: grpc
        domains: ['*']
        routes:
          - name: empty-weighted
            match: {path: /grpc.testing.TestService/EmptyCall, grpc: true}
            weighted_clusters: [{cluster: primary, weight: 50}, {cluster: canary, weight: 50}]
          - name: test-service
            match: {prefix: /grpc.testing.TestService/, grpc: true}
            cluster: primary
            timeout: 10s
            retry_policy: {retry_on: '5xx,reset,connect-failure,unavailable', num_retries: 2, per_try_timeout: 2s}
            mirror: {cluster: shadow, percent: 100}
  - name: edge
    address: 127.0.0.1:0
    stat_prefix: edge_http
    protocols: [http1]
    virtual_hosts:
      - name: web
        domains: ['*']
        routes:
          - match: {prefix: /web/}
            cluster: web
            timeout: 5s
clusters:
  - name: primary
    lb_policy: round_robin
    connect_timeout: 250ms
    zone_aware: {enabled: true, min_cluster_size: 2}
    panic_threshold: 30
    endpoints:
      - {address: %[4]q, zone: zone-a}
      - {address: %[5]q, zone: zone-a}
      - {address: %[6]q, zone: zone-b}
      - {address: %[7]q, zone: zone-b}
      - {address: %[8]q, zone: zone-b}
    health_check:
      grpc: {service_name: ''}
      interval: 500ms
      interval_jitter: 100ms
      timeout: 1s
      healthy_threshold: 1
      unhealthy_threshold: 2
      event_log_path: %[9]q
    outlier_detection: {consecutive_5xx: 3, interval: 1s, base_ejection_time: 30s, max_ejection_percent: 50}
    circuit_breakers: {max_connections: 1000, max_pending_requests: 1000, max_requests: 1000, max_retries: 10}
  - name: canary
    endpoints: [{address: %[10]q, zone: zone-a}]
  - name: shadow
    endpoints: [{address: %[11]q, zone: zone-b}]
  - name: web
    protocol: http1
    endpoints: [{address: %[12]q, zone: zone-a}]
`, statsd, otlp, e.accessLog,
		e.backends[0].Addr, e.backends[1].Addr, e.backends[2].Addr, e.backends[3].Addr, e.dead,
		filepath.Join(dir, "healthcheck.log"), e.canary.Addr, e.shadow.Addr, e.web, prometheus)
	e.p = startProxy(t, cfg)
	e.traffic = startTraffic(t, e.p.listener("ingress"), e.p.listener("edge"))
	return e
}

// startWebBackend runs an HTTP/1.1 server that answers /web/fail with 503
// and everything else with 200.
func startWebBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if strings.HasSuffix(r.URL.Path, "/fail") {
			http.Error(w, "failing on purpose", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// startDiscardUDP is a statsd agent that reads and forgets.
func startDiscardUDP(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().String()
}

// startDiscardHTTP is an OTLP/HTTP collector (metrics and traces) that
// accepts every export and keeps nothing: an empty protobuf message is a
// valid response to both.
func startDiscardHTTP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// trafficLoop sends a light, steady mix of calls until the test ends:
// unary, empty (weighted between two clusters), server-streaming and
// bidirectional calls, calls the backend fails on purpose, calls no route
// matches, and HTTP/1.1 requests that succeed, fail and match no route.
// Some fail by design (the dead endpoint, the failures asked for); the
// loop counts what succeeded so that a test can tell it ran.
type trafficLoop struct {
	mu     sync.Mutex
	ok     map[string]int
	failed map[string]int
	last   map[string]error
	stop   context.CancelFunc
	done   chan struct{}
}

func startTraffic(t *testing.T, grpcAddr, httpAddr string) *trafficLoop {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &trafficLoop{ok: map[string]int{}, failed: map[string]int{}, last: map[string]error{}, stop: cancel, done: make(chan struct{})}
	conn, _ := dialGRPC(t, grpcAddr)
	client := testgrpc.NewTestServiceClient(conn)
	hc := &http.Client{Timeout: 5 * time.Second}
	kinds := []struct {
		name string
		call func(context.Context) error
	}{
		{"unary", func(ctx context.Context) error {
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 64, Payload: payload(32)})
			return err
		}},
		{"empty", func(ctx context.Context) error {
			_, err := client.EmptyCall(ctx, &testgrpc.Empty{})
			return err
		}},
		{"server-streaming", func(ctx context.Context) error {
			st, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{
				ResponseParameters: []*testgrpc.ResponseParameters{{Size: 16}, {Size: 16}, {Size: 16}},
			})
			if err != nil {
				return err
			}
			for {
				if _, err := st.Recv(); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
			}
		}},
		{"bidi-streaming", func(ctx context.Context) error {
			st, err := client.FullDuplexCall(ctx)
			if err != nil {
				return err
			}
			for i := 0; i < 2; i++ {
				if err := st.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 8}}}); err != nil {
					return err
				}
				if _, err := st.Recv(); err != nil {
					return err
				}
			}
			if err := st.CloseSend(); err != nil {
				return err
			}
			if _, err := st.Recv(); err != io.EOF {
				return fmt.Errorf("after CloseSend: %v, want EOF", err)
			}
			return nil
		}},
		{"grpc-not-found", func(ctx context.Context) error {
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "on purpose"}})
			if status.Code(err) == codes.NotFound {
				return nil
			}
			return fmt.Errorf("got %v, want NotFound", err)
		}},
		{"grpc-no-route", func(ctx context.Context) error {
			err := conn.Invoke(ctx, "/grpc.testing.UnimplementedService/UnimplementedCall", &testgrpc.Empty{}, new(testgrpc.Empty))
			if status.Code(err) == codes.Unimplemented {
				return nil
			}
			return fmt.Errorf("got %v, want Unimplemented", err)
		}},
		{"http1", func(ctx context.Context) error { return httpGet(ctx, hc, "http://"+httpAddr+"/web/ok", http.StatusOK) }},
		{"http1-503", func(ctx context.Context) error {
			return httpGet(ctx, hc, "http://"+httpAddr+"/web/fail", http.StatusServiceUnavailable)
		}},
		{"http1-no-route", func(ctx context.Context) error {
			return httpGet(ctx, hc, "http://"+httpAddr+"/nowhere", http.StatusNotFound)
		}},
	}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			k := kinds[i%len(kinds)]
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			err := k.call(cctx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			l.mu.Lock()
			if err != nil {
				l.failed[k.name]++
				l.last[k.name] = err
			} else {
				l.ok[k.name]++
			}
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-l.done })
	return l
}

// check fails the test unless every kind of call succeeded at least once.
func (l *trafficLoop) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for name, n := range l.failed {
		t.Logf("traffic: %d %s calls failed (last: %v); %d succeeded", n, name, l.last[name], l.ok[name])
	}
	for _, name := range []string{"unary", "empty", "server-streaming", "bidi-streaming", "grpc-not-found", "grpc-no-route", "http1", "http1-503", "http1-no-route"} {
		if l.ok[name] == 0 {
			t.Errorf("traffic: no %s call went as expected (%d failed, last: %v)", name, l.failed[name], l.last[name])
		}
	}
}

func httpGet(ctx context.Context, c *http.Client, u string, want int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("GET %s: %d, want %d", u, resp.StatusCode, want)
	}
	return nil
}

// promServer is a Prometheus server the test started.
type promServer struct {
	base   string
	output *lockedBuffer
}

// startPrometheus runs a Prometheus server on a free loopback port that
// scrapes the admin server's /stats/prometheus every second, and stops it
// when the test ends.
func startPrometheus(t *testing.T, bin, admin string) *promServer {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "prometheus.yml")
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: sightline
    metrics_path: /stats/prometheus
    static_configs: [{targets: [%q]}]
`, admin)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var last string
	for attempt := 0; attempt < 3; attempt++ {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		out := &lockedBuffer{}
		cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, fmt.Sprintf("data-%d", attempt)),
			"--web.listen-address="+addr, "--log.level=warn", "--enable-feature=exemplar-storage")
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting prometheus: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-exited
			}
		}
		ps := &promServer{base: "http://" + addr, output: out}
		err := eventually(30*time.Second, func() error {
			select {
			case <-exited:
				return errors.New("prometheus exited")
			default:
			}
			resp, err := http.Get(ps.base + "/-/ready")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("/-/ready: %d", resp.StatusCode)
			}
			return nil
		})
		if err == nil {
			t.Cleanup(stop)
			return ps
		}
		stop()
		last = out.String()
		if !strings.Contains(last, "address already in use") {
			t.Fatalf("prometheus did not become ready: %v\n%s", err, tail(last, 3000))
		}
	}
	t.Fatalf("prometheus could not bind a port after 3 attempts:\n%s", tail(last, 3000))
	return nil
}

// waitScrapes waits until Prometheus has scraped the proxy n times in the
// last minute, every scrape up.
func (p *promServer) waitScrapes(t *testing.T, n float64) {
	t.Helper()
	if err := eventually(60*time.Second, func() error {
		count, _, err := p.query(`count_over_time(up{job="sightline"}[1m])`)
		if err != nil {
			return err
		}
		if count == 0 {
			return errors.New("no scrape yet")
		}
		v, err := p.scalar(`sum(count_over_time(up{job="sightline"}[1m]))`)
		if err != nil || v < n {
			return fmt.Errorf("%v scrapes so far (%v)", v, err)
		}
		if up, err := p.scalar(`min(up{job="sightline"})`); err != nil || up != 1 {
			return fmt.Errorf("up = %v (%v)", up, err)
		}
		return nil
	}); err != nil {
		t.Fatalf("Prometheus did not scrape the proxy: %v\nPrometheus output:\n%s", err, tail(p.output.String(), 3000))
	}
}

// promAPIResponse is the envelope of Prometheus' HTTP API.
type promAPIResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
}

func (p *promServer) get(path string, q url.Values) (json.RawMessage, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(p.base + path + "?" + q.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r promAPIResponse
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("%s: %d, not the API's JSON: %v", path, resp.StatusCode, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s: %s", path, r.ErrorType, r.Error)
	}
	return r.Data, nil
}

// query runs an instant query and returns how many series it gave and the
// first one's value.
func (p *promServer) query(expr string) (int, string, error) {
	data, err := p.get("/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return 0, "", err
	}
	var res struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Value [2]any `json:"value"`
		} `json:"result"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return 0, "", err
	}
	if res.ResultType != "vector" {
		return 0, "", fmt.Errorf("result type %s, want vector", res.ResultType)
	}
	if len(res.Result) == 0 {
		return 0, "", nil
	}
	v, _ := res.Result[0].Value[1].(string)
	return len(res.Result), v, nil
}

// scalar runs a query expected to give one series and returns its value.
func (p *promServer) scalar(expr string) (float64, error) {
	n, v, err := p.query(expr)
	if err != nil {
		return 0, err
	}
	if n != 1 {
		return 0, fmt.Errorf("%s: %d series, want 1", expr, n)
	}
	var f float64
	_, err = fmt.Sscan(v, &f)
	return f, err
}

// labelValues is Grafana's label_values(selector, label) for Prometheus:
// the label's values among the series the selector matches, over the last
// few minutes.
func (p *promServer) labelValues(label, selector string) ([]string, error) {
	q := url.Values{"start": {fmt.Sprint(time.Now().Add(-5 * time.Minute).Unix())}, "end": {fmt.Sprint(time.Now().Unix())}}
	if selector != "" {
		q.Set("match[]", selector)
	}
	data, err := p.get("/api/v1/label/"+label+"/values", q)
	if err != nil {
		return nil, err
	}
	var values []string
	err = json.Unmarshal(data, &values)
	return values, err
}
