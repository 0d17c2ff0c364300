package config

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/sightline-proxy/sightline/accesslog/envoyfmt"
)

// Allowed values of the enumerated keys, in the order hints list them.
var (
	clusterTypes       = []string{"static", "strict_dns"}
	upstreamProtocols  = []string{"http2", "http1", "auto"}
	lbPolicies         = []string{"round_robin", "least_request", "random", "ring_hash", "maglev"}
	plainProtocols     = []string{"h2c", "http1"}
	tlsProtocols       = []string{"h2", "http1"}
	propagators        = []string{"tracecontext", "baggage", "b3", "b3multi"}
	statsdProtocols    = []string{"udp", "tcp"}
	statsdTagFormats   = []string{"none", "dogstatsd"}
	otlpProtocols      = []string{"grpc", "http"}
	otlpTemporalities  = []string{"cumulative", "delta"}
	retryOnConditions  = []string{"5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx", "refused-stream", "cancelled", "deadline-exceeded", "resource-exhausted", "unavailable", "internal"}
	prometheusNameExpr = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// domainHint explains the virtual host domain forms.
const domainHint = "use an exact host (api.example.com), a suffix (*.example.com), a host on any port (api:*), a prefix (www.*) or *"

// check runs the semantic checks on the merged config and adds what they
// find to l.problems, each placed at the node its path was written at.
// Problems about values the walker already refused are left out: a refused
// value decodes to zero, and "must not be empty" about it would be noise.
func (l *loader) check() {
	v := &validator{locate: l.locate, written: func(path string) bool { _, ok := l.find(path); return ok },
		clusters: make(map[string]bool, len(l.cfg.Clusters)), hints: map[string]string{}}
	v.config(l.cfg)
	// A problem at a path is fallout of a refused value when the path is
	// (under) a refused one, or when a refused value is one of its direct
	// children (so that "set exactly one of" checks stay quiet when one of
	// them was refused).
	parents := make(map[string]bool, len(l.failed))
	for f := range l.failed {
		parents[parentPath(f)] = true
	}
	for _, is := range v.issues {
		if parents[is.path] || l.underFailed(is.path) {
			continue
		}
		p := l.locate(is.path)
		l.problems = append(l.problems, Problem{
			File: p.file, Line: p.line, Column: p.column, Path: is.path, Message: is.msg, Hint: is.hint,
		})
	}
}

// underFailed reports whether path or one of its ancestors was refused.
func (l *loader) underFailed(path string) bool {
	for {
		if l.failed[path] {
			return true
		}
		if path == "" {
			return false
		}
		path = parentPath(path)
	}
}

// locate finds where path was written, or else its nearest written parent
// (a missing key is reported at the mapping that lacks it).
func (l *loader) locate(path string) position {
	for {
		if p, ok := l.find(path); ok {
			return p
		}
		if path == "" {
			return position{file: l.main}
		}
		path = parentPath(path)
	}
}

// issue is a problem found on the typed config, not yet placed.
type issue struct {
	path, msg, hint string
}

// validator checks a merged, decoded config. It works on field paths; the
// loader places them in files.
type validator struct {
	locate func(path string) position
	// written holds the paths written in the files: it tells an explicit
	// zero ("weight: 0") from an absent key.
	written func(path string) bool
	// clusters holds the defined cluster names, and names lists them in
	// order for hints; hints caches clusterHint, since aliases can repeat
	// one unknown name many times.
	clusters map[string]bool
	names    []string
	hints    map[string]string
	issues   []issue
	// eventLogs maps each event log path to its kind (see eventLog) and
	// the config path of the first cluster that names it.
	eventLogs map[string][2]string
	// rateLimitClusters holds the clusters a listener's rate_limit may
	// name, for the checks of their protocol.
	rateLimitClusters map[string]*Cluster
}

// report notes a problem at path; the message is formatted as fmt.Sprintf.
func (v *validator) report(path, hint, format string, args ...any) {
	v.issues = append(v.issues, issue{path: path, msg: fmt.Sprintf(format, args...), hint: hint})
}

// has reports whether path was written, even as an empty or zero value.
func (v *validator) has(path string) bool {
	return v.written(path)
}

// firstAt is the hint for a duplicate: where the first one is.
func (v *validator) firstAt(path string) string {
	return "first defined at " + v.locate(path).String()
}

// unique reports key at path when seen, which maps keys to the path that
// first used them, has it already; otherwise it adds it.
func (v *validator) unique(seen map[string]string, key, path, what string) {
	if first, ok := seen[key]; ok {
		v.report(path, v.firstAt(first), "duplicate %s %q", what, key)
		return
	}
	seen[key] = path
}

func (v *validator) config(c *Config) {
	v.rateLimitClusters = make(map[string]*Cluster, len(c.Clusters))
	for i := range c.Clusters {
		v.rateLimitClusters[c.Clusters[i].Name] = &c.Clusters[i]
	}
	for _, cl := range c.Clusters {
		if cl.Name != "" && !v.clusters[cl.Name] {
			v.clusters[cl.Name] = true
			v.names = append(v.names, cl.Name)
		}
	}

	// addresses maps every socket the proxy listens on to the path that
	// claims it: two listeners (or a listener and admin) cannot share one.
	addresses := map[string]string{}
	if c.Admin.Address != "" {
		if v.listenAddress("admin.address", c.Admin.Address) {
			addresses[normalizeAddress(c.Admin.Address)] = "admin.address"
		}
	} else {
		addresses[defaultAdminAddress] = "admin.address"
	}
	v.nonNegative("server.max_connections", c.Server.MaxConnections)
	v.overload(&c.Overload)
	if c.Dynamic != nil {
		v.dynamic(c.Dynamic)
	}
	v.stats(&c.Stats)
	v.tracing(&c.Tracing)

	names := map[string]string{}
	for i := range c.Listeners {
		v.listener(&c.Listeners[i], fmt.Sprintf("listeners[%d]", i), names, addresses)
	}
	names = make(map[string]string, len(c.Clusters))
	for i := range c.Clusters {
		v.cluster(&c.Clusters[i], "clusters["+strconv.Itoa(i)+"]", names)
	}
}

func (v *validator) overload(o *Overload) {
	v.nonNegative("overload.max_buffered_bytes", o.MaxBufferedBytes)
	v.nonNegative("overload.max_heap_bytes", o.MaxHeapBytes)
	v.nonNegative("overload.max_active_requests", o.MaxActiveRequests)
	if o.RefreshInterval < 0 {
		v.report("overload.refresh_interval", "", "must not be negative, got %s", o.RefreshInterval)
	}
	for _, a := range []struct {
		name string
		p    float64
	}{
		{"reset_high_memory_stream", o.Actions.ResetHighMemoryStream},
		{"stop_accepting_requests", o.Actions.StopAcceptingRequests},
		{"stop_accepting_connections", o.Actions.StopAcceptingConnections},
	} {
		if math.IsNaN(a.p) || a.p < 0 {
			v.report("overload.actions."+a.name, "a fraction of the budget, such as 0.9; above 1 turns the action off",
				"must be a positive fraction, got %g", a.p)
		}
	}
}

func (v *validator) stats(s *Stats) {
	v.nonNegative("stats.max_grpc_methods_per_cluster", s.MaxGRPCMethodsPerCluster)
	if d := s.CompactAfter; d != nil && *d < 0 {
		v.report("stats.compact_after", "0s turns compaction off", "must not be negative, got %s", *d)
	}
	for i, re := range s.Exclude {
		v.regex(fmt.Sprintf("stats.exclude[%d]", i), re)
	}
	for i, re := range s.Include {
		v.regex(fmt.Sprintf("stats.include[%d]", i), re)
	}
	for i, sink := range s.Sinks {
		p := fmt.Sprintf("stats.sinks[%d]", i)
		switch len(chosen([]string{"statsd", "otlp"}, sink.Statsd != nil, sink.OTLP != nil)) {
		case 0:
			v.report(p, "e.g. statsd: {address: 127.0.0.1:8125}", "must set one of statsd or otlp")
		case 2:
			v.report(p, "use one list entry per sink", "must set only one of statsd or otlp")
		}
		if sd := sink.Statsd; sd != nil {
			v.upstreamAddress(p+".statsd.address", sd.Address, true, "127.0.0.1:8125")
			v.oneOf(p+".statsd.protocol", sd.Protocol, statsdProtocols)
			v.oneOf(p+".statsd.tags", sd.Tags, statsdTagFormats)
			v.constantTags(p+".statsd", sd)
		}
		if sink.OTLP != nil {
			v.otlp(p+".otlp", sink.OTLP)
			v.oneOf(p+".otlp.temporality", sink.OTLP.Temporality, otlpTemporalities)
		}
	}
	if ns := s.Prometheus.Namespace; ns != "" && !prometheusNameExpr.MatchString(ns) {
		v.report("stats.prometheus.namespace", "letters, digits and underscores, not starting with a digit",
			"must be a valid Prometheus metric name prefix, got %q", ns)
	}
	v.prometheusNaming(s.Prometheus)
}

// prometheusNamings and prometheusUnits are the allowed values of
// stats.prometheus.naming and units.
var (
	prometheusNamings = []string{PrometheusNamingSightline, PrometheusNamingEnvoy}
	prometheusUnits   = []string{PrometheusUnitsBase, PrometheusUnitsMs}
)

// prometheusNaming checks stats.prometheus.naming, and that a namespace is
// not written beside naming: envoy, whose families are always envoy_ as
// Envoy's.
func (v *validator) prometheusNaming(p Prometheus) {
	v.oneOf("stats.prometheus.naming", p.Naming, prometheusNamings)
	if p.Naming == PrometheusNamingEnvoy && v.has("stats.prometheus.namespace") {
		v.report("stats.prometheus.namespace", "leave namespace out, or use naming: sightline",
			"has no effect with naming: envoy (every family is envoy_…, as Envoy names them)")
	}
	v.oneOf("stats.prometheus.units", p.Units, prometheusUnits)
	if p.Naming == PrometheusNamingEnvoy && p.Units == PrometheusUnitsBase {
		v.report("stats.prometheus.units", "leave units out, or use naming: sightline",
			"must be ms with naming: envoy (Envoy's histograms are in milliseconds)")
	}
}

// statsdHistograms and statsdHistogramTypes are the allowed values of a
// statsd sink's histograms and histogram_type.
var (
	statsdHistograms     = []string{"samples", "buckets"}
	statsdHistogramTypes = []string{"ms", "h", "d"}
)

// constantTags checks a statsd sink's DogStatsD keys: histogram_type, and
// constant_tags, whose keys and values must hold nothing the line protocol
// uses as a separator (nor a colon in a key: the first one splits).
func (v *validator) constantTags(p string, sd *StatsdSink) {
	v.oneOf(p+".histograms", sd.Histograms, statsdHistograms)
	switch {
	case sd.Tags == "dogstatsd":
		v.oneOf(p+".histogram_type", sd.HistogramType, statsdHistogramTypes)
	case sd.HistogramType != "" && sd.HistogramType != "ms":
		v.report(p+".histogram_type", "set tags: dogstatsd, or leave it out", "must be ms for plain statsd (h and d are DogStatsD types), got %q", sd.HistogramType)
	}
	if len(sd.ConstantTags) > 0 && sd.Tags != "dogstatsd" {
		v.report(p+".constant_tags", "set tags: dogstatsd, or leave them out", "need tags: dogstatsd (plain statsd has no tags)")
		return
	}
	for _, k := range slices.Sorted(maps.Keys(sd.ConstantTags)) {
		val := sd.ConstantTags[k]
		at := p + ".constant_tags." + k
		switch {
		case k == "":
			v.report(at, "e.g. env: prod", "a tag needs a name")
		case strings.ContainsAny(k, tagSeparators+":"):
			v.report(at, "", "tag name %q must not contain :, |, #, a comma or white space", k)
		case val == "":
			v.report(at, "e.g. env: prod", "tag %q needs a value", k)
		case strings.ContainsAny(val, tagSeparators):
			v.report(at, "", "tag value %q must not contain |, #, a comma or white space", val)
		}
	}
}

// tagSeparators are what the DogStatsD line protocol splits tags on.
const tagSeparators = "|#, \t\r\n"

func (v *validator) tracing(t *Tracing) {
	v.percent("tracing.sampling", t.Sampling)
	for i, p := range t.Propagation {
		v.oneOf(fmt.Sprintf("tracing.propagation[%d]", i), p, propagators)
	}
	if t.OTLP != nil {
		v.otlp("tracing.otlp", t.OTLP)
		if t.OTLP.Temporality != "" {
			v.report("tracing.otlp.temporality", "set it on the otlp entry of stats.sinks", "is for metrics only")
		}
	}
}

func (v *validator) otlp(p string, o *OTLP) {
	v.upstreamAddress(p+".endpoint", o.Endpoint, true, "127.0.0.1:4317")
	v.oneOf(p+".protocol", o.Protocol, otlpProtocols)
}

func (v *validator) listener(l *Listener, p string, names, addresses map[string]string) {
	if l.Name == "" {
		v.report(p+".name", "", "must not be empty")
	} else {
		v.unique(names, l.Name, p+".name", "listener name")
	}

	if l.Address == "" {
		v.report(p+".address", "e.g. 127.0.0.1:10000", "must not be empty")
	} else if v.listenAddress(p+".address", l.Address) {
		// Port 0 asks the kernel for a free port: no two sockets clash.
		if _, port, _ := net.SplitHostPort(l.Address); port != "0" {
			key := normalizeAddress(l.Address)
			if first, ok := addresses[key]; ok {
				hint := v.firstAt(first)
				if first == "admin.address" && !v.has(first) {
					hint = "the admin server listens there by default; set admin.address or pick another port"
				}
				v.report(p+".address", hint, "duplicate address %q", l.Address)
			} else {
				addresses[key] = p + ".address"
			}
		}
	}

	allowed, mode, swap := plainProtocols, "without tls", "h2 needs tls; plaintext HTTP/2 is h2c"
	if l.TLS != nil {
		allowed, mode, swap = tlsProtocols, "with tls", "h2c is plaintext; over tls HTTP/2 is h2, chosen by ALPN"
	}
	seen := map[string]string{}
	for i, proto := range l.Protocols {
		pp := fmt.Sprintf("%s.protocols[%d]", p, i)
		if !slices.Contains(allowed, proto) {
			hint := suggest(proto, allowed, "")
			if proto == "h2" || proto == "h2c" {
				hint = swap
			}
			v.report(pp, hint, "must be one of %s %s, got %q", strings.Join(allowed, ", "), mode, proto)
			continue
		}
		v.unique(seen, proto, pp, "protocol")
	}

	if t := l.TLS; t != nil {
		v.serverKeyPair(p+".tls", t.CertFile, t.KeyFile, t.CertPEM, t.KeyPEM)
	}

	for i := range l.AccessLog {
		v.accessLog(&l.AccessLog[i], fmt.Sprintf("%s.access_log[%d]", p, i))
	}

	lp := p + ".limits"
	v.nonNegative(lp+".max_concurrent_streams", l.Limits.MaxConcurrentStreams)
	v.nonNegative(lp+".max_header_bytes", l.Limits.MaxHeaderBytes)
	v.nonNegative(lp+".max_requests_per_connection", l.Limits.MaxRequestsPerConnection)
	v.nonNegative(lp+".max_connections", l.Limits.MaxConnections)
	if d := l.Limits.StreamIdleTimeout; d != nil && *d < 0 {
		v.report(lp+".stream_idle_timeout", "0s turns it off", "must not be negative, got %s", *d)
	}

	v.upgrades(p+".upgrades", l.Upgrades)
	v.localRateLimit(l.LocalRateLimit, p+".local_rate_limit")
	if rl := l.RateLimit; rl != nil {
		v.rateLimitService(rl, p+".rate_limit")
	}

	vhosts := map[string]string{}
	domains := map[string]string{}
	for i := range l.VirtualHosts {
		v.virtualHost(&l.VirtualHosts[i], fmt.Sprintf("%s.virtual_hosts[%d]", p, i), vhosts, domains)
	}
}

func (v *validator) accessLog(a *AccessLog, p string) {
	switch {
	case a.Path == "" && a.OTLP == nil:
		v.report(p+".path", `use "-" for stdout, or otlp: {endpoint: host:port} for a collector`, "must not be empty")
	case a.Path != "" && a.OTLP != nil:
		v.report(p+".otlp", "keep one of them: an access log goes to a file or to a collector", "path and otlp are both set")
	case a.OTLP != nil:
		v.upstreamAddress(p+".otlp.endpoint", a.OTLP.Endpoint, true, "127.0.0.1:4317")
		v.oneOf(p+".otlp.protocol", a.OTLP.Protocol, otlpProtocols)
	}
	v.nonNegative(p+".buffer_bytes", a.BufferBytes)
	if s := a.Filter.StatusMin; s < 0 || s > 599 {
		v.report(p+".filter.status_min", "", "must be from 0 to 599, got %d", s)
	}
	if a.Filter.SamplePercent != nil {
		v.percent(p+".filter.sample_percent", *a.Filter.SamplePercent)
	}
	v.accessLogFormat(a, p)
}

// formatHint is the hint for a bad access-log format or json_format value.
const formatHint = `Envoy's format language, e.g. "%START_TIME% %REQ(:PATH)% %RESPONSE_CODE%"`

// accessLogFormat checks an access log's format, or its json_format: each
// value parsed as the logger will parse it, so a bad operator is refused at
// load with its position.
func (v *validator) accessLogFormat(a *AccessLog, p string) {
	if len(a.JSONFormat) > 0 {
		if a.Format != "" {
			v.report(p+".format", "keep one of them", "format and json_format are both set")
		}
		for k, f := range a.JSONFormat {
			if _, err := envoyfmt.Parse(f); err != nil {
				v.report(p+".json_format."+k, formatHint, "%v", err)
			}
		}
		return
	}
	if a.Format != "" && a.Format != "json" {
		if _, err := envoyfmt.Text(a.Format); err != nil {
			v.report(p+".format", "json, envoy, or "+formatHint, "%v", err)
		}
	}
}

// virtualHost checks vh; names and domains map what the listener's other
// virtual hosts already use to where.
func (v *validator) virtualHost(vh *VirtualHost, p string, names, domains map[string]string) {
	if vh.Name != "" {
		v.unique(names, vh.Name, p+".name", "virtual host name")
	}
	if len(vh.Domains) == 0 {
		v.report(p+".domains", `use "*" to match any host`, "must list at least one domain")
	}
	for i, d := range vh.Domains {
		dp := fmt.Sprintf("%s.domains[%d]", p, i)
		if !validDomain(d) {
			v.report(dp, domainHint, "invalid domain %q", d)
			continue
		}
		// Host names are case-insensitive: "API" and "api" are one domain.
		if first, ok := domains[strings.ToLower(d)]; ok {
			v.report(dp, v.firstAt(first), "duplicate domain %q", d)
			continue
		}
		domains[strings.ToLower(d)] = dp
	}
	v.localRateLimit(vh.LocalRateLimit, p+".local_rate_limit")
	v.rateLimits(vh.RateLimits, p+".rate_limits")
	for i := range vh.Routes {
		v.route(&vh.Routes[i], fmt.Sprintf("%s.routes[%d]", p, i))
	}
}

// validDomain reports whether d is one of the domain forms: exact, a
// suffix wildcard ("*.example.com"), a prefix wildcard ("api:*", "www.*")
// or "*".
func validDomain(d string) bool {
	if d == "*" {
		return true
	}
	// As in Envoy, one wildcard may stand at the start (a suffix match:
	// "*.example.com", "*-bar.example.com") or at the end (a prefix match:
	// "my-service:*", "www.*"), standing for at least one character.
	host := strings.TrimSuffix(strings.TrimPrefix(d, "*"), "*")
	if len(d)-len(host) > 1 {
		return false // "*foo*": a wildcard at both ends
	}
	return strings.ContainsFunc(host, isAlnum) && !strings.ContainsAny(host, "*/ \t")
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// MaxDirectResponseBody bounds a direct_response body, as Envoy's
// max_direct_response_body_size_bytes does by default.
const MaxDirectResponseBody = 4096

// headerName reports whether s is a valid HTTP field name (RFC 9110 §5.1:
// a token), not a pseudo-header.
func headerName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func (v *validator) route(r *Route, p string) {
	v.localRateLimit(r.LocalRateLimit, p+".local_rate_limit")
	v.rateLimits(r.RateLimits, p+".rate_limits")
	if d := r.IdleTimeout; d != nil && *d < 0 {
		v.report(p+".idle_timeout", "0s turns it off", "must not be negative, got %s", *d)
	}
	mp := p + ".match"
	m := &r.Match
	kinds := chosen([]string{"prefix", "path", "regex"},
		v.set(mp+".prefix", m.Prefix != ""), v.set(mp+".path", m.Path != ""), v.set(mp+".regex", m.Regex != ""))
	switch len(kinds) {
	case 0:
		v.report(mp, "e.g. match: {prefix: /}", "must set one of prefix, path or regex")
	case 1:
	default:
		v.report(mp, "", "must set only one of prefix, path or regex, got %s", strings.Join(kinds, " and "))
	}
	for _, k := range kinds {
		switch k {
		case "prefix":
			v.absolutePath(mp+".prefix", m.Prefix)
		case "path":
			v.absolutePath(mp+".path", m.Path)
		case "regex":
			v.regex(mp+".regex", m.Regex)
		}
	}
	for i := range m.Headers {
		v.headerMatcher(&m.Headers[i], fmt.Sprintf("%s.headers[%d]", mp, i))
	}

	targets := chosen([]string{"cluster", "weighted_clusters", "cluster_header", "direct_response"},
		v.set(p+".cluster", r.Cluster != ""), v.set(p+".weighted_clusters", len(r.WeightedClusters) > 0),
		v.set(p+".cluster_header", r.ClusterHeader != ""), v.set(p+".direct_response", r.DirectResponse != nil))
	switch len(targets) {
	case 0:
		v.report(p, v.clusterHint(""), "must set one of cluster, weighted_clusters, cluster_header or direct_response")
	case 1:
	default:
		v.report(p, "", "must set only one of cluster, weighted_clusters, cluster_header or direct_response, got %s", strings.Join(targets, " and "))
	}
	if slices.Contains(targets, "cluster_header") && !headerName(r.ClusterHeader) {
		v.report(p+".cluster_header", "e.g. cluster_header: x-target-cluster", "%q is not a header name", r.ClusterHeader)
	}
	if d := r.DirectResponse; d != nil {
		if d.Status < 200 || d.Status > 599 {
			v.report(p+".direct_response.status", "e.g. status: 200", "must be from 200 to 599, got %d", d.Status)
		}
		if len(d.Body) > MaxDirectResponseBody {
			v.report(p+".direct_response.body", "", "must be at most %d bytes, got %d", MaxDirectResponseBody, len(d.Body))
		}
		for _, k := range []string{"timeout", "retry_policy", "hash_policy", "mirror"} {
			if v.set(p+"."+k, k == "retry_policy" && r.RetryPolicy != nil || k == "hash_policy" && len(r.HashPolicy) > 0 || k == "mirror" && r.Mirror != nil) {
				v.report(p+"."+k, "", "has no effect on a direct_response route")
			}
		}
	}
	if slices.Contains(targets, "cluster") {
		v.clusterRef(p+".cluster", r.Cluster)
	}
	if slices.Contains(targets, "weighted_clusters") && len(r.WeightedClusters) == 0 {
		v.report(p+".weighted_clusters", "", "must list at least one cluster")
	}
	for i, wc := range r.WeightedClusters {
		wp := fmt.Sprintf("%s.weighted_clusters[%d]", p, i)
		v.clusterRef(wp+".cluster", wc.Cluster)
		if wc.Weight == 0 {
			v.report(wp+".weight", "", "must be greater than 0")
		}
	}

	for i, h := range r.HashPolicy {
		if h.Header == "" {
			v.report(fmt.Sprintf("%s.hash_policy[%d].header", p, i), "", "must not be empty")
		}
	}
	if r.Mirror != nil {
		v.clusterRef(p+".mirror.cluster", r.Mirror.Cluster)
		if r.Mirror.Percent != nil {
			v.percent(p+".mirror.percent", *r.Mirror.Percent)
		}
	}
	if r.RetryPolicy != nil {
		v.retryPolicy(r.RetryPolicy, p+".retry_policy")
	}
	v.upgrades(p+".upgrades", r.Upgrades)
}

// upgradeProtocol reports whether s is a protocol as the Upgrade header
// names one (RFC 9110 §7.8): a token, and "/" and a version token maybe.
func upgradeProtocol(s string) bool {
	name, version, versioned := strings.Cut(s, "/")
	return headerName(name) && (!versioned || headerName(version))
}

// upgrades checks a listener's or a route's upgrade types: each a token,
// named once, and one the HTTP/1.1 listener can tunnel.
func (v *validator) upgrades(p string, us []Upgrade) {
	seen := map[string]string{}
	for i, u := range us {
		tp := fmt.Sprintf("%s[%d].type", p, i)
		switch {
		case u.Type == "":
			v.report(tp, "e.g. type: websocket", "must not be empty")
			continue
		case !upgradeProtocol(u.Type):
			v.report(tp, "e.g. type: websocket", "%q is not a protocol name", u.Type)
			continue
		case strings.EqualFold(u.Type, "h2c"):
			v.report(tp, "HTTP/2 over plaintext is served by the listener's protocols: [h2c, http1]", "h2c is not an upgrade Sightline tunnels")
			continue
		case strings.EqualFold(u.Type, "connect"):
			v.report(tp, "", "CONNECT is not supported")
			continue
		}
		v.unique(seen, strings.ToLower(u.Type), tp, "upgrade type")
	}
}

// set reports whether the key at path is set: non-zero (as nonZero says)
// or written, so that an explicit empty value (`exact: ""`) counts as a
// choice in a set of mutually exclusive keys.
func (v *validator) set(path string, nonZero bool) bool {
	return nonZero || v.has(path)
}

// chosen returns the keys whose set flag is true, in order.
func chosen(keys []string, set ...bool) []string {
	var out []string
	for i, k := range keys {
		if set[i] {
			out = append(out, k)
		}
	}
	return out
}

func (v *validator) headerMatcher(h *HeaderMatcher, p string) {
	if h.Name == "" {
		v.report(p+".name", "", "must not be empty")
	}
	if v.has(p+".present") && !h.Present {
		v.report(p+".present", "to match a missing header, use present: true with invert: true", "must be true when set")
	}
	kinds := chosen([]string{"exact", "present", "regex"},
		v.set(p+".exact", h.Exact != ""), v.set(p+".present", h.Present), v.set(p+".regex", h.Regex != ""))
	switch len(kinds) {
	case 0:
		v.report(p, "", "must set one of exact, present or regex")
	case 1:
	default:
		v.report(p, "", "must set only one of exact, present or regex, got %s", strings.Join(kinds, " and "))
	}
	if slices.Contains(kinds, "regex") {
		v.regex(p+".regex", h.Regex)
	}
}

// xRateLimitVersions are the values of enable_x_ratelimit_headers.
var xRateLimitVersions = []string{XRateLimitOff, XRateLimitDraft03}

// localRateLimit checks a local rate limit (nil: none).
func (v *validator) localRateLimit(rl *LocalRateLimit, p string) {
	if rl == nil {
		return
	}
	if rl.TokenBucket == nil && len(rl.Descriptors) == 0 {
		v.report(p, "e.g. token_bucket: {max_tokens: 100, tokens_per_fill: 100, fill_interval: 1s}",
			"must set token_bucket or descriptors")
	}
	if rl.TokenBucket != nil {
		v.tokenBucket(rl.TokenBucket, p+".token_bucket")
	}
	for i := range rl.Descriptors {
		d := &rl.Descriptors[i]
		dp := fmt.Sprintf("%s.descriptors[%d]", p, i)
		switch {
		case len(d.Entries) == 0:
			v.report(dp+".entries", "e.g. entries: [{key: remote_address}]: a bucket per client address", "must list at least one entry")
		case len(d.Entries) > MaxRateLimitActions:
			v.report(dp+".entries", "", "must list at most %d entries, got %d", MaxRateLimitActions, len(d.Entries))
		}
		for j, e := range d.Entries {
			if e.Key == "" {
				v.report(fmt.Sprintf("%s.entries[%d].key", dp, j), "the descriptor_key of a rate_limits action, or remote_address, generic_key, header_match", "must not be empty")
			}
		}
		v.tokenBucket(&d.TokenBucket, dp+".token_bucket")
	}
	for _, f := range []struct {
		name string
		p    *float64
	}{{"filter_enabled", rl.FilterEnabled}, {"filter_enforced", rl.FilterEnforced}} {
		if f.p != nil {
			v.percent(p+"."+f.name, *f.p)
		}
	}
	v.rateLimitStatus(p+".status", rl.Status)
	v.oneOf(p+".enable_x_ratelimit_headers", rl.EnableXRateLimitHeaders, xRateLimitVersions)
	v.nonNegative(p+".max_dynamic_descriptors", rl.MaxDynamicDescriptors)
}

// rateLimitStatus checks the status of a refusal: 0 is the default, 429.
func (v *validator) rateLimitStatus(path string, status int) {
	if status != 0 && (status < 400 || status > 599) {
		v.report(path, "429 (Too Many Requests) is the default", "must be from 400 to 599, got %d", status)
	}
}

func (v *validator) tokenBucket(tb *TokenBucket, p string) {
	if tb.MaxTokens == 0 {
		v.report(p+".max_tokens", "e.g. max_tokens: 100", "must be greater than 0")
	}
	if v.has(p+".tokens_per_fill") && tb.TokensPerFill == 0 {
		v.report(p+".tokens_per_fill", "1 by default", "must be greater than 0")
	}
	switch {
	case !v.has(p + ".fill_interval"):
		v.report(p+".fill_interval", "e.g. fill_interval: 1s", "must be set")
	case tb.FillInterval.D() < MinFillInterval:
		v.report(p+".fill_interval", "Envoy's minimum too; e.g. fill_interval: 1s", "must be at least %s, got %s", MinFillInterval, tb.FillInterval)
	}
}

func (v *validator) rateLimitService(rl *RateLimitService, p string) {
	if rl.Domain == "" {
		v.report(p+".domain", "the domain of the rate limit service's config, e.g. domain: edge", "must not be empty")
	}
	v.clusterRef(p+".cluster", rl.Cluster)
	if c := v.rateLimitClusters[rl.Cluster]; c != nil {
		// The service speaks gRPC, in plaintext (h2c).
		if c.Protocol == "http1" {
			v.report(p+".cluster", "give the rate limit service a cluster of its own with protocol http2",
				"cluster %q has protocol http1; the rate limit service speaks gRPC", rl.Cluster)
		}
		if c.TLS != nil {
			v.report(p+".cluster", "the rate limit service is reached in plaintext (h2c)",
				"cluster %q has tls, which the rate limit client does not use", rl.Cluster)
		}
	}
	if v.has(p+".timeout") && rl.Timeout <= 0 {
		v.report(p+".timeout", "20ms by default", "must be greater than 0, got %s", rl.Timeout)
	}
	v.rateLimitStatus(p+".status", rl.Status)
	v.oneOf(p+".enable_x_ratelimit_headers", rl.EnableXRateLimitHeaders, xRateLimitVersions)
}

// rateLimitActionKinds are the keys of a rate_limits action.
var rateLimitActionKinds = []string{"request_headers", "remote_address", "generic_key", "header_value_match"}

func (v *validator) rateLimits(rls []RateLimitPolicy, p string) {
	if len(rls) > MaxRateLimits {
		v.report(p, "", "must list at most %d entries, got %d", MaxRateLimits, len(rls))
	}
	for i := range rls {
		rp := fmt.Sprintf("%s[%d]", p, i)
		acts := rls[i].Actions
		switch {
		case len(acts) == 0:
			v.report(rp+".actions", "e.g. actions: [{remote_address: {}}]", "must list at least one action")
		case len(acts) > MaxRateLimitActions:
			v.report(rp+".actions", "", "must list at most %d actions, got %d", MaxRateLimitActions, len(acts))
		}
		for j := range acts {
			v.rateLimitAction(&acts[j], fmt.Sprintf("%s.actions[%d]", rp, j))
		}
	}
}

func (v *validator) rateLimitAction(a *RateLimitAction, p string) {
	kinds := chosen(rateLimitActionKinds,
		v.set(p+".request_headers", a.RequestHeaders != nil), v.set(p+".remote_address", a.RemoteAddress != nil),
		v.set(p+".generic_key", a.GenericKey != nil), v.set(p+".header_value_match", a.HeaderValueMatch != nil))
	switch len(kinds) {
	case 0:
		v.report(p, "one of "+strings.Join(rateLimitActionKinds, ", "), "must set one action")
		return
	case 1:
	default:
		v.report(p, "put each action in an entry of its own", "must set only one action, got %s", strings.Join(kinds, " and "))
	}
	if h := a.RequestHeaders; h != nil {
		hp := p + ".request_headers"
		switch {
		case h.HeaderName == "":
			v.report(hp+".header_name", "e.g. header_name: x-user-id", "must not be empty")
		case !headerName(h.HeaderName) && !slices.Contains(rateLimitPseudoHeaders, h.HeaderName):
			v.report(hp+".header_name", "a header name, or one of "+strings.Join(rateLimitPseudoHeaders, ", "), "%q is not a header name", h.HeaderName)
		}
		if h.DescriptorKey == "" {
			v.report(hp+".descriptor_key", "the key the rate limit service's config (or a local descriptor) names", "must not be empty")
		}
	}
	if g := a.GenericKey; g != nil && g.DescriptorValue == "" {
		v.report(p+".generic_key.descriptor_value", "", "must not be empty")
	}
	if h := a.HeaderValueMatch; h != nil {
		hp := p + ".header_value_match"
		if h.DescriptorValue == "" {
			v.report(hp+".descriptor_value", "", "must not be empty")
		}
		if len(h.Headers) == 0 {
			v.report(hp+".headers", "e.g. headers: [{name: x-tier, exact: free}]", "must list at least one header matcher")
		}
		for i := range h.Headers {
			v.headerMatcher(&h.Headers[i], fmt.Sprintf("%s.headers[%d]", hp, i))
		}
	}
}

// rateLimitPseudoHeaders are the pseudo-headers a request_headers action
// may name.
var rateLimitPseudoHeaders = []string{":path", ":authority", ":method"}

func (v *validator) retryPolicy(rp *RetryPolicy, p string) {
	if strings.TrimSpace(rp.RetryOn) == "" {
		v.report(p+".retry_on", "a comma-separated list of "+strings.Join(retryOnConditions, ", "), "must not be empty")
	} else {
		for cond := range strings.SplitSeq(rp.RetryOn, ",") {
			cond = strings.TrimSpace(cond)
			switch {
			case cond == "":
				v.report(p+".retry_on", "remove the extra comma", "empty retry condition in %q", rp.RetryOn)
			case !slices.Contains(retryOnConditions, cond):
				v.report(p+".retry_on", suggest(cond, retryOnConditions, "allowed"), "unknown retry condition %q", cond)
			}
		}
	}
	v.nonNegative(p+".num_retries", rp.NumRetries)
	base, most := cmp.Or(rp.BackoffBase, defaultBackoffBase), cmp.Or(rp.BackoffMax, defaultBackoffMax)
	if base > most {
		v.report(p+".backoff_base", "", "must not exceed backoff_max (%s), got %s", most, base)
	}
}

func (v *validator) cluster(c *Cluster, p string, names map[string]string) {
	if c.Name == "" {
		v.report(p+".name", "", "must not be empty")
	} else {
		v.unique(names, c.Name, p+".name", "cluster name")
	}
	v.oneOf(p+".type", c.Type, clusterTypes)
	v.oneOf(p+".protocol", c.Protocol, upstreamProtocols)
	v.oneOf(p+".lb_policy", c.LBPolicy, lbPolicies)

	if len(c.Endpoints) == 0 {
		v.report(p+".endpoints", "", "must list at least one endpoint")
	}
	dns := cmp.Or(c.Type, defaultClusterType) == "strict_dns"
	seen := make(map[string]string, len(c.Endpoints))
	for i, e := range c.Endpoints {
		ep := p + ".endpoints[" + strconv.Itoa(i) + "]"
		if v.upstreamAddress(ep+".address", e.Address, dns, "127.0.0.1:5100") {
			v.unique(seen, normalizeAddress(e.Address), ep+".address", "endpoint")
		}
		if e.Weight == 0 && v.has(ep+".weight") {
			v.report(ep+".weight", "leave it out for the default, 1", "must be at least 1, got 0")
		}
	}

	if c.PanicThreshold != nil {
		v.percent(p+".panic_threshold", *c.PanicThreshold)
	}
	v.nonNegative(p+".zone_aware.min_cluster_size", c.ZoneAware.MinClusterSize)
	if c.ZoneAware.LocalCluster != "" {
		v.clusterRef(p+".zone_aware.local_cluster", c.ZoneAware.LocalCluster)
	}
	if c.HealthCheck != nil {
		v.healthCheck(c.HealthCheck, p+".health_check")
	}
	if od := c.OutlierDetection; od != nil {
		op := p + ".outlier_detection"
		v.nonNegative(op+".consecutive_5xx", od.Consecutive5xx)
		if od.MaxEjectionPercent < 0 || od.MaxEjectionPercent > 100 {
			v.report(op+".max_ejection_percent", "", "must be from 0 to 100, got %d", od.MaxEjectionPercent)
		}
		if od.EventLogPath != "" {
			v.eventLog(op, od.EventLogPath, outlierEvents)
		}
	}
	cb, cp := c.CircuitBreakers, p+".circuit_breakers"
	v.nonNegative(cp+".max_connections", cb.MaxConnections)
	v.nonNegative(cp+".max_pending_requests", cb.MaxPendingRequests)
	v.nonNegative(cp+".max_requests", cb.MaxRequests)
	v.nonNegative(cp+".max_retries", cb.MaxRetries)
	v.nonNegative(cp+".max_connection_pools", cb.MaxConnectionPools)
	const oneMillisecond = Duration(1_000_000)
	if c.MaxConcurrentStreams > 1<<31-1 {
		v.report(p+".max_concurrent_streams", "leave it out for the upstream's own limit", "must be at most 2147483647, got %d", c.MaxConcurrentStreams)
	}
	if c.KeepaliveInterval != nil && *c.KeepaliveInterval > 0 && *c.KeepaliveInterval < oneMillisecond {
		v.report(p+".keepalive_interval", "0s turns the PINGs off", "must be at least 1ms, got %s", *c.KeepaliveInterval)
	}
	if c.KeepaliveTimeout > 0 && c.KeepaliveTimeout < oneMillisecond {
		v.report(p+".keepalive_timeout", "", "must be at least 1ms, got %s", c.KeepaliveTimeout)
	}
	if c.TLS != nil {
		v.upstreamTLS(c.TLS, p+".tls")
	}
}

// upstreamTLS checks the TLS of connections the proxy makes (a cluster's,
// the control plane's): a CA and a client certificate, each from files or
// inline PEM.
func (v *validator) upstreamTLS(t *UpstreamTLS, p string) {
	switch {
	case t.CAFile != "" && t.CAPEM != "":
		v.report(p+".ca_pem", "keep one of them", "must not be set with ca_file")
	case t.CAFile != "":
		v.readableFile(p+".ca_file", t.CAFile)
	case t.CAPEM != "":
		if !x509.NewCertPool().AppendCertsFromPEM([]byte(t.CAPEM)) {
			v.report(p+".ca_pem", "the PEM text of one or more CA certificates, -----BEGIN CERTIFICATE----- …",
				"holds no PEM certificate")
		}
	}
	if t.CertFile == "" && t.KeyFile == "" && t.CertPEM == "" && t.KeyPEM == "" {
		return
	}
	if hasCert, hasKey := t.CertFile != "" || t.CertPEM != "", t.KeyFile != "" || t.KeyPEM != ""; hasCert != hasKey {
		missing, set := "cert", "key"
		if hasCert {
			missing, set = "key", "cert"
		}
		form := "_file"
		if t.CertPEM != "" || t.KeyPEM != "" {
			form = "_pem"
		}
		v.report(p+"."+missing+form, "a client certificate needs both cert"+form+" and key"+form,
			"must not be empty when %s is set", set+form)
		return
	}
	v.serverKeyPair(p, t.CertFile, t.KeyFile, t.CertPEM, t.KeyPEM)
}

// serverKeyPair checks a key pair under p given as files or inline PEM:
// the files readable, or the PEM a certificate and its key. Inline PEM is
// parsed here, since nothing reads it later that could tell the user
// where it was written.
func (v *validator) serverKeyPair(p, certFile, keyFile, certPEM, keyPEM string) {
	const hint = "give the pair as cert_file and key_file, or as cert_pem and key_pem"
	switch {
	case certFile != "" && certPEM != "":
		v.report(p+".cert_pem", hint, "must not be set with cert_file")
	case keyFile != "" && keyPEM != "":
		v.report(p+".key_pem", hint, "must not be set with key_file")
	case certPEM == "" && keyPEM == "":
		v.keyPair(p, certFile, keyFile)
	case certPEM == "" || keyPEM == "":
		missing := "cert_pem"
		if keyPEM == "" {
			missing = "key_pem"
		}
		v.report(p+"."+missing, hint, "must not be empty when the other half of the pair is PEM")
	default:
		if _, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM)); err != nil {
			v.report(p+".cert_pem", "cert_pem is the PEM certificate chain, key_pem its private key",
				"is not a key pair with key_pem: %v", err)
		}
	}
}

