package diff

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// base is a small config as Load returns it: a public listener routing to
// primary and mirroring to shadow, an internal one routing to readonly,
// primary zone-aware with fleet as its local cluster, and an unused spare.
func base() *config.Config {
	static := func(name string, addrs ...string) config.Cluster {
		c := config.Cluster{Name: name, Type: "static", Protocol: "http2", LBPolicy: "round_robin"}
		for _, a := range addrs {
			c.Endpoints = append(c.Endpoints, config.Endpoint{Address: a, Zone: "zone-a", Weight: 1})
		}
		return c
	}
	primary := static("primary", "127.0.0.1:5101", "127.0.0.1:5102")
	primary.ZoneAware = config.ZoneAware{Enabled: true, MinClusterSize: 6, LocalCluster: "fleet"}
	primary.HealthCheck = &config.HealthCheck{GRPC: &config.GRPCHealthCheck{}, HealthyThreshold: 3}
	return &config.Config{
		Node:    config.Node{ID: "edge-1", Zone: "zone-a"},
		Admin:   config.Admin{Address: "127.0.0.1:9901"},
		Server:  config.Server{DrainTime: 5e9, DrainTimeout: 10e9},
		Stats:   config.Stats{FlushInterval: 1e9, Prometheus: config.Prometheus{Namespace: "sightline"}},
		Tracing: config.Tracing{Propagation: []string{"tracecontext", "baggage"}, ServiceName: "sightline"},
		Listeners: []config.Listener{
			{
				Name: "ingress", Address: "127.0.0.1:10000", StatPrefix: "ingress", Protocols: []string{"h2c", "http1"},
				VirtualHosts: []config.VirtualHost{{
					Name: "svc", Domains: []string{"*"},
					Routes: []config.Route{{
						Match:   config.RouteMatch{Prefix: "/"},
						Cluster: "primary",
						Mirror:  &config.Mirror{Cluster: "shadow", Percent: ptr(10.0)},
					}},
				}},
			},
			{
				Name: "internal", Address: "127.0.0.1:10001", StatPrefix: "internal", Protocols: []string{"h2c"},
				VirtualHosts: []config.VirtualHost{{
					Name: "ro", Domains: []string{"readonly"},
					Routes: []config.Route{{
						Match:            config.RouteMatch{Prefix: "/"},
						WeightedClusters: []config.WeightedCluster{{Cluster: "readonly", Weight: 100}},
					}},
				}},
			},
		},
		Clusters: []config.Cluster{
			primary,
			static("readonly", "127.0.0.1:5201"),
			static("shadow", "127.0.0.1:5301"),
			static("fleet", "10.0.0.1:10000", "10.0.1.1:10000"),
			static("spare", "127.0.0.1:5401"),
		},
		Files: []string{"sightline.yaml"},
	}
}

