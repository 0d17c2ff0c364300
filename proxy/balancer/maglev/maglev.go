// Package maglev is the maglev policy: consistent hashing through a lookup
// table filled by Google's Maglev algorithm (Eisenbud et al., "Maglev: A Fast
// and Reliable Software Network Load Balancer", NSDI 2016, §3.4, listing 1).
//
// Each host derives from two hashes of its address an offset and a skip,
// which define its own permutation of the table's slots; hosts take turns
// claiming their next free slot until the table is full. Every host so ends
// up with an almost equal number of slots (its weight's share, see below),
// and a membership change moves few slots: a little more than ring hashing
// moves, in exchange for a lookup that is one modulo and one load instead of
// a binary search, and a fixed 256 KiB table whatever the weights.
//
// The table and hashing follow Envoy's maglev balancer, so that for equal
// weights Envoy and Sightline send a hash to the same host: 65537 entries (Envoy's default, a prime as the algorithm
// requires), offset = xxHash64(address) mod 65537, skip = xxHash64(address,
// seed 1) mod 65536 + 1, and hosts taking turns in address order so that the
// table does not depend on the order the hosts arrived in. Weights are
// honoured as in Envoy: in round k a host of weight w takes a slot only while
// k·w ≥ slots taken × max weight, so a host of half the largest weight takes
// a slot every other round. Envoy does this with weights normalized to
// doubles; integers give the same schedule without rounding.
//
// A request without a hash goes to a random slot, as in Envoy.
package maglev

import (
	"math"

	"github.com/cespare/xxhash/v2"

	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/balancer/internal/base"
	"github.com/sightline-proxy/sightline/proxy/host"
)

// tableSize is the number of slots. It must be prime so that every skip in
// [1, tableSize) visits all slots. A constant, so the modulo in Pick compiles
// to a multiplication.
const tableSize = 65537

// New returns a maglev picker over hosts. Building fills 65537 slots: one
// to a few milliseconds.
func New(hosts []*host.Host) balancer.Picker {
	if p, ok := base.Fixed(hosts); ok {
		return p
	}
	hosts = base.ByAddress(hosts)
	return &picker{hosts: hosts, table: fill(hosts, tableSize)}
}

// picker maps a slot to an index into hosts. Indices rather than pointers
// halve the table and keep it out of the garbage collector's scan, as
// Envoy's CompactMaglevTable keeps bit-packed indices.
type picker struct {
	hosts []*host.Host
	table []uint32
}

func (p *picker) Pick(r *balancer.Request) *host.Host {
	return p.hosts[p.table[base.Hash(r)%tableSize]]
}

// cursor is one host's walk through its permutation of the slots.
type cursor struct {
	slot, skip uint64
	weight     uint64
	target     uint64 // slots taken so far × the largest weight
}

// fill returns a table of size slots, a prime, each holding the index of
// the host it maps to.
func fill(hosts []*host.Host, size uint64) []uint32 {
	const free = math.MaxUint32
	table := make([]uint32, size)
	for i := range table {
		table[i] = free
	}

	var heaviest uint64
	seeded := xxhash.NewWithSeed(1)
	cursors := make([]cursor, len(hosts))
	for i, h := range hosts {
		seeded.ResetWithSeed(1)
		seeded.WriteString(h.Address)
		cursors[i] = cursor{
			slot:   xxhash.Sum64String(h.Address) % size,
			skip:   seeded.Sum64()%(size-1) + 1,
			weight: uint64(h.Weight),
		}
		heaviest = max(heaviest, uint64(h.Weight))
	}

	var filled uint64
	for round := uint64(1); filled < size; round++ {
		for i := 0; i < len(cursors) && filled < size; i++ {
			c := &cursors[i]
			if round*c.weight < c.target {
				continue // lighter than the heaviest host: sits this round out
			}
			c.target += heaviest
			for table[c.slot] != free {
				c.slot = (c.slot + c.skip) % size
			}
			table[c.slot] = uint32(i)
			c.slot = (c.slot + c.skip) % size
			filled++
		}
	}
	return table
}
