// Package diff compares the running config with a newly loaded one and says
// what a reload has to do, component by component, the way Envoy applies
// cluster and listener updates: what did not change keeps running untouched
// (connection pools, host health and outlier state, bound sockets and their
// connections); what changed is built anew beside the old one, which then
// drains; what was added starts; what was removed drains and closes.
//
// Compute is pure: it reads two configs and returns a Plan. Building the new
// components, publishing them and draining the old ones is the server's.
package diff

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// Plan is what a reload from one config to another must do.
type Plan struct {
	Clusters  Clusters
	Listeners Listeners
	// Process holds the process-wide parts of the config that differ.
	Process Part
	// Certificates names the listeners and clusters ("listener NAME",
	// "cluster NAME") whose inline key pair (tls.cert_pem and key_pem) is
	// new while the rest of their TLS is not, as when a control plane
	// rotates a secret: the pair is swapped in for new handshakes, and the
	// listener or cluster is not rebuilt for it, so no connection is
	// touched. Any other change under tls still rebuilds.
	Certificates []string
	// Warnings are changes the reload does not apply, one sentence each,
	// for the log. They do not make the reload fail: the rest of the new
	// config is applied (see AdminAddress).
	Warnings []string
}

// Clusters sorts cluster names by what a reload does with them. Names are
// in config order: the new config's for Kept, Changed and Added, the old
// one's for Removed.
type Clusters struct {
	// Kept clusters have the same config: the running cluster, with its
	// pools, hosts, health and outlier state, serves the new config too.
	Kept []string
	// Changed clusters are rebuilt: the new one starts, routes switch to
	// it, and the old one drains its pools and closes.
	Changed []string
	// Added clusters start; Removed ones drain and close.
	Added, Removed []string
	// Why names, for each changed cluster, what differs: the cluster's own
	// config keys ("endpoints", "health_check"), "node.zone", or
	// "cluster NAME" for a local cluster that is rebuilt.
	Why map[string][]string
}

// Listeners sorts listener names by what a reload does with them. Names are
// in config order: the new config's for all but Removed, the old one's for
// Removed.
type Listeners struct {
	// Kept listeners go on as they are: same socket, connections and
	// route table.
	Kept []string
	// RoutesChanged listeners keep their socket and their connections; only
	// their route table is rebuilt and swapped in, because their virtual
	// hosts changed or a cluster they route to is rebuilt (see ClusterRefs).
	RoutesChanged []string
	// Changed listeners are rebuilt: their address, TLS, protocols, limits
	// or another setting their connections are served with differs. The
	// new listener takes the old socket over when the address is the same
	// (see Handoffs); the old one stops accepting and drains.
	Changed []string
	// Added listeners bind and start; Removed ones stop accepting and
	// drain, as on shutdown.
	Added, Removed []string
	// Why names, for each listener in RoutesChanged or Changed, what
	// differs: the listener's config keys ("address", "virtual_hosts"), and
	// "cluster NAME" for each rebuilt, added or removed cluster its routes
	// name.
	Why map[string][]string
	// ClusterRefs maps each listener of the new config whose routes (the
	// old ones or the new ones) name a changed, added or removed cluster to
	// those cluster names, sorted. Its route table must be built anew to
	// point at the new cluster objects, even when its own config is the
	// same, so such a listener is never in Kept.
	ClusterRefs map[string][]string
	// Handoffs maps a listener to be started (in Changed or Added) to the
	// old listener already bound to its address, whose socket it must take
	// over: the old one cannot drain on a socket the new one binds, and
	// binding the same address twice fails. A listener rebuilt in place maps
	// to itself, even on port 0, so that it keeps the port it was given.
	Handoffs map[string]string
}

// Part is a set of process-wide parts of the config.
type Part uint

