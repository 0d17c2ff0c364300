package ringhash

import (
	"math"
	"strconv"
	"testing"

	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/balancer/internal/balancertest"
	"github.com/sightline-proxy/sightline/proxy/host"
)

func TestConformance(t *testing.T) { balancertest.Conformance(t, New) }

func BenchmarkPick(b *testing.B) { balancertest.BenchmarkPick(b, New) }

func BenchmarkNew(b *testing.B) { balancertest.BenchmarkBuild(b, New) }

// Removing one host of four moves its quarter of the keys plus those that
// the survivors' new points take: Envoy's sizing spreads the minimum ring
// size over the hosts, so each of three hosts has 342 points where each of
// four had 256. TestOnlyRemovedHostsKeysMove shows the ring itself moves
// nothing else.
func TestConsistentHashing(t *testing.T) { balancertest.ConsistentHashing(t, New, 0.35) }

// TestOnlyRemovedHostsKeysMove keeps each host's points the same across the
// change (256 each), which leaves the removed host's keys as the only ones
// to move.
func TestOnlyRemovedHostsKeysMove(t *testing.T) {
	hosts := balancertest.Equal(4)
	keys := balancertest.Keys(10000)
	before := balancertest.Owners(t, newRing(hosts, 1024, defaultMaxRingSize), hosts, keys)
	after := balancertest.Owners(t, newRing(hosts[:3], 768, defaultMaxRingSize), hosts, keys)
	for i := range keys {
		if before[i] != 3 && after[i] != before[i] {
			t.Fatalf("key %d moved from surviving host %d to %d", i, before[i], after[i])
		}
	}
}

// TestRingSize checks Envoy's sizing: the lightest host gets a whole number
// of points at least its share of the minimum size, the ring is capped at
// the maximum size, and fractional shares are carried from host to host.
func TestRingSize(t *testing.T) {
	for _, tc := range []struct {
		name             string
		give             []uint32
		minSize, maxSize int
		want             []int // points per host
	}{
		{name: "equal", give: []uint32{1, 1, 1, 1}, minSize: 1024, maxSize: 8 << 20, want: []int{256, 256, 256, 256}},
		{name: "not a multiple", give: []uint32{1, 1, 1}, minSize: 1024, maxSize: 8 << 20, want: []int{342, 342, 342}},
		{name: "weighted", give: []uint32{1, 1, 1, 3}, minSize: 1024, maxSize: 8 << 20, want: []int{171, 171, 171, 513}},
		{name: "lightest host gets whole points", give: []uint32{1, 1000}, minSize: 1024, maxSize: 8 << 20, want: []int{2, 2000}},
		{name: "larger minimum", give: []uint32{1, 1000}, minSize: 1 << 16, maxSize: 8 << 20, want: []int{66, 66000}},
		{name: "capped weighted", give: []uint32{1, 1000}, minSize: 1 << 16, maxSize: 1 << 16, want: []int{66, 65470}},
		{name: "capped", give: []uint32{1, 1, 1, 1}, minSize: 1024, maxSize: 6, want: []int{2, 1, 2, 1}}, // Envoy's own example
	} {
		t.Run(tc.name, func(t *testing.T) {
			hosts := balancertest.Hosts(tc.give...)
			r := newRing(hosts, tc.minSize, tc.maxSize)
			got := make([]int, len(hosts))
			for _, o := range r.owners {
				got[balancertest.Index(t, hosts, r.hosts[o])]++
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("points per host = %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// TestEnvoyRing checks the ring against the one Envoy's ring_hash_lb_test.cc
// (RingHashLoadBalancerTest.Basic) expects for six hosts and a minimum ring
// size of 12, and the picks it expects from it, so that Envoy and Sightline
// agree on where a hash goes.
func TestEnvoyRing(t *testing.T) {
	hosts := make([]*host.Host, 6)
	for i := range hosts {
		hosts[i] = &host.Host{Address: "127.0.0.1:" + strconv.Itoa(90+i), Weight: 1}
	}
	wantRing := []struct {
		port int
		hash uint64
	}{
		{94, 833437586790550860}, {92, 928266305478181108}, {90, 1033482794131418490},
		{95, 3551244743356806947}, {93, 3851675632748031481}, {91, 5583722120771150861},
		{91, 6311230543546372928}, {93, 7700377290971790572}, {95, 13144177310400110813},
		{92, 13444792449719432967}, {94, 15516499411664133160}, {90, 16117243373044804889},
	}
	r := newRing(hosts, 12, defaultMaxRingSize)
	if len(r.hashes) != len(wantRing) {
		t.Fatalf("ring has %d points, want %d", len(r.hashes), len(wantRing))
	}
	for i, w := range wantRing {
		if got := r.hosts[r.owners[i]]; r.hashes[i] != w.hash || got != hosts[w.port-90] {
			t.Errorf("point %d: %s at %d, want :%d at %d", i, got.Address, r.hashes[i], w.port, w.hash)
		}
	}
	for _, tc := range []struct {
		give uint64
		want int // port
	}{
		{give: 0, want: 94},
		{give: math.MaxUint64, want: 94}, // past the last point: wraps to the first
		{give: 3551244743356806947, want: 95},
		{give: 3551244743356806948, want: 93},
		{give: 16117243373044804880, want: 90},
	} {
		if got := r.Pick(&balancer.Request{Hash: tc.give, HasHash: true}); got != hosts[tc.want-90] {
			t.Errorf("Pick(%d) = %s, want :%d", tc.give, got.Address, tc.want)
		}
	}
}
