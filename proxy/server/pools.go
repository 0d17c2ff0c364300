package server

import (
	"time"

	"github.com/sightline-proxy/sightline/internal/tick"
	"github.com/sightline-proxy/sightline/proxy/h2"
	"github.com/sightline-proxy/sightline/proxy/host"
)

// poolSweepEvery is how often the clusters release the pools of hosts
// that have had no connection and no request since the sweep before
// (cluster.ReleaseIdlePools): a pool idle_timeout emptied is gone 5 to 10
// seconds later.
const poolSweepEvery = 5 * time.Second

// upstreamIdle reports whether a host's pools have no connection, open or
// opening: the HTTP/2 engine's and the HTTP/1.1 one.
func upstreamIdle(u host.Upstream) bool {
	x, ok := u.(*h2.Upstream)
	return ok && x.H2.Stats().Conns == 0 && (x.HTTP == nil || x.HTTP.Idle())
}

// sweepPools releases idle pools every poolSweepEvery until the server
// stops. (The heap memory they held goes back to the system by the
// overload manager's shrink_heap.)
func (s *Server) sweepPools() {
	defer s.bg.Done()
	t := tick.NewTicker(poolSweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.quit:
			return
		case <-t.C:
			for _, c := range s.cur.Load().clusters {
				c.ReleaseIdlePools()
			}
		}
	}
}