// The process-wide parts a reload may find changed.
const (
	// AdminAddress is admin.address. Like Envoy's admin address, which
	// only its bootstrap sets and no update can move, it is not changed by
	// a reload: the admin server is how operators reach a proxy that is
	// reloading, so it keeps its address until the process restarts, and
	// the reload says so in a warning rather than fail, so that the rest of
	// the new config is not held back. The server should then keep the old
	// admin section in the config it runs, so that /config_dump tells the
	// truth.
	AdminAddress Part = 1 << iota
	// Node is node.id or node.zone, which the stats store and the push
	// sinks carry. A change of zone also rebuilds every cluster (per-zone
	// stats and zone-aware routing are from the node's zone), so each is
	// listed in Clusters.Changed.
	Node
	// StatsSinks is stats.sinks, flush_interval, emit_zeros or prometheus:
	// how stats leave the proxy. The sinks are rebuilt; stat handles stay.
	StatsSinks
	// StatsFilter is stats.include, exclude, max_grpc_methods_per_cluster
	// or compact_after: which stats exist and how they are kept. Every handle the
	// kept components hold must be bound again.
	StatsFilter
	// Tracing is any tracing setting: the tracer provider is rebuilt.
	Tracing
	// Drain is server.drain_time or drain_timeout; the next drain uses the
	// new values, nothing is rebuilt.
	Drain
	// Watch is server.watch: the config watcher starts or stops.
	Watch
	// MaxConnections is server.max_connections: the process-wide cap
	// applies to the next connections accepted, nothing is rebuilt and no
	// open connection is closed.
	MaxConnections
	// Overload is the overload section: the manager's budget and
	// thresholds apply at its next reading (its refresh interval stays
	// until the process restarts); nothing is rebuilt.
	Overload
	// Pprof is admin.pprof: the profiles at /debug/pprof/ turn on or off
	// with the reload; the admin server stays as it is.
	Pprof
	// Dynamic is the dynamic section (the control plane's address, TLS,
	// timeouts, the kinds of resources it sends): the stream to the
	// control plane is opened anew with it. What the control plane sent
	// keeps serving until the new stream brings its own.
	Dynamic
	// Concurrency is server.adaptive_concurrency: adapting the threads to
	// the load starts or stops with the reload.
	Concurrency
)

var partNames = []string{"admin_address", "node", "stats_sinks", "stats_filter", "tracing", "drain", "watch", "max_connections", "overload", "pprof", "dynamic", "concurrency"}

// Has reports whether every part of q is in p.
func (p Part) Has(q Part) bool { return p&q == q }

// String lists the parts in p, such as "node|tracing", or "none".
func (p Part) String() string {
	var names []string
	for i, name := range partNames {
		if p.Has(1 << i) {
			names = append(names, name)
		}
	}
	if rest := p &^ (1<<len(partNames) - 1); rest != 0 {
		names = append(names, fmt.Sprintf("0x%x", uint(rest)))
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "|")
}

// processParts says which part a change of each process-wide key is.
// Sections listed with their keys are compared key by key; the others as
// a whole. Every key of the schema outside listeners and clusters is here
// (a test checks), but for include, which only says where listeners and
// clusters come from: their own comparison covers what the included files
// hold.
var processParts = map[string]Part{
	"admin.address":                      AdminAddress,
	"admin.pprof":                        Pprof,
	"node.id":                            Node,
	"node.cluster":                       Node,
	"node.zone":                          Node,
	"server.drain_time":                  Drain,
	"server.drain_timeout":               Drain,
	"server.watch":                       Watch,
	"server.max_connections":             MaxConnections,
	"server.adaptive_concurrency":        Concurrency,
	"stats.flush_interval":               StatsSinks,
	"stats.emit_zeros":                   StatsSinks,
	"stats.sinks":                        StatsSinks,
	"stats.prometheus":                   StatsSinks,
	"stats.exclude":                      StatsFilter,
	"stats.include":                      StatsFilter,
	"stats.max_grpc_methods_per_cluster": StatsFilter,
	"stats.compact_after":                StatsFilter,
	"tracing":                            Tracing,
	"overload":                           Overload,
	"dynamic":                            Dynamic,
}

// routeKeys are the listener keys a reload applies by swapping the route
// table alone. Every other listener key is baked into how the listener
// serves its connections (the HTTP/1.1 and HTTP/2 servers, their stats and
// limits, the TLS config), so a change to it rebuilds the listener.
var routeKeys = map[string]bool{"virtual_hosts": true, "local_rate_limit": true, "rate_limit": true}

// Compute returns what a reload from the running config from to the new
// config to must do. Both are taken as Load returns them: validated, with
// defaults applied, so that a value written out and the same value left to
// its default compare equal. from may be nil, as before the first start:
// everything in to is then added (and a nil to removes everything).
// Compute neither modifies nor keeps its arguments.
//
// Two components are the same when every field of their config is: lists
// compare element by element, in order, and an empty list equals a missing
// one. Anything else is a change, however small: a rebuilt cluster keeps
// no pool of the old one, but it is always right.
func Compute(from, to *config.Config) Plan {
	if from == nil {
		from = &config.Config{}
	}
	if to == nil {
		to = &config.Config{}
	}
	var p Plan
	p.process(from, to)
	p.clusters(from, to)
	p.listeners(from, to)
	return p
}

// Unchanged reports whether the two configs are the same in every way a
// reload could act on, as when a file was saved without a change: the
// server may then skip the reload.
func (p *Plan) Unchanged() bool {
	c, l := &p.Clusters, &p.Listeners
	return p.Process == 0 && len(p.Warnings) == 0 && len(p.Certificates) == 0 &&
		len(c.Changed)+len(c.Added)+len(c.Removed) == 0 &&
		len(l.RoutesChanged)+len(l.Changed)+len(l.Added)+len(l.Removed) == 0
}

