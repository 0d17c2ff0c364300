package route

import (
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
)

func TestRouteFields(t *testing.T) {
	vhosts := []config.VirtualHost{{
		Name:    "my-service",
		Domains: []string{"*"},
		Routes: []config.Route{
			{
				Name:       "hashed",
				Match:      config.RouteMatch{Prefix: "/a"},
				Cluster:    "primary",
				Timeout:    config.Duration(15 * time.Second),
				HashPolicy: []config.HashPolicy{{Header: "x-user-id"}, {Header: "x-session"}},
			},
			{Match: config.RouteMatch{Prefix: "/"}, Cluster: "primary"},
		},
	}}
	tbl := mustNew(t, vhosts)
	tests := []struct {
		name string
		give string
		want Route
	}{
		{
			name: "every field",
			give: "/a",
			want: Route{Name: "hashed", VirtualHost: "my-service", Timeout: 15 * time.Second, HashHeader: "X-User-Id", Config: &vhosts[0].Routes[0]},
		},
		{
			name: "defaults",
			give: "/b",
			want: Route{VirtualHost: "my-service", Config: &vhosts[0].Routes[1]},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tbl.Match("x", tt.give, nil)
			if got == nil {
				t.Fatal("no match")
			}
			if got.Name != tt.want.Name || got.VirtualHost != tt.want.VirtualHost || got.Timeout != tt.want.Timeout ||
				got.HashHeader != tt.want.HashHeader || got.Config != tt.want.Config {
				t.Errorf("got {%q %q %v %q %p}, want {%q %q %v %q %p}",
					got.Name, got.VirtualHost, got.Timeout, got.HashHeader, got.Config,
					tt.want.Name, tt.want.VirtualHost, tt.want.Timeout, tt.want.HashHeader, tt.want.Config)
			}
		})
	}
}

// newTestRoute compiles a catch-all route with the given targets.
func newTestRoute(t *testing.T, cfg config.Route, clusters map[string]*cluster.Cluster) *Route {
	t.Helper()
	cfg.Match.Prefix = "/"
	tbl, err := New([]config.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []config.Route{cfg}}}, clusters)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tbl.Match("x", "/", nil)
}

func TestRouteClusterWeightedSplit(t *testing.T) {
	r := newTestRoute(t, config.Route{WeightedClusters: []config.WeightedCluster{
		{Cluster: "readonly", Weight: 5}, {Cluster: "primary", Weight: 95},
	}}, testClusters)
	const n = 20000
	got := map[*cluster.Cluster]int{}
	for range n {
		got[r.Cluster()]++
	}
	if len(got) != 2 {
		t.Fatalf("picked %d clusters, want 2: %v", len(got), got)
	}
	share := 100 * float64(got[testClusters["readonly"]]) / n
	if math.Abs(share-5) > 1.5 {
		t.Errorf("readonly got %.2f%% of %d requests, want 5%% ± 1.5", share, n)
	}
}

func TestRouteClusterPick(t *testing.T) {
	a, b, c := &cluster.Cluster{Name: "a"}, &cluster.Cluster{Name: "b"}, &cluster.Cluster{Name: "c"}
	clusters := map[string]*cluster.Cluster{"a": a, "b": b, "c": c}
	split := newTestRoute(t, config.Route{WeightedClusters: []config.WeightedCluster{
		{Cluster: "a", Weight: 5}, {Cluster: "b", Weight: 0}, {Cluster: "c", Weight: 95},
	}}, clusters)
	three := newTestRoute(t, config.Route{WeightedClusters: []config.WeightedCluster{
		{Cluster: "a", Weight: 1}, {Cluster: "b", Weight: 1}, {Cluster: "c", Weight: 1},
	}}, clusters)
	tests := []struct {
		name  string
		route *Route
		give  uint64
		want  *cluster.Cluster
	}{
		{name: "first of the first target", route: split, give: 0, want: a},
		{name: "last of the first target", route: split, give: 4, want: a},
		{name: "zero weight skipped", route: split, give: 5, want: c},
		{name: "last of the last target", route: split, give: 99, want: c},
		{name: "middle target", route: three, give: 1, want: b},
		{name: "last target", route: three, give: 2, want: c},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.route.pick(tt.give); got != tt.want {
				t.Errorf("pick(%d) = %s, want %s", tt.give, got.Name, tt.want.Name)
			}
		})
	}
}

func TestRouteClusterSingle(t *testing.T) {
	tests := []struct {
		name string
		give config.Route
		want string
	}{
		{name: "cluster", give: config.Route{Cluster: "primary"}, want: "primary"},
		{
			name: "one non-zero weight",
			give: config.Route{WeightedClusters: []config.WeightedCluster{{Cluster: "readonly", Weight: 0}, {Cluster: "primary", Weight: 3}}},
			want: "primary",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRoute(t, tt.give, testClusters)
			for range 100 {
				if got := r.Cluster(); got.Name != tt.want {
					t.Fatalf("Cluster() = %s, want %s", got.Name, tt.want)
				}
			}
		})
	}
}

func TestHTTPHeadersGet(t *testing.T) {
	tests := []struct {
		name     string
		give     http.Header
		want     string
		wantSeen bool
	}{
		{name: "canonical key", give: http.Header{"X-User-Id": {"7"}}, want: "7", wantSeen: true},
		{name: "lower-case key", give: http.Header{"x-user-id": {"7"}}, want: "7", wantSeen: true},
		{name: "repeated header joined", give: http.Header{"X-User-Id": {"a", "bc"}}, want: "a,bc", wantSeen: true},
		{name: "empty value is present", give: http.Header{"X-User-Id": {""}}, want: "", wantSeen: true},
		{name: "absent", give: http.Header{"X-Other": {"7"}}, wantSeen: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, seen := HTTPHeaders(tt.give).Get("X-User-Id", "x-user-id")
			if got != tt.want || seen != tt.wantSeen {
				t.Errorf("Get = %q, %v; want %q, %v", got, seen, tt.want, tt.wantSeen)
			}
		})
	}
}

func BenchmarkRouteCluster(b *testing.B) {
	r := &Route{}
	if err := r.resolveClusters(&config.Route{WeightedClusters: []config.WeightedCluster{
		{Cluster: "readonly", Weight: 5}, {Cluster: "primary", Weight: 95},
	}}, testClusters); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		r.Cluster()
	}
}

func TestShadowAuthority(t *testing.T) {
	for in, want := range map[string]string{
		"svc.example:8080": "svc.example-shadow:8080",
		"svc":              "svc-shadow",
		"10.0.0.1:80":      "10.0.0.1-shadow:80",
	} {
		if got := ShadowAuthority(in); got != want {
			t.Errorf("ShadowAuthority(%q) = %q, want %q", in, got, want)
		}
	}
}
