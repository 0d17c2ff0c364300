// Package base holds what Sightline's balancing policies share: the pickers
// for zero and one host, weight arithmetic, the hash a request is placed by,
// and the host order consistent hashing builds from. It is to our policies
// what grpc-go's balancer/base is to its balancers.
package base

import (
	"cmp"
	"math/rand/v2"
	"slices"

	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/host"
)

// Fixed returns the picker for fewer than two hosts and true, or nil and
// false when hosts has two or more and the policy must build its own. Every
// policy calls it first: with no host Pick returns nil as the Picker contract
// requires, and with one host Pick returns it without a random draw, an
// atomic or a lookup.
func Fixed(hosts []*host.Host) (balancer.Picker, bool) {
	switch len(hosts) {
	case 0:
		return none{}, true
	case 1:
		return single{hosts[0]}, true
	}
	return nil, false
}

type none struct{}

func (none) Pick(*balancer.Request) *host.Host { return nil }

type single struct{ h *host.Host }

func (s single) Pick(*balancer.Request) *host.Host { return s.h }

// Hash returns the request's hash when it has one and a random value
// otherwise; r may be nil. A request without a hash so lands on a host with
// probability equal to the host's share of the ring or table, which is what
// Envoy's ring hash and Maglev balancers do (ThreadAwareLoadBalancerBase
// draws random() when the route computed no hash key).
func Hash(r *balancer.Request) uint64 {
	if r != nil && r.HasHash {
		return r.Hash
	}
	return rand.Uint64()
}

// ByAddress returns a copy of hosts sorted by address. Consistent hashing
// builds from this order rather than the order the hosts arrived in, so that
// proxies that see the same hosts in different orders (DNS answers are
// shuffled) build the same ring or table and send a key to the same host.
// Envoy sorts its Maglev build entries by address for the same reason.
func ByAddress(hosts []*host.Host) []*host.Host {
	sorted := slices.Clone(hosts)
	slices.SortStableFunc(sorted, func(a, b *host.Host) int {
		return cmp.Compare(a.Address, b.Address)
	})
	return sorted
}

// Reduced returns the hosts' weights divided by their greatest common
// divisor, indexed like hosts. Only ratios matter to a balancer, and smaller
// numbers make a shorter round-robin cycle and a shorter cumulative line; all
// weights equal reduce to all ones.
func Reduced(hosts []*host.Host) []uint64 {
	var g uint64
	for _, h := range hosts {
		g = GCD(g, uint64(h.Weight))
	}
	w := make([]uint64, len(hosts))
	for i, h := range hosts {
		w[i] = uint64(h.Weight) / g
	}
	return w
}

// GCD returns the greatest common divisor of a and b; GCD(0, b) is b.
func GCD(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Cumulative lays weights end to end on a line [0, Total()): entry i owns
// [ends[i-1], ends[i]). A point drawn uniformly from the line so falls in
// entry i with probability weight[i]/Total(). It is immutable and safe for
// concurrent use.
type Cumulative struct {
	ends []uint64
}

// NewCumulative builds the line for weights, each at least 1.
func NewCumulative(weights []uint64) Cumulative {
	ends := make([]uint64, len(weights))
	var sum uint64
	for i, w := range weights {
		sum += w
		ends[i] = sum
	}
	return Cumulative{ends: ends}
}

// Total returns the length of the line, the sum of the weights.
func (c Cumulative) Total() uint64 { return c.ends[len(c.ends)-1] }

// Index returns the entry that owns point x, which must be below Total(),
// with a binary search: O(log n), no allocation.
func (c Cumulative) Index(x uint64) int {
	// The owner is the first entry whose end lies beyond x.
	i, _ := slices.BinarySearch(c.ends, x+1)
	return i
}
