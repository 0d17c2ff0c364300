package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/sightline-proxy/sightline/internal/testtool"
)

// The stats tests check what a user of Sightline's stats sees: the same
// numbers in /stats, /stats/prometheus, plain statsd, DogStatsD and both
// OTLP transports, a cluster name with dots kept whole as a label, excluded
// stats nowhere, per-zone and per-gRPC-method counts that match what the
// backends served, and the last interval delivered on SIGTERM. The
// environment (receivers, backends in two zones, the proxy config) is in
// stats_helpers_test.go.

// statsTags is a tag set naming the test cluster, to which more tags are added.
func statsTags(kv ...string) map[string]string {
	m := map[string]string{"cluster_name": statsCluster}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// statsFlat is the flat name of a cluster stat.
func statsFlat(rest string) string { return "cluster." + statsCluster + "." + rest }

// statsWaitAll polls get until every value it returns is want, and fails the
// test with the last values when statsFlushTimeout passes first.
func statsWaitAll(t *testing.T, what string, want int64, get func() map[string]int64) {
	t.Helper()
	var last map[string]int64
	err := eventually(statsFlushTimeout, func() error {
		last = get()
		for _, v := range last {
			if v != want {
				return errors.New("not yet")
			}
		}
		return nil
	})
	if err != nil {
		keys := make([]string, 0, len(last))
		for k := range last {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			mark := ""
			if last[k] != want {
				mark = "   <-- wrong"
			}
			fmt.Fprintf(&b, "\n\t%-28s %d%s", k, last[k], mark)
		}
		t.Errorf("%s: want %d in every sink within %v, got:%s", what, want, statsFlushTimeout, b.String())
	}
}

// statsLive reads one integer stat from /stats (filtered to that name); -1
// when absent.
func statsLive(t *testing.T, p *proxy, name string) int64 {
	t.Helper()
	m, _ := statsText(t, p, "?filter="+url.QueryEscape("^"+regexp.QuoteMeta(name)+"$"))
	v, ok := statsInt(t, m, name)
	if !ok {
		return -1
	}
	return v
}

// statsPromInt is statsPromValue as an integer, -1 when the series is absent.
func statsPromInt(t *testing.T, p *proxy, fam string, labels map[string]string) int64 {
	t.Helper()
	fams, _ := statsPromScrape(t, p, "")
	v, ok := statsPromValue(fams, fam, labels)
	if !ok {
		return -1
	}
	return int64(v)
}

// rqTotals reads cluster.<c>.upstream_rq_total in every sink; the admin
// endpoints only while the proxy runs.
func (e *statsEnv) rqTotals(t *testing.T, running bool) map[string]int64 {
	t.Helper()
	m := map[string]int64{
		"statsd udp (plain)":     e.plain.counterSum(statsPlainPrefix+"."+statsFlat("upstream_rq_total"), nil),
		"statsd tcp (dogstatsd)": e.dog.counterSum(statsDogPrefix+".cluster.upstream_rq_total", statsTags()),
		"otlp grpc":              e.otlpGRPC.counter("cluster.upstream_rq_total", statsTags()),
		"otlp http":              e.otlpHTTP.counter("cluster.upstream_rq_total", statsTags()),
	}
	if running {
		m["/stats"] = statsLive(t, e.p, statsFlat("upstream_rq_total"))
		m["/stats/prometheus"] = statsPromInt(t, e.p, "sightline_cluster_upstream_rq_total", statsTags())
		// Envoy's scrape path for the same exposition.
		fams, _ := statsPromScrapeAt(t, e.p, "/stats?format=prometheus")
		v, ok := statsPromValue(fams, "sightline_cluster_upstream_rq_total", statsTags())
		if !ok {
			v = -1
		}
		m["/stats?format=prometheus"] = int64(v)
	}
	return m
}

// zoneClass reads cluster.<c>.zone.zone-a.<to>.upstream_rq_2xx in every
// sink.
func (e *statsEnv) zoneClass(t *testing.T, to string, running bool) map[string]int64 {
	t.Helper()
	tags := statsTags("from_zone", "zone-a", "to_zone", to, "response_code_class", "2")
	flat := statsFlat("zone.zone-a." + to + ".upstream_rq_2xx")
	m := map[string]int64{
		"statsd udp (plain)":     e.plain.counterSum(statsPlainPrefix+"."+flat, nil),
		"statsd tcp (dogstatsd)": e.dog.counterSum(statsDogPrefix+".cluster.zone.upstream_rq_xx", tags),
		"otlp grpc":              e.otlpGRPC.counter("cluster.zone.upstream_rq_xx", tags),
		"otlp http":              e.otlpHTTP.counter("cluster.zone.upstream_rq_xx", tags),
	}
	if running {
		m["/stats"] = statsLive(t, e.p, flat)
		m["/stats/prometheus"] = statsPromInt(t, e.p, "sightline_cluster_zone_upstream_rq_xx_total", tags)
	}
	return m
}

// TestStatsSinksAgree sends 1,000 gRPC calls through a cluster named
// api.example.com and checks that every sink tells the same story after a
// flush, and again after SIGTERM's final flush; that the per-zone counts
// are the calls each zone's backends served; that excluded stats are in no
// sink; and that a stat never touched is not pushed (emit_zeros: false).
func TestStatsSinksAgree(t *testing.T) {
	e := startStatsEnv(t, "200ms")
	const first, second = 1000, 200

	e.unaryCalls(t, first)
	zoneA, zoneB := e.zoneCalls()
	if zoneA+zoneB != first {
		t.Fatalf("the backends served %d calls, want %d", zoneA+zoneB, first)
	}
	if zoneA == 0 || zoneB == 0 {
		t.Fatalf("round robin over two zones sent %d calls to zone-a and %d to zone-b, want both used", zoneA, zoneB)
	}
	t.Logf("calls served: zone-a %d, zone-b %d", zoneA, zoneB)

	// After a flush, every sink has the 1,000, under the cluster name with
	// its dots (the label, the DogStatsD tag and the OTLP attribute are
	// compared whole).
	statsWaitAll(t, "upstream_rq_total after a flush", first, func() map[string]int64 { return e.rqTotals(t, true) })
	statsWaitAll(t, "zone-a→zone-a upstream_rq_2xx after a flush", zoneA, func() map[string]int64 { return e.zoneClass(t, "zone-a", true) })
	statsWaitAll(t, "zone-a→zone-b upstream_rq_2xx after a flush", zoneB, func() map[string]int64 { return e.zoneClass(t, "zone-b", true) })

	// A histogram's count and exact sum are the same in Prometheus and in
	// OTLP at the same flush (statsd carries bucket samples, not sums),
	// both in seconds.
	for to, want := range map[string]int64{"zone-a": zoneA, "zone-b": zoneB} {
		tags := statsTags("from_zone", "zone-a", "to_zone", to)
		err := eventually(statsFlushTimeout, func() error {
			fams, _ := statsPromScrape(t, e.p, "")
			pc, ps, ok := statsPromHist(fams, "sightline_cluster_zone_upstream_rq_time_seconds", tags)
			if !ok || pc != uint64(want) {
				return fmt.Errorf("Prometheus sightline_cluster_zone_upstream_rq_time_seconds%v: count %d (present %v), want %d", tags, pc, ok, want)
			}
			for name, r := range map[string]*otlpReceiver{"otlp grpc": e.otlpGRPC, "otlp http": e.otlpHTTP} {
				p, ok := r.point("cluster.zone.upstream_rq_time", tags)
				if !ok || p.count != pc || math.Abs(p.sum-ps) > 1e-12*max(1, ps) || !p.cumulative {
					return fmt.Errorf("%s cluster.zone.upstream_rq_time%v: count %d sum %v cumulative %v (present %v), want count %d sum %v as Prometheus shows", name, tags, p.count, p.sum, p.cumulative, ok, pc, ps)
				}
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}

	// Gauges: the value /stats shows is the value every sink was last
	// given.
	for _, g := range []struct{ stat, prom string }{
		{"membership_total", "sightline_cluster_membership_hosts"},
		{"membership_healthy", "sightline_cluster_membership_healthy"},
		{"upstream_cx_active", "sightline_cluster_upstream_cx_active"},
		{"upstream_rq_active", "sightline_cluster_upstream_rq_active"},
	} {
		want := statsLive(t, e.p, statsFlat(g.stat))
		if want < 0 {
			t.Errorf("/stats has no %s", statsFlat(g.stat))
			continue
		}
		statsWaitAll(t, "gauge "+g.stat, want, func() map[string]int64 {
			return map[string]int64{
				"/stats":                 statsLive(t, e.p, statsFlat(g.stat)),
				"/stats/prometheus":      statsPromInt(t, e.p, g.prom, statsTags()),
				"statsd udp (plain)":     e.plain.gauge(statsPlainPrefix+"."+statsFlat(g.stat), nil),
				"statsd tcp (dogstatsd)": e.dog.gauge(statsDogPrefix+".cluster."+g.stat, statsTags()),
				"otlp grpc":              e.otlpGRPC.counter("cluster."+g.stat, statsTags()),
				"otlp http":              e.otlpHTTP.counter("cluster."+g.stat, statsTags()),
			}
		})
	}
	if v := statsLive(t, e.p, statsFlat("membership_total")); v != 4 {
		t.Errorf("/stats %s = %d, want 4 hosts", statsFlat("membership_total"), v)
	}

	// /stats per zone, code and class.
	st, names := statsText(t, e.p, "")
	for flat, want := range map[string]int64{
		statsFlat("upstream_rq_2xx"):                               first,
		statsFlat("upstream_rq_200"):                               first,
		statsFlat("zone.zone-a.zone-a.upstream_rq_2xx"):            zoneA,
		statsFlat("zone.zone-a.zone-a.upstream_rq_200"):            zoneA,
		statsFlat("zone.zone-a.zone-b.upstream_rq_2xx"):            zoneB,
		statsFlat("zone.zone-a.zone-b.upstream_rq_200"):            zoneB,
		statsFlat("upstream_rq_retry"):                             0, // exists, never touched
		statsFlat("grpc.grpc.testing.TestService.UnaryCall.total"): first,
	} {
		if got, ok := statsInt(t, st, flat); !ok || got != want {
			t.Errorf("/stats %s = %d (present %v), want %d", flat, got, ok, want)
		}
	}
	for _, bad := range []string{statsFlat("zone.zone-a.zone-a.upstream_rq_5xx"), statsFlat("zone.zone-b.zone-a.upstream_rq_2xx")} {
		if v, ok := st[bad]; ok {
			t.Errorf("/stats has %s: %s, want no such stat", bad, v)
		}
	}

	// Excluded stats are not in /stats, though stats whose names end the
	// same way but are not excluded are.
	excl := statsExcludeRes(t)
	for _, n := range names {
		if re := statsMatchAny(excl, n); re != nil {
			t.Errorf("/stats shows %s, which stats.exclude %q excludes", n, re)
		}
	}
	for _, want := range []string{statsFlat("zone.zone-a.zone-a.upstream_rq_time"), statsFlat("grpc.grpc.testing.TestService.UnaryCall.upstream_rq_time"), "http.ingress.downstream_rq_total"} {
		if _, ok := st[want]; !ok {
			t.Errorf("/stats has no %s (it is not excluded)", want)
		}
	}

	fams, _ := statsPromScrape(t, e.p, "")
	for _, fam := range []string{"sightline_cluster_upstream_rq_time_seconds", "sightline_http_downstream_rq_time_seconds"} {
		if _, ok := fams[fam]; ok {
			t.Errorf("/stats/prometheus has family %s, whose every stat stats.exclude excludes", fam)
		}
	}
	for _, fam := range []string{"sightline_cluster_zone_upstream_rq_time_seconds", "sightline_cluster_grpc_upstream_rq_time_seconds", "sightline_http_downstream_rq_total"} {
		if _, ok := fams[fam]; !ok {
			t.Errorf("/stats/prometheus has no family %s (it is not excluded)", fam)
		}
	}
	if v, ok := statsPromValue(fams, "sightline_cluster_upstream_rq_retry_total", statsTags()); !ok || v != 0 {
		t.Errorf(`/stats/prometheus sightline_cluster_upstream_rq_retry_total{cluster_name=%q} = %v (present %v), want 0: it exists and was never touched`, statsCluster, v, ok)
	}
	checkStatsClusterLabel(t, fams)

	// A second round, then SIGTERM at once: the final flush must bring
	// every push sink to the total /stats shows.
	e.unaryCalls(t, second)
	total := int64(first + second)
	if err := eventually(statsFlushTimeout, func() error {
		if v := statsLive(t, e.p, statsFlat("upstream_rq_total")); v != total {
			return fmt.Errorf("/stats %s = %d, want %d", statsFlat("upstream_rq_total"), v, total)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	zoneA, zoneB = e.zoneCalls()
	if code, took := e.p.stop(); code != 0 {
		t.Fatalf("sightline exited %d after SIGTERM (in %v), want 0", code, took)
	}
	statsWaitAll(t, "upstream_rq_total after SIGTERM", total, func() map[string]int64 { return e.rqTotals(t, false) })
	statsWaitAll(t, "zone-a→zone-a upstream_rq_2xx after SIGTERM", zoneA, func() map[string]int64 { return e.zoneClass(t, "zone-a", false) })
	statsWaitAll(t, "zone-a→zone-b upstream_rq_2xx after SIGTERM", zoneB, func() map[string]int64 { return e.zoneClass(t, "zone-b", false) })

	// Histograms add up too: every call is one sample of its zone pair's
	// upstream_rq_time, in every push sink.
	statsWaitAll(t, "samples of the zone pairs' upstream_rq_time after SIGTERM", total, func() map[string]int64 {
		return map[string]int64{
			"statsd udp (plain)": e.plain.samples(statsPlainPrefix+"."+statsFlat("zone.zone-a.zone-a.upstream_rq_time"), nil) +
				e.plain.samples(statsPlainPrefix+"."+statsFlat("zone.zone-a.zone-b.upstream_rq_time"), nil),
			"statsd tcp (dogstatsd)": e.dog.samples(statsDogPrefix+".cluster.zone.upstream_rq_time", statsTags()),
			"otlp grpc":              int64(e.otlpGRPC.histCount("cluster.zone.upstream_rq_time", statsTags())),
			"otlp http":              int64(e.otlpHTTP.histCount("cluster.zone.upstream_rq_time", statsTags())),
		}
	})

	checkPushSinksExcluded(t, e, excl)
	checkNoZerosPushed(t, e)
	checkStatsReceivers(t, e)
}

// checkStatsClusterLabel checks that the cluster's upstream_rq_total series has
// exactly one label, cluster_name="api.example.com".
func checkStatsClusterLabel(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	mf := fams["sightline_cluster_upstream_rq_total"]
	if mf == nil {
		t.Errorf("/stats/prometheus has no family sightline_cluster_upstream_rq_total")
		return
	}
	for _, m := range mf.GetMetric() {
		var labels []string
		for _, lp := range m.GetLabel() {
			labels = append(labels, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
		}
		if want := fmt.Sprintf("cluster_name=%q", statsCluster); len(labels) != 1 || labels[0] != want {
			t.Errorf("sightline_cluster_upstream_rq_total series with labels {%s}, want {%s} only", strings.Join(labels, ","), want)
		}
	}
}

func statsExcludeRes(t *testing.T) []*regexp.Regexp {
	t.Helper()
	out := make([]*regexp.Regexp, len(statsExclude))
	for i, x := range statsExclude {
		out[i] = regexp.MustCompile(x)
	}
	return out
}

func statsMatchAny(res []*regexp.Regexp, s string) *regexp.Regexp {
	for _, re := range res {
		if re.MatchString(s) {
			return re
		}
	}
	return nil
}

// checkPushSinksExcluded checks that no push sink was ever sent an
// excluded stat, while the zone pairs' upstream_rq_time (not excluded) got
// through.
func checkPushSinksExcluded(t *testing.T, e *statsEnv, excl []*regexp.Regexp) {
	t.Helper()
	if bad := e.plain.linesMatching(func(l statsdLine) bool {
		flat, ok := strings.CutPrefix(l.name, statsPlainPrefix+".")
		return !ok || statsMatchAny(excl, flat) != nil
	}); len(bad) > 0 {
		t.Errorf("plain statsd was sent excluded (or unprefixed) stats: %q", bad)
	}
	if bad := e.dog.linesMatching(func(l statsdLine) bool {
		return l.name == statsDogPrefix+".cluster.upstream_rq_time" || l.name == statsDogPrefix+".http.downstream_rq_time"
	}); len(bad) > 0 {
		t.Errorf("DogStatsD was sent excluded stats: %q", bad)
	}
	for name, r := range map[string]*otlpReceiver{"otlp grpc": e.otlpGRPC, "otlp http": e.otlpHTTP} {
		for _, m := range []string{"cluster.upstream_rq_time", "http.downstream_rq_time"} {
			if r.seen(m) {
				t.Errorf("%s was sent metric %s, whose every stat stats.exclude excludes", name, m)
			}
		}
		if !r.seen("cluster.zone.upstream_rq_time") {
			t.Errorf("%s was never sent cluster.zone.upstream_rq_time (it is not excluded)", name)
		}
	}
}

// checkNoZerosPushed checks emit_zeros: false: upstream_rq_retry exists
// (it is in /stats as 0) but no push sink was ever sent it, and no statsd
// counter line carries a zero delta.
func checkNoZerosPushed(t *testing.T, e *statsEnv) {
	t.Helper()
	for name, r := range map[string]*statsdReceiver{"plain statsd": e.plain, "DogStatsD": e.dog} {
		if bad := r.linesMatching(func(l statsdLine) bool {
			return strings.HasSuffix(l.name, ".upstream_rq_retry") || strings.HasSuffix(l.name, ".upstream_rq_per_try_timeout") ||
				(l.typ == "c" && l.value == 0)
		}); len(bad) > 0 {
			t.Errorf("%s was sent stats never touched (emit_zeros is false): %q", name, bad)
		}
	}
	for name, r := range map[string]*otlpReceiver{"otlp grpc": e.otlpGRPC, "otlp http": e.otlpHTTP} {
		for _, m := range []string{"cluster.upstream_rq_retry", "cluster.upstream_rq_per_try_timeout"} {
			if r.seen(m) {
				t.Errorf("%s was sent %s, never touched (emit_zeros is false)", name, m)
			}
		}
	}
}

// checkStatsReceivers checks that every line and export the receivers got was
// well formed, and the OTLP resource names this proxy.
func checkStatsReceivers(t *testing.T, e *statsEnv) {
	t.Helper()
	for name, r := range map[string]*statsdReceiver{"plain statsd": e.plain, "DogStatsD": e.dog} {
		lines, bad := r.snapshot()
		if len(bad) > 0 {
			t.Errorf("%s got malformed lines: %q", name, bad)
		}
		if len(lines) == 0 {
			t.Errorf("%s got nothing", name)
		}
		for _, l := range lines {
			if name == "DogStatsD" && len(l.tags) == 0 && strings.HasPrefix(l.name, statsDogPrefix+".cluster.") {
				t.Errorf("DogStatsD line %s has no tags", l.name)
				break
			}
			if name == "plain statsd" && l.tags != nil {
				t.Errorf("plain statsd line %s has tags %v (tags: none)", l.name, l.tags)
				break
			}
		}
	}
	for name, r := range map[string]*otlpReceiver{"otlp grpc": e.otlpGRPC, "otlp http": e.otlpHTTP} {
		exports, res, bad := r.state()
		if len(bad) > 0 {
			t.Errorf("%s: %q", name, bad)
		}
		if exports == 0 {
			t.Errorf("%s got no export", name)
			continue
		}
		for k, want := range map[string]string{"service.name": "sightline", "service.instance.id": "e2e", "cloud.availability_zone": "zone-a"} {
			if res[k] != want {
				t.Errorf("%s: resource attribute %s = %q, want %q (all: %v)", name, k, res[k], want, res)
			}
		}
		if res["service.version"] == "" {
			t.Errorf("%s: no service.version in the resource: %v", name, res)
		}
		p, ok := r.point("cluster.upstream_rq_total", statsTags())
		if ok && (!p.monotonic || !p.cumulative) {
			t.Errorf("%s: cluster.upstream_rq_total is monotonic=%v cumulative=%v, want a cumulative monotonic sum", name, p.monotonic, p.cumulative)
		}
	}
}

// TestStatsFinalFlush runs the proxy with a flush interval far longer than
// the test: no push sink is sent anything while it serves, so what they
// hold after SIGTERM came from the final flush alone, and it must be every
// call.
func TestStatsFinalFlush(t *testing.T) {
	e := startStatsEnv(t, "1h")
	const calls = 100
	e.unaryCalls(t, calls)
	if err := eventually(statsFlushTimeout, func() error {
		if v := statsLive(t, e.p, statsFlat("upstream_rq_total")); v != calls {
			return fmt.Errorf("/stats %s = %d, want %d", statsFlat("upstream_rq_total"), v, calls)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for sink, v := range e.rqTotals(t, false) {
		if v > 0 {
			t.Errorf("%s has upstream_rq_total %d before any flush (flush_interval 1h)", sink, v)
		}
	}
	zoneA, zoneB := e.zoneCalls()
	if code, took := e.p.stop(); code != 0 {
		t.Fatalf("sightline exited %d after SIGTERM (in %v), want 0", code, took)
	}
	statsWaitAll(t, "upstream_rq_total after SIGTERM", calls, func() map[string]int64 { return e.rqTotals(t, false) })
	statsWaitAll(t, "zone-a→zone-a upstream_rq_2xx after SIGTERM", zoneA, func() map[string]int64 { return e.zoneClass(t, "zone-a", false) })
	statsWaitAll(t, "zone-a→zone-b upstream_rq_2xx after SIGTERM", zoneB, func() map[string]int64 { return e.zoneClass(t, "zone-b", false) })
	checkNoZerosPushed(t, e)
	checkStatsReceivers(t, e)
}

// TestStatsGRPCMethods checks the per-method gRPC stats: EmptyCalls that
// succeed, UnaryCalls the backend fails with NOT_FOUND (5) and UnaryCalls
// that succeed, counted under the service's full dotted name in /stats and
// as grpc_service and grpc_method labels, tags and attributes elsewhere.
func TestStatsGRPCMethods(t *testing.T) {
	e := startStatsEnv(t, "200ms")
	const empty, notFound, ok = 40, 25, 15

	errs, failed := runParallel(empty, 4, func(int) error {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		_, err := e.client.EmptyCall(ctx, &testgrpc.Empty{})
		return err
	})
	if failed > 0 {
		t.Fatalf("%d EmptyCalls failed: %v", failed, errs)
	}
	errs, failed = runParallel(notFound, 4, func(int) error {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		_, err := e.client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: 5, Message: "no such thing"}})
		if status.Code(err) != codes.NotFound {
			return fmt.Errorf("UnaryCall with ResponseStatus 5: %v, want NOT_FOUND", err)
		}
		return nil
	})
	if failed > 0 {
		t.Fatalf("%d failing UnaryCalls did not fail as asked: %v", failed, errs)
	}
	e.unaryCalls(t, ok)

	const svc = "grpc.testing.TestService"
	method := func(m, stat string) string { return statsFlat("grpc." + svc + "." + m + "." + stat) }
	want := map[string]int64{
		method("EmptyCall", "total"):   empty,
		method("EmptyCall", "success"): empty,
		method("EmptyCall", "failure"): 0,
		method("EmptyCall", "0"):       empty,
		method("UnaryCall", "total"):   notFound + ok,
		method("UnaryCall", "success"): ok,
		method("UnaryCall", "failure"): notFound,
		method("UnaryCall", "5"):       notFound,
		method("UnaryCall", "0"):       ok,
		// Messages each way, once per call (a NOT_FOUND answer has none).
		method("EmptyCall", "request_message_count"):  empty,
		method("EmptyCall", "response_message_count"): empty,
		method("UnaryCall", "request_message_count"):  notFound + ok,
		method("UnaryCall", "response_message_count"): ok,
		// A gRPC error is an HTTP 200.
		statsFlat("upstream_rq_total"): empty + notFound + ok,
		statsFlat("upstream_rq_200"):   empty + notFound + ok,
	}
	var last map[string]string
	err := eventually(statsFlushTimeout, func() error {
		last, _ = statsText(t, e.p, "?filter="+url.QueryEscape(`^cluster\.`))
		for name, w := range want {
			if got, present := statsInt(t, last, name); !present || got != w {
				return fmt.Errorf("/stats %s = %d (present %v), want %d", name, got, present, w)
			}
		}
		return nil
	})
	if err != nil {
		var lines []string
		for k, v := range last {
			if strings.Contains(k, ".grpc.") {
				lines = append(lines, k+": "+v)
			}
		}
		slices.Sort(lines)
		t.Errorf("%v\n/stats gRPC lines:\n\t%s", err, strings.Join(lines, "\n\t"))
	}
	for _, absent := range []string{method("EmptyCall", "5"), method("UnaryCall", "2"), statsFlat("grpc.other.other.total")} {
		if v, present := last[absent]; present {
			t.Errorf("/stats has %s: %s, want no such stat", absent, v)
		}
	}
	if _, present := last[method("UnaryCall", "upstream_rq_time")]; !present {
		t.Errorf("/stats has no %s", method("UnaryCall", "upstream_rq_time"))
	}

	tags := func(m string, kv ...string) map[string]string {
		return statsTags(append([]string{"grpc_service", svc, "grpc_method", m}, kv...)...)
	}
	type series struct {
		fam  string // Prometheus family
		name string // tagged name: DogStatsD (with prefix) and OTLP
		flat string // plain statsd (with prefix)
		tags map[string]string
		want int64
	}
	for _, s := range []series{
		{"sightline_cluster_grpc_total", "cluster.grpc.total", method("EmptyCall", "total"), tags("EmptyCall"), empty},
		{"sightline_cluster_grpc_success_total", "cluster.grpc.success", method("EmptyCall", "success"), tags("EmptyCall"), empty},
		{"sightline_cluster_grpc_completed_total", "cluster.grpc.completed", method("EmptyCall", "0"), tags("EmptyCall", "grpc_status", "0"), empty},
		{"sightline_cluster_grpc_total", "cluster.grpc.total", method("UnaryCall", "total"), tags("UnaryCall"), notFound + ok},
		{"sightline_cluster_grpc_success_total", "cluster.grpc.success", method("UnaryCall", "success"), tags("UnaryCall"), ok},
		{"sightline_cluster_grpc_failure_total", "cluster.grpc.failure", method("UnaryCall", "failure"), tags("UnaryCall"), notFound},
		{"sightline_cluster_grpc_completed_total", "cluster.grpc.completed", method("UnaryCall", "5"), tags("UnaryCall", "grpc_status", "5"), notFound},
		{"sightline_cluster_grpc_completed_total", "cluster.grpc.completed", method("UnaryCall", "0"), tags("UnaryCall", "grpc_status", "0"), ok},
		{"sightline_cluster_grpc_request_message_count_total", "cluster.grpc.request_message_count", method("UnaryCall", "request_message_count"), tags("UnaryCall"), notFound + ok},
		{"sightline_cluster_grpc_response_message_count_total", "cluster.grpc.response_message_count", method("UnaryCall", "response_message_count"), tags("UnaryCall"), ok},
	} {
		statsWaitAll(t, fmt.Sprintf("%s%v", s.fam, s.tags), s.want, func() map[string]int64 {
			return map[string]int64{
				"/stats/prometheus":      statsPromInt(t, e.p, s.fam, s.tags),
				"statsd udp (plain)":     e.plain.counterSum(statsPlainPrefix+"."+s.flat, nil),
				"statsd tcp (dogstatsd)": e.dog.counterSum(statsDogPrefix+"."+s.name, s.tags),
				"otlp grpc":              e.otlpGRPC.counter(s.name, s.tags),
				"otlp http":              e.otlpHTTP.counter(s.name, s.tags),
			}
		})
	}
	// EmptyCall.failure exists (0 in /stats and Prometheus) but is never
	// pushed.
	if v := statsPromInt(t, e.p, "sightline_cluster_grpc_failure_total", tags("EmptyCall")); v != 0 {
		t.Errorf("/stats/prometheus sightline_cluster_grpc_failure_total%v = %d, want 0", tags("EmptyCall"), v)
	}
	if bad := e.plain.linesMatching(func(l statsdLine) bool { return l.name == statsPlainPrefix+"."+method("EmptyCall", "failure") }); len(bad) > 0 {
		t.Errorf("plain statsd was sent EmptyCall.failure, never touched: %q", bad)
	}
}

// TestStatsAdminEndpoints checks the query parameters of /stats and
// /stats/prometheus, and that promtool finds nothing wrong with the
// exposition.
func TestStatsAdminEndpoints(t *testing.T) {
	e := startStatsEnv(t, "200ms")
	const calls = 50
	e.unaryCalls(t, calls)
	// Wait for a flush, so that Prometheus has every family.
	statsWaitAll(t, "upstream_rq_total", calls, func() map[string]int64 {
		return map[string]int64{
			"/stats":            statsLive(t, e.p, statsFlat("upstream_rq_total")),
			"/stats/prometheus": statsPromInt(t, e.p, "sightline_cluster_upstream_rq_total", statsTags()),
		}
	})

	t.Run("stats", func(t *testing.T) {
		all, names := statsText(t, e.p, "")
		if !slices.IsSorted(names) {
			t.Errorf("/stats is not sorted by name")
		}
		for _, want := range []string{"server.uptime", "server.live", statsFlat("upstream_rq_total"), statsFlat("upstream_rq_retry"), "http.ingress.downstream_rq_total"} {
			if _, ok := all[want]; !ok {
				t.Errorf("/stats has no %s", want)
			}
		}
		if v, ok := statsInt(t, all, "server.live"); !ok || v != 1 {
			t.Errorf("/stats server.live = %d, want 1 while serving", v)
		}
	})

	t.Run("filter", func(t *testing.T) {
		expr := `^cluster\.api\.example\.com\.upstream_rq_`
		re := regexp.MustCompile(expr)
		got, names := statsText(t, e.p, "?filter="+url.QueryEscape(expr))
		if len(names) == 0 {
			t.Fatalf("/stats?filter=%s is empty", expr)
		}
		for _, n := range names {
			if !re.MatchString(n) {
				t.Errorf("/stats?filter=%s shows %s, which it does not match", expr, n)
			}
		}
		all, _ := statsText(t, e.p, "")
		for n := range all {
			if _, shown := got[n]; re.MatchString(n) && !shown {
				t.Errorf("/stats?filter=%s leaves out %s, which it matches", expr, n)
			}
		}
		for name, want := range map[string]int64{statsFlat("upstream_rq_total"): calls, statsFlat("upstream_rq_2xx"): calls, statsFlat("upstream_rq_retry"): 0} {
			if v, ok := statsInt(t, got, name); !ok || v != want {
				t.Errorf("/stats?filter=%s: %s = %d (present %v), want %d", expr, name, v, ok, want)
			}
		}
		if status, body := e.p.adminGet("/stats?filter=" + url.QueryEscape("(")); status != http.StatusBadRequest {
			t.Errorf("/stats?filter=( (not a regex): status %d, want 400: %.200s", status, body)
		}
	})

	t.Run("json", func(t *testing.T) {
		var doc struct {
			Stats []struct {
				Name  string  `json:"name"`
				Type  string  `json:"type"`
				Value *int64  `json:"value"`
				Count *uint64 `json:"count"`
			} `json:"stats"`
		}
		status, body := e.p.adminGet("/stats?format=json")
		if status != http.StatusOK {
			t.Fatalf("/stats?format=json: status %d", status)
		}
		if err := json.Unmarshal([]byte(body), &doc); err != nil {
			t.Fatalf("/stats?format=json is not JSON: %v\n%.500s", err, body)
		}
		text, _ := statsText(t, e.p, "")
		byName := map[string]int{}
		for i, s := range doc.Stats {
			byName[s.Name] = i
			if _, ok := text[s.Name]; !ok {
				t.Errorf("/stats?format=json has %s, /stats does not", s.Name)
			}
		}
		for n := range text {
			if _, ok := byName[n]; !ok {
				t.Errorf("/stats has %s, /stats?format=json does not", n)
			}
		}
		checkJSON := func(name, typ string, want int64) {
			i, ok := byName[name]
			if !ok {
				t.Errorf("/stats?format=json has no %s", name)
				return
			}
			s := doc.Stats[i]
			var got int64 = -1
			switch {
			case s.Value != nil:
				got = *s.Value
			case s.Count != nil:
				got = int64(*s.Count)
			}
			if s.Type != typ || got != want {
				t.Errorf("/stats?format=json %s: type %q value/count %d, want %q %d", name, s.Type, got, typ, want)
			}
		}
		checkJSON(statsFlat("upstream_rq_total"), "counter", calls)
		checkJSON(statsFlat("upstream_rq_active"), "gauge", 0)
		checkJSON(statsFlat("grpc.grpc.testing.TestService.UnaryCall.upstream_rq_time"), "histogram", calls)
	})

	t.Run("usedonly", func(t *testing.T) {
		used, names := statsText(t, e.p, "?usedonly")
		all, _ := statsText(t, e.p, "")
		for _, n := range names {
			if _, ok := all[n]; !ok {
				t.Errorf("/stats?usedonly has %s, /stats does not", n)
			}
		}
		if _, ok := used[statsFlat("upstream_rq_total")]; !ok {
			t.Errorf("/stats?usedonly has no %s", statsFlat("upstream_rq_total"))
		}
		for _, unused := range []string{statsFlat("upstream_rq_retry"), statsFlat("upstream_rq_timeout"), statsFlat("grpc.grpc.testing.TestService.UnaryCall.failure")} {
			if _, ok := all[unused]; !ok {
				t.Errorf("/stats has no %s", unused)
			}
			if v, ok := used[unused]; ok {
				t.Errorf("/stats?usedonly shows %s: %s, never touched", unused, v)
			}
		}
		var doc struct {
			Stats []struct {
				Name  string  `json:"name"`
				Type  string  `json:"type"`
				Value *int64  `json:"value"`
				Count *uint64 `json:"count"`
			} `json:"stats"`
		}
		_, body := e.p.adminGet("/stats?usedonly&format=json")
		if err := json.Unmarshal([]byte(body), &doc); err != nil {
			t.Fatalf("/stats?usedonly&format=json is not JSON: %v", err)
		}
		for _, s := range doc.Stats {
			if (s.Type == "counter" && (s.Value == nil || *s.Value == 0)) || (s.Type == "histogram" && (s.Count == nil || *s.Count == 0)) {
				t.Errorf("/stats?usedonly&format=json shows %s (%s) with nothing counted", s.Name, s.Type)
			}
		}
	})

	t.Run("prometheus filter", func(t *testing.T) {
		for _, tc := range []struct {
			expr      string
			want      []string // families that must be there
			wantEmpty bool
		}{
			{expr: `^sightline_cluster_upstream_rq_total$`, want: []string{"sightline_cluster_upstream_rq_total"}},
			{expr: `^sightline_cluster_(zone_)?upstream_rq_xx_total$`, want: []string{"sightline_cluster_upstream_rq_xx_total", "sightline_cluster_zone_upstream_rq_xx_total"}},
			// A histogram family is kept when one of its printed names matches.
			{expr: `upstream_rq_time_seconds_bucket$`, want: []string{"sightline_cluster_zone_upstream_rq_time_seconds", "sightline_cluster_grpc_upstream_rq_time_seconds"}},
			// Flat names are not Prometheus names.
			{expr: `^cluster\.api\.example\.com\.`, wantEmpty: true},
		} {
			re := regexp.MustCompile(tc.expr)
			fams, body := statsPromScrape(t, e.p, "?filter="+url.QueryEscape(tc.expr))
			if tc.wantEmpty && len(fams) > 0 {
				t.Errorf("/stats/prometheus?filter=%s: %d families, want none:\n%.500s", tc.expr, len(fams), body)
			}
			for name, mf := range fams {
				printed := []string{name}
				if mf.GetType().String() == "HISTOGRAM" {
					printed = append(printed, name+"_bucket", name+"_sum", name+"_count")
				}
				if !slices.ContainsFunc(printed, re.MatchString) {
					t.Errorf("/stats/prometheus?filter=%s shows family %s, which prints no name it matches", tc.expr, name)
				}
			}
			for _, w := range tc.want {
				if _, ok := fams[w]; !ok {
					t.Errorf("/stats/prometheus?filter=%s has no family %s", tc.expr, w)
				}
			}
		}
		if v := statsPromInt(t, e.p, "sightline_cluster_upstream_rq_total", statsTags()); v != calls {
			t.Errorf(`sightline_cluster_upstream_rq_total{cluster_name=%q} = %d, want %d`, statsCluster, v, calls)
		}
	})

	t.Run("promtool", func(t *testing.T) {
		promtool := testtool.Look(t, "promtool")
		resp, err := http.Get("http://" + e.p.admin + "/stats/prometheus")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || !strings.Contains(ct, "version=0.0.4") {
			t.Errorf("/stats/prometheus Content-Type %q, want text/plain; version=0.0.4", ct)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(string(body))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool check metrics: %v\n%s\nexposition:\n%s", err, out, tail(string(body), 3000))
		}
	})
}