// dynamicResources are the kinds dynamic.resources may name.
var dynamicResources = []string{DynamicListeners, DynamicClusters}

// dynamic checks the control plane's section.
func (v *validator) dynamic(d *Dynamic) {
	a := &d.ADS
	v.upstreamAddress("dynamic.ads.address", a.Address, true, "127.0.0.1:18000")
	if a.TLS != nil {
		v.upstreamTLS(a.TLS, "dynamic.ads.tls")
	}
	if t := a.InitialFetchTimeout; t != nil && *t < 0 {
		v.report("dynamic.ads.initial_fetch_timeout", "0s waits for ever", "must not be negative, got %s", *t)
	}
	b, bp := a.RetryBackOff, "dynamic.ads.retry_back_off"
	const oneMillisecond = Duration(1_000_000)
	if b.BaseInterval < 0 || b.BaseInterval > 0 && b.BaseInterval < oneMillisecond || b.BaseInterval == 0 && v.has(bp+".base_interval") {
		v.report(bp+".base_interval", "leave it out for the default, 500ms", "must be at least 1ms, got %s", b.BaseInterval)
	}
	if b.MaxInterval != 0 && b.MaxInterval < b.BaseInterval || b.MaxInterval < 0 || b.MaxInterval == 0 && v.has(bp+".max_interval") {
		v.report(bp+".max_interval", "", "must be at least base_interval (%s), got %s", b.BaseInterval, b.MaxInterval)
	}
	seen := map[string]string{}
	for i, r := range d.Resources {
		rp := fmt.Sprintf("dynamic.resources[%d]", i)
		if !slices.Contains(dynamicResources, r) {
			v.report(rp, suggest(r, dynamicResources, ""), "must be one of %s, got %q", strings.Join(dynamicResources, ", "), r)
			continue
		}
		v.unique(seen, r, rp, "resource kind")
	}
	if len(d.Resources) == 0 && v.has("dynamic.resources") {
		v.report("dynamic.resources", "leave it out for both: [listeners, clusters]", "must name at least one of %s", strings.Join(dynamicResources, ", "))
	}
}

