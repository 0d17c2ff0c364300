package router

import (
	"strconv"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/flags"
	"github.com/sightline-proxy/sightline/proxy/grpcproto"
	"github.com/sightline-proxy/sightline/proxy/ratelimit"
	"github.com/sightline-proxy/sightline/proxy/retry"
	"github.com/sightline-proxy/sightline/proxy/route"
	"github.com/sightline-proxy/sightline/stats"
)

// Override headers a listener with trust_request_headers honours.
const (
	headerRqTimeoutMs = "X-Sightline-Upstream-Rq-Timeout-Ms"
	lowerRqTimeoutMs  = "x-sightline-upstream-rq-timeout-ms"
	headerMaxRetries  = "X-Sightline-Max-Retries"
	headerPerTry      = "X-Sightline-Upstream-Rq-Per-Try-Timeout-Ms"
)

// Request is what the router reads of a request, whatever the codec.
type Request struct {
	Authority string
	// Path is the request path without the query, for matching.
	Path    string
	Headers route.Headers
	GRPC    bool
	// Trust: the listener honours x-sightline-* override headers.
	Trust bool
	// Method and RemoteAddr (the client's "ip:port") are read by rate
	// limit actions (:method, remote_address).
	Method     string
	RemoteAddr string
}

// Plan is what routing decided for one request. It is a value the codec
// keeps in its per-call state: building it allocates nothing.
type Plan struct {
	Route   *route.Route
	Cluster *cluster.Cluster
	// Timeout bounds the whole call: the route's, or the trusted
	// override's, lowered by grpc-timeout; 0 means none.
	Timeout time.Duration
	// IdleTimeout ends the call after this long without activity either
	// way (Envoy's stream idle timeout); 0 means none.
	IdleTimeout time.Duration
	// Retry is the route's retry policy with trusted overrides applied;
	// its zero value retries nothing.
	Retry retry.Policy
	// Balance carries the hash of the route's hash_policy header.
	Balance balancer.Request
	// Mirror is the route's mirror cluster when this request was drawn
	// to be copied to it; nil otherwise.
	Mirror *cluster.Cluster
	// RateLimit is what the codec adds to the response as x-ratelimit-*
	// headers; unset when no limit asked for them.
	RateLimit RateLimitHeaders
	// ResponseHeaders are added to the response as they are: the rate
	// limit service's response_headers_to_add.
	ResponseHeaders []ratelimit.Entry
}

// Decide routes req on t into p. When the request is not sent upstream
// it returns ok false and the reply the codec answers with (no route, a
// cluster_header naming no cluster, a direct_response); CountReply counts
// it on the listener.
//
// A request over a local rate limit (the route's, its virtual host's or
// its listener's) gets the limit's refusal (429 or RESOURCE_EXHAUSTED,
// flag RL) before anything else: the rate limit filters run before
// Envoy's router, direct responses included.
func Decide(t *route.Table, req *Request, p *Plan) (rp Reply, ok bool) {
	rt := t.MatchHeaders(req.Authority, req.Path, req.Headers)
	p.RateLimit, p.ResponseHeaders = RateLimitHeaders{}, nil
	if rt == nil {
		if t.Local != nil {
			if rp, limited := checkLocal(t.Local, nil, req, p); limited {
				return rp, false
			}
		}
		return ReplyNoRoute, false
	}
	p.Route = rt
	if rt.Local != nil {
		if rp, limited := checkLocal(rt.Local, rt.RateLimits, req, p); limited {
			return rp, false
		}
	}
	switch {
	case rt.Direct != nil:
		return Reply{Status: rt.Direct.Status, Message: rt.Direct.Body, Direct: true}, false
	case rt.ClusterHeader != "":
		if p.Cluster = rt.ClusterFor(req.Headers); p.Cluster == nil {
			return ReplyNoCluster, false
		}
	default:
		p.Cluster = rt.Cluster()
	}
	p.Timeout = rt.Timeout
	p.IdleTimeout = rt.IdleTimeout
	h := req.Headers
	if req.Trust {
		if v, ok := h.Get(headerRqTimeoutMs, lowerRqTimeoutMs); ok {
			if ms, err := strconv.Atoi(v); err == nil && ms >= 0 {
				p.Timeout = time.Duration(ms) * time.Millisecond
			}
		}
	}
	if req.GRPC {
		p.Timeout = grpcTimeout(rt, h, p.Timeout)
	}
	if rt.HashHeader != "" {
		if v, ok := h.Get(rt.HashHeader, rt.HashHeaderLower); ok {
			p.Balance.Hash, p.Balance.HasHash = xxhash.Sum64String(v), true
		}
	}
	p.Retry = retry.Policy{}
	if rt.Retry != nil {
		p.Retry = *rt.Retry
	}
	if req.Trust {
		maxRetries, _ := h.Get(headerMaxRetries, retry.HeaderMaxRetries)
		perTry, _ := h.Get(headerPerTry, retry.HeaderPerTryTimeout)
		if maxRetries != "" || perTry != "" {
			if o, err := retry.ParseOverrides(maxRetries, perTry); err == nil {
				p.Retry = rt.Retry.With(o)
			}
		}
	}
	p.Mirror = nil
	if rt.MirrorChosen() {
		p.Mirror = rt.Mirror
	}
	return Reply{}, true
}

