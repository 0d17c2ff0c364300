package route

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/textproto"
	"regexp"
	"strings"
	"time"

	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/grpcproto"
	"github.com/sightline-proxy/sightline/proxy/ratelimit"
	"github.com/sightline-proxy/sightline/proxy/retry"
)

// Route is one compiled route of a virtual host. It is immutable and shared
// by every request it matches.
//
// A request matches when its path matches (prefix, exact path or regex,
// case-sensitive as in Envoy), every header matcher matches, and, for a grpc
// route, its content-type starts with "application/grpc". Regexes must match
// the whole path or header value, as Envoy's safe_regex does. A header sent
// more than once is matched as its values joined with ",", as Envoy does
// (HeaderUtility::getAllOfHeaderAsString).
type Route struct {
	// Name is the configured name, "" when the route has none; the access
	// log's route_name.
	Name string
	// VirtualHost is the name of the virtual host the route is in.
	VirtualHost string
	// Timeout bounds the whole request; 0 means none.
	Timeout time.Duration
	// IdleTimeout ends a request with no activity either way for this
	// long (the route's idle_timeout, or its listener's
	// stream_idle_timeout); 0 means none.
	IdleTimeout time.Duration
	// HashHeader is the canonical name (the http.Header key) of the header
	// the first hash_policy entry hashes for ring_hash and maglev, "" when
	// the route has no hash policy.
	HashHeader string
	// HashHeaderLower is the same name in lower case, as HTTP/2 sends it.
	HashHeaderLower string
	// Retry is the route's retry policy; nil: no retries.
	Retry *retry.Policy
	// Direct, when set, is the route's fixed answer: it has no cluster.
	Direct *config.DirectResponse
	// ClusterHeader (canonical) and ClusterHeaderLower name the request
	// header that names the cluster, when the route has cluster_header;
	// ClusterFor resolves it.
	ClusterHeader, ClusterHeaderLower string
	clusters                          map[string]*cluster.Cluster
	// Mirror, when set, gets a copy of MirrorPercent of the requests.
	Mirror        *cluster.Cluster
	MirrorPercent float64
	// Config is the route as configured. It points into the config given
	// to New.
	Config *config.Route
	// Local is the local rate limit of the route's requests: the route's
	// own, else its virtual host's, else its listener's; nil: none.
	Local *LocalLimit
	// RateLimits make the descriptors of the route's requests: its own
	// rate_limits, else its virtual host's; nil: none.
	RateLimits *RateLimits
	// Global is the listener's rate limit service, for a route with
	// RateLimits; nil otherwise.
	Global *ratelimit.Global

	kind    pathKind
	path    string         // the prefix, the exact path, or the regex's literal prefix
	regex   *regexp.Regexp // kind == pathRegex
	headers []headerMatcher
	grpc    bool

	// cluster is the target when there is only one; otherwise targets holds
	// the weighted ones with their cumulative weights, and total their sum.
	cluster *cluster.Cluster
	targets []target
	total   uint64
}

type pathKind uint8

const (
	pathPrefix pathKind = iota
	pathExact
	pathRegex
)

// target is one weighted cluster; a request goes to the first target whose
// upTo is above a random number in [0, total).
type target struct {
	cluster *cluster.Cluster
	upTo    uint64
}

