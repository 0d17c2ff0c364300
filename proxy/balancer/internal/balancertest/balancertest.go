// Package balancertest holds the checks every Sightline balancing policy must
// pass and the benchmark they all run, so that each policy's tests state only
// what is particular to it. Only tests import it.
package balancertest

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/host"
)

// Hosts returns one host per weight, at 10.0.0.1:8080, 10.0.0.2:8080, …
func Hosts(weights ...uint32) []*host.Host {
	hosts := make([]*host.Host, len(weights))
	for i, w := range weights {
		hosts[i] = &host.Host{Address: fmt.Sprintf("10.0.%d.%d:8080", (i+1)/256, (i+1)%256), Weight: w}
	}
	return hosts
}

// Equal returns n hosts of weight 1.
func Equal(n int) []*host.Host {
	weights := make([]uint32, n)
	for i := range weights {
		weights[i] = 1
	}
	return Hosts(weights...)
}

// Index returns the position of h in hosts, failing t when h is not there:
// a picker may only return hosts it was built from.
func Index(t testing.TB, hosts []*host.Host, h *host.Host) int {
	t.Helper()
	i := slices.Index(hosts, h)
	if i < 0 {
		t.Fatalf("Pick returned %v, which is not one of the picker's hosts", h)
	}
	return i
}

// Counts makes n picks with r and returns how many each host got, indexed
// like hosts.
func Counts(t testing.TB, p balancer.Picker, hosts []*host.Host, r *balancer.Request, n int) []int {
	t.Helper()
	counts := make([]int, len(hosts))
	for range n {
		counts[Index(t, hosts, p.Pick(r))]++
	}
	return counts
}

// WithinPercent fails t unless every count is within pct percent of want.
func WithinPercent(t testing.TB, counts []int, want, pct float64) {
	t.Helper()
	for i, c := range counts {
		if d := float64(c) - want; d < -want*pct/100 || d > want*pct/100 {
			t.Errorf("host %d: %d picks, want %.0f ± %.0f%% (all: %v)", i, c, want, pct, counts)
		}
	}
}

// Keys returns the hashes of n distinct keys, xxHash64 of "user-0",
// "user-1", …, as a hash policy on a user header would produce them.
func Keys(n int) []uint64 {
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = xxhash.Sum64String("user-" + strconv.Itoa(i))
	}
	return keys
}

// Owners returns, for each key, the index in hosts of the host p picks for
// it.
func Owners(t testing.TB, p balancer.Picker, hosts []*host.Host, keys []uint64) []int {
	t.Helper()
	owners := make([]int, len(keys))
	for i, k := range keys {
		owners[i] = Index(t, hosts, p.Pick(&balancer.Request{Hash: k, HasHash: true}))
	}
	return owners
}

// Shares returns each host's fraction of owners.
func Shares(owners []int, hosts int) []float64 {
	shares := make([]float64, hosts)
	for _, o := range owners {
		shares[o] += 1 / float64(len(owners))
	}
	return shares
}

// requests are the request shapes every picker must handle: nil, without a
// hash, and with one.
var requests = []struct {
	name string
	give *balancer.Request
}{
	{"nil", nil},
	{"no hash", &balancer.Request{}},
	{"hash", &balancer.Request{Hash: 0x9e3779b97f4a7c15, HasHash: true}},
}

// Conformance checks the Picker contract of balancer.go for build: nil with
// no host, the one host with one, only the given hosts with more, the host
// slice left as given, no allocation per Pick, and safe concurrent use
// (meaningful under -race).
func Conformance(t *testing.T, build balancer.Builder) {
	t.Run("no hosts", func(t *testing.T) {
		for _, hosts := range [][]*host.Host{nil, {}} {
			p := build(hosts)
			for _, r := range requests {
				if h := p.Pick(r.give); h != nil {
					t.Errorf("%s request: Pick over %d hosts = %v, want nil", r.name, len(hosts), h)
				}
			}
		}
	})

	t.Run("one host", func(t *testing.T) {
		hosts := Hosts(7)
		p := build(hosts)
		for _, r := range requests {
			for range 100 {
				if h := p.Pick(r.give); h != hosts[0] {
					t.Fatalf("%s request: Pick = %v, want the only host %v", r.name, h, hosts[0])
				}
			}
		}
	})

	t.Run("hosts kept intact", func(t *testing.T) {
		hosts := Hosts(3, 1, 2, 5)
		slices.Reverse(hosts) // not in address order
		want := slices.Clone(hosts)
		p := build(hosts)
		for _, r := range requests {
			Counts(t, p, hosts, r.give, 1000)
		}
		if !slices.Equal(hosts, want) {
			t.Errorf("building the picker modified its host slice")
		}
	})

	t.Run("no allocations", func(t *testing.T) {
		for _, tc := range []hostSet{
			{"1 host", Equal(1)},
			{"4 equal", Equal(4)},
			{"4 weighted", Hosts(5, 1, 1, 3)},
		} {
			p := build(tc.hosts)
			for _, r := range requests {
				if n := testing.AllocsPerRun(1000, func() { p.Pick(r.give) }); n != 0 {
					t.Errorf("%s, %s request: %v allocations per Pick, want 0", tc.name, r.name, n)
				}
			}
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		hosts := Hosts(1, 2, 3, 4)
		p := build(hosts)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				r := balancer.Request{Hash: uint64(g), HasHash: g%2 == 0}
				for range 2000 {
					h := p.Pick(&r)
					if !slices.Contains(hosts, h) {
						t.Errorf("Pick returned %v, which is not one of the picker's hosts", h)
						return
					}
					h.Active.Add(1) // as the forwarder does while the request runs
					r.Hash += 0x9e3779b97f4a7c15
					h.Active.Add(-1)
				}
			})
		}
		wg.Wait()
	})
}

