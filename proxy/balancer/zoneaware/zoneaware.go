// Package zoneaware wraps a balancing policy with Envoy's zone-aware
// routing: it keeps as much of this proxy's traffic in its own zone as the
// zone's hosts can take without carrying more than hosts elsewhere, and
// spreads the rest over the zones that have capacity to spare.
//
// The algorithm is Envoy's (ZoneAwareLoadBalancerBase in
// load_balancer_impl.cc), so that people who know Envoy's stats and docs
// find the same numbers here. Two shares are kept per zone, in units of
// 1/10000 and rounded down as Envoy rounds them:
//
//   - local: the share of the cluster's requests that proxies in the zone
//     originate (Envoy counts the local cluster's healthy hosts per zone);
//   - upstream: the zone's share of the cluster's healthy hosts.
//
// When the local zone's upstream share is at least its local share, the
// local hosts can take everything this proxy sends without getting more
// than their part, so every request stays in the zone (all directly).
// Otherwise only upstream/local of the requests stay (sampled) and the rest
// go cross zone, to each other zone in proportion to its residual capacity,
// its upstream share minus its local share where that is positive. When
// every proxy does the same, each host gets about the same rate of requests
// wherever its clients are.
//
// Zone shares count hosts, not weights, as Envoy's do; weights shape the
// split among one zone's hosts through the wrapped policy.
//
// All of this is worked out once in New, on the control plane. Pick draws
// at most two random numbers from math/rand/v2's per-thread generator and
// hands the request to the chosen zone's picker: no lock, no allocation.
//
// Zone-aware routing must be off while the cluster is in panic (too few
// healthy hosts, so every host is used): the cluster then balances over all
// its hosts without calling New, and says "panic" itself. It is off too
// while the local cluster (the proxy fleet) is in panic, as Envoy's is:
// its healthy hosts then say little about where traffic comes from
// (Options.LocalPanic, counted in lb_local_cluster_not_ok on every pick).
package zoneaware

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/stats"
)

// scale is Envoy's unit for zone shares: 10000 is the whole.
const scale = 10000

// DefaultMinClusterSize is Envoy's min_cluster_size: with fewer healthy
// hosts, keeping traffic local would put too much of it on too few hosts.
const DefaultMinClusterSize = 6

// Options configure zone-aware routing for one cluster.
type Options struct {
	// LocalZone is this proxy's zone (node.zone). Empty turns zone-aware
	// routing off.
	LocalZone string
	// MinClusterSize is the fewest healthy hosts the cluster must have for
	// zone-aware routing to run; zero means DefaultMinClusterSize.
	MinClusterSize int
	// LocalShares is the relative share of the cluster's traffic each zone
	// originates: the number of the local cluster's healthy hosts (the
	// proxies of the fleet) per zone, as Envoy counts them; only the ratios
	// matter, and entries that are not positive finite numbers count as 0.
	// Nil means every zone that has hosts in the cluster originates an equal
	// share. Hosts with no zone are then left out, as no proxy is known to
	// stand in an unknown zone.
	LocalShares map[string]float64
	// LocalAll, when set, is the number of the local cluster's hosts per
	// zone, healthy or not, and LocalShares counts the healthy ones. As
	// in Envoy, the zones of LocalAll decide whether traffic originates
	// in the local zone and in more than one zone; LocalShares how much
	// each originates. So a fleet whose hosts in zone b all failed their
	// checks still counts zone b as a zone of the fleet (whose share is
	// now 0), instead of leaving the local zone alone. Nil: LocalShares
	// decides both.
	LocalAll map[string]float64
	// All is every host of the cluster, healthy or not. Its zones tell a
	// local zone whose hosts are all unhealthy from one that has none, and
	// are the zones that originate traffic when LocalShares is nil, so that
	// a zone whose upstream hosts failed still counts its proxies' traffic.
	// Nil means the healthy hosts are all the hosts.
	All []*host.Host
	// LocalPanic says the local cluster is in panic: fewer of its hosts
	// healthy than the panic threshold allows (Envoy applies the upstream
	// cluster's threshold to the local host set). Zone-aware routing is
	// then off and every pick counts lb_local_cluster_not_ok, once the
	// other conditions (a local zone, enough healthy hosts …) are met, as
	// Envoy checks it on every pick after them.
	LocalPanic bool
	// Stats counts the routing decisions; nil counts nothing.
	Stats *stats.LoadBalancer
}

