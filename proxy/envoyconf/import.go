package envoyconf

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"go.yaml.in/yaml/v4"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sightline-proxy/sightline/internal/yamljson"
)

// envoyStatsFlushInterval is Envoy's stats_flush_interval when none is
// given; Sightline's default is 1s, so it is written out with a sink.
const envoyStatsFlushInterval = 5 * time.Second

// envoyStatsdPrefix is the prefix Envoy's statsd sinks give every stat
// when none is set.
const envoyStatsdPrefix = "envoy"

// Import translates an Envoy v3 bootstrap (YAML, or JSON when isJSON) into
// a Sightline config document: its static_resources as Translate does,
// and the bootstrap's node, admin, stats sinks, stats_config, tracing and
// ADS dynamic_resources. Unknown fields are errors naming the field.
func Import(data []byte, isJSON bool) (doc []byte, skipped []Skipped, err error) {
	return ImportWith(data, isJSON, Options{})
}

// ImportWith is Import with options.
func ImportWith(data []byte, isJSON bool, opts Options) (doc []byte, skipped []Skipped, err error) {
	b, err := ParseBootstrap(data, isJSON)
	if err != nil {
		return nil, nil, err
	}
	t, root := importBootstrap(b, opts)
	if err := t.err(); err != nil {
		return nil, nil, locate(err, data, isJSON)
	}
	doc, err = render(root)
	if err != nil {
		return nil, nil, err
	}
	return doc, t.skipped, nil
}

// importBootstrap translates a bootstrap into the document's root.
func importBootstrap(b *bootstrapv3.Bootstrap, opts Options) (*translator, *obj) {
	sr := b.GetStaticResources()
	r := &Resources{Listeners: sr.GetListeners(), Clusters: sr.GetClusters(), Secrets: sr.GetSecrets()}
	t := newTranslator(r, opts)
	root := &obj{}
	t.tracing = &obj{}
	t.outlierLog = b.GetClusterManager().GetOutlierDetection().GetEventLogPath()
	bs := t.open("", b, root)
	t.bootstrap(bs, b, root)
	root.set("tracing", t.tracing)
	res := t.resources()
	for i, k := range res.keys {
		root.set(k, res.vals[i])
	}
	root.notes = append(root.notes, res.notes...)
	bs.done()
	return t, root
}

// ParseBootstrap reads an Envoy v3 bootstrap, YAML or JSON, strictly:
// an unknown field or a value of the wrong type is an error naming it
// (with its line, in YAML, when it can be found).
func ParseBootstrap(data []byte, isJSON bool) (*bootstrapv3.Bootstrap, error) {
	js := data
	if !isJSON {
		var v any
		if err := yaml.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("reading the Envoy bootstrap: %w", err)
		}
		j, err := yamljson.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("reading the Envoy bootstrap: %w", err)
		}
		js = j
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, b); err != nil {
		return nil, locate(fmt.Errorf("reading the Envoy bootstrap: %w", err), data, isJSON)
	}
	return b, nil
}

// locate adds the line of the YAML field an error names, when the
// document is YAML: "line 12: ...". A translation error starts with the
// field's path, which is followed through the document; a parse error
// quotes the field's name, whose first key in the document is taken.
func locate(err error, data []byte, isJSON bool) error {
	if isJSON || err == nil {
		return err
	}
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return err
	}
	var out []error
	for _, e := range unjoin(err) {
		msg := e.Error()
		line := 0
		if path, _, ok := strings.Cut(msg, ": "); ok && !strings.Contains(path, " ") {
			line = pathLine(&root, path)
		} else {
			for _, m := range quoted.FindAllStringSubmatch(msg, -1) {
				if l := keyLine(data, m[1]); l > 0 {
					line = l
				}
			}
		}
		if line > 0 {
			out = append(out, fmt.Errorf("line %d: %w", line, e))
		} else {
			out = append(out, e)
		}
	}
	return errors.Join(out...)
}

// quoted finds the field names a parse error quotes.
var quoted = regexp.MustCompile(`"([A-Za-z_@][A-Za-z0-9_@]*)"`)