// String summarises the plan in one line for the log, naming every
// component that is not kept, e.g. "clusters: changed [backend] added
// [shadow]; listeners: routes changed [ingress]; process: drain".
func (p *Plan) String() string {
	if p.Unchanged() {
		return "no change"
	}
	var parts []string
	add := func(what string, groups ...any) {
		var b strings.Builder
		for i := 0; i < len(groups); i += 2 {
			names := groups[i+1].([]string)
			if len(names) > 0 {
				fmt.Fprintf(&b, " %s [%s]", groups[i], strings.Join(names, " "))
			}
		}
		if b.Len() > 0 {
			parts = append(parts, what+":"+b.String())
		}
	}
	c, l := &p.Clusters, &p.Listeners
	add("clusters", "changed", c.Changed, "added", c.Added, "removed", c.Removed)
	add("listeners", "routes changed", l.RoutesChanged, "changed", l.Changed, "added", l.Added, "removed", l.Removed)
	if len(p.Certificates) > 0 {
		parts = append(parts, "certificates: ["+strings.Join(p.Certificates, ", ")+"]")
	}
	if p.Process != 0 {
		parts = append(parts, "process: "+p.Process.String())
	}
	switch n := len(p.Warnings); n {
	case 0:
	case 1:
		parts = append(parts, "1 warning")
	default:
		parts = append(parts, fmt.Sprintf("%d warnings", n))
	}
	return strings.Join(parts, "; ")
}

// process compares everything outside listeners and clusters.
func (p *Plan) process(from, to *config.Config) {
	// Listeners and clusters are compared one by one below, and include
	// not at all: changedPaths leaves them out.
	for _, key := range changedPaths(from, to, "node", "admin", "server", "stats") {
		part, ok := processParts[key]
		switch {
		case !ok:
			// A key this package does not know yet: say so rather than
			// claim to have applied it.
			p.Warnings = append(p.Warnings, key+" changed: it takes effect when the proxy restarts")
		default:
			p.Process |= part
		}
	}
	// Before the first start there is no admin server to keep.
	if p.Process.Has(AdminAddress) && from.Admin.Address != "" {
		p.Warnings = append(p.Warnings, fmt.Sprintf(
			"admin.address changed from %q to %q: the admin server keeps %s until the proxy restarts",
			from.Admin.Address, to.Admin.Address, from.Admin.Address))
	}
}

// clusters sorts the clusters, then rebuilds those that depend on a
// rebuilt one.
func (p *Plan) clusters(from, to *config.Config) {
	c := &p.Clusters
	c.Why = map[string][]string{}
	old := byName(from.Clusters, func(c *config.Cluster) string { return c.Name })
	zoneChanged := from.Node.Zone != to.Node.Zone
	rebuilt := map[string]bool{} // changed or added
	for i := range to.Clusters {
		nc := &to.Clusters[i]
		oc, ok := old[nc.Name]
		if !ok {
			c.Added = append(c.Added, nc.Name)
			rebuilt[nc.Name] = true
			continue
		}
		why := changedKeys(oc, nc)
		if i := slices.Index(why, "tls"); i >= 0 && oc.TLS != nil && nc.TLS != nil && pairOnly(*oc.TLS, *nc.TLS) {
			why = slices.Delete(why, i, i+1)
			p.Certificates = append(p.Certificates, "cluster "+nc.Name)
		}
		if zoneChanged {
			why = append(why, "node.zone")
		}
		if len(why) > 0 {
			c.Why[nc.Name] = why
			rebuilt[nc.Name] = true
		}
	}
	now := byName(to.Clusters, func(c *config.Cluster) string { return c.Name })
	for i := range from.Clusters {
		if name := from.Clusters[i].Name; now[name] == nil {
			c.Removed = append(c.Removed, name)
			rebuilt[name] = true
		}
	}
	// A zone-aware cluster reads the zone spread of its local cluster's
	// hosts when it is built, so it is rebuilt with it; and so on, for a
	// cluster that is the local cluster of another.
	for grew := true; grew; {
		grew = false
		for i := range to.Clusters {
			nc := &to.Clusters[i]
			local := nc.ZoneAware.LocalCluster
			if rebuilt[nc.Name] || !nc.ZoneAware.Enabled || local == "" || !rebuilt[local] {
				continue
			}
			c.Why[nc.Name] = append(c.Why[nc.Name], "cluster "+local)
			rebuilt[nc.Name], grew = true, true
		}
	}
	for i := range to.Clusters {
		name := to.Clusters[i].Name
		switch {
		case len(c.Why[name]) > 0:
			c.Changed = append(c.Changed, name)
		case !rebuilt[name]:
			c.Kept = append(c.Kept, name)
		}
	}
}

