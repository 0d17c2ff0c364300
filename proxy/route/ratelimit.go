package route

import (
	"cmp"
	"fmt"
	"net/textproto"
	"strings"

	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/grpcproto"
	"github.com/sightline-proxy/sightline/proxy/ratelimit"
	"github.com/sightline-proxy/sightline/stats"
)

// Option configures New.
type Option func(*options)

type options struct {
	listener *config.Listener
	stats    *stats.Store
	clock    ratelimit.Clock
	services *ratelimit.Services
}

// WithListener gives New the listener the table is for: its local rate
// limit applies to the routes that have none of their own.
func WithListener(l *config.Listener) Option { return func(o *options) { o.listener = l } }

// WithStats gives New the store the rate limits' stats are made in (none:
// they count nothing).
func WithStats(st *stats.Store) Option { return func(o *options) { o.stats = st } }

// WithClock gives the local rate limits a clock (tests); the monotonic
// clock by default.
func WithClock(c ratelimit.Clock) Option { return func(o *options) { o.clock = c } }

// WithServices gives New the rate limit service clients, shared across
// reloads; without it the listener's rate_limit is not applied.
func WithServices(s *ratelimit.Services) Option { return func(o *options) { o.services = s } }

// newGlobal compiles the listener's rate_limit (nil: none).
func (o *options) newGlobal(clusters map[string]*cluster.Cluster) (*ratelimit.Global, error) {
	if o.listener == nil || o.listener.RateLimit == nil || o.services == nil {
		return nil, nil
	}
	cfg := o.listener.RateLimit
	c := clusters[cfg.Cluster]
	if c == nil {
		return nil, fmt.Errorf("rate_limit.cluster: unknown cluster %q", cfg.Cluster)
	}
	svc, err := o.services.Get(&c.Config)
	if err != nil {
		return nil, fmt.Errorf("rate_limit: %w", err)
	}
	return &ratelimit.Global{
		Service: svc, Domain: cfg.Domain, Timeout: cfg.Timeout.D(), FailureModeDeny: cfg.FailureModeDeny,
		Status: cmp.Or(cfg.Status, 429), GRPCStatus: rateLimitedGRPC(cfg.RateLimitedAsResourceExhausted),
		Headers: cfg.EnableXRateLimitHeaders == config.XRateLimitDraft03,
	}, nil
}

// LocalLimit is a compiled local rate limit and how a refusal is answered.
// One is built per configured local_rate_limit and shared by every route
// it applies to.
type LocalLimit struct {
	*ratelimit.Local
	// Status and GRPCStatus answer a refused request.
	Status, GRPCStatus int
	// Headers: x-ratelimit-* go on the responses of checked requests.
	Headers bool
}

// newLocal compiles a local_rate_limit (nil: none).
func (o *options) newLocal(cfg *config.LocalRateLimit) *LocalLimit {
	if cfg == nil {
		return nil
	}
	c := ratelimit.LocalConfig{
		AlwaysConsumeDefault:  cfg.AlwaysConsumeDefaultTokenBucket == nil || *cfg.AlwaysConsumeDefaultTokenBucket,
		EnabledPercent:        100,
		EnforcedPercent:       100,
		MaxDynamicDescriptors: cfg.MaxDynamicDescriptors,
	}
	if cfg.FilterEnabled != nil {
		c.EnabledPercent = *cfg.FilterEnabled
	}
	if cfg.FilterEnforced != nil {
		c.EnforcedPercent = *cfg.FilterEnforced
	}
	if cfg.TokenBucket != nil {
		c.Bucket = tokenBucket(cfg.TokenBucket)
	}
	for _, d := range cfg.Descriptors {
		dc := ratelimit.DescriptorConfig{Bucket: tokenBucket(&d.TokenBucket)}
		for _, e := range d.Entries {
			dc.Entries = append(dc.Entries, ratelimit.Entry{Key: e.Key, Value: e.Value})
		}
		c.Descriptors = append(c.Descriptors, dc)
	}
	var st *stats.LocalRateLimit
	if o.stats != nil {
		st = o.stats.LocalRateLimit(cfg.StatPrefix)
	}
	return &LocalLimit{
		Local:      ratelimit.NewLocal(c, st, o.clock),
		Status:     cmp.Or(cfg.Status, 429),
		GRPCStatus: rateLimitedGRPC(cfg.RateLimitedAsResourceExhausted),
		Headers:    cfg.EnableXRateLimitHeaders == config.XRateLimitDraft03,
	}
}

// rateLimitedGRPC is the grpc-status of a refusal: RESOURCE_EXHAUSTED by
// default, UNAVAILABLE (what Envoy maps 429 to) when asked.
func rateLimitedGRPC(asResourceExhausted *bool) int {
	if asResourceExhausted != nil && !*asResourceExhausted {
		return grpcproto.Unavailable
	}
	return grpcproto.ResourceExhausted
}

func tokenBucket(tb *config.TokenBucket) ratelimit.TokenBucket {
	return ratelimit.TokenBucket{MaxTokens: tb.MaxTokens, TokensPerFill: max(tb.TokensPerFill, 1), FillInterval: tb.FillInterval.D()}
}

// RateLimits are the compiled rate_limits of a route or virtual host: each
// entry's actions make one descriptor of a request.
type RateLimits struct {
	policies [][]action
}

