package random

import (
	"testing"

	"github.com/sightline-proxy/sightline/proxy/balancer/internal/balancertest"
)

func TestConformance(t *testing.T) { balancertest.Conformance(t, New) }

func BenchmarkPick(b *testing.B) { balancertest.BenchmarkPick(b, New) }

func BenchmarkNew(b *testing.B) { balancertest.BenchmarkBuild(b, New) }

func TestShares(t *testing.T) {
	for _, tc := range []struct {
		name string
		give []uint32
		n    int
	}{
		{name: "equal", give: []uint32{1, 1, 1, 1}, n: 4000},
		{name: "equal, not reduced", give: []uint32{7, 7, 7, 7}, n: 4000},
		{name: "weighted", give: []uint32{5, 3, 1, 1}, n: 10000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hosts := balancertest.Hosts(tc.give...)
			counts := balancertest.Counts(t, New(hosts), hosts, nil, tc.n)
			t.Logf("weights %v, %d picks: %v", tc.give, tc.n, counts)
			var sum uint32
			for _, w := range tc.give {
				sum += w
			}
			for i, c := range counts {
				want := float64(tc.n) * float64(tc.give[i]) / float64(sum)
				balancertest.WithinPercent(t, []int{c}, want, 30)
			}
		})
	}
}

func TestEqualWeightsSkipSearch(t *testing.T) {
	if _, ok := New(balancertest.Hosts(2, 2, 2)).(uniform); !ok {
		t.Errorf("equal weights: want the uniform picker, which draws an index directly")
	}
}