// keyPair checks the cert_file and key_file under p: both readable. What
// they hold is checked when the proxy loads them, which it does again
// whenever they change.
func (v *validator) keyPair(p, certFile, keyFile string) {
	v.readableFile(p+".cert_file", certFile)
	v.readableFile(p+".key_file", keyFile)
}

// outlierEvents is the kind of event log outlier_detection writes, beside
// health_check's formats.
const outlierEvents = "outlier_detection"

// eventLog notes that p (a health_check or outlier_detection) writes the
// event log at path in kind: a health_check event_log_format, or
// outlierEvents. Clusters may share a file, but one file holds one kind of
// line: two formats or two kinds in one file would break its parsers.
func (v *validator) eventLog(p, path, kind string) {
	first, ok := v.eventLogs[path]
	switch {
	case !ok:
		if v.eventLogs == nil {
			v.eventLogs = map[string][2]string{}
		}
		v.eventLogs[path] = [2]string{kind, p}
	case first[0] == kind:
	case kind != outlierEvents && first[0] != outlierEvents:
		v.report(p+".event_log_format", "give both the same format, or each its own event_log_path",
			"format %q differs from %q of %s, which writes the same event_log_path", kind, first[0], first[1])
	default:
		v.report(p+".event_log_path", "give each kind of event its own file",
			"%q is also the event_log_path of %s, whose events are of another kind", path, first[1])
	}
}

