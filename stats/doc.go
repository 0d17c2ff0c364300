// Package stats is Sightline's stats model: every counter, gauge and
// histogram the proxy keeps, the handles the data path counts on, and the
// Store that flushes them to the sinks (package sinks) and serves /stats.
//
// # One catalog
//
// catalog.go declares every stat once: its flat-name pattern, kind, unit
// and help. The pattern marks the tag parts,
//
//	cluster.{cluster_name}.upstream_rq_{response_code}
//
// and everything else is derived from it: the tag keys (cluster_name,
// response_code), the tagged name with the tag parts taken out
// ("cluster.upstream_rq_completed", declared where taking them out leaves
// nothing meaningful), and the Prometheus family, <namespace>_<tagged name>
// with dots as underscores and counters ending in _total
// (sightline_cluster_upstream_rq_completed_total{cluster_name,response_code}).
// Two families deviate from that rule, because promtool's lint refuses the
// rule's result: the gauge membership_total is
// sightline_cluster_membership_hosts (only counters may end in _total), the
// histogram server.go.gc_pause_ms is sightline_server_go_gc_pause_time (no
// unit abbreviations). Flat names are for /stats and plain statsd; tagged
// names with tags are for OTLP, DogStatsD and, as labels, Prometheus.
//
// Labels are real labels from start to end: a handle is created with its
// tag values, and every sink is given them as tags. Nothing recovers a tag
// from a flat name, so a cluster named "api.example.com" is
// cluster_name="api.example.com". Parse goes from a flat name back to tags
// for people and tools; a flat name can be ambiguous, which is why the model
// never needs it.
//
// # Handles
//
// The data path counts on typed handles it got when the config was built:
//
//	cs := store.Cluster("primary")       // per cluster, at config build
//	zp := cs.Zone(host.Zone)             // per host zone, at config build
//	h := store.HTTP(listener.StatPrefix) // per listener, at config build
//
//	up := cs.Upstream()               // per request: one atomic load
//	up.RqTotal.Inc(1)                 // one atomic add
//	up.RqActive.Inc()                 // and Dec when the request ends
//	m := cs.GRPC(r.URL.Path)          // load + map lookup, no allocation
//	...
//	up.RqCompleted(status)            // upstream_rq_<code> and _<N>xx
//	up.RqTime.RecordDuration(elapsed) // binary search + two atomic adds
//	zp.Upstream().RqCompleted(status)
//	m.Completed(grpcStatus)
//	h.RqCompleted(status)
//
// No handle is ever looked up by name per request. A *Counter, *Gauge or
// *Histogram that the config excluded is nil, and its methods do nothing,
// so callers never branch. Per-code, per-class and per-gRPC-status counters
// are created when a value is first seen (values bounded by their range);
// per-gRPC-method stats are created when a method is first seen, up to
// Options.MaxGRPCMethods per cluster (default 1000): past the cap calls
// count under grpc.other.other and in stats.overflow. Those first sightings
// take the Store's lock and allocate once; nothing else on the request path
// does.
//
// A cluster's stats are created family by family (Upstream, Connections,
// Membership, HealthCheck, OutlierDetection, CircuitBreakers, LoadBalancer,
// each ZonePair's Upstream, each gRPC method) on first use. An idle cluster
// costs a few hundred bytes and shows in no sink; a family that exists but
// was never touched shows as zeros in /stats and Prometheus and is left out
// of push sinks unless stats.emit_zeros is set.
//
// # Compaction
//
// A family of a cluster's stats that no flush has seen change for
// stats.compact_after (5 s by default) is compacted (compact.go): its
// values go into the cluster's cold bytes, a few bytes a stat, and its
// objects to the garbage collector; its next use makes it again with the
// values it had. Every sink shows the same numbers throughout, counters
// stay monotonic, and a cluster that served a burst and went quiet holds
// about 200 bytes of stats instead of 19 KB. This is why callers hold the
// *Cluster (or *ZonePair) and ask for a family at each use: a family kept
// by a caller would be one that was compacted.
//
// # include and exclude
//
// When a stat is created its flat name goes through stats.exclude (any
// match drops it) and then stats.include (when the list is not empty, one
// must match). A dropped stat is never created: no memory, no flush work,
// in no sink and not in /stats. Mind dotted names: `^cluster\.[^.]+\.x$`
// does not match a cluster named "api.example.com".
//
// # Flushing
//
// Every flush_interval the Store reads each stat once, and every sink sees
// what it read: the same numbers at the same flush, so statsd's deltas add
// up to the totals Prometheus and OTLP show. Sinks are of two kinds (see
// Sink). Pull sinks, Prometheus and OTLP, read the Store itself with
// Collect, which gives each stat as of the last flush: the Store keeps
// each value once, and a sink nothing per stat. Push sinks, statsd, are
// tally.CachedStatsReporters (see Reporter) handed what changed: counters
// as the increase since the last flush, gauges their value when it
// changed, histograms the new samples per bucket and their exact sum
// (SumReporter). Close flushes one last time and lets the push sinks
// deliver it. /stats reads the handles live; /stats/prometheus shows the
// last flush.
//
// The push model is tally's (reporters, buckets, per-flush deltas), but the
// registry is the Store's own rather than a tally.Scope: a tally root scope
// runs its own report loop from the moment it is made, with no way to flush
// on demand or wait for it on Close, and its gauges only take Update
// (active-request gauges need Inc and Dec), its histograms keep no sum, and
// each tag set costs a subscope of its own.
//
// # Reloads
//
// Build one Store per process and keep it across config reloads. Asking for
// a cluster, listener, stat_prefix or access log by the same name returns
// the same handles, so counters keep counting. Handles of names a reload
// removed stay, with their last values, until the process exits (bounded by
// the names ever configured); a name that comes back picks them up again.
// The stats: section itself (include, exclude, sinks, flush_interval) takes
// effect at the next start.
//
// # Memory and cost
//
// Histograms have one set of buckets, 0.1 ms to 60 s on a 1-2.5-5 ladder,
// 19 atomic counts each. Measured with the benchmarks of this package and
// of package sinks (2 cores): a counter increment about 5 ns; the stats of a
// whole proxied gRPC call (some twenty counts) about 150 ns with no
// allocation, about 30 ns with every stat excluded; an idle cluster about
// 400 bytes, one that has served a gRPC call about 9 KB, and once
// compacted about 550 (BenchmarkCompactedMemory).
package stats