// Mode is how an active zone-aware picker routes.
type Mode string

const (
	// AllDirectly sends every request to the local zone.
	AllDirectly Mode = "all_directly"
	// Sampled keeps a share of the requests in the local zone and sends the
	// rest to zones with residual capacity.
	Sampled Mode = "sampled"
)

// State says what New decided, for the admin page and for logging changes
// (compare with Equal).
type State struct {
	// Active is true when picks are routed by zone. When false, the picker
	// balances over all the healthy hosts and Reason says why.
	Active bool
	// Reason is why zone-aware routing is off, short and for people:
	// "cluster too small (4 < 6)". Empty when Active.
	Reason string
	// Mode is set when Active.
	Mode Mode
	// LocalPercent is the share of requests kept in the local zone, 0–100:
	// 100 when all directly, Envoy's local_percent_to_route when sampled.
	LocalPercent float64
	// Zones has one entry per zone of the cluster's hosts when Active, the
	// local zone first and then the others by name.
	Zones []ZoneShare
}

// ZoneShare is one zone's part in the routing, each figure a percentage of
// Envoy's rounded 1/10000 units.
type ZoneShare struct {
	Zone string
	// Local is the share of all traffic that proxies in the zone originate.
	Local float64
	// Upstream is the zone's share of the cluster's healthy hosts.
	Upstream float64
	// Residual is the zone's spare capacity, Upstream minus Local where
	// positive. Envoy only works it out in sampled mode, and never for the
	// local zone; it is 0 otherwise.
	Residual float64
	// Routed is the share of this proxy's requests expected to go to the
	// zone.
	Routed float64
}

// Equal reports whether s and t say the same, so that a caller can log
// only changes.
func (s State) Equal(t State) bool {
	return s.Active == t.Active && s.Reason == t.Reason && s.Mode == t.Mode &&
		s.LocalPercent == t.LocalPercent && slices.Equal(s.Zones, t.Zones)
}

// String is a one-line summary for logs: "all_directly", "sampled (33.32%
// local)" or "off: no local zone".
func (s State) String() string {
	switch {
	case !s.Active:
		return "off: " + s.Reason
	case s.Mode == Sampled:
		return "sampled (" + strconv.FormatFloat(s.LocalPercent, 'f', -1, 64) + "% local)"
	}
	return string(s.Mode)
}

// New returns a picker over the cluster's healthy hosts that routes by zone
// as Envoy does, built with b for each zone, and the State it is in. When
// zone-aware routing cannot run it returns b(healthy) and a State that says
// why.
//
// The cluster calls New on its control-plane goroutine whenever the hosts,
// their health, the local shares or the options change, and publishes the
// picker as it publishes any other. New counts lb_zone_cluster_too_small
// once per call that finds the cluster too small, as Envoy counts it once
// per recomputation. healthy must not be modified afterwards.
//
// When zone-aware routing is off because of the local zone (the cluster has
// no healthy host there, or no traffic is known to originate there: Envoy's
// "local cluster not ok") or because the local cluster is in panic, the
// picker counts lb_local_cluster_not_ok once per pick, as the
// lb_zone_routing_* stats count the picks routed by zone, so that the
// stat's rate says how many requests lost their zone routing. Envoy counts
// the panic case once per pick too, and the others once per recomputation
// of its zone routing.
func New(b balancer.Builder, healthy []*host.Host, o Options) (balancer.Picker, State) {
	zones, st, localNotOK := plan(healthy, o)
	if !st.Active {
		p := b(healthy)
		if localNotOK && o.Stats != nil && o.Stats.LocalClusterNotOK != nil {
			p = &localNotOKPicker{next: p, counter: o.Stats.LocalClusterNotOK}
		}
		return p, st
	}
	var c counters
	if o.Stats != nil {
		c = counters{
			allDirectly: o.Stats.ZoneRoutingAllDirectly,
			sampled:     o.Stats.ZoneRoutingSampled,
			crossZone:   o.Stats.ZoneRoutingCrossZone,
			noCapacity:  o.Stats.ZoneNoCapacityLeft,
		}
	}
	if st.Mode == AllDirectly {
		return &directPicker{local: b(zones[0].healthy), counter: c.allDirectly}, st
	}
	// Zones without healthy hosts have no residual capacity and never get a
	// request, so the picker keeps only the others.
	p := &sampledPicker{counters: c, keep: zones[0].keep}
	var acc uint64
	for _, z := range zones {
		if len(z.healthy) == 0 {
			continue
		}
		acc += z.residual
		p.zones = append(p.zones, b(z.healthy))
		p.cumulative = append(p.cumulative, acc)
	}
	return p, st
}