func newRoute(cfg *config.Route, vhost string, clusters map[string]*cluster.Cluster) (Route, error) {
	r := Route{
		Name:        cfg.Name,
		VirtualHost: vhost,
		Timeout:     cfg.Timeout.D(),
		Config:      cfg,
		grpc:        cfg.Match.GRPC,
	}
	if cfg.IdleTimeout != nil {
		r.IdleTimeout = cfg.IdleTimeout.D()
	}
	if len(cfg.HashPolicy) > 0 {
		r.HashHeader = textproto.CanonicalMIMEHeaderKey(cfg.HashPolicy[0].Header)
		r.HashHeaderLower = strings.ToLower(cfg.HashPolicy[0].Header)
	}

	m := &cfg.Match
	switch {
	case m.Regex != "":
		re, err := fullMatch(m.Regex)
		if err != nil {
			return Route{}, fmt.Errorf("match.regex: %w", err)
		}
		r.kind, r.regex = pathRegex, re
		r.path, _ = re.LiteralPrefix()
	case m.Path != "":
		r.kind, r.path = pathExact, m.Path
	default:
		r.kind, r.path = pathPrefix, m.Prefix
	}

	for i := range m.Headers {
		hm, err := newHeaderMatcher(&m.Headers[i])
		if err != nil {
			return Route{}, fmt.Errorf("match.headers[%d].%w", i, err)
		}
		r.headers = append(r.headers, hm)
	}

	switch {
	case cfg.DirectResponse != nil:
		r.Direct = cfg.DirectResponse
	case cfg.ClusterHeader != "":
		r.ClusterHeader = textproto.CanonicalMIMEHeaderKey(cfg.ClusterHeader)
		r.ClusterHeaderLower = strings.ToLower(cfg.ClusterHeader)
		r.clusters = clusters
	default:
		if err := r.resolveClusters(cfg, clusters); err != nil {
			return Route{}, err
		}
	}
	if rp := cfg.RetryPolicy; rp != nil {
		p, err := retry.New(*rp)
		if err != nil {
			return Route{}, fmt.Errorf("retry_policy: %w", err)
		}
		r.Retry = p
	}
	if m := cfg.Mirror; m != nil {
		c := clusters[m.Cluster]
		if c == nil {
			return Route{}, fmt.Errorf("mirror.cluster: unknown cluster %q", m.Cluster)
		}
		r.Mirror, r.MirrorPercent = c, 100
		if m.Percent != nil {
			r.MirrorPercent = *m.Percent
		}
	}
	return r, nil
}

// resolveClusters sets the route's target. Zero-weight targets are dropped,
// and a weighted set left with one target becomes a plain one, so that
// Cluster draws a random number only when there is a choice.
func (r *Route) resolveClusters(cfg *config.Route, clusters map[string]*cluster.Cluster) error {
	switch {
	case cfg.Cluster != "" && len(cfg.WeightedClusters) > 0:
		return errors.New("cluster: cannot be set together with weighted_clusters")
	case cfg.Cluster != "":
		c := clusters[cfg.Cluster]
		if c == nil {
			return fmt.Errorf("cluster: unknown cluster %q", cfg.Cluster)
		}
		r.cluster = c
		return nil
	case len(cfg.WeightedClusters) == 0:
		return errors.New("cluster: one of cluster and weighted_clusters is required")
	}
	for i, wc := range cfg.WeightedClusters {
		c := clusters[wc.Cluster]
		if c == nil {
			return fmt.Errorf("weighted_clusters[%d].cluster: unknown cluster %q", i, wc.Cluster)
		}
		if wc.Weight == 0 {
			continue
		}
		r.total += uint64(wc.Weight)
		r.targets = append(r.targets, target{cluster: c, upTo: r.total})
	}
	switch len(r.targets) {
	case 0:
		return errors.New("weighted_clusters: the weights add up to 0")
	case 1:
		r.cluster, r.targets, r.total = r.targets[0].cluster, nil, 0
	}
	return nil
}

// Cluster returns the cluster for one request: the route's cluster, or one of
// its weighted clusters drawn in proportion to the weights. It never returns
// nil. It is called on the request path from any goroutine; the draw uses
// math/rand/v2's per-thread generator, so it takes no lock and allocates
// nothing.
func (r *Route) Cluster() *cluster.Cluster {
	if r.cluster != nil {
		return r.cluster
	}
	return r.pick(rand.Uint64N(r.total))
}

// pick returns the target that n, in [0, total), falls on. A linear scan
// beats a binary search for the handful of targets a route has.
func (r *Route) pick(n uint64) *cluster.Cluster {
	last := len(r.targets) - 1
	for _, t := range r.targets[:last] {
		if n < t.upTo {
			return t.cluster
		}
	}
	return r.targets[last].cluster
}

func (r *Route) matches(path string, h Headers) bool {
	switch r.kind {
	case pathPrefix:
		if !strings.HasPrefix(path, r.path) {
			return false
		}
	case pathExact:
		if path != r.path {
			return false
		}
	case pathRegex:
		// Most requests miss a regex route; the prefix check makes that
		// a string comparison instead of a regex run (some 45 ns).
		if !strings.HasPrefix(path, r.path) || !r.regex.MatchString(path) {
			return false
		}
	}
	if r.grpc && !isGRPC(h) {
		return false
	}
	for i := range r.headers {
		if !r.headers[i].matches(h) {
			return false
		}
	}
	return true
}

// isGRPC reports whether the request is gRPC by its content type.
func isGRPC(h Headers) bool {
	ct, ok := h.Get("Content-Type", "content-type")
	return ok && grpcproto.IsGRPC(ct)
}

