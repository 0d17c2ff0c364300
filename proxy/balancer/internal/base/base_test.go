package base

import (
	"slices"
	"testing"

	"github.com/sightline-proxy/sightline/proxy/host"
)

func hosts(weights ...uint32) []*host.Host {
	hs := make([]*host.Host, len(weights))
	for i, w := range weights {
		hs[i] = &host.Host{Weight: w}
	}
	return hs
}

func TestReduced(t *testing.T) {
	for _, tc := range []struct {
		give []uint32
		want []uint64
	}{
		{give: []uint32{1, 1, 1}, want: []uint64{1, 1, 1}},
		{give: []uint32{4, 4}, want: []uint64{1, 1}},
		{give: []uint32{6, 4, 2}, want: []uint64{3, 2, 1}},
		{give: []uint32{5, 1, 1}, want: []uint64{5, 1, 1}},
		{give: []uint32{1 << 31, 1 << 30}, want: []uint64{2, 1}},
	} {
		if got := Reduced(hosts(tc.give...)); !slices.Equal(got, tc.want) {
			t.Errorf("Reduced(%v) = %v, want %v", tc.give, got, tc.want)
		}
	}
}

func TestCumulativeIndex(t *testing.T) {
	line := NewCumulative([]uint64{3, 1, 2})
	if got := line.Total(); got != 6 {
		t.Fatalf("Total() = %d, want 6", got)
	}
	want := []int{0, 0, 0, 1, 2, 2}
	for x, w := range want {
		if got := line.Index(uint64(x)); got != w {
			t.Errorf("Index(%d) = %d, want %d", x, got, w)
		}
	}
}

func TestByAddress(t *testing.T) {
	b, a, c := &host.Host{Address: "b:1"}, &host.Host{Address: "a:1"}, &host.Host{Address: "c:1"}
	give := []*host.Host{b, a, c}
	if got := ByAddress(give); !slices.Equal(got, []*host.Host{a, b, c}) {
		t.Errorf("ByAddress = %v, want a, b, c", got)
	}
	if !slices.Equal(give, []*host.Host{b, a, c}) {
		t.Errorf("ByAddress modified its argument")
	}
}
