package route

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
)

var testClusters = map[string]*cluster.Cluster{
	"primary":  {Name: "primary"},
	"readonly": {Name: "readonly"},
}

// vhost is a virtual host with one catch-all route named after it.
func vhost(name string, domains ...string) config.VirtualHost {
	return config.VirtualHost{
		Name:    name,
		Domains: domains,
		Routes:  []config.Route{{Name: name, Match: config.RouteMatch{Prefix: "/"}, Cluster: "primary"}},
	}
}

func mustNew(t testing.TB, vhosts []config.VirtualHost) *Table {
	t.Helper()
	tbl, err := New(vhosts, testClusters)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tbl
}

// routeName is the name of the matched route, "" for no match.
func routeName(r *Route) string {
	if r == nil {
		return ""
	}
	return r.Name
}

func TestMatchVirtualHost(t *testing.T) {
	tbl := mustNew(t, []config.VirtualHost{
		vhost("exact", "api.example.com", "My-Service", "other-service", "[::1]"),
		vhost("exact-port", "my-service:8443", "api.example.com:8080"),
		vhost("suffix", "*.example.com"),
		vhost("longer-suffix", "*.EU.example.com"),
		vhost("dash-suffix", "*-bar.foo.com"),
		vhost("prefix", "www.*", "cdn-*"),
		vhost("port-wildcard", "my-service:*"),
		vhost("default", "*"),
	})
	tests := []struct {
		name string
		give string
		want string
	}{
		{name: "exact", give: "api.example.com", want: "exact"},
		{name: "exact beats suffix", give: "api.example.com", want: "exact"},
		{name: "suffix", give: "web.example.com", want: "suffix"},
		{name: "longest suffix wins", give: "web.eu.example.com", want: "longer-suffix"},
		{name: "suffix needs a non-empty wildcard", give: ".example.com", want: "default"},
		{name: "suffix is not the bare domain", give: "example.com", want: "default"},
		{name: "suffix with a dash", give: "baz-bar.foo.com", want: "dash-suffix"},
		{name: "suffix with a dash needs a non-empty wildcard", give: "-bar.foo.com", want: "default"},
		{name: "suffix beats prefix", give: "www.example.com", want: "suffix"},
		{name: "prefix with a dot", give: "www.other.org", want: "prefix"},
		{name: "prefix with a dash", give: "cdn-3", want: "prefix"},
		{name: "prefix needs a non-empty wildcard", give: "cdn-", want: "default"},
		{name: "port wildcard", give: "my-service:8080", want: "port-wildcard"},
		{name: "port wildcard beats the name without port", give: "my-service:10000", want: "port-wildcard"},
		{name: "exact with port beats port wildcard", give: "my-service:8443", want: "exact-port"},
		{name: "no port", give: "my-service", want: "exact"},
		{name: "case-insensitive authority", give: "API.Example.COM", want: "exact"},
		{name: "case-insensitive domain", give: "my-service", want: "exact"},
		{name: "case-insensitive suffix", give: "Web.Eu.Example.Com", want: "longer-suffix"},
		{name: "case-insensitive port wildcard", give: "MY-SERVICE:9000", want: "port-wildcard"},
		{name: "exact port", give: "api.example.com:8080", want: "exact-port"},
		{name: "other port falls back to the host", give: "api.example.com:9090", want: "exact"},
		{name: "port stripped for exact", give: "other-service:10000", want: "exact"},
		{name: "port stripped for suffix", give: "web.example.com:443", want: "suffix"},
		{name: "empty port stripped", give: "other-service:", want: "exact"},
		{name: "non-numeric port kept", give: "other-service:http", want: "default"},
		{name: "prefix with port beats suffix without", give: "www.example.com:8080", want: "prefix"},
		{name: "ipv6", give: "[::1]", want: "exact"},
		{name: "ipv6 with port", give: "[::1]:8080", want: "exact"},
		{name: "ipv6 colon is not a port", give: "[::2]", want: "default"},
		{name: "unknown host", give: "unknown.org", want: "default"},
		{name: "unknown host with port", give: "unknown.org:80", want: "default"},
		{name: "empty authority", give: "", want: "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := routeName(tbl.Match(tt.give, "/", nil)); got != tt.want {
				t.Errorf("Match(%q) = %q, want %q", tt.give, got, tt.want)
			}
		})
	}
}

