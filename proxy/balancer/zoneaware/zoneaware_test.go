package zoneaware

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/balancer/policies"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/stats"
)

// picks is how many picks the statistical checks make: a zone's measured
// share then sits within 1 percentage point of its expected share with
// more than six standard deviations to spare.
const picks = 100_000

// hosts returns healthy hosts of weight 1 from a spec such as "a:2 b:3":
// two in zone a, then three in zone b. ":2" is two hosts with no zone.
// Addresses differ between calls with a different first, so that hosts
// from two calls never share one.
func hosts(t testing.TB, spec string, first int) []*host.Host {
	t.Helper()
	var out []*host.Host
	for _, f := range strings.Fields(spec) {
		zone, n, ok := strings.Cut(f, ":")
		count, err := strconv.Atoi(n)
		if !ok || err != nil {
			t.Fatalf("bad host spec %q", f)
		}
		for range count {
			out = append(out, &host.Host{
				Address: fmt.Sprintf("10.0.%d.%d:8080", first/256, first%256),
				Zone:    zone,
				Weight:  1,
			})
			first++
		}
	}
	return out
}

// unhealthy returns hosts per spec, failed by active health checking.
func unhealthy(t testing.TB, spec string) []*host.Host {
	t.Helper()
	hs := hosts(t, spec, 1000)
	for _, h := range hs {
		h.SetFlag(host.FailedActiveHC, true)
	}
	return hs
}

func roundRobin(t testing.TB) balancer.Builder {
	t.Helper()
	b, ok := policies.Builder("round_robin")
	if !ok {
		t.Fatal("no round_robin policy")
	}
	return b
}

// lbStats returns the load balancer stats of a fresh store, so that each
// case starts from zero.
func lbStats(t testing.TB) *stats.LoadBalancer {
	t.Helper()
	s, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{Zone: "a"}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Cluster("backend").LoadBalancer()
}

// zonePicks makes n picks and returns how many went to each zone, failing
// t if a pick is nil or not one of hosts.
func zonePicks(t testing.TB, p balancer.Picker, healthy []*host.Host, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		h := p.Pick(nil)
		if !slices.Contains(healthy, h) {
			t.Fatalf("Pick returned %v, which is not one of the healthy hosts", h)
		}
		got[h.Zone]++
	}
	return got
}

func near(a, b, tolerance float64) bool { return math.Abs(a-b) <= tolerance }