// healthCheckEventFormats are the event_log_format values.
var healthCheckEventFormats = []string{"sightline", "envoy"}

func (v *validator) healthCheck(hc *HealthCheck, p string) {
	v.oneOf(p+".event_log_format", hc.EventLogFormat, healthCheckEventFormats)
	if hc.EventLogPath != "" {
		v.eventLog(p, hc.EventLogPath, cmp.Or(hc.EventLogFormat, "sightline"))
	}
	kinds := chosen([]string{"grpc", "http", "tcp"}, hc.GRPC != nil, hc.HTTP != nil, hc.TCP != nil)
	switch len(kinds) {
	case 0:
		v.report(p, "e.g. grpc: {}, http: {path: /healthz} or tcp: {}", "must set one of grpc, http or tcp")
	case 1:
	default:
		v.report(p, "", "must set only one of grpc, http or tcp, got %s", strings.Join(kinds, " and "))
	}
	for _, d := range []struct {
		key string
		val Duration
	}{
		{"interval", hc.Interval}, {"timeout", hc.Timeout},
		{"no_traffic_interval", hc.NoTrafficInterval}, {"no_traffic_healthy_interval", hc.NoTrafficHealthyInterval},
	} {
		if d.val == 0 && v.has(p+"."+d.key) {
			v.report(p+"."+d.key, "leave it out for the default", "must be greater than 0")
		}
	}
	for _, t := range []struct {
		key string
		val int
	}{{"healthy_threshold", hc.HealthyThreshold}, {"unhealthy_threshold", hc.UnhealthyThreshold}} {
		if t.val < 0 || t.val == 0 && v.has(p+"."+t.key) {
			v.report(p+"."+t.key, "", "must be at least 1, got %d", t.val)
		}
	}
	if h := hc.HTTP; h != nil {
		if h.Path == "" {
			v.report(p+".http.path", "e.g. /healthz", "must not be empty")
		} else {
			v.absolutePath(p+".http.path", h.Path)
		}
		for _, l := range []struct {
			key   string
			codes []int
		}{{"expected_statuses", h.ExpectedStatuses}, {"retriable_statuses", h.RetriableStatuses}} {
			for i, s := range l.codes {
				if s < 100 || s > 599 {
					v.report(fmt.Sprintf("%s.http.%s[%d]", p, l.key, i), "", "must be a status code from 100 to 599, got %d", s)
				}
			}
		}
	}
}

