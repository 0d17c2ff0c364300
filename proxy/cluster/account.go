package cluster

import (
	"time"

	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/outlier"
)

// Attempt is how one upstream attempt ended, as far as the host and its
// outlier detector need to know. The call-level stats (response codes,
// latency, gRPC methods) are the router's to charge, once per call.
type Attempt struct {
	// Status is the upstream's response status; 0 when none came.
	Status int
	// GRPCStatus is the response's grpc-status; -1 when none.
	GRPCStatus int
	// Elapsed runs from sending the request to the end of the attempt.
	Elapsed time.Duration
	// Why an attempt without a response ended.
	ConnectFailure, Reset, Timeout bool
	// Cancelled: the proxy abandoned the attempt because the client went
	// away; it says nothing of the host.
	Cancelled bool
}

// Begin counts an attempt sent to h: the host's live counters and the
// cluster's upstream_rq_total and upstream_rq_active. Every Begin is
// followed by one EndAttempt.
func (c *Cluster) Begin(h *host.Host) {
	h.Active.Add(1)
	h.RqTotal.Add(1)
	up := c.Stats.Upstream()
	up.RqTotal.Inc(1)
	up.RqActive.Inc()
}

// EndAttempt settles an attempt Begin counted: the host's active count,
// error count and latency, the cluster's upstream_rq_active, and the
// outlier detector, which hears of every attempt, retried or not.
func (c *Cluster) EndAttempt(h *host.Host, a *Attempt) {
	c.Stats.Upstream().RqActive.Dec()
	if a.Status > 0 {
		// Before the attempt leaves Active: the status page's sampler
		// drops a quiet host's latency array only with none in flight
		// (host.TakeLatency).
		h.Latency.Record(a.Elapsed)
	}
	h.Active.Add(-1)
	if a.Cancelled && a.Status == 0 {
		return
	}
	failed := a.Status >= 500 || a.Status == 0 || a.GRPCStatus > 0
	if failed {
		h.RqError.Add(1)
	}
	if c.od != nil {
		c.od.Report(h, outlier.Classify(a.Status, a.GRPCStatus, a.ConnectFailure, a.Reset || a.Timeout))
	}
}