func TestRouting(t *testing.T) {
	type zs = ZoneShare
	for _, tc := range []struct {
		name   string
		give   string // healthy hosts
		down   string // unhealthy hosts, passed in All only
		noAll  bool   // leave All nil
		shares map[string]float64
		min    int

		wantMode  Mode
		wantLocal float64
		// wantZones are the State's zones; Routed is also checked against
		// the measured share of picks.
		wantZones []ZoneShare
	}{
		{
			name:      "local zone holds 2 of 6 hosts, 3 zones with equal shares",
			give:      "a:2 b:2 c:2",
			wantMode:  AllDirectly,
			wantLocal: 100,
			wantZones: []zs{
				{Zone: "a", Local: 33.33, Upstream: 33.33, Routed: 100},
				{Zone: "b", Local: 33.33, Upstream: 33.33},
				{Zone: "c", Local: 33.33, Upstream: 33.33},
			},
		},
		{
			name:      "local zone holds more than its share",
			give:      "a:3 b:2 c:1",
			wantMode:  AllDirectly,
			wantLocal: 100,
			wantZones: []zs{
				{Zone: "a", Local: 33.33, Upstream: 50, Routed: 100},
				{Zone: "b", Local: 33.33, Upstream: 33.33},
				{Zone: "c", Local: 33.33, Upstream: 16.66},
			},
		},
		{
			// upstream 1666 of local 5000: 3332/10000 stay; the rest goes
			// to b (3333-2500 = 833 spare) and c (5000-2500 = 2500 spare).
			name:      "local zone holds 1 of 6 hosts and originates half the traffic",
			give:      "a:1 b:2 c:3",
			shares:    map[string]float64{"a": 0.5, "b": 0.25, "c": 0.25},
			wantMode:  Sampled,
			wantLocal: 33.32,
			wantZones: []zs{
				{Zone: "a", Local: 50, Upstream: 16.66, Routed: 33.32},
				{Zone: "b", Local: 25, Upstream: 33.33, Residual: 8.33, Routed: 66.68 * 833 / 3333},
				{Zone: "c", Local: 25, Upstream: 50, Residual: 25, Routed: 66.68 * 2500 / 3333},
			},
		},
		{
			// Envoy's documentation: 20% of the originating hosts and 10%
			// of the upstream ones in the local zone keep 50% local.
			name:      "envoy docs: 20% local, 10% upstream",
			give:      "a:1 b:4 c:5",
			shares:    map[string]float64{"a": 2, "b": 4, "c": 4},
			wantMode:  Sampled,
			wantLocal: 50,
			wantZones: []zs{
				{Zone: "a", Local: 20, Upstream: 10, Routed: 50},
				{Zone: "b", Local: 40, Upstream: 40},
				{Zone: "c", Local: 40, Upstream: 50, Residual: 10, Routed: 50},
			},
		},
		{
			// Envoy's comment in regenerateLocalityRoutingStructures:
			// local 40/40/20, upstream 25/50/25, residual 0/10/5.
			name:      "envoy example: residual 0, 10, 5",
			give:      "a:2 b:4 c:2",
			shares:    map[string]float64{"a": 2, "b": 2, "c": 1},
			wantMode:  Sampled,
			wantLocal: 62.5,
			wantZones: []zs{
				{Zone: "a", Local: 40, Upstream: 25, Routed: 62.5},
				{Zone: "b", Local: 40, Upstream: 50, Residual: 10, Routed: 25},
				{Zone: "c", Local: 20, Upstream: 25, Residual: 5, Routed: 12.5},
			},
		},
		{
			// c's upstream hosts are down but its proxies still send
			// traffic, which a and b absorb: a's third is its fair part.
			name:      "a zone with no healthy hosts still originates traffic",
			give:      "a:2 b:4",
			down:      "c:2",
			wantMode:  AllDirectly,
			wantLocal: 100,
			wantZones: []zs{
				{Zone: "a", Local: 33.33, Upstream: 33.33, Routed: 100},
				{Zone: "b", Local: 33.33, Upstream: 66.66},
				{Zone: "c", Local: 33.33},
			},
		},
		{
			name:      "without All only zones with healthy hosts originate traffic",
			give:      "a:2 b:4",
			noAll:     true,
			wantMode:  Sampled,
			wantLocal: 66.66,
			wantZones: []zs{
				{Zone: "a", Local: 50, Upstream: 33.33, Routed: 66.66},
				{Zone: "b", Local: 50, Upstream: 66.66, Residual: 16.66, Routed: 33.34},
			},
		},
		{
			// No proxy stands in an unknown zone, so the zoneless hosts'
			// whole share is spare capacity.
			name:      "hosts with no zone are upstream capacity but no origin",
			give:      "a:2 b:2 :2",
			wantMode:  Sampled,
			wantLocal: 66.66,
			wantZones: []zs{
				{Zone: "a", Local: 50, Upstream: 33.33, Routed: 66.66},
				{Zone: "", Upstream: 33.33, Residual: 33.33, Routed: 33.34},
				{Zone: "b", Local: 50, Upstream: 33.33},
			},
		},
		{
			name:      "an origin zone without upstream hosts",
			give:      "a:2 b:4",
			shares:    map[string]float64{"a": 2, "b": 1, "d": 1},
			wantMode:  Sampled,
			wantLocal: 66.66,
			wantZones: []zs{
				{Zone: "a", Local: 50, Upstream: 33.33, Routed: 66.66},
				{Zone: "b", Local: 25, Upstream: 66.66, Residual: 41.66, Routed: 33.34},
			},
		},
		{
			name:      "shares that are not positive numbers count as none",
			give:      "a:1 b:2 c:3",
			shares:    map[string]float64{"a": 1, "b": 1, "c": 1, "d": -5, "e": math.NaN(), "f": math.Inf(1)},
			wantMode:  Sampled,
			wantLocal: 49.98,
			wantZones: []zs{
				{Zone: "a", Local: 33.33, Upstream: 16.66, Routed: 49.98},
				{Zone: "b", Local: 33.33, Upstream: 33.33},
				{Zone: "c", Local: 33.33, Upstream: 50, Residual: 16.67, Routed: 50.02},
			},
		},
		{
			name:      "min_cluster_size lowered",
			give:      "a:1 b:1 c:2",
			min:       4,
			wantMode:  Sampled,
			wantLocal: 75,
			wantZones: []zs{
				{Zone: "a", Local: 33.33, Upstream: 25, Routed: 75},
				{Zone: "b", Local: 33.33, Upstream: 25},
				{Zone: "c", Local: 33.33, Upstream: 50, Residual: 16.67, Routed: 25},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			healthy := hosts(t, tc.give, 1)
			o := Options{LocalZone: "a", MinClusterSize: tc.min, LocalShares: tc.shares, Stats: lbStats(t)}
			if !tc.noAll {
				o.All = append(slices.Clone(healthy), unhealthy(t, tc.down)...)
			}
			p, st := New(roundRobin(t), healthy, o)
			t.Logf("state: %s %+v", st, st.Zones)
			if !st.Active || st.Reason != "" || st.Mode != tc.wantMode || !near(st.LocalPercent, tc.wantLocal, 1e-9) {
				t.Fatalf("state %+v, want active %s with %v%% local", st, tc.wantMode, tc.wantLocal)
			}
			if len(st.Zones) != len(tc.wantZones) {
				t.Fatalf("state zones %+v, want %+v", st.Zones, tc.wantZones)
			}
			for i, got := range st.Zones {
				want := tc.wantZones[i]
				if got.Zone != want.Zone || !near(got.Local, want.Local, 1e-9) || !near(got.Upstream, want.Upstream, 1e-9) ||
					!near(got.Residual, want.Residual, 1e-9) || !near(got.Routed, want.Routed, 0.01) {
					t.Errorf("zone %d: %+v, want %+v", i, got, want)
				}
			}
			var sumRouted float64
			for _, z := range st.Zones {
				sumRouted += z.Routed
			}
			if !near(sumRouted, 100, 1e-6) {
				t.Errorf("routed shares sum to %v%%, want 100%%", sumRouted)
			}

			got := zonePicks(t, p, healthy, picks)
			t.Logf("picks by zone: %v", got)
			for _, z := range st.Zones {
				if share := 100 * float64(got[z.Zone]) / picks; !near(share, z.Routed, 1) {
					t.Errorf("zone %q got %.2f%% of picks, want %.2f%% ± 1", z.Zone, share, z.Routed)
				}
			}

			s := o.Stats
			local := int64(got["a"])
			switch tc.wantMode {
			case AllDirectly:
				if n := s.ZoneRoutingAllDirectly.Value(); n != picks || local != picks {
					t.Errorf("lb_zone_routing_all_directly %d, local picks %d; want both %d", n, local, picks)
				}
			case Sampled:
				if n := s.ZoneRoutingSampled.Value(); n != local {
					t.Errorf("lb_zone_routing_sampled %d, want the %d local picks", n, local)
				}
				if n := s.ZoneRoutingCrossZone.Value(); n != picks-local {
					t.Errorf("lb_zone_routing_cross_zone %d, want the %d other picks", n, picks-local)
				}
			}
			if tc.wantMode != AllDirectly && s.ZoneRoutingAllDirectly.Value() != 0 {
				t.Errorf("lb_zone_routing_all_directly counted %d in %s mode", s.ZoneRoutingAllDirectly.Value(), tc.wantMode)
			}
			if tc.wantMode != Sampled && s.ZoneRoutingSampled.Value()+s.ZoneRoutingCrossZone.Value() != 0 {
				t.Errorf("sampled or cross-zone routing counted in %s mode", tc.wantMode)
			}
			if n := s.ZoneNoCapacityLeft.Value() + s.ZoneClusterTooSmall.Value() + s.LocalClusterNotOK.Value(); n != 0 {
				t.Errorf("lb_zone_no_capacity_left + lb_zone_cluster_too_small + lb_local_cluster_not_ok = %d, want 0", n)
			}
		})
	}
}