// clusterRef checks that name, used at path, is a defined cluster.
func (v *validator) clusterRef(path, name string) {
	switch {
	case name == "":
		v.report(path, v.clusterHint(""), "must not be empty")
	case !v.clusters[name]:
		v.report(path, v.clusterHint(name), "unknown cluster %q", name)
	}
}

// clusterHint suggests a defined cluster for name, or lists them.
func (v *validator) clusterHint(name string) string {
	if len(v.names) == 0 {
		return "no clusters are defined"
	}
	h, ok := v.hints[name]
	if !ok {
		h = suggest(name, v.names, "defined clusters")
		v.hints[name] = h
	}
	return h
}

// oneOf checks an enumerated value; empty means the default.
func (v *validator) oneOf(path, value string, allowed []string) {
	if value != "" && !slices.Contains(allowed, value) {
		v.report(path, suggest(value, allowed, ""), "must be one of %s, got %q", strings.Join(allowed, ", "), value)
	}
}

func (v *validator) percent(path string, p float64) {
	if math.IsNaN(p) || p < 0 || p > 100 {
		v.report(path, "", "must be from 0 to 100, got %g", p)
	}
}

func (v *validator) nonNegative(path string, n int) {
	if n < 0 {
		v.report(path, "", "must not be negative, got %d", n)
	}
}

