package stats

import (
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// compactNow is a compact_after that any two flushes in a row outlast.
var compactNow = config.Duration(time.Nanosecond)

// state returns how many families of c are hot, retired and how many
// bytes its cold ones take.
func (c *Cluster) state() (hot, retired, cold int) {
	s := c.sc.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(c.hot), len(c.retired), len(c.cold)
}

// flushes flushes n times.
func flushes(s *Store, n int) {
	for range n {
		s.Flush()
	}
}

// collected returns every cluster stat Collect gives, keyed by flat name.
func collected(s *Store) map[string]string {
	out := map[string]string{}
	s.Collect(func(p *Point) {
		if !strings.HasPrefix(p.Def.Flat(), "cluster.") {
			return
		}
		v := fmt.Sprintf("%d used=%v", p.Value, p.Used)
		if p.Buckets != nil {
			v = fmt.Sprintf("%v sum=%v used=%v", p.Buckets, p.Sum, p.Used)
		}
		out[p.Def.FlatName(p.Values)] = v
	})
	return out
}

// statsPage returns the cluster stats of /stats as text.
func statsPage(s *Store) string {
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/stats?filter=^cluster[.]", nil))
	return w.Body.String()
}

// useCluster touches every compactable family of c.
func useCluster(c *Cluster) {
	up := c.Upstream()
	up.RqTotal.Inc(3)
	up.RqActive.Inc()
	up.RqCompleted(200)
	up.RqCompleted(503)
	up.Retried.RqCompleted(503)
	up.RqTime.RecordDuration(1200 * time.Microsecond)
	up.RqTime.RecordDuration(7 * time.Second)
	cx := c.Connections()
	cx.Opened(true)
	cx.Ended(ConnEnd{Local: true}, time.Now().Add(-time.Minute))
	c.Membership().Total.Set(2)
	c.Membership().Healthy.Set(1)
	c.CircuitBreakers().RqOpen.Set(0)
	zu := c.Zone("zone-b").Upstream()
	zu.RqCompleted(204)
	zu.RqTime.RecordDuration(3 * time.Millisecond)
	m := c.GRPC("/grpc.testing.TestService/UnaryCall")
	m.Completed(0)
	m.Completed(14)
	m.RequestMessages.Inc(2)
	m.RqTime.RecordDuration(2 * time.Millisecond)
	c.GRPC("/not a method").Completed(2)
}

// TestCompaction checks that compacting a cluster's families, and making
// them again, changes nothing any sink shows: /stats, Collect and a push
// sink's totals are the same before, while compacted and after.
func TestCompaction(t *testing.T) {
	s, rec := newStore(t, config.Stats{CompactAfter: &compactNow}, Options{})
	s.retireGrace = 0
	c := s.Cluster("api.example.com")
	useCluster(c)
	s.Flush()
	page, points := statsPage(s), collected(s)
	if hot, _, _ := c.state(); hot != 7 {
		t.Fatalf("%d hot families, want 7 (upstream, connections, membership, breakers, zone pair, method, other)", hot)
	}

	flushes(s, 2)
	if hot, retired, cold := c.state(); hot != 0 || retired != 7 || cold == 0 {
		t.Fatalf("after two quiet flushes: %d hot, %d retired, %d cold bytes; want every family compacted", hot, retired, cold)
	}
	if got := statsPage(s); got != page {
		t.Errorf("/stats changed when compacted:\n%s\nwant\n%s", got, page)
	}
	if got := collected(s); !maps.Equal(got, points) {
		t.Errorf("Collect changed when compacted:\n%v\nwant\n%v", got, points)
	}
	flushes(s, 2)
	if _, retired, _ := c.state(); retired != 0 {
		t.Fatalf("%d families still retired after two more quiet flushes", retired)
	}

	// Used again: made again, from where they were.
	c.Upstream().RqTotal.Inc(1)
	c.Upstream().RqActive.Dec()
	c.GRPC("/grpc.testing.TestService/UnaryCall").Completed(14)
	c.Zone("zone-b").Upstream().RqCompleted(204)
	s.Flush()
	want := map[string]string{
		"cluster.api.example.com.upstream_rq_total":                                             "4 used=true",
		"cluster.api.example.com.upstream_rq_active":                                            "0 used=true",
		"cluster.api.example.com.upstream_rq_503":                                               "1 used=true",
		"cluster.api.example.com.retry.upstream_rq_503":                                         "1 used=true",
		"cluster.api.example.com.grpc.grpc.testing.TestService.UnaryCall.total":                 "3 used=true",
		"cluster.api.example.com.grpc.grpc.testing.TestService.UnaryCall.14":                    "2 used=true",
		"cluster.api.example.com.grpc.grpc.testing.TestService.UnaryCall.1":                     "",
		"cluster.api.example.com.grpc.other.other.failure":                                      "1 used=true",
		"cluster.api.example.com.zone.zone-a.zone-b.upstream_rq_204":                            "2 used=true",
		"cluster.api.example.com.upstream_cx_destroy_local":                                     "1 used=true",
		"cluster.api.example.com.upstream_cx_active":                                            "0 used=true",
		"cluster.api.example.com.membership_healthy":                                            "1 used=true",
		"cluster.api.example.com.circuit_breakers.default.rq_pending_open":                      "0 used=false",
		"cluster.api.example.com.upstream_rq_time":                                              points["cluster.api.example.com.upstream_rq_time"],
		"cluster.api.example.com.grpc.grpc.testing.TestService.UnaryCall.request_message_count": "2 used=true",
	}
	got := collected(s)
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s = %q, want %q", name, got[name], w)
		}
	}
	// The push sink's series were handed back and made again: their
	// deltas add up to the totals.
	for key, want := range map[string]int64{
		"cluster.upstream_rq_total{cluster_name=api.example.com}":                                                                         4,
		"cluster.grpc.completed{cluster_name=api.example.com,grpc_method=UnaryCall,grpc_service=grpc.testing.TestService,grpc_status=14}": 2,
	} {
		r := rec.get(key)
		if r == nil || r.total != want || r.allocated != 2 {
			t.Errorf("%s = %v, want %d in two allocations", key, r, want)
		}
	}
	if r := rec.get("cluster.upstream_rq_active{cluster_name=api.example.com}"); r == nil || r.gauge != 0 {
		t.Errorf("upstream_rq_active in the push sink = %v, want 0", r)
	}
}

