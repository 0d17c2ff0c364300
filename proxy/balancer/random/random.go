// Package random is the random policy: each pick draws a host with
// probability proportional to its weight, independently of every other pick.
//
// It keeps no state between picks, so unlike round robin it needs no shared
// counter that every core writes, and unlike least request it reads no
// per-host counters. Envoy's random balancer ignores host weights (it returns
// hosts[random % len(hosts)]); this one honours them, and agrees with Envoy
// when the weights are equal.
package random

import (
	"math/rand/v2"

	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/balancer/internal/base"
	"github.com/sightline-proxy/sightline/proxy/host"
)

// New returns a random picker over hosts. Pick ignores the request.
func New(hosts []*host.Host) balancer.Picker {
	if p, ok := base.Fixed(hosts); ok {
		return p
	}
	line := base.NewCumulative(base.Reduced(hosts))
	if line.Total() == uint64(len(hosts)) { // every reduced weight is 1
		return uniform(hosts)
	}
	return &weighted{hosts: hosts, line: line}
}

// uniform draws an index directly: no search when weights are equal.
type uniform []*host.Host

func (u uniform) Pick(*balancer.Request) *host.Host {
	return u[rand.IntN(len(u))]
}

// weighted draws a point on the weight line and binary-searches its owner.
type weighted struct {
	hosts []*host.Host
	line  base.Cumulative
}

func (w *weighted) Pick(*balancer.Request) *host.Host {
	return w.hosts[w.line.Index(rand.Uint64N(w.line.Total()))]
}