func TestMatchNoRoute(t *testing.T) {
	api := config.VirtualHost{
		Name:    "api",
		Domains: []string{"api.example.com"},
		Routes:  []config.Route{{Name: "api", Match: config.RouteMatch{Prefix: "/api/"}, Cluster: "primary"}},
	}
	type give struct {
		vhosts    []config.VirtualHost
		authority string
		path      string
	}
	tests := []struct {
		name string
		give give
		want string
	}{
		{name: "known host and path", give: give{[]config.VirtualHost{api}, "api.example.com:443", "/api/x"}, want: "api"},
		{name: "unknown host, no default", give: give{[]config.VirtualHost{api}, "web.example.com", "/api/x"}, want: ""},
		{name: "empty authority, no default", give: give{[]config.VirtualHost{api}, "", "/api/x"}, want: ""},
		{
			name: "no route in the chosen host, default not tried",
			give: give{[]config.VirtualHost{api, vhost("default", "*")}, "api.example.com", "/other"},
			want: "",
		},
		{name: "no virtual hosts", give: give{nil, "api.example.com", "/api/x"}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := mustNew(t, tt.give.vhosts)
			if got := routeName(tbl.Match(tt.give.authority, tt.give.path, nil)); got != tt.want {
				t.Errorf("Match(%q, %q) = %q, want %q", tt.give.authority, tt.give.path, got, tt.want)
			}
		})
	}
}

