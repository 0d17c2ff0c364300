package diff

import (
	"path/filepath"
	"testing"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// TestComputeLoaded diffs two configs as the loader reads them, includes
// and defaults applied: values written out equal to their defaults are no
// change, and a cluster moved into another file is the same cluster.
func TestComputeLoaded(t *testing.T) {
	load := func(dir string) *config.Config {
		t.Helper()
		c, err := config.Load(filepath.Join("testdata", dir, "sightline.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	from, to := load("old"), load("new")
	got := render(Compute(from, to))
	want := `clusters.kept: greeter
clusters.changed: api (endpoints)
clusters.added: canary
clusters.removed: legacy
listeners.kept: grpc
listeners.routes_changed: ingress (virtual_hosts, cluster api, cluster canary)
listeners.cluster_refs: ingress<-api,canary
process: drain
`
	if got != want {
		t.Errorf("Compute:\n%s\nwant:\n%s", got, want)
	}
	if p := Compute(to, load("new")); !p.Unchanged() {
		t.Errorf("the same files loaded twice: %s", render(p))
	}
}

func TestComputeNil(t *testing.T) {
	tests := []struct {
		name     string
		from, to *config.Config
		want     string
	}{
		{
			name: "first start",
			to:   base(),
			want: `clusters.added: primary readonly shadow fleet spare
listeners.added: ingress internal
listeners.cluster_refs: ingress<-primary,shadow internal<-readonly
process: admin_address|node|stats_sinks|tracing|drain
`,
		},
		{
			name: "nothing left",
			from: base(),
			want: `clusters.removed: primary readonly shadow fleet spare
listeners.removed: ingress internal
process: admin_address|node|stats_sinks|tracing|drain
warning: admin.address changed from "127.0.0.1:9901" to "": the admin server keeps 127.0.0.1:9901 until the proxy restarts
`,
		},
		{
			name: "neither",
			want: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := render(Compute(tt.from, tt.to)); got != tt.want {
				t.Errorf("Compute:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestPartString(t *testing.T) {
	tests := []struct {
		give Part
		want string
	}{
		{0, "none"},
		{AdminAddress, "admin_address"},
		{Node | Watch, "node|watch"},
		{StatsSinks | StatsFilter | Tracing | Drain, "stats_sinks|stats_filter|tracing|drain"},
		{Overload, "overload"},
		{Pprof, "pprof"},
		{Dynamic, "dynamic"},
		{Concurrency, "concurrency"},
		{Concurrency << 1, "0x1000"},
	}
	for _, tt := range tests {
		if got := tt.give.String(); got != tt.want {
			t.Errorf("Part(%d).String() = %q, want %q", uint(tt.give), got, tt.want)
		}
	}
	if p := Node | Drain; !p.Has(Drain) || p.Has(Drain|Watch) {
		t.Errorf("Has is wrong for %v", p)
	}
}

func TestPlanString(t *testing.T) {
	tests := []struct {
		name string
		to   func(*config.Config)
		want string
	}{
		{
			name: "no change",
			to:   func(*config.Config) {},
			want: "no change",
		},
		{
			name: "everything",
			to: func(c *config.Config) {
				c.Admin.Address = "127.0.0.1:9902"
				c.Clusters[0].Endpoints = c.Clusters[0].Endpoints[:1]
				c.Clusters = append(c.Clusters[:3], config.Cluster{Name: "canary"})
				c.Listeners[1].Address = "127.0.0.1:10009"
				c.Server.DrainTime = 0
			},
			want: "clusters: changed [primary] added [canary] removed [fleet spare]; " +
				"listeners: routes changed [ingress] changed [internal]; process: admin_address|drain; 1 warning",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			to := base()
			tt.to(to)
			p := Compute(base(), to)
			if got := p.String(); got != tt.want {
				t.Errorf("String() = %q\nwant %q", got, tt.want)
			}
		})
	}
}