// TestNoCapacityLeft builds Envoy's rounding corner: the local zone is a
// unit short of its share, and no other zone has a unit to spare. The few
// cross-zone picks then go to a zone drawn at random.
func TestNoCapacityLeft(t *testing.T) {
	healthy := hosts(t, "a:1 b:2", 1)
	o := Options{LocalZone: "a", MinClusterSize: 3, LocalShares: map[string]float64{"a": 0.3334, "b": 0.6666}, Stats: lbStats(t)}
	p, st := New(roundRobin(t), healthy, o)
	t.Logf("state: %s %+v", st, st.Zones)
	if st.Mode != Sampled || st.LocalPercent != 99.97 {
		t.Fatalf("state %+v, want sampled with 99.97%% local", st)
	}
	for _, z := range st.Zones {
		if z.Residual != 0 {
			t.Fatalf("zone %q has residual %v%%, want none anywhere", z.Zone, z.Residual)
		}
	}
	const n = 10 * picks // about 300 cross-zone picks
	got := zonePicks(t, p, healthy, n)
	s := o.Stats
	cross, none := s.ZoneRoutingCrossZone.Value(), s.ZoneNoCapacityLeft.Value()
	t.Logf("picks by zone %v; cross zone %d, no capacity left %d", got, cross, none)
	if cross == 0 || none != cross {
		t.Errorf("lb_zone_no_capacity_left %d, lb_zone_routing_cross_zone %d: want equal and not 0", none, cross)
	}
	if s.ZoneRoutingSampled.Value()+cross != n {
		t.Errorf("sampled %d + cross zone %d, want %d picks", s.ZoneRoutingSampled.Value(), cross, n)
	}
	// Half the cross-zone picks land back in the local zone.
	if b := int64(got["b"]); b == 0 || b == cross || !near(float64(b), float64(cross)/2, 4*math.Sqrt(float64(cross))) {
		t.Errorf("zone b got %d of %d cross-zone picks, want about half", b, cross)
	}
}

