// Package policies maps the lb_policy names of the configuration to their
// pickers' builders. It is the one place that knows every policy, so that
// config validation and cluster building agree on the names.
package policies

import (
	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/balancer/leastrequest"
	"github.com/sightline-proxy/sightline/proxy/balancer/maglev"
	"github.com/sightline-proxy/sightline/proxy/balancer/random"
	"github.com/sightline-proxy/sightline/proxy/balancer/ringhash"
	"github.com/sightline-proxy/sightline/proxy/balancer/roundrobin"
)

// registry lists the policies in the order Names reports them, the order of
// the lb_policy documentation.
var registry = []struct {
	name  string
	build balancer.Builder
}{
	{"round_robin", roundrobin.New},
	{"least_request", leastrequest.New},
	{"random", random.New},
	{"ring_hash", ringhash.New},
	{"maglev", maglev.New},
}

// Builder returns the builder for the lb_policy name and true, or nil and
// false when no policy has that name. Names are case-sensitive, as in the
// configuration.
func Builder(name string) (balancer.Builder, bool) {
	for _, p := range registry {
		if p.name == name {
			return p.build, true
		}
	}
	return nil, false
}

// Names returns the policy names, for error messages that list what is
// allowed. The caller may modify the returned slice.
func Names() []string {
	names := make([]string, len(registry))
	for i, p := range registry {
		names[i] = p.name
	}
	return names
}