func TestMatchRoute(t *testing.T) {
	prefix := func(name, p string, headers ...config.HeaderMatcher) config.Route {
		return config.Route{Name: name, Match: config.RouteMatch{Prefix: p, Headers: headers}, Cluster: "primary"}
	}
	grpc := prefix("grpc", "/pkg.Svc/")
	grpc.Match.GRPC = true
	tbl := mustNew(t, []config.VirtualHost{{
		Name:    "svc",
		Domains: []string{"*"},
		Routes: []config.Route{
			{Name: "exact-path", Match: config.RouteMatch{Path: "/healthz"}, Cluster: "primary"},
			{Name: "regex", Match: config.RouteMatch{Regex: `/users/[0-9]+`}, Cluster: "primary"},
			{Name: "regex-fold", Match: config.RouteMatch{Regex: `(?i)/Admin/[a-z]+`}, Cluster: "primary"},
			{Name: "regex-alternatives", Match: config.RouteMatch{Regex: `/v1/x|/v2/y`}, Cluster: "primary"},
			grpc,
			prefix("hdr-exact", "/h/", config.HeaderMatcher{Name: "x-home-page", Exact: "true"}),
			prefix("hdr-present", "/p/", config.HeaderMatcher{Name: "X-Debug", Present: true}),
			prefix("hdr-regex", "/r/", config.HeaderMatcher{Name: "x-user-id", Regex: `[a-z]+-[0-9]+`}),
			prefix("hdr-invert", "/i/", config.HeaderMatcher{Name: "x-env", Exact: "prod", Invert: true}),
			prefix("hdr-regex-invert", "/ri/", config.HeaderMatcher{Name: "x-env", Regex: "prod.*", Invert: true}),
			prefix("hdr-absent", "/a/", config.HeaderMatcher{Name: "x-canary", Present: true, Invert: true}),
			prefix("hdr-both", "/2/",
				config.HeaderMatcher{Name: "x-a", Exact: "1"},
				config.HeaderMatcher{Name: "x-b", Present: true}),
			prefix("api", "/api/"),
			prefix("api-v1", "/api/v1/"),
		},
	}})
	type give struct {
		path    string
		headers http.Header
	}
	tests := []struct {
		name string
		give give
		want string
	}{
		{name: "exact path", give: give{path: "/healthz"}, want: "exact-path"},
		{name: "exact path, trailing slash", give: give{path: "/healthz/"}, want: ""},
		{name: "exact path, longer", give: give{path: "/healthzz"}, want: ""},
		{name: "regex", give: give{path: "/users/42"}, want: "regex"},
		{name: "regex matches the whole path, not its start", give: give{path: "/users/42/x"}, want: ""},
		{name: "regex matches the whole path, not its end", give: give{path: "/v2/users/42"}, want: ""},
		{name: "regex, case-insensitive", give: give{path: "/ADMIN/abc"}, want: "regex-fold"},
		{name: "regex, case-insensitive, lower case", give: give{path: "/admin/abc"}, want: "regex-fold"},
		{name: "regex alternatives, first", give: give{path: "/v1/x"}, want: "regex-alternatives"},
		{name: "regex alternatives, second", give: give{path: "/v2/y"}, want: "regex-alternatives"},
		{name: "regex alternatives are anchored", give: give{path: "/v1/xx"}, want: ""},
		{name: "prefix", give: give{path: "/api/things"}, want: "api"},
		{name: "prefix is case-sensitive", give: give{path: "/API/things"}, want: ""},
		{name: "first match wins", give: give{path: "/api/v1/things"}, want: "api"},
		{name: "no route", give: give{path: "/nothing"}, want: ""},

		{name: "grpc", give: give{"/pkg.Svc/Get", http.Header{"Content-Type": {"application/grpc"}}}, want: "grpc"},
		{name: "grpc+proto", give: give{"/pkg.Svc/Get", http.Header{"Content-Type": {"application/grpc+proto"}}}, want: "grpc"},
		{name: "grpc, lower-case key", give: give{"/pkg.Svc/Get", http.Header{"content-type": {"application/grpc"}}}, want: "grpc"},
		{name: "grpc route, json request", give: give{"/pkg.Svc/Get", http.Header{"Content-Type": {"application/json"}}}, want: ""},
		{name: "grpc route, no content-type", give: give{path: "/pkg.Svc/Get"}, want: ""},

		{name: "exact header", give: give{"/h/", http.Header{"X-Home-Page": {"true"}}}, want: "hdr-exact"},
		{name: "exact header, lower-case key", give: give{"/h/", http.Header{"x-home-page": {"true"}}}, want: "hdr-exact"},
		{name: "exact header, other value", give: give{"/h/", http.Header{"X-Home-Page": {"false"}}}, want: ""},
		{name: "exact header, absent", give: give{path: "/h/"}, want: ""},
		{name: "exact header, sent twice, joined", give: give{"/h/", http.Header{"X-Home-Page": {"true", "true"}}}, want: ""},
		{name: "present header", give: give{"/p/", http.Header{"X-Debug": {"1"}}}, want: "hdr-present"},
		{name: "present header, empty value", give: give{"/p/", http.Header{"X-Debug": {""}}}, want: "hdr-present"},
		{name: "present header, absent", give: give{"/p/", http.Header{"X-Other": {"1"}}}, want: ""},
		{name: "regex header", give: give{"/r/", http.Header{"X-User-Id": {"abc-12"}}}, want: "hdr-regex"},
		{name: "regex header matches the whole value", give: give{"/r/", http.Header{"X-User-Id": {"abc-12x"}}}, want: ""},
		{name: "regex header, sent twice, joined", give: give{"/r/", http.Header{"X-User-Id": {"abc-1", "def-2"}}}, want: ""},
		{name: "inverted exact, other value", give: give{"/i/", http.Header{"X-Env": {"staging"}}}, want: "hdr-invert"},
		{name: "inverted exact, same value", give: give{"/i/", http.Header{"X-Env": {"prod"}}}, want: ""},
		{name: "inverted exact, absent", give: give{path: "/i/"}, want: ""},
		{name: "inverted regex, other value", give: give{"/ri/", http.Header{"X-Env": {"staging"}}}, want: "hdr-regex-invert"},
		{name: "inverted regex, matching value", give: give{"/ri/", http.Header{"X-Env": {"prod-eu"}}}, want: ""},
		{name: "inverted present, absent", give: give{path: "/a/"}, want: "hdr-absent"},
		{name: "inverted present, present", give: give{"/a/", http.Header{"X-Canary": {"1"}}}, want: ""},
		{name: "every header matcher", give: give{"/2/", http.Header{"X-A": {"1"}, "X-B": {""}}}, want: "hdr-both"},
		{name: "one header matcher of two", give: give{"/2/", http.Header{"X-A": {"1"}}}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := routeName(tbl.Match("svc", tt.give.path, tt.give.headers)); got != tt.want {
				t.Errorf("Match(%q, %v) = %q, want %q", tt.give.path, tt.give.headers, got, tt.want)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	ok := func(r config.Route) []config.VirtualHost {
		return []config.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []config.Route{r}}}
	}
	slash := config.RouteMatch{Prefix: "/"}
	tests := []struct {
		name    string
		give    []config.VirtualHost
		wantErr string
	}{
		{
			name:    "unknown cluster",
			give:    ok(config.Route{Match: slash, Cluster: "nope"}),
			wantErr: `virtual_hosts[0].routes[0].cluster: unknown cluster "nope"`,
		},
		{
			name: "unknown weighted cluster",
			give: ok(config.Route{Match: slash, WeightedClusters: []config.WeightedCluster{
				{Cluster: "primary", Weight: 1}, {Cluster: "nope", Weight: 0}}}),
			wantErr: `virtual_hosts[0].routes[0].weighted_clusters[1].cluster: unknown cluster "nope"`,
		},
		{
			name:    "no target",
			give:    ok(config.Route{Match: slash}),
			wantErr: "virtual_hosts[0].routes[0].cluster: one of cluster and weighted_clusters is required",
		},
		{
			name: "two kinds of target",
			give: ok(config.Route{Match: slash, Cluster: "primary",
				WeightedClusters: []config.WeightedCluster{{Cluster: "primary", Weight: 1}}}),
			wantErr: "virtual_hosts[0].routes[0].cluster: cannot be set together with weighted_clusters",
		},
		{
			name: "weights add up to zero",
			give: ok(config.Route{Match: slash, WeightedClusters: []config.WeightedCluster{
				{Cluster: "primary"}, {Cluster: "readonly"}}}),
			wantErr: "virtual_hosts[0].routes[0].weighted_clusters: the weights add up to 0",
		},
		{
			name:    "bad path regex",
			give:    ok(config.Route{Match: config.RouteMatch{Regex: "/a["}, Cluster: "primary"}),
			wantErr: "virtual_hosts[0].routes[0].match.regex: error parsing regexp",
		},
		{
			name:    "path regex escaping its anchors",
			give:    ok(config.Route{Match: config.RouteMatch{Regex: "/a)|(/b"}, Cluster: "primary"}),
			wantErr: "virtual_hosts[0].routes[0].match.regex: error parsing regexp",
		},
		{
			name: "bad header regex",
			give: ok(config.Route{Match: config.RouteMatch{Prefix: "/", Headers: []config.HeaderMatcher{
				{Name: "x-a", Exact: "1"}, {Name: "x-b", Regex: "("}}}, Cluster: "primary"}),
			wantErr: "virtual_hosts[0].routes[0].match.headers[1].regex: error parsing regexp",
		},
		{
			name:    "duplicate domain, other case",
			give:    []config.VirtualHost{vhost("a", "api.example.com"), vhost("b", "*", "API.example.com")},
			wantErr: `virtual_hosts[1].domains[1]: domain "api.example.com" is already in virtual host "a"`,
		},
		{
			name:    "two defaults",
			give:    []config.VirtualHost{vhost("a", "*"), vhost("b", "*")},
			wantErr: `virtual_hosts[1].domains[0]: domain "*" is already in virtual host "a"`,
		},
		{
			name:    "wildcard inside",
			give:    []config.VirtualHost{vhost("a", "api.*.com")},
			wantErr: `virtual_hosts[0].domains[0]: "api.*.com": a wildcard must be`,
		},
		{
			name:    "wildcard at both ends",
			give:    []config.VirtualHost{vhost("a", "*.example.*")},
			wantErr: `virtual_hosts[0].domains[0]: "*.example.*": a wildcard must be`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl, err := New(tt.give, testClusters)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New() = %v, %v; want error containing %q", tbl, err, tt.wantErr)
			}
		})
	}
}