// render prints the parts of a plan that are set, one a line, in a fixed
// order, so that tests compare plans as text.
func render(p Plan) string {
	var b strings.Builder
	names := func(key string, list []string, why map[string][]string) {
		if len(list) == 0 {
			return
		}
		var items []string
		for _, n := range list {
			if w := why[n]; len(w) > 0 {
				n += " (" + strings.Join(w, ", ") + ")"
			}
			items = append(items, n)
		}
		sep := " "
		if why != nil {
			sep = ", "
		}
		fmt.Fprintf(&b, "%s: %s\n", key, strings.Join(items, sep))
	}
	pairs := func(key string, m map[string]string) {
		if len(m) == 0 {
			return
		}
		var kv []string
		for k, v := range m {
			kv = append(kv, k+"<-"+v)
		}
		slices.Sort(kv)
		fmt.Fprintf(&b, "%s: %s\n", key, strings.Join(kv, " "))
	}
	c, l := p.Clusters, p.Listeners
	names("clusters.kept", c.Kept, nil)
	names("clusters.changed", c.Changed, c.Why)
	names("clusters.added", c.Added, nil)
	names("clusters.removed", c.Removed, nil)
	names("listeners.kept", l.Kept, nil)
	names("listeners.routes_changed", l.RoutesChanged, l.Why)
	names("listeners.changed", l.Changed, l.Why)
	names("listeners.added", l.Added, nil)
	names("listeners.removed", l.Removed, nil)
	refs := map[string]string{}
	for k, v := range l.ClusterRefs {
		refs[k] = strings.Join(v, ",")
	}
	pairs("listeners.cluster_refs", refs)
	pairs("listeners.handoffs", l.Handoffs)
	if p.Process != 0 {
		fmt.Fprintf(&b, "process: %s\n", p.Process)
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	return b.String()
}

const allKept = `clusters.kept: primary readonly shadow fleet spare
listeners.kept: ingress internal
`

func TestCompute(t *testing.T) {
	tests := []struct {
		name string
		from func(*config.Config) // edits the running config; nil: base
		to   func(*config.Config) // edits the new config; nil: base
		want string
	}{
		{
			name: "same config",
			want: allKept,
		},
		{
			name: "an endpoint's weight rebuilds the cluster and the route tables that use it",
			to:   func(c *config.Config) { c.Clusters[0].Endpoints[1].Weight = 3 },
			want: `clusters.kept: readonly shadow fleet spare
clusters.changed: primary (endpoints)
listeners.kept: internal
listeners.routes_changed: ingress (cluster primary)
listeners.cluster_refs: ingress<-primary
`,
		},
		{
			name: "endpoints in another order rebuild",
			to: func(c *config.Config) {
				slices.Reverse(c.Clusters[0].Endpoints)
			},
			want: `clusters.kept: readonly shadow fleet spare
clusters.changed: primary (endpoints)
listeners.kept: internal
listeners.routes_changed: ingress (cluster primary)
listeners.cluster_refs: ingress<-primary
`,
		},
		{
			name: "several keys of one cluster",
			to: func(c *config.Config) {
				c.Clusters[1].LBPolicy = "least_request"
				c.Clusters[1].HealthCheck = &config.HealthCheck{TCP: &config.TCPHealthCheck{}}
				c.Clusters[1].CircuitBreakers.MaxRequests = 10
			},
			want: `clusters.kept: primary shadow fleet spare
clusters.changed: readonly (lb_policy, health_check, circuit_breakers)
listeners.kept: ingress
listeners.routes_changed: internal (cluster readonly)
listeners.cluster_refs: internal<-readonly
`,
		},
		{
			name: "a rebuilt local cluster rebuilds the zone-aware cluster that reads it",
			to:   func(c *config.Config) { c.Clusters[3].Endpoints = c.Clusters[3].Endpoints[:1] },
			want: `clusters.kept: readonly shadow spare
clusters.changed: primary (cluster fleet), fleet (endpoints)
listeners.kept: internal
listeners.routes_changed: ingress (cluster primary)
listeners.cluster_refs: ingress<-primary
`,
		},
		{
			name: "local clusters chain",
			from: func(c *config.Config) {
				c.Clusters[4].ZoneAware = config.ZoneAware{Enabled: true, LocalCluster: "primary"}
			},
			to: func(c *config.Config) {
				c.Clusters[4].ZoneAware = config.ZoneAware{Enabled: true, LocalCluster: "primary"}
				c.Clusters[3].Endpoints[0].Zone = "zone-b"
			},
			want: `clusters.kept: readonly shadow
clusters.changed: primary (cluster fleet), fleet (endpoints), spare (cluster primary)
listeners.kept: internal
listeners.routes_changed: ingress (cluster primary)
listeners.cluster_refs: ingress<-primary
`,
		},
		{
			name: "a local cluster counts only with zone-aware routing on",
			from: func(c *config.Config) { c.Clusters[0].ZoneAware.Enabled = false },
			to: func(c *config.Config) {
				c.Clusters[0].ZoneAware.Enabled = false
				c.Clusters[3].Endpoints = c.Clusters[3].Endpoints[:1]
			},
			want: `clusters.kept: primary readonly shadow spare
clusters.changed: fleet (endpoints)
listeners.kept: ingress internal
`,
		},
		{
			name: "a cluster added and routed to",
			to: func(c *config.Config) {
				c.Clusters = append(c.Clusters, config.Cluster{Name: "canary", Endpoints: []config.Endpoint{{Address: "127.0.0.1:5501"}}})
				r := &c.Listeners[0].VirtualHosts[0].Routes[0]
				r.Cluster = ""
				r.WeightedClusters = []config.WeightedCluster{{Cluster: "primary", Weight: 95}, {Cluster: "canary", Weight: 5}}
			},
			want: `clusters.kept: primary readonly shadow fleet spare
clusters.added: canary
listeners.kept: internal
listeners.routes_changed: ingress (virtual_hosts, cluster canary)
listeners.cluster_refs: ingress<-canary
`,
		},
		{
			name: "a cluster removed with the mirror that used it",
			to: func(c *config.Config) {
				c.Clusters = slices.Delete(c.Clusters, 2, 3)
				c.Listeners[0].VirtualHosts[0].Routes[0].Mirror = nil
			},
			want: `clusters.kept: primary readonly fleet spare
clusters.removed: shadow
listeners.kept: internal
listeners.routes_changed: ingress (virtual_hosts, cluster shadow)
listeners.cluster_refs: ingress<-shadow
`,
		},
		{
			name: "an unused cluster removed",
			to:   func(c *config.Config) { c.Clusters = c.Clusters[:4] },
			want: `clusters.kept: primary readonly shadow fleet
clusters.removed: spare
listeners.kept: ingress internal
`,
		},
		{
			name: "clusters in another order",
			to:   func(c *config.Config) { slices.Reverse(c.Clusters) },
			want: `clusters.kept: spare fleet shadow readonly primary
listeners.kept: ingress internal
`,
		},
		{
			name: "a route's timeout swaps the route table only",
			to:   func(c *config.Config) { c.Listeners[1].VirtualHosts[0].Routes[0].Timeout = 15e9 },
			want: `clusters.kept: primary readonly shadow fleet spare
listeners.kept: ingress
listeners.routes_changed: internal (virtual_hosts)
`,
		},
		{
			name: "a domain added to a virtual host",
			to: func(c *config.Config) {
				c.Listeners[1].VirtualHosts[0].Domains = append(c.Listeners[1].VirtualHosts[0].Domains, "readonly:*")
			},
			want: `clusters.kept: primary readonly shadow fleet spare
listeners.kept: ingress
listeners.routes_changed: internal (virtual_hosts)
`,
		},
		{
			name: "a listener's rate limits swap the route table only",
			to: func(c *config.Config) {
				c.Listeners[1].LocalRateLimit = &config.LocalRateLimit{Status: 429}
				c.Listeners[1].RateLimit = &config.RateLimitService{}
			},
			want: `clusters.kept: primary readonly shadow fleet spare
listeners.kept: ingress
listeners.routes_changed: internal (local_rate_limit, rate_limit)
`,
		},
		{
			name: "a new address rebuilds the listener on a new socket",
			to:   func(c *config.Config) { c.Listeners[0].Address = "127.0.0.1:10002" },
			want: `clusters.kept: primary readonly shadow fleet spare
listeners.kept: internal
listeners.changed: ingress (address)
`,
		},
		{
			name: "TLS on the same address rebuilds the listener on its socket",
			to: func(c *config.Config) {
				c.Listeners[0].TLS = &config.ListenerTLS{CertFile: "cert.pem", KeyFile: "key.pem"}
				c.Listeners[0].Protocols = []string{"h2", "http1"}
			},
			want: `clusters.kept: primary readonly shadow fleet spare
listeners.kept: internal
listeners.changed: ingress (protocols, tls)
listeners.handoffs: ingress<-ingress
`,
		},
		{
			name: "a stat prefix is served with, so it rebuilds",
			to:   func(c *config.Config) { c.Listeners[1].StatPrefix = "internal_http" },
			want: `clusters.kept: primary readonly shadow fleet spare
listeners.kept: ingress
listeners.changed: internal (stat_prefix)
listeners.handoffs: internal<-internal
`,
		},
		{
			name: "limits and routes together rebuild",
			to: func(c *config.Config) {
				c.Listeners[1].Limits.MaxConcurrentStreams = 100
				c.Listeners[1].VirtualHosts[0].Name = "readonly"
			},
			want: `clusters.kept: primary readonly shadow fleet spare
listeners.kept: ingress
listeners.changed: internal (limits, virtual_hosts)
listeners.handoffs: internal<-internal
`,
		},
		{
			name: "a rebuilt listener also names its rebuilt clusters",
			to: func(c *config.Config) {
				c.Listeners[1].TrustRequestHeaders = true
				c.Clusters[1].ConnectTimeout = 1e9
			},
			want: `clusters.kept: primary shadow fleet spare
clusters.changed: readonly (connect_timeout)
listeners.kept: ingress
listeners.changed: internal (trust_request_headers, cluster readonly)
listeners.cluster_refs: internal<-readonly
listeners.handoffs: internal<-internal
`,
		},
		{
			name: "a listener renamed on the same address takes the socket over",
			to:   func(c *config.Config) { c.Listeners[0].Name = "edge" },
			want: `clusters.kept: primary readonly shadow fleet spare
listeners.kept: internal
listeners.added: edge
listeners.removed: ingress
listeners.handoffs: edge<-ingress
`,
		},
		{
			name: "listeners that swap addresses swap sockets",
			to: func(c *config.Config) {
				c.Listeners[0].Address, c.Listeners[1].Address = c.Listeners[1].Address, c.Listeners[0].Address
			},
			want: `clusters.kept: primary readonly shadow fleet spare
listeners.changed: ingress (address), internal (address)
listeners.handoffs: ingress<-internal internal<-ingress
`,
		},
		{
			name: "the same socket spelt another way",
			from: func(c *config.Config) { c.Listeners[0].Address = "[::1]:10000" },
			to: func(c *config.Config) {
				c.Listeners[0].Address = "[0:0:0:0:0:0:0:1]:10000"
			},
			want: `clusters.kept: primary readonly shadow fleet spare
listeners.kept: internal
listeners.changed: ingress (address)
listeners.handoffs: ingress<-ingress
`,
		},
		{
			name: "port 0: a rebuilt listener keeps its port, others get their own",
			from: func(c *config.Config) {
				c.Listeners[0].Address, c.Listeners[1].Address = "127.0.0.1:0", "127.0.0.1:0"
			},
			to: func(c *config.Config) {
				c.Listeners[0].Address, c.Listeners[1].Address = "127.0.0.1:0", "127.0.0.1:0"
				c.Listeners[0].Limits.IdleTimeout = 1e9
				c.Listeners[1].Name = "internal2"
			},
			want: `clusters.kept: primary readonly shadow fleet spare
listeners.changed: ingress (limits)
listeners.added: internal2
listeners.removed: internal
listeners.handoffs: ingress<-ingress
`,
		},
		{
			name: "listeners added and removed",
			to: func(c *config.Config) {
				l := c.Listeners[1]
				l.Name, l.Address = "internal-v2", "127.0.0.1:10005"
				c.Listeners = []config.Listener{c.Listeners[0], l}
				c.Listeners[0].Address = "127.0.0.1:10001" // the address internal gives up
			},
			want: `clusters.kept: primary readonly shadow fleet spare
listeners.changed: ingress (address)
listeners.added: internal-v2
listeners.removed: internal
listeners.handoffs: ingress<-internal
`,
		},
		{
			name: "the admin address cannot move",
			to:   func(c *config.Config) { c.Admin.Address = "127.0.0.1:9902" },
			want: allKept + `process: admin_address
warning: admin.address changed from "127.0.0.1:9901" to "127.0.0.1:9902": the admin server keeps 127.0.0.1:9901 until the proxy restarts
`,
		},
		{
			name: "a listener on the address the admin server keeps",
			to: func(c *config.Config) {
				c.Admin.Address = "127.0.0.1:9902"
				c.Listeners[1].Address = "127.0.0.1:9901"
			},
			want: `clusters.kept: primary readonly shadow fleet spare
listeners.kept: ingress
listeners.changed: internal (address)
process: admin_address
warning: admin.address changed from "127.0.0.1:9901" to "127.0.0.1:9902": the admin server keeps 127.0.0.1:9901 until the proxy restarts
warning: listener internal: address 127.0.0.1:9901 is still the admin server's, which keeps it until the proxy restarts
`,
		},
		{
			name: "a new zone rebuilds every cluster",
			to:   func(c *config.Config) { c.Node.Zone = "zone-b" },
			want: `clusters.changed: primary (node.zone), readonly (node.zone), shadow (node.zone), fleet (node.zone), spare (node.zone)
listeners.routes_changed: ingress (cluster primary, cluster shadow), internal (cluster readonly)
listeners.cluster_refs: ingress<-primary,shadow internal<-readonly
process: node
`,
		},
		{
			name: "a new node id rebuilds no cluster",
			to:   func(c *config.Config) { c.Node.ID = "edge-2" },
			want: allKept + "process: node\n",
		},
		{
			name: "stats sinks",
			to: func(c *config.Config) {
				c.Stats.Sinks = []config.Sink{{Statsd: &config.StatsdSink{Address: "127.0.0.1:8125"}}}
				c.Stats.FlushInterval = 10e9
			},
			want: allKept + "process: stats_sinks\n",
		},
		{
			name: "stats filter",
			to:   func(c *config.Config) { c.Stats.Exclude = []string{`^cluster\.`} },
			want: allKept + "process: stats_filter\n",
		},
		{
			name: "tracing, drain and watch",
			to: func(c *config.Config) {
				c.Tracing.Sampling = 1
				c.Server.DrainTimeout = 30e9
				c.Server.Watch = true
			},
			want: allKept + "process: tracing|drain|watch\n",
		},
		{
			name: "an empty list is no list",
			from: func(c *config.Config) {
				c.Stats.Exclude = nil
				c.Listeners[0].AccessLog = nil
			},
			to: func(c *config.Config) {
				c.Stats.Exclude = []string{}
				c.Listeners[0].AccessLog = []config.AccessLog{}
			},
			want: allKept,
		},
		{
			name: "where the config came from is no change",
			to: func(c *config.Config) {
				c.Include = []string{"conf.d/*.yaml"}
				c.Files = []string{"sightline.yaml", "conf.d/clusters.yaml"}
			},
			want: allKept,
		},
		{
			name: "first start",
			from: func(c *config.Config) { *c = config.Config{} },
			want: `clusters.added: primary readonly shadow fleet spare
listeners.added: ingress internal
listeners.cluster_refs: ingress<-primary,shadow internal<-readonly
process: admin_address|node|stats_sinks|tracing|drain
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from, to := base(), base()
			if tt.from != nil {
				tt.from(from)
			}
			if tt.to != nil {
				tt.to(to)
			}
			fromBefore, toBefore := base(), base()
			if tt.from != nil {
				tt.from(fromBefore)
			}
			if tt.to != nil {
				tt.to(toBefore)
			}
			got := Compute(from, to)
			if r := render(got); r != tt.want {
				t.Errorf("Compute:\n%s\nwant:\n%s", r, tt.want)
			}
			// Only plans that keep everything are unchanged.
			wantUnchanged := true
			for line := range strings.Lines(tt.want) {
				if !strings.HasPrefix(line, "clusters.kept:") && !strings.HasPrefix(line, "listeners.kept:") {
					wantUnchanged = false
				}
			}
			if got.Unchanged() != wantUnchanged {
				t.Errorf("Unchanged() = %v, want %v", got.Unchanged(), wantUnchanged)
			}
			if !reflect.DeepEqual(from, fromBefore) || !reflect.DeepEqual(to, toBefore) {
				t.Error("Compute modified its arguments")
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
