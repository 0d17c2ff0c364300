package maglev

import (
	"slices"
	"strconv"
	"testing"

	"github.com/sightline-proxy/sightline/proxy/balancer/internal/balancertest"
	"github.com/sightline-proxy/sightline/proxy/host"
)

func TestConformance(t *testing.T) { balancertest.Conformance(t, New) }

func BenchmarkPick(b *testing.B) { balancertest.BenchmarkPick(b, New) }

func BenchmarkNew(b *testing.B) { balancertest.BenchmarkBuild(b, New) }

// Maglev trades some disruption for an even table: removing one host of
// four moves its quarter of the keys and a few percent more.
func TestConsistentHashing(t *testing.T) { balancertest.ConsistentHashing(t, New, 0.35) }

// TestSlotsPerHost checks the table's balance: equal hosts get equal slots
// to within one, and weighted hosts get slots in proportion to weight.
func TestSlotsPerHost(t *testing.T) {
	for _, tc := range []struct {
		name string
		give []uint32
		want []int // slots per host, ±1% of the table
	}{
		{name: "equal", give: []uint32{1, 1, 1, 1}, want: []int{16384, 16384, 16384, 16385}},
		{name: "weighted", give: []uint32{1, 1, 1, 3}, want: []int{10923, 10923, 10923, 32768}},
		{name: "light host", give: []uint32{100, 1}, want: []int{64888, 649}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hosts := balancertest.Hosts(tc.give...)
			p := New(hosts).(*picker)
			got := make([]int, len(hosts))
			for _, slot := range p.table {
				got[balancertest.Index(t, hosts, p.hosts[slot])]++
			}
			t.Logf("slots per host: %v", got)
			for i := range got {
				if d := got[i] - tc.want[i]; d < -tableSize/100 || d > tableSize/100 {
					t.Errorf("slots per host = %v, want %v ± %d", got, tc.want, tableSize/100)
				}
			}
		})
	}
}

// TestEnvoyTables checks tables against the ones Envoy's maglev_lb_test.cc
// expects for small table sizes, so that Envoy and Sightline agree on where
// a hash goes.
func TestEnvoyTables(t *testing.T) {
	ports := func(weights ...uint32) []*host.Host {
		hosts := make([]*host.Host, len(weights))
		for i, w := range weights {
			hosts[i] = &host.Host{Address: "127.0.0.1:" + strconv.Itoa(90+i), Weight: w}
		}
		return hosts
	}
	for _, tc := range []struct {
		name string
		give []*host.Host
		size uint64
		want []uint32 // slot → index of the host, :90 first
	}{
		{name: "Basic", give: ports(1, 1, 1, 1, 1, 1), size: 7, want: []uint32{2, 4, 0, 1, 5, 0, 3}},
		{name: "Weighted", give: ports(1, 2), size: 17, want: []uint32{1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1}},
	} {
		if got := fill(tc.give, tc.size); !slices.Equal(got, tc.want) {
			t.Errorf("%s: table %v, want Envoy's %v", tc.name, got, tc.want)
		}
	}
}