// TestCompactionLateCount checks that counts made on a family after it
// was compacted, by a goroutine that loaded it just before, are not lost.
func TestCompactionLateCount(t *testing.T) {
	s, rec := newStore(t, config.Stats{CompactAfter: &compactNow}, Options{})
	c := s.Cluster("primary")
	up := c.Upstream() // held, as a goroutine between loading and counting holds it
	up.RqTotal.Inc(1)
	flushes(s, 3)
	if hot, retired, _ := c.state(); hot != 0 || retired != 1 {
		t.Fatalf("%d hot, %d retired; want the family compacted", hot, retired)
	}
	up.RqTotal.Inc(5)
	up.RqActive.Inc() // the call begins on the old family…
	up.RqCompleted(404)
	up.RqTime.RecordDuration(time.Millisecond)
	c.Upstream().RqActive.Dec() // …and ends on the new one
	s.Flush()
	got := collected(s)
	for name, want := range map[string]string{
		"cluster.primary.upstream_rq_total":  "6 used=true",
		"cluster.primary.upstream_rq_active": "0 used=true",
		"cluster.primary.upstream_rq_404":    "1 used=true",
		"cluster.primary.upstream_rq_4xx":    "1 used=true",
	} {
		if got[name] != want {
			t.Errorf("%s = %q, want %q", name, got[name], want)
		}
	}
	if h := got["cluster.primary.upstream_rq_time"]; !strings.Contains(h, "sum=1ms") {
		t.Errorf("upstream_rq_time = %s, want the late sample", h)
	}
	if r := rec.get("cluster.upstream_rq_total{cluster_name=primary}"); r == nil || r.total != 6 {
		t.Errorf("push sink upstream_rq_total = %v, want 6", r)
	}
}

