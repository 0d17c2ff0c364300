// Package leastrequest is the least_request policy: the power of two choices
// over each host's in-flight requests, with Envoy's weighting.
//
// Pick draws two distinct hosts uniformly at random and returns the one with
// the higher effective weight
//
//	weight / (active + 1)
//
// which is Envoy's host weight for least_request with its default
// active_request_bias of 1.0; the +1 keeps idle hosts comparable. When all
// weights are equal that is simply the host with fewer active requests, the
// classic power of two choices (Mitzenmacher, 1996): it needs no global scan
// yet keeps the busiest host's load close to the mean, and unlike "always the
// least loaded" it does not stampede one idle host from many proxies at once.
//
// Envoy differs in two ways. Its N-choices pick draws choice_count (default
// 2) hosts with replacement, so it may compare a host with itself; drawing
// two distinct hosts always makes a comparison. And when weights differ
// Envoy does not use two choices at all: it keeps an earliest-deadline-first
// schedule whose entries are re-weighted by weight/(active+1) as each host is
// picked and reinserted. That schedule is mutable shared state and would need
// a lock on every pick; comparing the effective weights of two random hosts
// keeps Pick lock-free and still sends more requests to heavier hosts until
// their in-flight load grows in proportion to their weight.
//
// Active is the host's own counter, shared by every picker generation, so a
// membership change does not forget which hosts are busy.
package leastrequest

import (
	"math/bits"
	"math/rand/v2"

	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/balancer/internal/base"
	"github.com/sightline-proxy/sightline/proxy/host"
)

// New returns a least_request picker over hosts. Pick ignores the request.
func New(hosts []*host.Host) balancer.Picker {
	if p, ok := base.Fixed(hosts); ok {
		return p
	}
	return &picker{hosts: hosts}
}

type picker struct {
	hosts []*host.Host
}

// Pick uses math/rand/v2's top-level source, which is per-thread in the
// runtime: no lock and no allocation.
func (p *picker) Pick(*balancer.Request) *host.Host {
	n := len(p.hosts)
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	a, b := p.hosts[i], p.hosts[j]
	if heavier(b, a) {
		return b
	}
	return a // a was drawn at random, so ties are broken at random too
}

// heavier reports whether a's effective weight, Weight/(Active+1), exceeds
// b's. It compares a.Weight·(b.Active+1) with b.Weight·(a.Active+1) in 128
// bits: exact, with no division and no overflow.
func heavier(a, b *host.Host) bool {
	ahi, alo := bits.Mul64(uint64(a.Weight), load(b))
	bhi, blo := bits.Mul64(uint64(b.Weight), load(a))
	return ahi > bhi || ahi == bhi && alo > blo
}

// load returns active+1. A transiently negative count (a decrement racing
// ahead of its increment) counts as idle rather than wrapping to a huge
// unsigned load.
func load(h *host.Host) uint64 {
	return uint64(max(h.Active.Load(), 0)) + 1
}
