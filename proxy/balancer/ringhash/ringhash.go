// Package ringhash is the ring_hash policy: ketama-style consistent hashing,
// with Envoy's ring (same point keys, hash function and sizing), so that for
// equal weights Envoy and Sightline send a hash to the same host.
//
// Every host puts points on a ring of 64-bit hashes, the xxHash64 of
// "address_0", "address_1", …, in number proportional to its weight. A
// request goes to the owner of the first point at or after its hash, wrapping
// past the last point to the first (libketama's ketama_get_server). Adding or
// removing a host therefore moves only the keys between its points and their
// predecessors, about 1/n of them (Karger et al., 1997), where a modulo
// scheme would move nearly all.
//
// The ring size follows Envoy: scaled up until the lightest host has at
// least minimum_ring_size × its share of the weight, a whole number of
// points, then capped at maximum_ring_size. With equal weights each host gets
// minimum_ring_size/n points, so the defaults (1024, 8M) give each of 4 hosts
// 256 points. The price of that sizing: a host's points depend on how many
// hosts there are (342 each for 3 hosts), so removing one host of four moves
// about a third of the keys rather than a quarter; the survivors' new points
// take some from each other. libketama's fixed points per host would not, but
// would no longer match Envoy. Unlike Envoy, hosts are placed in address
// order, so the ring does not depend on the order the hosts arrived in.
//
// A request without a hash goes to a random point, as in Envoy.
package ringhash

import (
	"cmp"
	"math"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"

	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/balancer/internal/base"
	"github.com/sightline-proxy/sightline/proxy/host"
)

// Envoy's defaults for RingHashLbConfig's minimum_ring_size and
// maximum_ring_size.
const (
	defaultMinRingSize = 1024
	defaultMaxRingSize = 8 << 20
)

// New returns a ring_hash picker over hosts with Envoy's default ring sizes.
// Building costs O(size·log size), about 1024 points for equal weights.
func New(hosts []*host.Host) balancer.Picker {
	if p, ok := base.Fixed(hosts); ok {
		return p
	}
	return newRing(hosts, defaultMinRingSize, defaultMaxRingSize)
}

// ring holds the sorted point hashes apart from their owners so that the
// binary search reads only hashes, eight to a cache line; neither slice holds
// pointers, so the garbage collector does not scan them.
type ring struct {
	hashes []uint64
	owners []uint32 // owners[i] indexes hosts
	hosts  []*host.Host
}

type point struct {
	hash  uint64
	owner uint32
}

func newRing(hosts []*host.Host, minSize, maxSize int) *ring {
	hosts = base.ByAddress(hosts)
	var total uint64
	lightest := uint32(math.MaxUint32)
	for _, h := range hosts {
		total += uint64(h.Weight)
		lightest = min(lightest, h.Weight)
	}
	// Envoy's RingHashLoadBalancer::Ring, in the same floating-point steps.
	minNormalized := float64(lightest) / float64(total)
	scale := min(math.Ceil(minNormalized*float64(minSize))/minNormalized, float64(maxSize))

	points := make([]point, 0, int(math.Ceil(scale)))
	key := make([]byte, 0, 64)
	// current and target are running sums over all hosts, so that
	// fractional shares of points add up rather than being rounded per host.
	var current, target float64
	for owner, h := range hosts {
		key = append(append(key[:0], h.Address...), '_')
		prefix := len(key)
		// The conversion forbids fusing the multiply and add into one FMA,
		// which the spec allows and arm64 does: rings must not depend on the
		// CPU the proxy runs on.
		target += float64(scale * (float64(h.Weight) / float64(total)))
		for i := uint64(0); current < target; i++ {
			key = strconv.AppendUint(key[:prefix], i, 10)
			points = append(points, point{hash: xxhash.Sum64(key), owner: uint32(owner)})
			current++
		}
	}
	// Colliding hashes go to the host first in address order, so the ring
	// is the same on every proxy.
	slices.SortFunc(points, func(a, b point) int {
		return cmp.Or(cmp.Compare(a.hash, b.hash), cmp.Compare(a.owner, b.owner))
	})

	r := &ring{
		hashes: make([]uint64, len(points)),
		owners: make([]uint32, len(points)),
		hosts:  hosts,
	}
	for i, p := range points {
		r.hashes[i], r.owners[i] = p.hash, p.owner
	}
	return r
}

func (r *ring) Pick(req *balancer.Request) *host.Host {
	i, _ := slices.BinarySearch(r.hashes, base.Hash(req))
	if i == len(r.hashes) {
		i = 0
	}
	return r.hosts[r.owners[i]]
}