type actionKind uint8

const (
	actionRequestHeader actionKind = iota
	actionRemoteAddress
	actionGenericKey
	actionHeaderValueMatch
)

// pseudo identifies a request_headers action on a pseudo-header.
type pseudo uint8

const (
	pseudoNone pseudo = iota
	pseudoPath
	pseudoAuthority
	pseudoMethod
)

type action struct {
	kind         actionKind
	key, value   string // descriptor key; value for generic_key and header_value_match
	canonical    string // request_headers: the header, as net/http keys it
	lower        string // and as HTTP/2 sends it
	pseudo       pseudo
	skipIfAbsent bool
	expectMatch  bool
	headers      []headerMatcher
}

func newRateLimits(cfg []config.RateLimitPolicy) (*RateLimits, error) {
	if len(cfg) == 0 {
		return nil, nil
	}
	rl := &RateLimits{}
	for i, p := range cfg {
		var acts []action
		for j, a := range p.Actions {
			var act action
			switch {
			case a.RequestHeaders != nil:
				h := a.RequestHeaders
				act = action{kind: actionRequestHeader, key: h.DescriptorKey, skipIfAbsent: h.SkipIfAbsent,
					canonical: textproto.CanonicalMIMEHeaderKey(h.HeaderName), lower: strings.ToLower(h.HeaderName)}
				switch h.HeaderName {
				case ":path":
					act.pseudo = pseudoPath
				case ":authority":
					act.pseudo = pseudoAuthority
				case ":method":
					act.pseudo = pseudoMethod
				}
			case a.RemoteAddress != nil:
				act = action{kind: actionRemoteAddress, key: "remote_address"}
			case a.GenericKey != nil:
				act = action{kind: actionGenericKey, key: cmp.Or(a.GenericKey.DescriptorKey, "generic_key"), value: a.GenericKey.DescriptorValue}
			case a.HeaderValueMatch != nil:
				h := a.HeaderValueMatch
				act = action{kind: actionHeaderValueMatch, key: cmp.Or(h.DescriptorKey, "header_match"), value: h.DescriptorValue,
					expectMatch: h.ExpectMatch == nil || *h.ExpectMatch}
				for k := range h.Headers {
					m, err := newHeaderMatcher(&h.Headers[k])
					if err != nil {
						return nil, fmt.Errorf("rate_limits[%d].actions[%d].header_value_match.headers[%d].%w", i, j, k, err)
					}
					act.headers = append(act.headers, m)
				}
			default:
				return nil, fmt.Errorf("rate_limits[%d].actions[%d]: no action", i, j)
			}
			acts = append(acts, act)
		}
		rl.policies = append(rl.policies, acts)
	}
	return rl, nil
}

// RequestInfo is what the actions read of a request besides its headers.
type RequestInfo struct {
	Method, Authority string
	// Path is the path without the query.
	Path string
	// RemoteAddr is the client's address, "ip:port" or a bare IP.
	RemoteAddr string
}

// Descriptors adds the request's descriptors to ds, one per rate_limits
// entry whose actions all made their entry, as Envoy does. It allocates
// nothing.
func (rl *RateLimits) Descriptors(h Headers, info *RequestInfo, ds *ratelimit.Descriptors) {
	for _, acts := range rl.policies {
		d := ds.Next()
		if d == nil {
			return
		}
		if populate(acts, h, info, d) {
			ds.Commit()
		}
	}
}

// populate fills d from acts; false when an action could not make its
// entry, so that the descriptor is not sent.
func populate(acts []action, h Headers, info *RequestInfo, d *ratelimit.Descriptor) bool {
	for i := range acts {
		a := &acts[i]
		switch a.kind {
		case actionRequestHeader:
			var v string
			var ok bool
			switch a.pseudo {
			case pseudoPath:
				v, ok = info.Path, info.Path != ""
			case pseudoAuthority:
				v, ok = info.Authority, info.Authority != ""
			case pseudoMethod:
				v, ok = info.Method, info.Method != ""
			default:
				v, ok = h.Get(a.canonical, a.lower)
			}
			if !ok {
				if a.skipIfAbsent {
					continue
				}
				return false
			}
			d.Add(a.key, v)
		case actionRemoteAddress:
			ip := remoteIP(info.RemoteAddr)
			if ip == "" {
				return false
			}
			d.Add(a.key, ip)
		case actionGenericKey:
			d.Add(a.key, a.value)
		case actionHeaderValueMatch:
			all := true
			for j := range a.headers {
				if !a.headers[j].matches(h) {
					all = false
					break
				}
			}
			if all != a.expectMatch {
				return false
			}
			d.Add(a.key, a.value)
		}
	}
	return d.N > 0
}

// remoteIP is the IP of "ip:port", "[ipv6]:port" or a bare IP, sliced
// out without allocating.
func remoteIP(addr string) string {
	if addr == "" {
		return ""
	}
	if addr[0] == '[' {
		if end := strings.IndexByte(addr, ']'); end > 0 {
			return addr[1:end]
		}
		return addr
	}
	if i := strings.LastIndexByte(addr, ':'); i >= 0 && strings.IndexByte(addr, ':') == i {
		return addr[:i]
	}
	return addr
}
