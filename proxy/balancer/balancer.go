// Package balancer defines how a cluster picks a host for one request.
//
// A Picker is built once per membership or health change from the hosts then
// eligible, and published by the cluster through an atomic pointer. Pick is
// called on the request path by many goroutines at once: it takes no lock,
// never blocks and allocates nothing.
package balancer

import (
	"github.com/sightline-proxy/sightline/proxy/host"
)

// Request is what a picker may look at for one request.
type Request struct {
	// Hash is the hash of the route's hash_policy value, valid when HasHash.
	Hash    uint64
	HasHash bool
}

// Picker chooses a host for one request.
type Picker interface {
	// Pick returns the host for the request, or nil when there is none.
	Pick(r *Request) *host.Host
}

// Builder makes a picker over hosts. hosts is never modified afterwards and
// may be kept by the picker; it may be empty.
type Builder func(hosts []*host.Host) Picker