func (v *validator) regex(path, expr string) {
	if expr == "" {
		v.report(path, "", "must not be empty")
		return
	}
	if _, err := regexp.Compile(expr); err != nil {
		v.report(path, "regexes use Go's RE2 syntax", "invalid regex: %v", err)
	}
}

func (v *validator) absolutePath(path, p string) {
	if !strings.HasPrefix(p, "/") {
		v.report(path, "", "must start with \"/\", got %q", p)
	}
}

// readableFile checks that name is set and is a regular file that can be
// opened now, so that a bad path fails validation instead of the listener
// at start. Only regular files are opened: opening a FIFO would block.
func (v *validator) readableFile(path, name string) {
	if name == "" {
		v.report(path, "", "must not be empty")
		return
	}
	fi, err := os.Stat(name)
	if err == nil && !fi.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err == nil {
		var f *os.File
		if f, err = os.Open(name); err == nil {
			_ = f.Close() // opened for reading only: closing cannot lose data
		}
	}
	if err != nil {
		v.report(path, "", "cannot read %q: %v", name, unwrapPath(err))
	}
}

// listenAddress checks an address to listen on: host:port with an IP
// literal, localhost or no host (all interfaces), and a port from 0 (any
// free port) to 65535.
func (v *validator) listenAddress(path, addr string) bool {
	const hint = "use host:port with an IP address or localhost, e.g. 127.0.0.1:10000 or :10000"
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.report(path, hint, "invalid address %q: %s", addr, addrReason(err))
		return false
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		v.report(path, hint, "invalid address %q: port must be a number from 0 to 65535", addr)
		return false
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			v.report(path, hint, "invalid address %q: host must be an IP address or localhost", addr)
			return false
		}
	}
	return true
}

