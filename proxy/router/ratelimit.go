package router

import (
	"strconv"
	"time"

	"github.com/sightline-proxy/sightline/proxy/flags"
	"github.com/sightline-proxy/sightline/proxy/ratelimit"
	"github.com/sightline-proxy/sightline/proxy/route"
)

// The x-ratelimit-* response headers (Envoy's DRAFT_VERSION_03), in the
// forms each codec writes them.
const (
	HeaderRateLimitLimit     = "X-Ratelimit-Limit"
	HeaderRateLimitRemaining = "X-Ratelimit-Remaining"
	HeaderRateLimitReset     = "X-Ratelimit-Reset"
	LowerRateLimitLimit      = "x-ratelimit-limit"
	LowerRateLimitRemaining  = "x-ratelimit-remaining"
	LowerRateLimitReset      = "x-ratelimit-reset"
)

// msgLocalRateLimited is Envoy's body for a local rate limit's refusal.
const msgLocalRateLimited = "local_rate_limited"

// RateLimitHeaders are the x-ratelimit-* values of a checked request:
// the limit (max_tokens of the bucket that decided), the tokens left
// and the time until the bucket's next fill.
type RateLimitHeaders struct {
	Set       bool
	Limit     uint32
	Remaining uint32
	Reset     time.Duration
}

// Values returns the three header values; Reset is in whole seconds,
// rounded up, as the draft has it.
func (h *RateLimitHeaders) Values() (limit, remaining, reset string) {
	secs := int64((h.Reset + time.Second - 1) / time.Second)
	return strconv.FormatUint(uint64(h.Limit), 10), strconv.FormatUint(uint64(h.Remaining), 10), strconv.FormatInt(secs, 10)
}

// checkLocal takes the request's tokens from the local rate limit l with
// the descriptors rls makes (nil: none). When the request is refused it
// returns the limit's reply; otherwise it notes in p the headers the
// response carries, when the limit asks for them. It allocates nothing:
// the descriptors are built on the stack.
func checkLocal(l *route.LocalLimit, rls *route.RateLimits, req *Request, p *Plan) (Reply, bool) {
	var ds ratelimit.Descriptors
	var dp *ratelimit.Descriptors
	if rls != nil {
		info := route.RequestInfo{Method: req.Method, Authority: req.Authority, Path: req.Path, RemoteAddr: req.RemoteAddr}
		rls.Descriptors(req.Headers, &info, &ds)
		dp = &ds
	}
	r := l.Check(dp)
	var h RateLimitHeaders
	if l.Headers && r.Checked {
		h = RateLimitHeaders{Set: true, Limit: r.Limit, Remaining: r.Remaining, Reset: r.Reset}
	}
	if !r.Limited {
		p.RateLimit = h
		return Reply{}, false
	}
	return Reply{Flag: flags.RateLimited, Status: l.Status, GRPC: l.GRPCStatus, Message: msgLocalRateLimited, RateLimit: h}, true
}
