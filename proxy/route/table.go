// Package route chooses, for each request, the virtual host and the route
// that handle it, and the cluster the route sends it to.
//
// A Table is compiled once per listener per config: regexes are compiled,
// header names canonicalized, cluster names resolved to pointers and
// durations typed. It is immutable afterwards, so the request path reads it
// from any number of goroutines without a lock, and a reload builds a new
// Table and publishes it with the rest of the config.
//
// # Virtual host selection
//
// The authority (HTTP/2 :authority, HTTP/1 Host) is lower-cased (ASCII only)
// and looked up in Envoy's order (RouteMatcher::findVirtualHost):
//
//  1. an exact domain ("api.example.com", "my-service:8443");
//  2. a suffix wildcard ("*.example.com", "*-bar.foo.com"), longest suffix
//     first;
//  3. a prefix wildcard ("www.*", "my-service:*"), longest prefix first.
//
// A wildcard never matches the empty string, as in Envoy: "*.example.com"
// matches "a.example.com" but not ".example.com" or "example.com".
//
// If steps 1-3 find nothing and the authority ends in a port (a colon
// followed only by digits, possibly none, outside an IPv6 literal "[…]", as
// Envoy's Http::HeaderUtility::stripPortFromHost reads it), they are tried
// again on the authority without its port, so "my-service" also serves
// "my-service:10000". That is Envoy's strip_any_host_port, but as a fallback:
// a domain that names the port, exactly or as "my-service:*", wins over one
// that does not. The fallback is a whole second pass, so for
// "www.example.com:8080" the prefix wildcard "www.*" (matched with the port)
// beats "*.example.com" (matched without it).
//
// Last, the "*" domain takes everything else. Without one, an unknown
// authority matches no route.
package route

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
)

// Table is the compiled routing of one listener: its virtual hosts indexed by
// domain. It is immutable and safe for concurrent use.
type Table struct {
	exact    map[string]*virtualHost
	suffixes []wildcards // "*.example.com", longest first
	prefixes []wildcards // "my-service:*", longest first
	any      *virtualHost
	// Local is the listener's local rate limit (WithListener), for the
	// requests that match no route; nil: none.
	Local *LocalLimit
}

// wildcards holds the wildcard domains whose fixed part is n bytes long, keyed
// by that part ("*.example.com" → ".example.com"). Finding the longest match
// then costs one map lookup per distinct length, not one comparison per
// domain, as in Envoy's RouteMatcher::findWildcardVirtualHost.
type wildcards struct {
	n     int
	hosts map[string]*virtualHost
}

type virtualHost struct {
	routes []Route
}

// New compiles a listener's virtual hosts. clusters maps every cluster name to
// its cluster; the routes keep the pointers. The returned routes' Config
// fields point into vhosts, which must not be modified afterwards.
//
// The config has been validated, but New still returns an error, never
// panics, on what would make a route unusable: an unknown cluster, a bad
// regex, a route without a target, a domain listed twice (Envoy refuses
// those too), or a "*" inside a domain.
//
// The options give the listener (its local rate limit) and the stats
// store the rate limits count in; without them a table has only the
// virtual hosts' and routes' own rate limits, counting nothing.
func New(vhosts []config.VirtualHost, clusters map[string]*cluster.Cluster, opts ...Option) (*Table, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	t := &Table{exact: make(map[string]*virtualHost)}
	if o.listener != nil {
		t.Local = o.newLocal(o.listener.LocalRateLimit)
	}
	global, err := o.newGlobal(clusters)
	if err != nil {
		return nil, err
	}
	suffixes := make(map[int]map[string]*virtualHost)
	prefixes := make(map[int]map[string]*virtualHost)
	owner := make(map[string]string) // lower-cased domain → the virtual host that has it
	for i := range vhosts {
		cfg := &vhosts[i]
		vh := &virtualHost{routes: make([]Route, len(cfg.Routes))}
		vhLocal := t.Local
		if cfg.LocalRateLimit != nil {
			vhLocal = o.newLocal(cfg.LocalRateLimit)
		}
		vhLimits, err := newRateLimits(cfg.RateLimits)
		if err != nil {
			return nil, fmt.Errorf("virtual_hosts[%d].%w", i, err)
		}
		for j := range cfg.Routes {
			rc := &cfg.Routes[j]
			r, err := newRoute(rc, cfg.Name, clusters)
			if err != nil {
				return nil, fmt.Errorf("virtual_hosts[%d].routes[%d].%w", i, j, err)
			}
			// The most specific local rate limit applies, and the
			// route's rate_limits replace its virtual host's, as
			// Envoy's per-route config does.
			r.Local = vhLocal
			if rc.LocalRateLimit != nil {
				r.Local = o.newLocal(rc.LocalRateLimit)
			}
			r.RateLimits = vhLimits
			if len(rc.RateLimits) > 0 {
				if r.RateLimits, err = newRateLimits(rc.RateLimits); err != nil {
					return nil, fmt.Errorf("virtual_hosts[%d].routes[%d].%w", i, j, err)
				}
			}
			if r.RateLimits != nil {
				r.Global = global
			}
			vh.routes[j] = r
		}
		for j, d := range cfg.Domains {
			d = lowerASCII(d)
			if other, dup := owner[d]; dup {
				return nil, fmt.Errorf("virtual_hosts[%d].domains[%d]: domain %q is already in virtual host %q", i, j, d, other)
			}
			owner[d] = cfg.Name
			var fixed string
			switch {
			case d == "*":
				t.any = vh
				continue
			case strings.HasPrefix(d, "*"):
				fixed = d[1:]
				addWildcard(suffixes, fixed, vh)
			case strings.HasSuffix(d, "*"):
				fixed = d[:len(d)-1]
				addWildcard(prefixes, fixed, vh)
			default:
				fixed = d
				t.exact[d] = vh
			}
			if strings.Contains(fixed, "*") {
				return nil, fmt.Errorf("virtual_hosts[%d].domains[%d]: %q: a wildcard must be the whole domain, its first character or its last", i, j, d)
			}
		}
	}
	t.suffixes = longestFirst(suffixes)
	t.prefixes = longestFirst(prefixes)
	return t, nil
}