// hostSet is a named set of hosts for a table of cases.
type hostSet struct {
	name  string
	hosts []*host.Host
}

// benchHosts are the host sets the benchmarks run over.
func benchHosts() []hostSet {
	weights := make([]uint32, 100)
	for i := range weights {
		weights[i] = uint32(i%7 + 1)
	}
	return []hostSet{
		{"equal/4", Equal(4)},
		{"weighted/100", Hosts(weights...)},
	}
}

// BenchmarkPick measures Pick from parallel goroutines over equal and
// weighted hosts. Requests carry a hash that changes on every pick, so that
// hashing policies do not read the same slot over and over.
func BenchmarkPick(b *testing.B, build balancer.Builder) {
	for _, bc := range benchHosts() {
		b.Run(bc.name, func(b *testing.B) {
			p := build(bc.hosts)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := balancer.Request{HasHash: true}
				for pb.Next() {
					if p.Pick(&r) == nil {
						b.Error("Pick returned nil")
						return
					}
					r.Hash += 0x9e3779b97f4a7c15
				}
			})
		})
	}
}

// BenchmarkBuild measures building a picker, the cost a membership or health
// change pays on the control plane.
func BenchmarkBuild(b *testing.B, build balancer.Builder) {
	for _, bc := range benchHosts() {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				build(bc.hosts)
			}
		})
	}
}

// ConsistentHashing checks what ring_hash and maglev promise: a hash always
// maps to the same host whatever order the hosts come in, 10,000 keys spread
// over 4 equal hosts with each getting 15–35%, removing one host of 4 moves
// at most maxMoved of the keys, weights skew the shares, and requests without
// a hash spread over all hosts. It logs the measured shares.
func ConsistentHashing(t *testing.T, build balancer.Builder, maxMoved float64) {
	keys := Keys(10000)

	t.Run("same hash same host", func(t *testing.T) {
		hosts := Equal(4)
		want := Owners(t, build(hosts), hosts, keys)
		again := Owners(t, build(hosts), hosts, keys)
		reversed := slices.Clone(hosts)
		slices.Reverse(reversed)
		shuffled := Owners(t, build(reversed), hosts, keys)
		for i := range keys {
			if again[i] != want[i] || shuffled[i] != want[i] {
				t.Fatalf("key %d: host %d, then %d, then %d with hosts reversed; want the same host",
					i, want[i], again[i], shuffled[i])
			}
		}
	})

	t.Run("spread", func(t *testing.T) {
		hosts := Equal(4)
		shares := Shares(Owners(t, build(hosts), hosts, keys), len(hosts))
		t.Logf("shares of %d keys: %.3f", len(keys), shares)
		for i, s := range shares {
			if s < 0.15 || s > 0.35 {
				t.Errorf("host %d has %.1f%% of keys, want 15–35%%", i, 100*s)
			}
		}
	})

	t.Run("remove one host", func(t *testing.T) {
		hosts := Equal(4)
		before := Owners(t, build(hosts), hosts, keys)
		after := Owners(t, build(hosts[:3]), hosts, keys)
		var moved, orphaned int
		for i := range keys {
			if after[i] != before[i] {
				moved++
			}
			if before[i] == 3 {
				orphaned++
			}
		}
		frac := float64(moved) / float64(len(keys))
		t.Logf("removing 1 of 4 hosts moved %.1f%% of keys (%.1f%% were on the removed host)",
			100*frac, 100*float64(orphaned)/float64(len(keys)))
		if frac > maxMoved {
			t.Errorf("removing 1 of 4 hosts moved %.1f%% of keys, want at most %.0f%%", 100*frac, 100*maxMoved)
		}
	})

	t.Run("weights", func(t *testing.T) {
		for _, tc := range []struct {
			give   []uint32
			wantLo float64 // share of the last host
			wantHi float64
		}{
			{give: []uint32{1, 1, 1, 3}, wantLo: 0.40, wantHi: 0.60},
			{give: []uint32{10, 10, 10, 1}, wantLo: 0.01, wantHi: 0.06},
		} {
			hosts := Hosts(tc.give...)
			shares := Shares(Owners(t, build(hosts), hosts, keys), len(hosts))
			t.Logf("weights %v: shares %.3f", tc.give, shares)
			if s := shares[len(shares)-1]; s < tc.wantLo || s > tc.wantHi {
				t.Errorf("weights %v: last host has %.1f%% of keys, want %.0f–%.0f%%",
					tc.give, 100*s, 100*tc.wantLo, 100*tc.wantHi)
			}
		}
	})

	t.Run("no hash", func(t *testing.T) {
		hosts := Equal(4)
		WithinPercent(t, Counts(t, build(hosts), hosts, &balancer.Request{}, 4000), 1000, 35)
	})
}