// zone is one zone's hosts and shares while New works them out.
type zone struct {
	name     string
	healthy  []*host.Host // in the order New got them
	local    uint64       // in 1/scale
	upstream uint64
	residual uint64
	keep     uint64 // the local zone's local_percent_to_route, sampled mode
}

// plan groups the hosts by zone, local zone first, and works out Envoy's
// routing, or says why there is none. The cluster's size is checked last,
// as Envoy checks it, so that lb_zone_cluster_too_small is counted only
// when nothing else stands in the way of zone routing. localNotOK is true
// when routing is off because of the local zone, the cases Envoy counts in
// lb_local_cluster_not_ok: the upstream cluster has no healthy host in it
// (older Envoys' check of the upstream's local locality), or no traffic is
// known to originate in it (newer Envoys' check of the local cluster's).
func plan(healthy []*host.Host, o Options) (zones []*zone, st State, localNotOK bool) {
	if o.LocalZone == "" {
		return nil, off("no local zone"), false
	}
	all := o.All
	if all == nil {
		all = healthy
	}
	byName := map[string]*zone{}
	get := func(name string) *zone {
		z := byName[name]
		if z == nil {
			z = &zone{name: name}
			byName[name] = z
		}
		return z
	}
	for _, h := range all {
		get(h.Zone)
	}
	for _, h := range healthy {
		z := get(h.Zone)
		z.healthy = append(z.healthy, h)
	}
	switch len(byName) {
	case 0:
		return nil, off("no hosts"), false
	case 1:
		return nil, off("all hosts in one zone"), false
	}
	local := byName[o.LocalZone]
	switch {
	case local == nil:
		return nil, off("local zone has no hosts"), true
	case len(local.healthy) == 0:
		return nil, off("local zone has no healthy hosts"), true
	}
	zones = make([]*zone, 0, len(byName))
	for _, z := range byName {
		if z != local {
			zones = append(zones, z)
		}
	}
	slices.SortFunc(zones, func(a, b *zone) int { return cmp.Compare(a.name, b.name) })
	zones = slices.Insert(zones, 0, local)

	shares := o.LocalShares
	if shares == nil {
		shares = make(map[string]float64, len(zones))
		for _, z := range zones {
			if z.name != "" {
				shares[z.name] = 1
			}
		}
	}
	present := shares
	if o.LocalAll != nil {
		present = o.LocalAll
	}
	var sum float64
	for _, s := range shares {
		if valid(s) {
			sum += s
		}
	}
	origins := 0
	for _, s := range present {
		if valid(s) {
			origins++
		}
	}
	switch {
	case !valid(present[o.LocalZone]):
		return nil, off("no traffic originates in the local zone"), true
	case origins < 2:
		// Envoy's "fewer than two local localities": no stat.
		return nil, off("traffic originates in one zone only"), false
	}

	minSize := o.MinClusterSize
	if minSize <= 0 {
		minSize = DefaultMinClusterSize
	}
	if len(healthy) < minSize {
		if o.Stats != nil {
			o.Stats.ZoneClusterTooSmall.Inc(1)
		}
		return nil, off(fmt.Sprintf("cluster too small (%d < %d)", len(healthy), minSize)), false
	}
	if o.LocalPanic {
		return nil, off("local cluster in panic"), true
	}

	for _, z := range zones {
		z.upstream = scale * uint64(len(z.healthy)) / uint64(len(healthy))
		if s := shares[z.name]; valid(s) {
			z.local = localShare(s, sum)
		}
	}
	st = State{Active: true, Zones: make([]ZoneShare, len(zones))}
	if local.upstream > 0 && local.upstream >= local.local {
		st.Mode, st.LocalPercent = AllDirectly, 100
		for i, z := range zones {
			st.Zones[i] = ZoneShare{Zone: z.name, Local: percent(z.local), Upstream: percent(z.upstream)}
		}
		st.Zones[0].Routed = 100
		return zones, st, false
	}

	// Sampled: the local zone takes upstream/local of the requests, and
	// the others what is left, in proportion to their residual capacity.
	if local.local > 0 {
		local.keep = local.upstream * scale / local.local
	}
	var capacity uint64
	for _, z := range zones[1:] {
		if z.upstream > z.local {
			z.residual = z.upstream - z.local
			capacity += z.residual
		}
	}
	st.Mode, st.LocalPercent = Sampled, percent(local.keep)
	cross := float64(scale-local.keep) / scale
	withHosts := 0
	for _, z := range zones {
		if len(z.healthy) > 0 {
			withHosts++
		}
	}
	for i, z := range zones {
		zs := ZoneShare{Zone: z.name, Local: percent(z.local), Upstream: percent(z.upstream), Residual: percent(z.residual)}
		switch {
		case capacity > 0:
			zs.Routed = 100 * cross * float64(z.residual) / float64(capacity)
		case len(z.healthy) > 0:
			zs.Routed = 100 * cross / float64(withHosts)
		}
		if z == local {
			zs.Routed += st.LocalPercent
		}
		st.Zones[i] = zs
	}
	return zones, st, false
}