// TestCompactionGRPCCap checks that a compacted method still counts against
// the per-cluster cap, and gets its own stats back when called again.
func TestCompactionGRPCCap(t *testing.T) {
	s, _ := newStore(t, config.Stats{CompactAfter: &compactNow}, Options{MaxGRPCMethods: 2})
	c := s.Cluster("primary")
	c.GRPC("/a.S/One").Completed(0)
	c.GRPC("/a.S/Two").Completed(0)
	flushes(s, 5)
	if hot, _, _ := c.state(); hot != 0 {
		t.Fatalf("%d families hot, want the methods compacted", hot)
	}
	c.GRPC("/a.S/Three").Completed(0) // past the cap
	c.GRPC("/a.S/One").Completed(0)
	s.Flush()
	got := collected(s)
	for name, want := range map[string]string{
		"cluster.primary.grpc.a.S.One.total":     "2 used=true",
		"cluster.primary.grpc.a.S.Two.total":     "1 used=true",
		"cluster.primary.grpc.other.other.total": "1 used=true",
	} {
		if got[name] != want {
			t.Errorf("%s = %q, want %q", name, got[name], want)
		}
	}
	if got := s.overflow.Value(); got != 1 {
		t.Errorf("stats.overflow = %d, want 1", got)
	}
	if _, ok := got["cluster.primary.grpc.a.S.Three.total"]; ok {
		t.Error("a method past the cap got stats of its own")
	}
}

// TestCompactionOff checks that compact_after: 0s never compacts, and that
// a family in use is never compacted.
func TestCompactionOff(t *testing.T) {
	off := config.Duration(0)
	s, _ := newStore(t, config.Stats{CompactAfter: &off}, Options{})
	c := s.Cluster("primary")
	c.Upstream().RqTotal.Inc(1)
	flushes(s, 5)
	if hot, _, cold := c.state(); hot != 1 || cold != 0 {
		t.Errorf("compact_after 0s: %d hot, %d cold bytes; want nothing compacted", hot, cold)
	}

	s2, _ := newStore(t, config.Stats{CompactAfter: &compactNow}, Options{})
	busy := s2.Cluster("busy")
	for range 5 {
		busy.Upstream().RqTotal.Inc(1)
		s2.Flush()
	}
	if hot, _, cold := busy.state(); hot != 1 || cold != 0 {
		t.Errorf("a family counted at every flush: %d hot, %d cold bytes; want it hot", hot, cold)
	}
}

// TestColdRoundTrip writes families with extreme values into cold bytes
// and reads them back.
func TestColdRoundTrip(t *testing.T) {
	s, _ := newStore(t, config.Stats{CompactAfter: &compactNow}, Options{})
	c := s.Cluster("primary")
	up := c.Upstream()
	up.RqTotal.Inc(1 << 62)
	up.RqActive.Add(-5)
	up.RqCompleted(599)
	up.RqTime.RecordDuration(0)
	up.RqTime.RecordDuration(time.Hour) // +Inf
	for i := range nBuckets {
		up.RqTime.RecordDuration(bounds[min(i, len(bounds)-1)])
	}
	s.Flush()
	before := collected(s)
	flushes(s, 2)
	if hot, _, _ := c.state(); hot != 0 {
		t.Fatal("not compacted")
	}
	if got := collected(s); !maps.Equal(got, before) {
		t.Errorf("read back:\n%v\nwant\n%v", got, before)
	}
	if got := c.Upstream().RqTotal.Value(); got != 1<<62 {
		t.Errorf("made again with upstream_rq_total %d, want %d", got, int64(1<<62))
	}
}

// BenchmarkCompactedMemory reports what a cluster holds in the Store: idle
// (its membership gauges), once it has served a gRPC call, and once every
// family is compacted.
func BenchmarkCompactedMemory(b *testing.B) {
	const clusters = 10_000
	for b.Loop() {
		st, err := New(config.Stats{FlushInterval: config.Duration(time.Hour), CompactAfter: &compactNow}, config.Node{ID: "edge-1", Zone: "zone-a"}, Options{})
		if err != nil {
			b.Fatal(err)
		}
		h := st.HTTP("ingress")
		base := heap()
		cs := make([]*Cluster, clusters)
		zs := make([]*ZonePair, clusters)
		for i := range cs {
			cs[i] = st.Cluster("cluster-" + strconv.Itoa(i))
			cs[i].Membership().Total.Set(2)
			zs[i] = cs[i].Zone("zone-b")
		}
		idle := heap()
		for i, c := range cs {
			request(h, c, zs[i], time.Millisecond)
			c.Connections().Opened(true)
			c.CircuitBreakers()
		}
		used := heap()
		flushes(st, 5)
		compacted := heap()
		b.ReportMetric(float64(idle-base)/clusters, "B/idle-cluster")
		b.ReportMetric(float64(used-idle)/clusters, "B/used-cluster")
		b.ReportMetric(float64(compacted-base)/clusters, "B/compacted-cluster")
		runtime.KeepAlive(cs)
		runtime.KeepAlive(zs)
	}
}