// upstreamAddress checks an address to connect to: host:port with a port
// from 1 to 65535, and a host that is an IP literal or, when names are
// allowed, a DNS name. example shows the form in hints.
func (v *validator) upstreamAddress(path, addr string, names bool, example string) bool {
	hint := "use IP:port, e.g. " + example
	if names {
		hint = "use host:port, e.g. " + example
	}
	if addr == "" {
		v.report(path, hint, "must not be empty")
		return false
	}
	if strings.Contains(addr, "://") {
		v.report(path, hint, "invalid address %q: must be host:port, without a scheme", addr)
		return false
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.report(path, hint, "invalid address %q: %s", addr, addrReason(err))
		return false
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		v.report(path, hint, "invalid address %q: port must be a number from 1 to 65535", addr)
		return false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	switch {
	case !names:
		v.report(path, "a static cluster needs IP addresses; use type: strict_dns to resolve names",
			"invalid address %q: host must be an IP address", addr)
		return false
	case !validHostname(host):
		v.report(path, hint, "invalid address %q: host must be an IP address or a DNS name", addr)
		return false
	}
	return true
}

// addrReason is why net.SplitHostPort refused an address, without the
// address itself, which the message already quotes.
func addrReason(err error) string {
	var ae *net.AddrError
	if errors.As(err, &ae) {
		return ae.Err
	}
	return err.Error()
}

// validHostname reports whether host is a syntactically valid DNS name:
// dot-separated labels of letters, digits, '-' and '_' (service names such
// as _grpc._tcp use it), each 1 to 63 bytes, 253 bytes in all.
func validHostname(host string) bool {
	host = strings.TrimSuffix(host, ".")
	if host == "" || len(host) > 253 {
		return false
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// normalizeAddress is addr with its host lower-cased, to compare addresses
// already known to be valid.
func normalizeAddress(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(strings.ToLower(host), port)
}
