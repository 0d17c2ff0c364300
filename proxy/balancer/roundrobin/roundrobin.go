// Package roundrobin is the round_robin policy: smooth weighted round robin,
// as nginx does it, made lock-free.
//
// nginx's smooth weighted round robin (ngx_http_upstream_get_peer) gives each
// host a current weight; on every pick each current weight grows by the
// host's weight, the largest is chosen and lowered by the sum of all weights.
// For weights 5, 1, 1 that yields a a b a c a a rather than a a a a a b c, so
// a heavy host never gets a burst. nginx runs that loop under a lock on every
// pick. The sequence only depends on the weights, so this package runs it
// once when the picker is built and Pick walks the stored sequence with a
// single atomic add.
//
// When the sequence would be too long to store or too slow to build (see
// maxSequence and maxBuildSteps), the picker instead walks the weight line
// with a golden-ratio stride: still exact over every cycle and spread out,
// though not nginx's exact order.
//
// Each picker starts at a random point of its cycle so that proxies, and
// picker generations after a membership change, do not all send their first
// requests to the same host.
package roundrobin

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"sync/atomic"

	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/balancer/internal/base"
	"github.com/sightline-proxy/sightline/proxy/host"
)

const (
	// maxSequence bounds the stored sequence, one pointer per entry: 16384
	// entries are 128 KiB per picker. The weights reduced by their GCD sum
	// past it only when they run into the thousands and share no divisor.
	maxSequence = 1 << 14
	// maxBuildSteps bounds the work to build the sequence, hosts × sequence
	// length, to a few milliseconds on the control plane. It caps equal
	// weights at 2048 hosts.
	maxBuildSteps = 1 << 22
)

// New returns a round_robin picker over hosts. Pick ignores the request.
func New(hosts []*host.Host) balancer.Picker {
	if p, ok := base.Fixed(hosts); ok {
		return p
	}
	w := base.Reduced(hosts)
	var n uint64
	for _, x := range w {
		n += x
	}
	if n <= maxSequence && n*uint64(len(hosts)) <= maxBuildSteps {
		p := &sequencePicker{seq: smooth(hosts, w, n)}
		p.next.Store(rand.Uint64N(n))
		return p
	}
	return newStride(hosts, base.NewCumulative(w))
}

// smooth returns one full cycle, n = sum(w) picks, of nginx's smooth
// weighted round robin over hosts with weights w. Ties go to the earlier
// host, as in nginx.
func smooth(hosts []*host.Host, w []uint64, n uint64) []*host.Host {
	current := make([]int64, len(hosts))
	seq := make([]*host.Host, n)
	for k := range seq {
		best := 0
		for i := range current {
			current[i] += int64(w[i])
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= int64(n)
		seq[k] = hosts[best]
	}
	return seq
}

// sequencePicker hands out the precomputed smooth sequence in order.
type sequencePicker struct {
	seq  []*host.Host
	next atomic.Uint64
}

func (p *sequencePicker) Pick(*balancer.Request) *host.Host {
	// The counter wraps after 2^64 picks; the one uneven cycle that causes
	// when len(seq) is not a power of two does not matter.
	return p.seq[p.next.Add(1)%uint64(len(p.seq))]
}

// stridePicker visits the points of the weight line [0, total) in the order
// start, start+stride, start+2·stride, … (mod total). The stride is coprime
// with total, so every cycle of total picks visits each point once and each
// host gets exactly its weight. The stride is the nearest such number to
// total/φ: multiples of the golden ratio are the most evenly spread sequence
// mod 1 (the three-distance theorem), so a host's picks are spaced close to
// total/weight apart, as smooth round robin spaces them.
type stridePicker struct {
	hosts  []*host.Host
	line   base.Cumulative
	stride uint64
	next   atomic.Uint64
}

func newStride(hosts []*host.Host, line base.Cumulative) *stridePicker {
	total := line.Total()
	stride := max(1, uint64(float64(total)/math.Phi))
	for base.GCD(stride, total) != 1 {
		stride++
	}
	p := &stridePicker{hosts: hosts, line: line, stride: stride}
	p.next.Store(rand.Uint64N(total))
	return p
}

func (p *stridePicker) Pick(*balancer.Request) *host.Host {
	// The product is taken in 128 bits so that the visiting order stays a
	// permutation of the line whatever the weights.
	total := p.line.Total()
	hi, lo := bits.Mul64(p.next.Add(1)%total, p.stride)
	return p.hosts[p.line.Index(bits.Rem64(hi, lo, total))]
}