// listeners sorts the listeners; clusters must have been sorted first.
func (p *Plan) listeners(from, to *config.Config) {
	l := &p.Listeners
	l.Why, l.ClusterRefs, l.Handoffs = map[string][]string{}, map[string][]string{}, map[string]string{}
	rebuilt := map[string]bool{}
	for _, names := range [][]string{p.Clusters.Changed, p.Clusters.Added, p.Clusters.Removed} {
		for _, n := range names {
			rebuilt[n] = true
		}
	}
	old := byName(from.Listeners, func(l *config.Listener) string { return l.Name })
	// bound maps the addresses of the old listeners to their names, for
	// the handoffs.
	bound := map[string]string{}
	for i := range from.Listeners {
		if a := addressKey(from.Listeners[i].Address); a != "" {
			bound[a] = from.Listeners[i].Name
		}
	}
	// Adding a listener at an address the new config gave up for the admin
	// server is fine; one at the address the admin server keeps is not.
	adminKept := ""
	if p.Process.Has(AdminAddress) && from.Admin.Address != "" {
		adminKept = addressKey(from.Admin.Address)
	}

	for i := range to.Listeners {
		nl := &to.Listeners[i]
		ol, ok := old[nl.Name]
		refs := clusterRefs(nl)
		if ok {
			for name := range clusterRefs(ol) {
				refs[name] = true
			}
		}
		var stale []string
		for name := range refs {
			if rebuilt[name] {
				stale = append(stale, name)
			}
		}
		slices.Sort(stale)
		if len(stale) > 0 {
			l.ClusterRefs[nl.Name] = stale
		}

		start := false
		switch {
		case !ok:
			l.Added = append(l.Added, nl.Name)
			start = true
		default:
			keys := changedKeys(ol, nl)
			if i := slices.Index(keys, "tls"); i >= 0 && ol.TLS != nil && nl.TLS != nil && pairOnly(*ol.TLS, *nl.TLS) {
				keys = slices.Delete(keys, i, i+1)
				p.Certificates = append(p.Certificates, "listener "+nl.Name)
			}
			why := slices.Clone(keys)
			for _, name := range stale {
				why = append(why, "cluster "+name)
			}
			switch {
			case slices.ContainsFunc(keys, func(k string) bool { return !routeKeys[k] }):
				l.Changed = append(l.Changed, nl.Name)
				l.Why[nl.Name] = why
				start = true
			case len(why) > 0:
				l.RoutesChanged = append(l.RoutesChanged, nl.Name)
				l.Why[nl.Name] = why
			default:
				l.Kept = append(l.Kept, nl.Name)
			}
		}
		if !start {
			continue
		}
		if ok && ol.Address == nl.Address {
			l.Handoffs[nl.Name] = nl.Name
		} else if a := addressKey(nl.Address); a != "" {
			if holder, ok := bound[a]; ok {
				l.Handoffs[nl.Name] = holder
			}
			if a == adminKept {
				p.Warnings = append(p.Warnings, fmt.Sprintf(
					"listener %s: address %s is still the admin server's, which keeps it until the proxy restarts",
					nl.Name, nl.Address))
			}
		}
	}
	now := byName(to.Listeners, func(l *config.Listener) string { return l.Name })
	for i := range from.Listeners {
		if name := from.Listeners[i].Name; now[name] == nil {
			l.Removed = append(l.Removed, name)
		}
	}
}

// byName indexes items by name. Names are unique in a loaded config; were
// they not, the last would win.
func byName[T any](items []T, name func(*T) string) map[string]*T {
	m := make(map[string]*T, len(items))
	for i := range items {
		m[name(&items[i])] = &items[i]
	}
	return m
}

// addressKey is a listen address in a form that compares equal for equal
// sockets: the host lower-cased and an IP literal in its canonical form.
// It is "" for port 0, where every bind gets a port of its own, and for
// addresses that do not parse.
func addressKey(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "0" || port == "" {
		return ""
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.String()
	}
	return net.JoinHostPort(strings.ToLower(host), port)
}

// pairOnly reports whether two TLS configs (config.ListenerTLS or
// config.UpstreamTLS) differ in their inline key pair alone: the same
// with cert_pem and key_pem taken out. A pair in files is swapped in by
// the certificate manager when the files change, with the config the
// same.
func pairOnly[T config.ListenerTLS | config.UpstreamTLS](a, b T) bool {
	for _, t := range []*T{&a, &b} {
		switch t := any(t).(type) {
		case *config.ListenerTLS:
			t.CertPEM, t.KeyPEM = "", ""
		case *config.UpstreamTLS:
			t.CertPEM, t.KeyPEM = "", ""
		}
	}
	return len(changedKeys(&a, &b)) == 0
}