func addWildcard(byLen map[int]map[string]*virtualHost, fixed string, vh *virtualHost) {
	m := byLen[len(fixed)]
	if m == nil {
		m = make(map[string]*virtualHost)
		byLen[len(fixed)] = m
	}
	m[fixed] = vh
}

func longestFirst(byLen map[int]map[string]*virtualHost) []wildcards {
	out := make([]wildcards, 0, len(byLen))
	for n, hosts := range byLen {
		out = append(out, wildcards{n: n, hosts: hosts})
	}
	slices.SortFunc(out, func(a, b wildcards) int { return cmp.Compare(b.n, a.n) })
	return out
}

// Match returns the route for a request, or nil when no virtual host or no
// route in it matches (Envoy's NR: the caller answers 404, or UNIMPLEMENTED
// to a gRPC client). Routes are tried in config order and the first match
// wins; when none of the chosen virtual host's routes matches, no other
// virtual host is tried, as in Envoy.
//
// authority is the request's :authority or Host (r.Host). path is the path
// without the query string, as r.URL.Path gives it: percent-decoded, so
// "/%61pi/x" matches the prefix "/api/", as the upstream will decode it. h
// holds the request headers keyed as net/http keys them (canonical,
// "X-User-Id") or in lower case as an HPACK decoder yields them; the
// canonical key is tried first.
//
// Match is called on the request path from any goroutine. It takes no lock
// and allocates nothing, except one string when the authority has
// upper-case letters and when a regex header matcher meets a header sent more
// than once (the values are joined, see Route).
func (t *Table) Match(authority, path string, h http.Header) *Route {
	return t.MatchHeaders(authority, path, HTTPHeaders(h))
}

// MatchHeaders is Match for any source of headers.
func (t *Table) MatchHeaders(authority, path string, h Headers) *Route {
	vh := t.virtualHost(authority)
	if vh == nil {
		return nil
	}
	for i := range vh.routes {
		if r := &vh.routes[i]; r.matches(path, h) {
			return r
		}
	}
	return nil
}

// virtualHost applies the rules in the package documentation.
func (t *Table) virtualHost(authority string) *virtualHost {
	authority = lowerASCII(authority)
	if vh := t.lookup(authority); vh != nil {
		return vh
	}
	if host, ok := stripPort(authority); ok {
		if vh := t.lookup(host); vh != nil {
			return vh
		}
	}
	return t.any
}

// lookup tries the exact, suffix and prefix domains, in that order, on an
// already lower-cased host.
func (t *Table) lookup(host string) *virtualHost {
	if vh, ok := t.exact[host]; ok {
		return vh
	}
	for _, w := range t.suffixes {
		if len(host) > w.n { // the wildcard must match at least one byte
			if vh, ok := w.hosts[host[len(host)-w.n:]]; ok {
				return vh
			}
		}
	}
	for _, w := range t.prefixes {
		if len(host) > w.n {
			if vh, ok := w.hosts[host[:w.n]]; ok {
				return vh
			}
		}
	}
	return nil
}

// stripPort returns the authority without a trailing ":port", as Envoy's
// Http::HeaderUtility::stripPortFromHost does: the port is what follows the
// last colon, unless that colon is inside an IPv6 literal ("[::1]"), and must
// be all digits. An empty port ("host:", allowed by RFC 3986) is stripped too.
func stripPort(authority string) (string, bool) {
	i := strings.LastIndexByte(authority, ':')
	if i < 0 || strings.LastIndexByte(authority, ']') > i {
		return "", false
	}
	for _, c := range []byte(authority[i+1:]) {
		if c < '0' || c > '9' {
			return "", false
		}
	}
	return authority[:i], true
}

// lowerASCII lower-cases the ASCII letters of s. Host and header names are
// ASCII (IDNs travel as punycode); Unicode case mapping would let "K" (the
// Kelvin sign) stand for "k". s is returned as is, without allocating, when it
// has no upper-case letter, which is the usual case.
func lowerASCII(s string) string {
	i := 0
	for i < len(s) && (s[i] < 'A' || s[i] > 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for _, c := range []byte(s[i:]) {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}