func TestFallback(t *testing.T) {
	for _, tc := range []struct {
		name         string
		give         string // healthy hosts
		down         string // unhealthy hosts, in All
		zone         string // local zone; "a" when empty
		noZone       bool
		shares       map[string]float64
		min          int
		localPanic   bool
		wantReason   string
		wantTooSmall int64
		// notOK: the reason is the local zone's, which Envoy counts in
		// lb_local_cluster_not_ok (here once per pick).
		notOK bool
	}{
		// The local cluster in panic turns zone routing off, each pick
		// counted in lb_local_cluster_not_ok, as Envoy counts it; but
		// only once nothing else stands in the way, as Envoy checks it
		// after the rest.
		{name: "local cluster in panic", give: "a:3 b:3", localPanic: true, wantReason: "local cluster in panic", notOK: true},
		{name: "local cluster in panic and cluster too small", give: "a:2 b:2", localPanic: true, wantReason: "cluster too small (4 < 6)", wantTooSmall: 1},
		{name: "local cluster in panic and one zone", give: "a:6", localPanic: true, wantReason: "all hosts in one zone"},
		{name: "no local zone", give: "a:2 b:2 c:2", noZone: true, wantReason: "no local zone"},
		{name: "no hosts", give: "", wantReason: "no hosts"},
		{name: "one zone", give: "a:6", wantReason: "all hosts in one zone"},
		{name: "one zone, unknown", give: ":6", zone: "a", wantReason: "all hosts in one zone"},
		{name: "local zone has no hosts", give: "b:3 c:3", wantReason: "local zone has no hosts", notOK: true},
		{name: "local zone has no healthy hosts", give: "b:3 c:3", down: "a:2", wantReason: "local zone has no healthy hosts", notOK: true},
		{name: "no share for the local zone", give: "a:2 b:2 c:2", shares: map[string]float64{"b": 1, "c": 1}, wantReason: "no traffic originates in the local zone", notOK: true},
		{name: "zero share for the local zone", give: "a:2 b:2 c:2", shares: map[string]float64{"a": 0, "b": 1}, wantReason: "no traffic originates in the local zone", notOK: true},
		{name: "NaN share for the local zone", give: "a:2 b:2 c:2", shares: map[string]float64{"a": math.NaN(), "b": 1}, wantReason: "no traffic originates in the local zone", notOK: true},
		{name: "empty shares", give: "a:2 b:2 c:2", shares: map[string]float64{}, wantReason: "no traffic originates in the local zone", notOK: true},
		{name: "traffic from the local zone only", give: "a:2 b:2 c:2", shares: map[string]float64{"a": 1, "b": 0}, wantReason: "traffic originates in one zone only"},
		{name: "no other zone originates by default", give: "a:3 :3", wantReason: "traffic originates in one zone only"},
		{name: "cluster too small", give: "a:2 b:2", wantReason: "cluster too small (4 < 6)", wantTooSmall: 1},
		{name: "unhealthy hosts do not count toward the size", give: "a:2 b:2", down: "b:4", wantReason: "cluster too small (4 < 6)", wantTooSmall: 1},
		{name: "cluster smaller than configured", give: "a:3 b:3 c:3", min: 10, wantReason: "cluster too small (9 < 10)", wantTooSmall: 1},
		// Envoy checks the size last: other reasons are not counted as
		// too small.
		{name: "small and one zone", give: "a:2", wantReason: "all hosts in one zone"},
		{name: "small and no local hosts", give: "b:2 c:2", wantReason: "local zone has no hosts", notOK: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			healthy := hosts(t, tc.give, 1)
			o := Options{
				LocalZone:      cmpOr(tc.zone, "a"),
				MinClusterSize: tc.min,
				LocalShares:    tc.shares,
				LocalPanic:     tc.localPanic,
				All:            append(slices.Clone(healthy), unhealthy(t, tc.down)...),
				Stats:          lbStats(t),
			}
			if tc.noZone {
				o.LocalZone = ""
			}
			p, st := New(roundRobin(t), healthy, o)
			want := State{Reason: tc.wantReason}
			if !st.Equal(want) {
				t.Fatalf("state %+v, want %+v", st, want)
			}
			if got := st.String(); got != "off: "+tc.wantReason {
				t.Errorf("String() = %q, want %q", got, "off: "+tc.wantReason)
			}

			// The fallback is the policy over every healthy host: round
			// robin gives each exactly its turn.
			picks := int64(1)
			if len(healthy) == 0 {
				if h := p.Pick(nil); h != nil {
					t.Errorf("Pick over no hosts = %v, want nil", h)
				}
			} else {
				picks = int64(100 * len(healthy))
				counts := map[*host.Host]int{}
				for range 100 * len(healthy) {
					counts[p.Pick(nil)]++
				}
				for _, h := range healthy {
					if counts[h] != 100 {
						t.Errorf("host %s (zone %q): %d picks of %d, want 100", h.Address, h.Zone, counts[h], 100*len(healthy))
					}
				}
			}

			s := o.Stats
			if n := s.ZoneClusterTooSmall.Value(); n != tc.wantTooSmall {
				t.Errorf("lb_zone_cluster_too_small = %d, want %d", n, tc.wantTooSmall)
			}
			wantNotOK := int64(0)
			if tc.notOK {
				wantNotOK = picks
			}
			if n := s.LocalClusterNotOK.Value(); n != wantNotOK {
				t.Errorf("lb_local_cluster_not_ok = %d after %d picks, want %d", n, picks, wantNotOK)
			}
			if n := s.ZoneRoutingAllDirectly.Value() + s.ZoneRoutingSampled.Value() +
				s.ZoneRoutingCrossZone.Value() + s.ZoneNoCapacityLeft.Value(); n != 0 {
				t.Errorf("per-pick zone routing stats counted %d, want 0 when routing is off", n)
			}
		})
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// TestTooSmallCountedPerBuild checks that lb_zone_cluster_too_small counts
// recomputations, as Envoy's does, not picks.
func TestTooSmallCountedPerBuild(t *testing.T) {
	healthy := hosts(t, "a:2 b:2", 1)
	o := Options{LocalZone: "a", Stats: lbStats(t)}
	for range 3 {
		p, _ := New(roundRobin(t), healthy, o)
		zonePicks(t, p, healthy, 100)
	}
	if n := o.Stats.ZoneClusterTooSmall.Value(); n != 3 {
		t.Errorf("lb_zone_cluster_too_small = %d after 3 builds, want 3", n)
	}
}

// TestWeightsWithinZone checks that the wrapped policy sees the zone's
// hosts with their weights, and that weights do not move zone shares.
func TestWeightsWithinZone(t *testing.T) {
	healthy := hosts(t, "a:2 b:2 c:2", 1)
	healthy[0].Weight, healthy[1].Weight = 3, 1
	healthy[2].Weight = 50 // zone b: weights count hosts, not capacity
	p, st := New(roundRobin(t), healthy, Options{LocalZone: "a"})
	if st.Mode != AllDirectly {
		t.Fatalf("state %+v, want all directly: zone shares count hosts", st)
	}
	counts := map[*host.Host]int{}
	for range 4000 {
		counts[p.Pick(nil)]++
	}
	if counts[healthy[0]] != 3000 || counts[healthy[1]] != 1000 || len(counts) != 2 {
		t.Errorf("picks %d and %d on the local hosts of weights 3 and 1, %d hosts picked; want exactly 3000, 1000 and 2",
			counts[healthy[0]], counts[healthy[1]], len(counts))
	}
}

// TestRequestPassedThrough checks that a hashing policy inside a zone gets
// the request's hash.
func TestRequestPassedThrough(t *testing.T) {
	b, ok := policies.Builder("ring_hash")
	if !ok {
		t.Fatal("no ring_hash policy")
	}
	healthy := hosts(t, "a:4 b:4 c:4", 1)
	p, st := New(b, healthy, Options{LocalZone: "a"})
	if st.Mode != AllDirectly {
		t.Fatalf("state %+v, want all directly", st)
	}
	seen := map[*host.Host]bool{}
	for k := range uint64(50) {
		r := &balancer.Request{Hash: k * 0x9e3779b97f4a7c15, HasHash: true}
		first := p.Pick(r)
		for range 10 {
			if h := p.Pick(r); h != first {
				t.Fatalf("hash %#x: picked %s then %s, want the same host", r.Hash, first.Address, h.Address)
			}
		}
		seen[first] = true
	}
	if len(seen) < 2 {
		t.Errorf("50 hashes all went to one host, want them spread over the local zone")
	}
}

func TestNilStats(t *testing.T) {
	for _, give := range []string{"a:2 b:2 c:2", "a:1 b:2 c:3", "a:1 b:1"} {
		healthy := hosts(t, give, 1)
		p, _ := New(roundRobin(t), healthy, Options{LocalZone: "a", LocalShares: map[string]float64{"a": 1, "b": 1, "c": 1}})
		zonePicks(t, p, healthy, 1000)
	}
}

func TestNoAllocations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		give   string
		shares map[string]float64
		min    int
		want   string
	}{
		{name: "all directly", give: "a:2 b:2 c:2", want: "all_directly"},
		{name: "sampled", give: "a:1 b:2 c:3", shares: map[string]float64{"a": 2, "b": 1, "c": 1}, want: "sampled (33.32% local)"},
		{name: "no capacity left", give: "a:1 b:2", shares: map[string]float64{"a": 0.3334, "b": 0.6666}, min: 3, want: "sampled (99.97% local)"},
		{name: "off", give: "a:1 b:1", want: "off: cluster too small (2 < 6)"},
		{name: "off, local cluster not ok", give: "b:3 c:3", want: "off: local zone has no hosts"},
	} {
		healthy := hosts(t, tc.give, 1)
		p, st := New(roundRobin(t), healthy, Options{LocalZone: "a", LocalShares: tc.shares, MinClusterSize: tc.min, Stats: lbStats(t)})
		if st.String() != tc.want {
			t.Fatalf("%s: state %s, want %s", tc.name, st, tc.want)
		}
		if n := testing.AllocsPerRun(10000, func() { p.Pick(nil) }); n != 0 {
			t.Errorf("%s: %v allocations per Pick, want 0", tc.name, n)
		}
	}
}

