package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/stats"
)

// endpoints returns n endpoints in zone, on ports from first up (nothing
// is dialled: these clusters have no health checks and no pools).
func endpointsIn(zone string, n, first int) []config.Endpoint {
	out := make([]config.Endpoint, n)
	for i := range out {
		out[i] = config.Endpoint{Address: fmt.Sprintf("127.0.0.1:%d", first+i), Zone: zone}
	}
	return out
}

// localPair builds a fleet (the local cluster) with fleetA hosts in zone-a
// and fleetB in zone-b, and a zone-aware cluster api of three hosts in
// each zone that names it, linked and started as the server does.
func localPair(t *testing.T, fleetA, fleetB int) (fleet, api *Cluster, lb *stats.LoadBalancer) {
	t.Helper()
	st, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{Zone: "zone-a"}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fleetCfg := config.Cluster{Name: "fleet", LBPolicy: "round_robin",
		Endpoints: append(endpointsIn("zone-a", fleetA, 100), endpointsIn("zone-b", fleetB, 200)...)}
	apiCfg := config.Cluster{Name: "api", LBPolicy: "round_robin",
		ZoneAware: config.ZoneAware{Enabled: true, MinClusterSize: 6, LocalCluster: "fleet"},
		Endpoints: append(endpointsIn("zone-a", 3, 300), endpointsIn("zone-b", 3, 400)...)}
	// The shares the server passes from the configured endpoints, which
	// LinkLocal's live counts replace.
	configured := map[string]float64{"zone-a": float64(fleetA), "zone-b": float64(fleetB)}
	if fleet, err = New(fleetCfg, Options{Log: zerolog.Nop(), LocalZone: "zone-a", Stats: st.Cluster("fleet")}); err != nil {
		t.Fatal(err)
	}
	api, err = New(apiCfg, Options{Log: zerolog.Nop(), LocalZone: "zone-a", LocalShares: configured, Stats: st.Cluster("api")})
	if err != nil {
		t.Fatal(err)
	}
	LinkLocal(map[string]*Cluster{"fleet": fleet, "api": api})
	fleet.Start(context.Background())
	api.Start(context.Background())
	t.Cleanup(api.Close)
	t.Cleanup(fleet.Close)
	return fleet, api, st.Cluster("api").LoadBalancer()
}

// waitZone waits until api's zone routing says want.
func waitZone(t *testing.T, api *Cluster, want string) {
	t.Helper()
	waitFor(t, "zone routing "+want, func() bool { return api.ZoneRouting().String() == want })
}

// TestZoneAwareCountsHealthyLocalHosts: the share of traffic each zone
// sends is the local cluster's healthy hosts there, as Envoy counts it,
// not its configured endpoints. A fleet of three proxies in zone-a and one
// in zone-b sends 75% from zone-a: zone-a's half of the api hosts takes
// 50/75 = 66.67% of the local calls. With zone-b's proxy down, all the
// traffic comes from zone-a, and zone-a's hosts take half of it (Envoy's
// 50%), however the fleet was configured.
func TestZoneAwareCountsHealthyLocalHosts(t *testing.T) {
	fleet, api, _ := localPair(t, 3, 1)
	waitZone(t, api, "sampled (66.66% local)")

	var b *host.Host
	for _, h := range fleet.Hosts() {
		if h.Zone == "zone-b" {
			b = h
		}
	}
	b.SetFlag(host.FailedActiveHC, true)
	fleet.Refresh()
	waitZone(t, api, "sampled (50% local)")

	// Back up: the configured spread again.
	b.SetFlag(host.FailedActiveHC, false)
	fleet.Refresh()
	waitZone(t, api, "sampled (66.66% local)")
}

// TestZoneAwareOffWhileLocalClusterPanics: with most of the fleet down
// (below api's panic_threshold, 50%), zone routing is off and each pick
// counts lb_local_cluster_not_ok, as Envoy counts it; it comes back with
// the fleet.
func TestZoneAwareOffWhileLocalClusterPanics(t *testing.T) {
	fleet, api, lb := localPair(t, 2, 2)
	waitZone(t, api, "all_directly")
	down := fleet.Hosts()[:3]
	for _, h := range down {
		h.SetFlag(host.FailedActiveHC, true)
	}
	fleet.Refresh()
	waitZone(t, api, "off: local cluster in panic")
	if api.Panic() {
		t.Fatal("api itself in panic; only its local cluster is")
	}
	before := lb.LocalClusterNotOK.Value()
	zones := map[string]int{}
	for range 60 {
		zones[api.Pick(&balancer.Request{}).Zone]++
	}
	if n := lb.LocalClusterNotOK.Value() - before; n != 60 {
		t.Errorf("lb_local_cluster_not_ok counted %d of 60 picks, want every one", n)
	}
	if zones["zone-a"] != 30 || zones["zone-b"] != 30 {
		t.Errorf("picks by zone %v, want round robin over every healthy host (30/30)", zones)
	}
	if n := lb.ZoneRoutingAllDirectly.Value() + lb.ZoneRoutingSampled.Value() + lb.ZoneRoutingCrossZone.Value(); n != 0 {
		t.Errorf("zone routing stats counted %d picks while off", n)
	}

	for _, h := range down {
		h.SetFlag(host.FailedActiveHC, false)
	}
	fleet.Refresh()
	waitZone(t, api, "all_directly")
}

// TestLinkLocalSelf: a cluster that is its own local cluster (proxies
// that are also the service's hosts) neither deadlocks nor loops.
func TestLinkLocalSelf(t *testing.T) {
	cfg := config.Cluster{Name: "mesh", LBPolicy: "round_robin",
		ZoneAware: config.ZoneAware{Enabled: true, MinClusterSize: 2, LocalCluster: "mesh"},
		Endpoints: append(endpointsIn("zone-a", 1, 500), endpointsIn("zone-b", 3, 600)...)}
	c, err := New(cfg, Options{Log: zerolog.Nop(), LocalZone: "zone-a"})
	if err != nil {
		t.Fatal(err)
	}
	LinkLocal(map[string]*Cluster{"mesh": c})
	c.Start(context.Background())
	t.Cleanup(c.Close)
	waitZone(t, c, "all_directly")
	c.Hosts()[1].SetFlag(host.FailedActiveHC, true)
	c.Refresh()
	waitZone(t, c, "all_directly")
}