// TestSetMembershipCold: without push sinks a cluster's membership goes
// straight into its cold bytes, never made as objects, and every reader
// sees it at once; with a push sink, or once the family is made, the
// gauges are set as any.
func TestSetMembershipCold(t *testing.T) {
	s, err := New(config.Stats{FlushInterval: config.Duration(time.Hour), Exclude: []string{`^cluster\.c\.membership_healthy$`}}, config.Node{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := s.Cluster("c")
	c.SetMembership(2, 1)
	c.SetMembership(3, 3)
	if hot, _, cold := c.state(); hot != 0 || cold == 0 {
		t.Fatalf("%d hot families, %d cold bytes; want the membership cold", hot, cold)
	}
	got := collected(s)
	if got["cluster.c.membership_total"] != "3 used=true" || len(got) != 1 {
		t.Errorf("Collect: %v, want membership_total 3 and nothing else (healthy is excluded)", got)
	}
	if m := c.Membership(); m.Total.Value() != 3 || m.Healthy != nil {
		t.Errorf("made from the cold bytes: total %d, healthy %v; want 3 and excluded", m.Total.Value(), m.Healthy)
	}
	c.SetMembership(4, 4)
	if got := c.Membership().Total.Value(); got != 4 {
		t.Errorf("once made, membership_total = %d, want 4", got)
	}

	ps, rec := newStore(t, config.Stats{}, Options{})
	pc := ps.Cluster("p")
	pc.SetMembership(2, 2)
	ps.Flush()
	if r := rec.get("cluster.membership_total{cluster_name=p}"); r == nil || r.gauge != 2 {
		t.Errorf("with a push sink: membership_total %v, want 2 reported", r)
	}
}

// TestStatsAnchoredFilter: a filter anchored at the start reads only the
// clusters its names can be of, and shows what the same filter shows
// unanchored ones would.
func TestStatsAnchoredFilter(t *testing.T) {
	s, _ := newStore(t, config.Stats{}, Options{})
	s.Cluster("api").Upstream().RqTotal.Inc(2)
	s.Cluster("api.example.com").Upstream().RqTotal.Inc(3)
	s.Cluster("web").SetMembership(2, 2)
	s.Server().ConfigReload.Inc(1)
	for _, tt := range []struct {
		filter string
		want   []string
		prefix string
	}{
		{`^server\.config_reload$`, []string{"server.config_reload: 1"}, "server.config_reload"},
		{`^cluster\.api\.upstream_rq_total$`, []string{"cluster.api.upstream_rq_total: 2"}, "cluster.api.upstream_rq_total"},
		{`^cluster\.api\.`, nil, "cluster.api."}, // api's and api.example.com's
		{`upstream_rq_total$`, []string{"cluster.api.example.com.upstream_rq_total: 3", "cluster.api.upstream_rq_total: 2"}, ""},
		{`^cluster\.web\.membership_total|^server\.live$`, []string{"cluster.web.membership_total: 2", "server.live: 0"}, ""},
	} {
		re := regexp.MustCompile(tt.filter)
		if got := anchoredPrefix(re); got != tt.prefix {
			t.Errorf("%s: prefix %q, want %q", tt.filter, got, tt.prefix)
		}
		var lines []string
		var entries []entry
		s.sortedSections(re, false, func(es []entry) { entries = append(entries, es...) })
		for _, e := range entries {
			lines = append(lines, fmt.Sprintf("%s: %d", e.name, e.value))
		}
		if tt.want == nil {
			if !slices.Contains(lines, "cluster.api.upstream_rq_total: 2") || !slices.Contains(lines, "cluster.api.example.com.upstream_rq_total: 3") {
				t.Errorf("%s: %v, want both clusters' stats", tt.filter, lines)
			}
			continue
		}
		if !slices.Equal(lines, tt.want) {
			t.Errorf("%s: %v, want %v", tt.filter, lines, tt.want)
		}
	}
}