// TestConcurrentPicks is meaningful under -race: one picker, many
// goroutines, and every pick counted once.
func TestConcurrentPicks(t *testing.T) {
	healthy := hosts(t, "a:1 b:2 c:3", 1)
	o := Options{LocalZone: "a", LocalShares: map[string]float64{"a": 2, "b": 1, "c": 1}, Stats: lbStats(t)}
	p, _ := New(roundRobin(t), healthy, o)
	const goroutines, each = 8, 5000
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				if h := p.Pick(&balancer.Request{}); !slices.Contains(healthy, h) {
					t.Errorf("Pick returned %v, which is not one of the healthy hosts", h)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := o.Stats.ZoneRoutingSampled.Value() + o.Stats.ZoneRoutingCrossZone.Value(); n != goroutines*each {
		t.Errorf("sampled + cross zone = %d, want %d picks", n, goroutines*each)
	}
}

func TestStateEqual(t *testing.T) {
	sampled := func() State {
		return State{Active: true, Mode: Sampled, LocalPercent: 50, Zones: []ZoneShare{
			{Zone: "a", Local: 20, Upstream: 10, Routed: 50},
			{Zone: "c", Local: 40, Upstream: 50, Residual: 10, Routed: 50},
		}}
	}
	for _, tc := range []struct {
		name   string
		change func(*State)
		want   bool
	}{
		{name: "same", change: func(*State) {}, want: true},
		{name: "inactive", change: func(s *State) { *s = State{Reason: "no local zone"} }},
		{name: "mode", change: func(s *State) { s.Mode = AllDirectly }},
		{name: "local percent", change: func(s *State) { s.LocalPercent = 50.01 }},
		{name: "zone share", change: func(s *State) { s.Zones[1].Residual = 9.99 }},
		{name: "zone name", change: func(s *State) { s.Zones[1].Zone = "b" }},
		{name: "zone dropped", change: func(s *State) { s.Zones = s.Zones[:1] }},
	} {
		s := sampled()
		tc.change(&s)
		if got := sampled().Equal(s); got != tc.want {
			t.Errorf("%s: Equal = %v, want %v", tc.name, got, tc.want)
		}
	}
	if !(State{Reason: "no hosts"}).Equal(State{Reason: "no hosts"}) || (State{Reason: "no hosts"}).Equal(State{Reason: "no local zone"}) {
		t.Errorf("inactive states compare by reason")
	}
}

func BenchmarkPick(b *testing.B) {
	for _, bc := range []struct {
		name   string
		shares map[string]float64
	}{
		{name: "all_directly"},
		{name: "sampled", shares: map[string]float64{"a": 2, "b": 1, "c": 1}},
		{name: "off", shares: map[string]float64{"b": 1, "c": 1}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			healthy := hosts(b, "a:4 b:4 c:4", 1)
			p, st := New(roundRobin(b), healthy, Options{LocalZone: "a", LocalShares: bc.shares, Stats: lbStats(b)})
			if got := cmpOr(string(st.Mode), "off"); got != bc.name {
				b.Fatalf("state %s, want %s", st, bc.name)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var r balancer.Request
				for pb.Next() {
					if p.Pick(&r) == nil {
						b.Error("Pick returned nil")
						return
					}
				}
			})
		})
	}
}

// BenchmarkNew measures a rebuild, what a membership or health change pays
// on the control plane.
func BenchmarkNew(b *testing.B) {
	healthy := hosts(b, "a:40 b:30 c:30", 1)
	rr := roundRobin(b)
	o := Options{LocalZone: "a", Stats: lbStats(b)}
	b.ReportAllocs()
	for b.Loop() {
		New(rr, healthy, o)
	}
}
