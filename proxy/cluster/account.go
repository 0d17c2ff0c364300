package cluster

import (
	"time"

	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/outlier"
)

// Outcome is how one upstream request ended, as the forwarders report it.
type Outcome struct {
	// Status is the HTTP status charged to the upstream: the upstream's own,
	// or the 503 or 504 the proxy answered in its place (Envoy charges a
	// reset or a connect failure as 503 and a timeout as 504).
	Status int
	// GRPCStatus is the grpc-status of a gRPC response, -1 when there was
	// none; Path the request's :path (/package.Service/Method).
	GRPC       bool
	GRPCStatus int
	Path       string
	// Elapsed runs from sending the request to the end of the response.
	Elapsed time.Duration
	// Why a request failed without a response from the upstream.
	ConnectFailure, Reset, Timeout bool
}

// Begin counts a request sent to h: the host's live counters and the
// cluster's upstream_rq_total and upstream_rq_active. Every Begin is
// followed by one End.
func (c *Cluster) Begin(h *host.Host) {
	h.Active.Add(1)
	h.RqTotal.Add(1)
	up := c.Stats.Upstream()
	up.RqTotal.Inc(1)
	up.RqActive.Inc()
}

// End counts a request's completion once, when it completes: the
// cluster's, the zone pair's and the gRPC method's stats, and the host's
// error count.
func (c *Cluster) End(h *host.Host, o *Outcome) {
	h.Active.Add(-1)
	h.Latency.Record(o.Elapsed)
	failed := o.Status >= 500 || (o.GRPC && o.GRPCStatus > 0)
	if failed {
		h.RqError.Add(1)
	}
	up := c.Stats.Upstream()
	up.RqActive.Dec()
	up.RqCompleted(o.Status)
	up.RqTime.RecordDuration(o.Elapsed)
	switch {
	case o.Timeout:
		up.RqTimeout.Inc(1)
	case o.Reset:
		up.RqRxReset.Inc(1)
	case o.ConnectFailure:
		c.Stats.Connections().CxConnectFail.Inc(1)
	}
	if c.od != nil {
		gs := -1
		if o.GRPC {
			gs = o.GRPCStatus
		}
		c.od.Report(h, outlier.Classify(o.Status, gs, o.ConnectFailure, o.Reset))
	}
	zu := h.ZoneStats.Upstream()
	zu.RqCompleted(o.Status)
	zu.RqTime.RecordDuration(o.Elapsed)
	if o.GRPC {
		m := c.Stats.GRPC(o.Path)
		status := o.GRPCStatus
		if status < 0 {
			status = httpToGRPC(o.Status)
		}
		m.Completed(status)
		m.RqTime.RecordDuration(o.Elapsed)
	}
}

// httpToGRPC maps an HTTP status to the gRPC status a client sees when a
// response carries none (gRPC's doc/http-grpc-status-mapping.md).
func httpToGRPC(status int) int {
	switch status {
	case 200:
		return 2 // UNKNOWN: a 200 without grpc-status is a broken response
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}
