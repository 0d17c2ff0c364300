package roundrobin

import (
	"strings"
	"sync"
	"testing"

	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/balancer/internal/balancertest"
	"github.com/sightline-proxy/sightline/proxy/balancer/internal/base"
	"github.com/sightline-proxy/sightline/proxy/host"
)

func TestConformance(t *testing.T) { balancertest.Conformance(t, New) }

func BenchmarkPick(b *testing.B) { balancertest.BenchmarkPick(b, New) }

func BenchmarkNew(b *testing.B) { balancertest.BenchmarkBuild(b, New) }

func TestEqualHostsSplitExactly(t *testing.T) {
	hosts := balancertest.Equal(4)
	counts := balancertest.Counts(t, New(hosts), hosts, nil, 4000)
	for i, c := range counts {
		if c != 1000 {
			t.Errorf("host %d: %d picks of 4000, want exactly 1000 (all: %v)", i, c, counts)
		}
	}
}

// TestSmoothOrder checks nginx's order. The picker starts at a random point
// of its cycle, so one cycle must be a rotation of the sequence.
func TestSmoothOrder(t *testing.T) {
	for _, tc := range []struct {
		give []uint32
		want string // one cycle, host i written as 'a'+i
	}{
		{give: []uint32{5, 1, 1}, want: "aabacaa"},
		{give: []uint32{2, 1}, want: "aba"},
		{give: []uint32{4, 2}, want: "aba"}, // reduced by the GCD
		{give: []uint32{1, 1, 1}, want: "abc"},
		{give: []uint32{3, 2, 1}, want: "abacba"},
	} {
		hosts := balancertest.Hosts(tc.give...)
		p := New(hosts)
		var got strings.Builder
		for range 2 * len(tc.want) {
			got.WriteByte('a' + byte(balancertest.Index(t, hosts, p.Pick(nil))))
		}
		if cycle := got.String(); !strings.Contains(tc.want+tc.want, cycle[:len(tc.want)]) ||
			cycle[:len(tc.want)] != cycle[len(tc.want):] {
			t.Errorf("weights %v: picks %s, want repetitions of a rotation of %s", tc.give, cycle, tc.want)
		}
	}
}

// TestWeights checks that every full cycle gives each host exactly its
// weight, on both the stored-sequence path and the stride path.
func TestWeights(t *testing.T) {
	for _, tc := range []struct {
		name       string
		give       []*host.Host
		wantStride bool
	}{
		{name: "small weights", give: balancertest.Hosts(3, 2, 1)},
		{name: "weights reduced by GCD", give: balancertest.Hosts(3000, 2000, 1000, 1000)},
		{name: "sequence too long", give: balancertest.Hosts(100003, 50001, 1), wantStride: true},
		{name: "too many hosts to build", give: balancertest.Equal(3000), wantStride: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(tc.give)
			if _, stride := p.(*stridePicker); stride != tc.wantStride {
				t.Fatalf("picker is %T, want stride path %v", p, tc.wantStride)
			}
			w, cycle := cycleWeights(tc.give)
			counts := balancertest.Counts(t, p, tc.give, nil, 3*cycle)
			for i, c := range counts {
				if c != 3*int(w[i]) {
					t.Errorf("host %d (weight %d): %d picks in 3 cycles of %d, want %d",
						i, tc.give[i].Weight, c, cycle, 3*w[i])
				}
			}
		})
	}
}

// cycleWeights returns the weights reduced by their GCD and their sum, the
// cycle length.
func cycleWeights(hosts []*host.Host) ([]uint64, int) {
	w := base.Reduced(hosts)
	sum := 0
	for _, x := range w {
		sum += int(x)
	}
	return w, sum
}

// TestStrideIsSpread checks that the stride path interleaves hosts of equal
// weight rather than sending runs to one, as smooth round robin would.
func TestStrideIsSpread(t *testing.T) {
	hosts := balancertest.Hosts(60000, 60000, 1)
	p := New(hosts)
	if _, ok := p.(*stridePicker); !ok {
		t.Fatalf("picker is %T, want the stride path", p)
	}
	longest, run := 0, 0
	var last *host.Host
	for range 120001 {
		h := p.Pick(nil)
		if h == last {
			run++
		} else {
			run = 1
		}
		last = h
		longest = max(longest, run)
	}
	t.Logf("longest run of one host over a cycle: %d", longest)
	if longest > 3 {
		t.Errorf("longest run of one host is %d picks, want at most 3", longest)
	}
}

func TestRandomStart(t *testing.T) {
	hosts := balancertest.Equal(4)
	first := map[*host.Host]bool{}
	for range 20 {
		first[New(hosts).Pick(nil)] = true
	}
	if len(first) < 2 {
		t.Errorf("20 pickers all started on the same host; want random starting points")
	}
}

func TestConcurrentPicksSplitExactly(t *testing.T) {
	hosts := balancertest.Equal(4)
	p := New(hosts)
	const goroutines, picks = 8, 1000
	var (
		mu     sync.Mutex
		counts = make([]int, len(hosts))
		wg     sync.WaitGroup
	)
	for range goroutines {
		wg.Go(func() {
			mine := balancertest.Counts(t, p, hosts, &balancer.Request{}, picks)
			mu.Lock()
			defer mu.Unlock()
			for i, c := range mine {
				counts[i] += c
			}
		})
	}
	wg.Wait()
	for i, c := range counts {
		if c != goroutines*picks/len(hosts) {
			t.Errorf("host %d: %d picks, want exactly %d (all: %v)", i, c, goroutines*picks/len(hosts), counts)
		}
	}
}