// grpcTimeout is a gRPC request's timeout given the route's (or the
// trusted override's) timeout and the client's grpc-timeout. With
// max_grpc_timeout set it is Envoy's (RouteEntry max_grpc_timeout): the
// client's grpc-timeout, less grpc_timeout_offset when the offset is
// smaller, capped at max_grpc_timeout (0 = no cap, and no timeout for a
// request without grpc-timeout); the route's timeout does not apply.
// Without it, the smaller of the route's timeout and the client's
// grpc-timeout (less the offset) bounds the call, where Envoy would ignore
// grpc-timeout altogether.
func grpcTimeout(rt *route.Route, h route.Headers, timeout time.Duration) time.Duration {
	var maxT *config.Duration
	var offset time.Duration
	if c := rt.Config; c != nil {
		maxT, offset = c.MaxGRPCTimeout, c.GRPCTimeoutOffset.D()
	}
	client, has := time.Duration(0), false
	if v, ok := h.Get("Grpc-Timeout", "grpc-timeout"); ok {
		client, has = grpcproto.ParseTimeout(v)
	}
	if has && offset > 0 && offset < client {
		client -= offset
	}
	if maxT != nil {
		m := maxT.D()
		if m > 0 && (!has || client == 0 || client > m) {
			return m
		}
		if !has {
			return 0
		}
		return client
	}
	if has && (timeout == 0 || client < timeout) {
		return client
	}
	return timeout
}

// AttemptTimeout is the grpc-timeout an attempt of a gRPC call sends
// upstream, so that the server knows the time the attempt really has: its
// per_try_timeout when it has one, cut to the time left before the call's
// deadline (1ms once that has passed: 0 would mean no deadline), or the
// time left alone. ok is false when the attempt has no bound; the client's
// grpc-timeout, if any, is then forwarded as it came. Both codecs call it
// for every attempt, retries included, as Envoy's setTimeoutHeaders does
// (Envoy only when max_grpc_timeout is set; Sightline always).
func (c *Call) AttemptTimeout(deadline, now time.Time) (d time.Duration, ok bool) {
	d = c.Plan.Retry.PerTryTimeout
	if !deadline.IsZero() {
		left := deadline.Sub(now)
		if left < time.Millisecond {
			left = time.Millisecond
		}
		if d <= 0 || left < d {
			d = left
		}
	}
	return d, d > 0
}

// FormatGRPCTimeout encodes d as a grpc-timeout value: at most 8 digits
// and the finest unit that holds it, rounded up, as grpc-go's
// encodeTimeout does.
func FormatGRPCTimeout(d time.Duration) string {
	const maxValue = 1e8 - 1
	if d <= 0 {
		return "0n"
	}
	for _, u := range [...]struct {
		d    time.Duration
		unit string
	}{{time.Nanosecond, "n"}, {time.Microsecond, "u"}, {time.Millisecond, "m"}, {time.Second, "S"}, {time.Minute, "M"}} {
		if v := ceilDiv(d, u.d); v <= maxValue {
			return strconv.FormatInt(int64(v), 10) + u.unit
		}
	}
	return strconv.FormatInt(int64(min(ceilDiv(d, time.Hour), maxValue)), 10) + "H"
}

// ceilDiv is d/u rounded up, without overflow.
func ceilDiv(d, u time.Duration) time.Duration {
	v := d / u
	if d%u != 0 {
		v++
	}
	return v
}

// CountReply counts a reply Decide returned on the listener's stats:
// no_route, no_cluster or rq_direct_response.
func CountReply(st *stats.HTTP, rp Reply) {
	switch {
	case rp.Direct:
		st.RqDirectResponse.Inc(1)
	case rp.Flag == flags.NoRoute:
		st.NoRoute.Inc(1)
	case rp.Flag == flags.NoClusterFound:
		st.NoCluster.Inc(1)
	}
}

// Deadline is the call's deadline from now, zero when it has none.
func (p *Plan) Deadline(now time.Time) time.Time {
	if p.Timeout <= 0 {
		return time.Time{}
	}
	return now.Add(p.Timeout)
}