// benchTable is a listener the size of a busy edge: many exact hosts, a few
// wildcards, and virtual hosts with a dozen routes.
func benchTable(tb testing.TB) *Table {
	routes := []config.Route{
		{Name: "health", Match: config.RouteMatch{Path: "/healthz"}, Cluster: "primary"},
		{Name: "users", Match: config.RouteMatch{Regex: `/users/[0-9]+`}, Cluster: "primary"},
		{Name: "admin", Match: config.RouteMatch{Prefix: "/admin/", Headers: []config.HeaderMatcher{{Name: "x-admin", Present: true}}}, Cluster: "primary"},
		{Name: "canary", Match: config.RouteMatch{Prefix: "/", GRPC: true, Headers: []config.HeaderMatcher{{Name: "x-canary", Exact: "1"}}}, Cluster: "readonly"},
		{Name: "home-readonly", Match: config.RouteMatch{Prefix: "/", GRPC: true, Headers: []config.HeaderMatcher{
			{Name: "x-home-page", Exact: "true"}, {Name: "x-user-id", Regex: `[a-z]+-[0-9]+`}, {Name: "x-debug", Present: true, Invert: true}}},
			WeightedClusters: []config.WeightedCluster{{Cluster: "readonly", Weight: 5}, {Cluster: "primary", Weight: 95}}},
		{Name: "grpc", Match: config.RouteMatch{Prefix: "/", GRPC: true}, Cluster: "primary"},
		{Name: "rest", Match: config.RouteMatch{Prefix: "/"}, Cluster: "primary"},
	}
	var vhosts []config.VirtualHost
	for _, d := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"} {
		vhosts = append(vhosts, config.VirtualHost{Name: d, Domains: []string{d + ".example.com", d + ".internal:*"}, Routes: routes})
	}
	vhosts = append(vhosts,
		config.VirtualHost{Name: "eu", Domains: []string{"*.eu.example.com"}, Routes: routes},
		config.VirtualHost{Name: "my-service", Domains: []string{"my-service", "*.example.com", "*"}, Routes: routes},
	)
	return mustNew(tb, vhosts)
}

