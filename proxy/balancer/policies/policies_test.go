package policies

import (
	"slices"
	"testing"

	"github.com/sightline-proxy/sightline/proxy/balancer/internal/balancertest"
)

func TestBuilder(t *testing.T) {
	for _, tc := range []struct {
		give string
		want bool
	}{
		{give: "round_robin", want: true},
		{give: "least_request", want: true},
		{give: "random", want: true},
		{give: "ring_hash", want: true},
		{give: "maglev", want: true},
		{give: "ROUND_ROBIN", want: false},
		{give: "", want: false},
		{give: "weighted_round_robin", want: false},
	} {
		build, ok := Builder(tc.give)
		if ok != tc.want || (build != nil) != tc.want {
			t.Errorf("Builder(%q) = (%v, %v), want ok %v", tc.give, build != nil, ok, tc.want)
			continue
		}
		if !ok {
			continue
		}
		hosts := balancertest.Equal(3)
		if h := build(hosts).Pick(nil); !slices.Contains(hosts, h) {
			t.Errorf("Builder(%q): Pick = %v, want one of the hosts", tc.give, h)
		}
	}
}

func TestNames(t *testing.T) {
	names := Names()
	want := []string{"round_robin", "least_request", "random", "ring_hash", "maglev"}
	if !slices.Equal(names, want) {
		t.Fatalf("Names() = %v, want %v", names, want)
	}
	for _, n := range names {
		if _, ok := Builder(n); !ok {
			t.Errorf("Names() lists %q, which Builder does not know", n)
		}
	}
	names[0] = "changed"
	if Names()[0] != "round_robin" {
		t.Errorf("changing the slice Names returned changed the registry")
	}
}
