package cluster

import (
	"slices"

	"github.com/sightline-proxy/sightline/proxy/host"
)

// poolSweep is what ReleaseIdlePools remembers between two calls.
type poolSweep struct {
	// seen holds each host with a pool and its request count at the
	// last sweep.
	seen []poolSeen
	// dropped are the pools the last sweep took from their hosts, closed
	// by this one.
	dropped []host.Upstream
}

type poolSeen struct {
	h  *host.Host
	rq uint64
}

// ReleaseIdlePools drops the connection pool of every host that sent no
// request since the last call and whose pool has no connection (idle
// says so; nil: the cluster's, from Options.UpstreamIdle), as Envoy
// deletes a connection pool once it is idle: a cluster that served a
// burst and went quiet (its connections closed by idle_timeout) gives the
// pools' memory back, a kilobyte or two a host. The host's next request
// makes a new pool. A dropped pool is closed by the next call: a call that
// loaded it just before it was dropped still finds it open. The server
// calls it every few seconds.
func (c *Cluster) ReleaseIdlePools() {
	idle := c.upstreamIdle
	if idle == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	// A cluster whose pools are all gone (most of them, after a burst
	// to thousands) is swept without allocating.
	sw := c.sweep
	var seen []poolSeen
	if sw != nil {
		for _, u := range sw.dropped {
			_ = u.Close()
		}
		seen = sw.seen
	}
	// Both the hosts and what the last sweep saw are in address order.
	var next []poolSeen
	var dropped []host.Upstream
	j := 0
	for _, h := range c.sorted {
		u := h.MadeUpstream()
		if u == nil {
			continue
		}
		for j < len(seen) && compareAddr(seen[j].h.Address, h.Address) < 0 {
			j++
		}
		rq := h.RqTotal.Load()
		quiet := j < len(seen) && seen[j].h == h && seen[j].rq == rq
		if quiet && h.Active.Load() == 0 && idle(u) && h.DropUpstream(u) {
			dropped = append(dropped, u)
			continue
		}
		next = append(next, poolSeen{h: h, rq: rq})
	}
	if len(next) == 0 && len(dropped) == 0 {
		c.sweep = nil
		return
	}
	if sw == nil {
		sw = &poolSweep{}
		c.sweep = sw
	}
	sw.seen, sw.dropped = slices.Clip(next), dropped
}
