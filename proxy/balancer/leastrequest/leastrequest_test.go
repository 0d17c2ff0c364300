package leastrequest

import (
	"testing"

	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/balancer/internal/balancertest"
	"github.com/sightline-proxy/sightline/proxy/host"
)

func TestConformance(t *testing.T) { balancertest.Conformance(t, New) }

func BenchmarkPick(b *testing.B) { balancertest.BenchmarkPick(b, New) }

func BenchmarkNew(b *testing.B) { balancertest.BenchmarkBuild(b, New) }

// simulate makes n picks the way the forwarder would: each pick increments
// the host's Active, and the oldest request completes (decrements it) once
// more than inFlight are outstanding, so every request takes equally long.
// It returns the picks per host, indexed like hosts.
func simulate(t *testing.T, p balancer.Picker, hosts []*host.Host, inFlight, n int) []int {
	t.Helper()
	counts := make([]int, len(hosts))
	var outstanding []*host.Host
	for range n {
		h := p.Pick(nil)
		counts[balancertest.Index(t, hosts, h)]++
		h.Active.Add(1)
		outstanding = append(outstanding, h)
		if len(outstanding) > inFlight {
			outstanding[0].Active.Add(-1)
			outstanding = outstanding[1:]
		}
	}
	for _, h := range outstanding {
		h.Active.Add(-1)
	}
	return counts
}

func TestEqualHostsSpread(t *testing.T) {
	hosts := balancertest.Equal(4)
	counts := simulate(t, New(hosts), hosts, 8, 4000)
	t.Logf("picks of 4000 with 8 in flight: %v", counts)
	balancertest.WithinPercent(t, counts, 1000, 30)
}

func TestBusyHostAvoided(t *testing.T) {
	hosts := balancertest.Equal(4)
	hosts[0].Active.Store(100) // stuck requests that never complete
	counts := simulate(t, New(hosts), hosts, 8, 4000)
	t.Logf("picks of 4000 with host 0 holding 100 requests: %v", counts)
	if counts[0] > 40 {
		t.Errorf("busy host got %d of 4000 picks, want at most 1%%", counts[0])
	}
}

// TestWeights checks that a heavier host takes more requests until its
// in-flight load grows in proportion to its weight. The +1 in
// weight/(active+1) favours heavy hosts a little beyond their weight when
// few requests are in flight, as in Envoy.
func TestWeights(t *testing.T) {
	for _, tc := range []struct {
		give           []uint32
		inFlight       int
		wantLo, wantHi float64 // share of host 0
	}{
		{give: []uint32{3, 1}, inFlight: 40, wantLo: 0.70, wantHi: 0.82},
		{give: []uint32{2, 1, 1}, inFlight: 40, wantLo: 0.42, wantHi: 0.60},
		{give: []uint32{1, 1, 1, 1}, inFlight: 40, wantLo: 0.20, wantHi: 0.30},
	} {
		hosts := balancertest.Hosts(tc.give...)
		counts := simulate(t, New(hosts), hosts, tc.inFlight, 8000)
		share := float64(counts[0]) / 8000
		t.Logf("weights %v, %d in flight: picks %v, host 0 share %.3f", tc.give, tc.inFlight, counts, share)
		if share < tc.wantLo || share > tc.wantHi {
			t.Errorf("weights %v: host 0 has %.1f%% of picks, want %.0f–%.0f%%",
				tc.give, 100*share, 100*tc.wantLo, 100*tc.wantHi)
		}
	}
}

func TestHeavier(t *testing.T) {
	for _, tc := range []struct {
		name             string
		aWeight, bWeight uint32
		aActive, bActive int64
		want             bool
	}{
		{name: "fewer active", aWeight: 1, aActive: 0, bWeight: 1, bActive: 1, want: true},
		{name: "more active", aWeight: 1, aActive: 2, bWeight: 1, bActive: 1, want: false},
		{name: "tie", aWeight: 2, aActive: 1, bWeight: 1, bActive: 0, want: false},
		{name: "weight outweighs load", aWeight: 3, aActive: 1, bWeight: 1, bActive: 0, want: true},
		{name: "load outweighs weight", aWeight: 3, aActive: 3, bWeight: 1, bActive: 0, want: false},
		{name: "no overflow", aWeight: 1<<32 - 1, aActive: 1 << 62, bWeight: 1, bActive: 0, want: false},
		{name: "negative counts as idle", aWeight: 1, aActive: -5, bWeight: 1, bActive: 1, want: true},
	} {
		a := &host.Host{Weight: tc.aWeight}
		a.Active.Store(tc.aActive)
		b := &host.Host{Weight: tc.bWeight}
		b.Active.Store(tc.bActive)
		if got := heavier(a, b); got != tc.want {
			t.Errorf("%s: heavier(%d/(%d+1), %d/(%d+1)) = %v, want %v",
				tc.name, tc.aWeight, tc.aActive, tc.bWeight, tc.bActive, got, tc.want)
		}
	}
}