// pathLine follows a translation path ("clusters[a].lb_policy") through
// the bootstrap's YAML and returns the line of the deepest node it
// reaches: a list element is named by its name key, or its index.
func pathLine(root *yaml.Node, path string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if first, _, _ := strings.Cut(path, "["); first == "listeners" || first == "clusters" || first == "secrets" {
		if sr := mapValue(n, "static_resources"); sr != nil {
			n = sr
		}
	}
	line := 0
	for _, part := range splitPath(path) {
		key, elem, hasElem := strings.Cut(part, "[")
		k, v := mapEntry(n, key)
		if v == nil {
			return line
		}
		n, line = v, k.Line
		if !hasElem {
			continue
		}
		elem = strings.TrimSuffix(elem, "]")
		e := seqElem(n, elem)
		if e == nil {
			return line
		}
		n, line = e, e.Line
	}
	return line
}

// splitPath splits a path at the dots outside brackets: element names
// hold dots ("filters[envoy.filters.network.http_connection_manager]").
func splitPath(path string) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(path); i++ {
		switch path[i] {
		case '[':
			depth++
		case ']':
			depth--
		case '.':
			if depth == 0 {
				parts = append(parts, path[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, path[start:])
}

// mapValue is the value of key in mapping n, or nil.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	_, v := mapEntry(n, key)
	return v
}

// mapEntry is the key node and the value of key in mapping n, or nils.
func mapEntry(n *yaml.Node, key string) (*yaml.Node, *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

// seqElem is the element of n named elem (by its name key), or at index
// elem; for a mapping (typed_extension_protocol_options[k]), its key.
func seqElem(n *yaml.Node, elem string) *yaml.Node {
	switch n.Kind {
	case yaml.MappingNode:
		return mapValue(n, elem)
	case yaml.SequenceNode:
		for _, e := range n.Content {
			if v := mapValue(e, "name"); v != nil && v.Value == elem {
				return e
			}
		}
		if i, err := strconv.Atoi(elem); err == nil && i >= 0 && i < len(n.Content) {
			return n.Content[i]
		}
	}
	return nil
}

// unjoin splits an errors.Join.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// keyLine is the 1-based line of the first "name:" key in a YAML
// document, or 0.
func keyLine(data []byte, name string) int {
	if name == "" {
		return 0
	}
	for i, l := range strings.Split(string(data), "\n") {
		for _, k := range []string{name + ":", `"` + name + `":`, `'` + name + `':`} {
			// A key starts its line (block style) or follows {, a comma or
			// a space (flow style).
			for j := strings.Index(l, k); j >= 0; {
				if j == 0 || strings.ContainsRune(" \t{,-", rune(l[j-1])) {
					return i + 1
				}
				next := strings.Index(l[j+1:], k)
				if next < 0 {
					break
				}
				j += 1 + next
			}
		}
	}
	return 0
}

// bootstrap translates the bootstrap's own fields into root.
func (t *translator) bootstrap(s *scope, b *bootstrapv3.Bootstrap, root *obj) {
	s.seen["static_resources"] = true
	if sr := b.GetStaticResources(); sr != nil {
		ss := t.open("static_resources", sr, root)
		ss.seen["listeners"], ss.seen["clusters"], ss.seen["secrets"] = true, true, true
		ss.done()
	}
	if n := b.GetNode(); n != nil {
		ns := s.sub("node", n, nil)
		no := root.child("node")
		no.flow = true
		if n.GetId() != "" {
			no.set("id", n.GetId())
		}
		if n.GetCluster() != "" {
			no.set("cluster", n.GetCluster())
		}
		ns.carry("id", "cluster")
		if l := n.GetLocality(); l != nil {
			ls := ns.sub("locality", l, nil)
			if l.GetZone() != "" {
				no.set("zone", l.GetZone())
			}
			ls.carry("zone")
			ls.skip("region", "Sightline's node has a zone only")
			ls.skip("sub_zone", "Sightline's node has a zone only")
			ls.done()
		}
		ns.skip("metadata", "Sightline's node sends no metadata to a control plane")
		ns.skip("user_agent_name", "Sightline names itself")
		ns.skip("extensions", "Sightline reports no extensions")
		ns.skip("client_features", "Sightline reports no client features")
		ns.skip("listening_addresses", "deprecated in Envoy")
		ns.done()
	}
	if a := b.GetAdmin(); a != nil {
		as := s.sub("admin", a, nil)
		if a.GetAddress() != nil {
			if addr, ok := as.socketAddress("address", a.GetAddress()); ok {
				ao := root.child("admin")
				ao.flow = true
				ao.set("address", addr)
			}
		}
		as.skip("access_log", "Sightline logs no admin requests")
		as.skip("access_log_path", "Sightline logs no admin requests")
		as.skip("profile_path", "Sightline serves Go's profiles at /debug/pprof/ instead")
		as.skip("socket_options", "Sightline sets no socket options on the admin listener")
		as.skip("ignore_global_conn_limit", "the admin server does not count against server.max_connections")
		as.unsafe("allow_paths", "Sightline's admin server serves every admin path; bind it to a private address")
		as.done()
	}
	if cm := b.GetClusterManager(); cm != nil {
		cs := s.sub("cluster_manager", cm, nil)
		if cm.GetLocalClusterName() != "" {
			cs.skip("local_cluster_name", "Sightline's zone-aware routing takes the local zone from node.zone (zone_aware.local_cluster per cluster)")
		}
		if od := cm.GetOutlierDetection(); od != nil {
			os := cs.sub("outlier_detection", od, nil)
			os.carry("event_log_path")
			os.skip("event_service", "Sightline writes outlier events to a file only")
			os.done()
		}
		cs.skip("upstream_bind_config", "Sightline lets the system choose the source address")
		cs.skip("load_stats_config", "Sightline reports no load")
		cs.skip("enable_deferred_cluster_creation", "Sightline builds every cluster at load")
		cs.done()
	}
	t.stats(s, b, root)
	if tr := b.GetTracing(); tr != nil {
		ts := s.sub("tracing", tr, nil)
		if p := tr.GetHttp(); p != nil {
			t.traceProvider(ts.sub("http", p, nil), p)
		}
		ts.done()
	}
	if dr := b.GetDynamicResources(); dr != nil {
		t.dynamic(s.sub("dynamic_resources", dr, nil), dr, root)
	}
	s.skip("layered_runtime", "Sightline has no runtime: the static layer's values are not applied, and no key can be changed at run time")
	s.skip("overload_manager", "Sightline's overload manager is configured by overload: (max_buffered_bytes, max_heap_bytes, max_active_requests)")
	s.skip("watchdog", "Sightline has no watchdog")
	s.skip("watchdogs", "Sightline has no watchdog")
	s.skip("stats_server_version_override", "Sightline reports its own version")
	s.skip("header_prefix", "Sightline's own headers are x-sightline-*")
	s.skip("enable_dispatcher_stats", "Sightline has no dispatcher stats")
	s.skip("node_context_params", "Sightline has no xDS TP resource names")
	s.skip("fatal_actions", "Sightline has no fatal actions")
	s.skip("application_log_config", "Sightline writes its logs as JSON lines to stderr")
	s.skip("use_tcp_for_dns_lookups", "Sightline resolves with the system resolver")
	s.skip("dns_resolution_config", "Sightline resolves with the system resolver")
	s.skip("typed_dns_resolver_config", "Sightline resolves with the system resolver")
	s.skip("flags_path", "Sightline has no flags directory")
	s.skip("inline_headers", "Sightline has no inline headers")
	s.skip("perf_tracing_file_path", "Sightline has no perf tracing")
	s.skip("enable_worker_cpu_affinity", "Go's runtime schedules its threads")
	s.skip("grpc_async_client_manager_config", "Sightline has no gRPC client cache")
	s.skip("memory_allocator_manager", "Go's runtime manages memory")
	s.unsafe("bootstrap_extensions", "Sightline has no bootstrap extensions")
	s.unsafe("hds_config", "Sightline has no health discovery service")
	s.unsafe("certificate_provider_instances", "Sightline reads certificates from files or inline PEM only")
}

// stats translates the stats sinks, flush interval and stats matcher.
func (t *translator) stats(s *scope, b *bootstrapv3.Bootstrap, root *obj) {
	st := &obj{}
	s.carry("stats_sinks")
	var sinks []any
	for j, sk := range b.GetStatsSinks() {
		ss := s.elem("stats_sinks", j, sk, nil)
		ss.carry("name")
		msg, err := unpack(sk.GetTypedConfig())
		if err != nil {
			ss.skip("typed_config", "Sightline pushes stats to statsd, DogStatsD and OTLP collectors only, not "+typeName(sk.GetTypedConfig(), sk.GetName()))
			ss.done()
			continue
		}
		cs := ss.sub("typed_config", msg, nil)
		sd := &obj{flow: true}
		switch m := msg.(type) {
		case *metricsv3.StatsdSink:
			if !t.statsdAddress(cs, m.GetAddress(), m.GetTcpClusterName(), sd) {
				break
			}
			prefix := m.GetPrefix()
			if prefix == "" {
				prefix = envoyStatsdPrefix
			}
			sd.set("prefix", prefix)
			cs.carry("prefix")
			cs.skip("scale_histogram_units_to_milliseconds", "Sightline's statsd timers are in milliseconds (histogram_type: ms)")
			so := &obj{}
			so.set("statsd", sd)
			sinks = append(sinks, so)
		case *metricsv3.DogStatsdSink:
			if m.GetAddress() == nil {
				cs.fail("address", "a DogStatsD sink needs an address")
				break
			}
			addr, ok := cs.socketAddress("address", m.GetAddress())
			if !ok {
				break
			}
			sd.set("address", addr)
			prefix := m.GetPrefix()
			if prefix == "" {
				prefix = envoyStatsdPrefix
			}
			sd.set("prefix", prefix)
			sd.set("tags", "dogstatsd")
			cs.carry("prefix")
			cs.skip("max_bytes_per_datagram", "Sightline fills datagrams up to 1432 bytes")
			cs.skip("scale_histogram_units_to_milliseconds", "Sightline's DogStatsD timers are in milliseconds")
			so := &obj{}
			so.set("statsd", sd)
			sinks = append(sinks, so)
		default:
			cs.skipAll("Sightline pushes stats to statsd, DogStatsD and OTLP collectors only, not " + string(sk.GetTypedConfig().MessageName()))
		}
		cs.done()
		ss.done()
	}
	if len(sinks) > 0 {
		st.set("sinks", sinks)
		d := envoyStatsFlushInterval
		if f := b.GetStatsFlushInterval(); f != nil {
			d = f.AsDuration()
		}
		st.set("flush_interval", d)
	}
	s.carry("stats_flush_interval")
	s.skip("stats_flush_on_admin", "Sightline flushes its sinks every flush_interval")
	s.skip("stats_flush", "Sightline flushes its sinks every flush_interval")
	s.skip("deferred_stat_options", "Sightline creates a cluster's stats when it is built")
	s.skip("stats_eviction", "Sightline compacts idle stats by stats.compact_after")
	s.skip("stats_eviction_interval", "Sightline compacts idle stats by stats.compact_after")
	if sc := b.GetStatsConfig(); sc != nil {
		cs := s.sub("stats_config", sc, nil)
		cs.skip("stats_tags", "Sightline's stats carry their own tags (cluster, listener, route, method); tags are not extracted from names")
		cs.skip("use_all_default_tags", "Sightline's stats carry their own tags")
		cs.skip("histogram_bucket_settings", "Sightline's histograms have fixed buckets")
		cs.skip("allow_default_tag_overrides", "Sightline's stats carry their own tags")
		if m := sc.GetStatsMatcher(); m != nil {
			ms := cs.sub("stats_matcher", m, nil)
			switch {
			case m.GetRejectAll():
				st.set("include", []any{"^$"})
				ms.carry("reject_all")
			case m.GetExclusionList() != nil:
				if res, ok := matcherRegexes(m.GetExclusionList().GetPatterns()); ok {
					st.set("exclude", res)
					ms.carry("exclusion_list")
				} else {
					ms.skip("exclusion_list", "Sightline's stats matchers are regexes; a pattern with ignore_case is not carried")
				}
			case m.GetInclusionList() != nil:
				if res, ok := matcherRegexes(m.GetInclusionList().GetPatterns()); ok {
					st.set("include", res)
					ms.carry("inclusion_list")
				} else {
					ms.skip("inclusion_list", "Sightline's stats matchers are regexes; a pattern with ignore_case is not carried")
				}
			}
			ms.done()
		}
		cs.done()
	}
	root.set("stats", st)
}

// statsdAddress sets a statsd sink's address: a socket address (UDP), or
// the first endpoint of a TCP cluster.
func (t *translator) statsdAddress(s *scope, a *corev3.Address, tcpCluster string, sd *obj) bool {
	switch {
	case a != nil:
		addr, ok := s.socketAddress("address", a)
		if !ok {
			return false
		}
		sd.set("address", addr)
		sd.set("protocol", "udp")
		return true
	case tcpCluster != "":
		addr := t.clusterAddress(tcpCluster)
		if addr == "" {
			s.fail("tcp_cluster_name", "no cluster %q with an endpoint", tcpCluster)
			return false
		}
		sd.set("address", addr)
		sd.set("protocol", "tcp")
		s.carry("tcp_cluster_name")
		return true
	}
	s.fail("statsd_specifier", "a statsd sink needs an address or tcp_cluster_name")
	return false
}

// dynamic translates ADS dynamic resources into dynamic:. Only ADS is
// carried: listeners and clusters by separate LDS or CDS servers, or from
// files, cannot be.
func (t *translator) dynamic(s *scope, dr *bootstrapv3.Bootstrap_DynamicResources, root *obj) {
	defer s.done()
	var resources []any
	for _, k := range []struct {
		f, kind string
		src     *corev3.ConfigSource
	}{{"lds_config", "listeners", dr.GetLdsConfig()}, {"cds_config", "clusters", dr.GetCdsConfig()}} {
		if k.src == nil {
			continue
		}
		if k.src.GetAds() == nil {
			s.fail(k.f, "Sightline takes %s from an ADS stream only (ads: {}), not from %s", k.kind, configSourceKind(k.src))
			continue
		}
		s.carry(k.f)
		resources = append(resources, k.kind)
	}
	s.unsafe("lds_resources_locator", "Sightline has no xDS TP locators")
	s.unsafe("cds_resources_locator", "Sightline has no xDS TP locators")
	ads := dr.GetAdsConfig()
	if ads == nil {
		if len(resources) > 0 {
			s.fail("ads_config", "lds_config or cds_config with ads: {} needs an ads_config")
		}
		return
	}
	as := s.sub("ads_config", ads, nil)
	defer as.done()
	d := root.child("dynamic")
	ao := d.child("ads")
	if ads.GetApiType() != corev3.ApiConfigSource_GRPC && ads.GetApiType() != corev3.ApiConfigSource_DELTA_GRPC {
		as.fail("api_type", "Sightline speaks ADS over gRPC only, got %s", ads.GetApiType())
		return
	}
	// DELTA_GRPC asks for incremental updates; Sightline takes the state
	// of the world, which a delta server also serves.
	as.carry("api_type", "transport_api_version", "set_node_on_first_message_only")
	if len(ads.GetGrpcServices()) == 0 {
		as.fail("grpc_services", "ADS needs a gRPC service")
		return
	}
	as.carry("grpc_services")
	g := ads.GetGrpcServices()[0]
	gs := as.elem("grpc_services", 0, g, nil)
	addr, ok := t.grpcTarget(gs, g)
	gs.done()
	for j := 1; j < len(ads.GetGrpcServices()); j++ {
		as.elem("grpc_services", j, ads.GetGrpcServices()[j], nil).skipAll("Envoy uses the first gRPC service only")
	}
	if !ok {
		return
	}
	ao.set("address", addr)
	if cn := g.GetEnvoyGrpc().GetClusterName(); cn != "" && t.clusterTLS(cn) {
		// The cluster's tls, translated with it, is the stream's too.
		c := t.clusters[cn]
		tmp := &obj{}
		t.upstreamTLS(t.open(as.at("grpc_services[0]")+"(tls of "+cn+")", c.GetTransportSocket(), nil), c.GetTransportSocket(), tmp)
		if tls, ok := tmp.get("tls").(*obj); ok {
			ao.set("tls", tls)
		}
	}
	if rb := ads.GetRateLimitSettings(); rb != nil {
		as.sub("rate_limit_settings", rb, nil).skipAll("Sightline sends requests to the control plane as they come")
	}
	as.skip("refresh_delay", "Sightline holds one stream open")
	as.skip("request_timeout", "Sightline holds one stream open")
	as.skip("config_validators", "Sightline validates every config it applies")
	as.skip("cluster_names", "Sightline names the control plane by address")
	if ift := dr.GetLdsConfig().GetInitialFetchTimeout(); ift != nil {
		ao.set("initial_fetch_timeout", ift.AsDuration())
	}
	if len(resources) > 0 {
		d.set("resources", resources)
	}
}

// configSourceKind names where a config source fetches from.
func configSourceKind(c *corev3.ConfigSource) string {
	switch {
	case c.GetPath() != "" || c.GetPathConfigSource() != nil:
		return "a file"
	case c.GetApiConfigSource() != nil:
		return "its own " + strings.ToLower(c.GetApiConfigSource().GetApiType().String()) + " server"
	}
	return "this config source"
}

// matcherRegexes writes stats matcher patterns as regexes on the flat
// name.
func matcherRegexes(ps []*matcherv3.StringMatcher) ([]any, bool) {
	var out []any
	for _, p := range ps {
		if p.GetIgnoreCase() {
			return nil, false
		}
		re, ok := stringRegex(p)
		if !ok {
			return nil, false
		}
		out = append(out, "^"+re+"$")
	}
	return out, true
}