func off(reason string) State { return State{Reason: reason} }

func valid(share float64) bool { return share > 0 && !math.IsInf(share, 1) }

// localShare is share/sum in 1/scale, rounded down as Envoy's integer
// division does. Whole-number shares (host counts) come out exactly as
// Envoy's; the tiny allowance keeps fractions such as 0.3 from landing a
// unit short through binary rounding.
func localShare(share, sum float64) uint64 {
	if sum <= 0 {
		return 0 // no healthy host in the fleet: Envoy's 0 for every zone
	}
	return uint64(math.Floor(scale*share/sum + 1e-9))
}

// percent turns 1/scale units into a percentage.
func percent(units uint64) float64 { return float64(units) / (scale / 100) }

// counters are the per-pick stats; nil ones count nothing.
type counters struct {
	allDirectly, sampled, crossZone, noCapacity *stats.Counter
}

// localNotOKPicker balances over all the healthy hosts, zone-aware routing
// being off because of the local zone, and counts each pick in
// lb_local_cluster_not_ok.
type localNotOKPicker struct {
	next    balancer.Picker
	counter *stats.Counter
}

func (p *localNotOKPicker) Pick(r *balancer.Request) *host.Host {
	p.counter.Inc(1)
	return p.next.Pick(r)
}

// directPicker sends every request to the local zone.
type directPicker struct {
	local   balancer.Picker
	counter *stats.Counter
}

func (p *directPicker) Pick(r *balancer.Request) *host.Host {
	p.counter.Inc(1)
	return p.local.Pick(r)
}

// sampledPicker keeps keep/scale of the requests local and sends the rest
// to the zones with residual capacity.
type sampledPicker struct {
	counters
	keep uint64
	// zones are the pickers of the zones with healthy hosts, the local one
	// first; cumulative[i] is the residual capacity of zones[0..i], so
	// that a draw below cumulative[len-1] falls in zone i's bucket when it
	// is below cumulative[i] and not below cumulative[i-1]. The local zone
	// has none, so its bucket is empty.
	zones      []balancer.Picker
	cumulative []uint64
}

func (p *sampledPicker) Pick(r *balancer.Request) *host.Host {
	if rand.Uint64N(scale) < p.keep {
		p.sampled.Inc(1)
		return p.zones[0].Pick(r)
	}
	p.crossZone.Inc(1)
	capacity := p.cumulative[len(p.cumulative)-1]
	if capacity == 0 {
		// Only rounding leaves no zone with spare capacity; Envoy then
		// picks a zone at random. It draws among all zones, even those
		// without a healthy host, and so can fail the request; only zones
		// that can answer are drawn here.
		p.noCapacity.Inc(1)
		return p.zones[rand.IntN(len(p.zones))].Pick(r)
	}
	// A linear scan: there are a handful of zones.
	x, i := rand.Uint64N(capacity), 0
	for x >= p.cumulative[i] {
		i++
	}
	return p.zones[i].Pick(r)
}
