package router

import (
	"context"

	"github.com/sightline-proxy/sightline/proxy/flags"
	"github.com/sightline-proxy/sightline/proxy/grpcproto"
	"github.com/sightline-proxy/sightline/proxy/ratelimit"
	"github.com/sightline-proxy/sightline/proxy/route"
	"github.com/sightline-proxy/sightline/stats"
)

// Messages of the global rate limit's replies.
const (
	msgRateLimited      = "rate_limited"
	msgRateLimitService = "rate limit service error"
)

// GlobalCheck is one request's check with the rate limit service (Envoy's
// ratelimit filter): its descriptors, made while the request's headers
// are at hand, and the stats its outcome counts in. The codec makes it
// right after Decide and runs it where it may block: net/http's handler
// goroutine for HTTP/1.1, a goroutine of its own for the HTTP/2 engine,
// whose reader never blocks.
type GlobalCheck struct {
	g  *ratelimit.Global
	st *stats.RateLimit
	cs *stats.Cluster
	ds ratelimit.Descriptors
}

// NewGlobalCheck returns the request's check, or nil when it needs none:
// the route has no rate limit service, or its rate_limits made no
// descriptor (Envoy then does not call the service either). It reads the
// request's headers, so it runs where they are valid; the check it returns
// holds copies of what it needs. A route without a rate limit service pays
// one pointer test.
func NewGlobalCheck(req *Request, p *Plan) *GlobalCheck {
	rt := p.Route
	if rt == nil || rt.Global == nil || p.Cluster == nil {
		return nil
	}
	gc := &GlobalCheck{g: rt.Global}
	info := route.RequestInfo{Method: req.Method, Authority: req.Authority, Path: req.Path, RemoteAddr: req.RemoteAddr}
	rt.RateLimits.Descriptors(req.Headers, &info, &gc.ds)
	if gc.ds.N == 0 {
		return nil
	}
	gc.st, gc.cs = p.Cluster.Stats.RateLimit(), p.Cluster.Stats
	return gc
}

// GlobalResult is the outcome of a check.
type GlobalResult struct {
	// Refused: Reply answers the request.
	Refused bool
	Reply   Reply
	// RateLimit and Headers go on the response of an allowed request.
	RateLimit RateLimitHeaders
	Headers   []ratelimit.Entry
}

// Apply notes in p the headers an allowed request's response carries.
func (r *GlobalResult) Apply(p *Plan) {
	if r.RateLimit.Set {
		p.RateLimit = r.RateLimit
	}
	p.ResponseHeaders = r.Headers
}

// Do runs the check and applies an allowance to p: what a codec that may
// block where the request runs calls (HTTP/1.1).
func (gc *GlobalCheck) Do(ctx context.Context, p *Plan) (Reply, bool) {
	r := gc.Run(ctx)
	if r.Refused {
		return r.Reply, true
	}
	r.Apply(p)
	return Reply{}, false
}

// Run asks the service, waiting at most the rate limit's timeout (or
// until ctx, the request's, ends), and counts the outcome in
// cluster.<route's cluster>.ratelimit.*: ok, over_limit, error and, when
// a failed check lets the request through, failure_mode_allowed. A
// refusal is 429 or RESOURCE_EXHAUSTED with flag RL, charged to the
// cluster's upstream_rq_<status> as Envoy charges it; with
// failure_mode_deny, a failed check is 500 or UNAVAILABLE with flag RLSE.
// An allowed request's response carries the service's
// response_headers_to_add, and the x-ratelimit-* headers when asked.
func (gc *GlobalCheck) Run(ctx context.Context) GlobalResult {
	g := gc.g
	dec, err := g.Check(ctx, gc.ds.All())
	if err != nil && ctx.Err() != nil {
		// The client went away during the check (ctx is the request's):
		// nothing to count, as Envoy cancels the check then; the request
		// ends as a cancelled one.
		return GlobalResult{}
	}
	if err != nil {
		gc.st.Error.Inc(1)
		if g.FailureModeDeny {
			return GlobalResult{Refused: true, Reply: Reply{Flag: flags.RateLimitServiceError, Status: 500, GRPC: grpcproto.Unavailable, Message: msgRateLimitService}}
		}
		gc.st.FailureModeAllowed.Inc(1)
		return GlobalResult{}
	}
	var h RateLimitHeaders
	if g.Headers && dec.HasLimit {
		h = RateLimitHeaders{Set: true, Limit: dec.Limit, Remaining: dec.Remaining, Reset: dec.Reset}
	}
	if dec.OverLimit {
		gc.st.OverLimit.Inc(1)
		// As Envoy's filter does, the refusal's status goes to the
		// cluster's response stats (upstream_rq_429, _4xx and
		// _completed), where dashboards of the cluster's answers see it.
		up := gc.cs.Upstream()
		up.RqCompleted(g.Status)
		up.RqFinished.Inc(1)
		rp := Reply{Flag: flags.RateLimited, Status: g.Status, GRPC: g.GRPCStatus, Message: msgRateLimited, RateLimit: h}
		if len(dec.ResponseHeaders) > 0 {
			hl := HeaderList(dec.ResponseHeaders)
			rp.Headers = &hl
		}
		return GlobalResult{Refused: true, Reply: rp}
	}
	gc.st.OK.Inc(1)
	return GlobalResult{RateLimit: h, Headers: dec.ResponseHeaders}
}