var benchCases = []struct {
	name      string
	authority string
	path      string
	headers   http.Header
	want      string
}{
	{"exact", "c.example.com", "/pkg.Svc/Get", http.Header{"Content-Type": {"application/grpc"}}, "grpc"},
	{"weighted-headers", "my-service", "/pkg.Svc/Get", http.Header{
		"Content-Type": {"application/grpc"}, "X-Home-Page": {"true"}, "X-User-Id": {"abc-42"}}, "home-readonly"},
	{"suffix", "web.eu.example.com", "/users/42", nil, "users"},
	{"port-wildcard", "d.internal:5100", "/healthz", nil, "health"},
	{"port-stripped", "my-service:10000", "/index.html", nil, "rest"},
	{"default", "unknown.org", "/index.html", nil, "rest"},
	{"uppercase", "C.Example.COM", "/index.html", nil, "rest"},
}

func TestMatchAllocs(t *testing.T) {
	tbl := benchTable(t)
	for _, bc := range benchCases {
		t.Run(bc.name, func(t *testing.T) {
			var got *Route
			allocs := testing.AllocsPerRun(100, func() {
				got = tbl.Match(bc.authority, bc.path, bc.headers)
				got.Cluster()
			})
			if routeName(got) != bc.want {
				t.Fatalf("Match = %q, want %q", routeName(got), bc.want)
			}
			want := 0.0
			if bc.name == "uppercase" {
				want = 1 // the lower-cased authority
			}
			if allocs != want {
				t.Errorf("Match and Cluster: %v allocs, want %v", allocs, want)
			}
		})
	}
}

// TestMatchConcurrent lets the race detector check that matching and
// picking a cluster only read the table.
func TestMatchConcurrent(t *testing.T) {
	tbl := benchTable(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				for _, bc := range benchCases {
					if r := tbl.Match(bc.authority, bc.path, bc.headers); routeName(r) != bc.want || r.Cluster() == nil {
						t.Errorf("Match(%q, %q) = %q, want %q", bc.authority, bc.path, routeName(r), bc.want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkMatch(b *testing.B) {
	tbl := benchTable(b)
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if tbl.Match(bc.authority, bc.path, bc.headers) == nil {
					b.Fatal("no match")
				}
			}
		})
	}
}