type headerKind uint8

const (
	headerExact headerKind = iota
	headerPresent
	headerRegex
)

type headerMatcher struct {
	canonical string // "X-User-Id": the key net/http files the header under
	lower     string // "x-user-id": the key a header map built from HPACK uses
	kind      headerKind
	exact     string
	regex     *regexp.Regexp
	invert    bool
}

func newHeaderMatcher(cfg *config.HeaderMatcher) (headerMatcher, error) {
	m := headerMatcher{
		canonical: textproto.CanonicalMIMEHeaderKey(cfg.Name),
		lower:     lowerASCII(cfg.Name),
		invert:    cfg.Invert,
	}
	switch {
	case cfg.Regex != "":
		re, err := fullMatch(cfg.Regex)
		if err != nil {
			return headerMatcher{}, fmt.Errorf("regex: %w", err)
		}
		m.kind, m.regex = headerRegex, re
	case cfg.Present:
		m.kind = headerPresent
	default:
		m.kind, m.exact = headerExact, cfg.Exact
	}
	return m, nil
}

// matches follows Envoy's HeaderUtility::matchHeaders: invert turns the
// result of a header that is there around, but an absent header fails every
// matcher except an inverted present one. So "exact: prod, invert: true"
// needs the header to be sent with another value.
func (m *headerMatcher) matches(h Headers) bool {
	v, present := h.Get(m.canonical, m.lower)
	if !present {
		return m.kind == headerPresent && m.invert
	}
	var ok bool
	switch m.kind {
	case headerExact:
		ok = v == m.exact
	case headerPresent:
		ok = true
	case headerRegex:
		ok = m.regex.MatchString(v)
	}
	return ok != m.invert
}

// Headers is a request's header fields as the router reads them, so that
// the net/http path (an http.Header) and a frame-level path (decoded HPACK
// fields) share one router without building a map per request.
type Headers interface {
	// Get returns a header's value, the values of a repeated header joined
	// with ",", and whether the header is present. canonical is the name as
	// net/http files it ("X-User-Id"), lower the name as HTTP/2 sends it
	// ("x-user-id").
	Get(canonical, lower string) (string, bool)
}

// HTTPHeaders adapts an http.Header to Headers. Converting it allocates
// nothing: an http.Header is a map, and a map fits in an interface as is.
type HTTPHeaders http.Header

// Get implements Headers. It indexes the map directly instead of calling
// http.Header.Values, which would canonicalize the name on every request,
// and falls back to the lower-case key for maps built from HTTP/2 fields.
func (h HTTPHeaders) Get(canonical, lower string) (string, bool) {
	vals, ok := h[canonical]
	if !ok {
		vals, ok = h[lower]
	}
	switch {
	case !ok || len(vals) == 0:
		return "", false
	case len(vals) == 1:
		return vals[0], true
	}
	return strings.Join(vals, ","), true
}

// fullMatch compiles expr anchored at both ends: Envoy's safe_regex matches
// the whole path or value, where Go's MatchString looks for a substring.
// expr is compiled alone first so that one such as "a)|(b", which would
// break out of the anchoring group, is refused.
func fullMatch(expr string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(expr); err != nil {
		return nil, err
	}
	return regexp.Compile(`^(?:` + expr + `)$`)
}

// ClusterFor returns the cluster of a cluster_header route that the
// request's header names, or nil when it names none the config has
// (Envoy's NC). It allocates nothing.
func (r *Route) ClusterFor(h Headers) *cluster.Cluster {
	v, ok := h.Get(r.ClusterHeader, r.ClusterHeaderLower)
	if !ok {
		return nil
	}
	return r.clusters[v]
}

// MirrorChosen draws whether one request of the route is copied to its
// mirror cluster; false when the route has none.
func (r *Route) MirrorChosen() bool {
	return r.Mirror != nil && (r.MirrorPercent >= 100 || rand.Float64()*100 < r.MirrorPercent)
}

// ShadowAuthority is the authority of a mirrored request, Envoy's: the
// host part gets "-shadow" ("svc:8080" becomes "svc-shadow:8080"), so the
// shadow service can tell copies from real traffic.
func ShadowAuthority(authority string) string {
	if host, port, err := net.SplitHostPort(authority); err == nil {
		return net.JoinHostPort(host+"-shadow", port)
	}
	return authority + "-shadow"
}
