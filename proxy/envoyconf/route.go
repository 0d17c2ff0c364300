package envoyconf

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	localrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// envoyRouteTimeout is Envoy's route timeout when a route has none;
// Sightline's default is none, so it is written out.
const envoyRouteTimeout = 15 * time.Second

// routeConfiguration translates a route configuration into the virtual
// hosts of the listener o.
func (t *translator) routeConfiguration(s *scope, rc *routev3.RouteConfiguration, o *obj) {
	defer s.done()
	s.carry("name")
	s.skip("validate_clusters", "Sightline always checks that a route's clusters exist")
	s.skip("max_direct_response_body_size_bytes", "Sightline's direct responses are at most 4 KiB")
	s.skip("most_specific_header_mutations_wins", "Sightline has no header mutations")
	s.skip("ignore_port_in_host_matching", "Sightline's domains match with or without a port ('api' and 'api:*')")
	s.skip("metadata", "metadata is read by Envoy filters Sightline does not have")
	s.unsafe("internal_only_headers", "Sightline does not strip internal-only headers from external requests")
	headerMutations(s)
	rcRL := t.perFilterLocalRL(s, rc.GetTypedPerFilterConfig())
	s.carry("virtual_hosts")
	var vhs []any
	for j, vh := range rc.GetVirtualHosts() {
		v := &obj{}
		t.virtualHost(s.elem("virtual_hosts", j, vh, v), vh, v, rcRL)
		vhs = append(vhs, v)
	}
	o.set("virtual_hosts", vhs)
}

// headerMutations refuses the request and response header mutations of
// a route configuration, virtual host, route or weighted cluster:
// Sightline has none, and a header the upstream or client no longer gets
// (or still gets) can change what either does.
//
// Removing only Envoy's own x-envoy-* headers from responses is safe to
// drop: Sightline never sends them.
func headerMutations(s *scope) {
	for _, f := range []string{"request_headers_to_add", "request_headers_to_remove", "response_headers_to_add"} {
		s.unsafe(f, "Sightline has no header mutations")
	}
	if envoyHeadersOnly(s, "response_headers_to_remove") {
		s.skip("response_headers_to_remove", "Sightline sends no x-envoy-* headers to remove")
	} else {
		s.unsafe("response_headers_to_remove", "Sightline has no header mutations")
	}
}

// envoyHeadersOnly reports whether the list of header names in field f
// holds only x-envoy-* names.
func envoyHeadersOnly(s *scope, f string) bool {
	fd := s.m.Descriptor().Fields().ByName(protoreflect.Name(f))
	if fd == nil || !s.m.Has(fd) {
		return false
	}
	l := s.m.Get(fd).List()
	for i := range l.Len() {
		if !strings.HasPrefix(strings.ToLower(l.Get(i).String()), "x-envoy-") {
			return false
		}
	}
	return true
}

// virtualHost translates a virtual host into v. rcRL is the local rate
// limit its route configuration gives its routes.
func (t *translator) virtualHost(s *scope, vh *routev3.VirtualHost, v *obj, rcRL *obj) {
	defer s.done()
	v.set("name", vh.GetName())
	v.set("domains", strs(vh.GetDomains()))
	s.carry("name", "domains")
	s.skip("virtual_clusters", "Sightline has no virtual cluster stats; per-route and per-gRPC-method stats instead")
	s.skip("include_request_attempt_count", "Sightline sends no x-envoy-attempt-count")
	s.skip("include_attempt_count_in_response", "Sightline sends no x-envoy-attempt-count")
	s.skip("per_request_buffer_limit_bytes", "Sightline keeps a request body for retries up to 64 KiB")
	s.skip("hedge_policy", "Sightline does not hedge requests")
	s.skip("metadata", "metadata is read by Envoy filters Sightline does not have")
	if vh.GetRequireTls() != routev3.VirtualHost_NONE {
		s.unsafe("require_tls", "Sightline does not redirect plaintext requests to https")
	} else {
		s.carry("require_tls")
	}
	s.unsafe("cors", "Sightline has no CORS policy")
	headerMutations(s)
	if rl := t.perFilterLocalRL(s, vh.GetTypedPerFilterConfig()); rl != nil {
		v.set("local_rate_limit", rl)
	} else if rcRL != nil {
		v.set("local_rate_limit", rcRL)
	}
	if rls := t.rateLimits(s, "rate_limits", vh.GetRateLimits()); rls != nil {
		v.set("rate_limits", rls)
	}
	// The virtual host's retry policy and mirrors apply to its routes that
	// have none of their own, as in Envoy.
	vhs := &vhostDefaults{retry: vh.GetRetryPolicy(), mirrors: vh.GetRequestMirrorPolicies(), rateLimits: vh.GetRateLimits()}
	if vh.GetRetryPolicy() != nil {
		vhs.retryScope = s.sub("retry_policy", vh.GetRetryPolicy(), nil)
	}
	if len(vh.GetRequestMirrorPolicies()) > 0 {
		vhs.mirrorScope = s
	}
	s.carry("routes")
	var routes []any
	for j, r := range vh.GetRoutes() {
		ro := &obj{}
		if t.route(s.elem("routes", j, r, ro), r, ro, vhs) {
			routes = append(routes, ro)
		}
	}
	if vhs.retryScope != nil && !vhs.retryDone {
		vhs.retryScope.skipAll("every route of this virtual host has its own retry_policy, which replaces it, as in Envoy")
	}
	if len(routes) == 0 {
		s.fail("routes", "a virtual host needs at least one route Sightline can carry")
	}
	v.set("routes", routes)
}

// vhostDefaults are what a virtual host gives its routes.
type vhostDefaults struct {
	retry       *routev3.RetryPolicy
	retryScope  *scope
	retryObj    *obj // the policy translated, once retryDone
	retryDone   bool
	mirrors     []*routev3.RouteAction_RequestMirrorPolicy
	mirrorScope *scope
	rateLimits  []*routev3.RateLimit
}

// route translates one route into ro; false when it cannot be carried
// (a note or an error says why).
func (t *translator) route(s *scope, r *routev3.Route, ro *obj, vhd *vhostDefaults) bool {
	defer s.done()
	if r.GetName() != "" {
		ro.set("name", r.GetName())
	}
	s.carry("name")
	s.skip("metadata", "metadata is read by Envoy filters Sightline does not have")
	s.skip("decorator", "Sightline names a request's span by its method and path")
	s.skip("tracing", "Sightline's spans carry a fixed set of attributes, sampled by tracing.sampling")
	s.skip("per_request_buffer_limit_bytes", "Sightline keeps a request body for retries up to 64 KiB")
	s.skip("request_body_buffer_limit", "Sightline keeps a request body for retries up to 64 KiB")
	s.skip("stat_prefix", "Sightline has no per-route stats")
	headerMutations(s)

	if !t.routeMatch(s.sub("match", r.GetMatch(), nil), r.GetMatch(), ro.child("match")) {
		return false
	}
	if rl := t.perFilterLocalRL(s, r.GetTypedPerFilterConfig()); rl != nil {
		ro.set("local_rate_limit", rl)
	}
	switch {
	case r.GetRoute() != nil:
		t.routeAction(s.sub("route", r.GetRoute(), nil), r.GetRoute(), ro, vhd)
	case r.GetDirectResponse() != nil:
		dr := r.GetDirectResponse()
		ds := s.sub("direct_response", dr, nil)
		d := &obj{flow: true}
		d.set("status", int64(dr.GetStatus()))
		ds.carry("status")
		if b := dr.GetBody(); b != nil {
			bs := ds.sub("body", b, nil)
			switch {
			case b.GetInlineString() != "":
				d.set("body", b.GetInlineString())
				bs.carry("inline_string")
			case len(b.GetInlineBytes()) > 0:
				d.set("body", string(b.GetInlineBytes()))
				bs.carry("inline_bytes")
			default:
				bs.unsafeAll("Sightline's direct response body is inline only")
			}
			bs.done()
		}
		ds.unsafe("body_format", "Sightline's direct response body is sent as written")
		ds.done()
		ro.set("direct_response", d)
	case r.GetRedirect() != nil:
		s.unsafe("redirect", "Sightline has no redirects")
		return false
	default:
		s.unsafe("action", "Sightline routes to clusters or answers directly only")
		s.seen["filter_action"], s.seen["non_forwarding_action"] = true, true
		return false
	}
	return true
}

// routeMatch translates a route's match into m; false when the route
// cannot be carried.
func (t *translator) routeMatch(s *scope, rm *routev3.RouteMatch, m *obj) bool {
	defer s.done()
	m.flow = true
	ci := rm.GetCaseSensitive() != nil && !rm.GetCaseSensitive().GetValue()
	s.carry("case_sensitive")
	switch {
	case rm.GetPathSpecifier() == nil:
		s.fail("path_specifier", "a route needs prefix, path, safe_regex or path_separated_prefix")
		return false
	case rm.GetPrefix() != "" || s.has("prefix"):
		if ci {
			m.set("regex", "(?i)"+regexp.QuoteMeta(rm.GetPrefix())+".*")
		} else if rm.GetPrefix() == "" {
			m.set("prefix", "/")
		} else {
			m.set("prefix", rm.GetPrefix())
		}
		s.carry("prefix")
	case rm.GetPath() != "":
		if ci {
			m.set("regex", "(?i)"+regexp.QuoteMeta(rm.GetPath()))
		} else {
			m.set("path", rm.GetPath())
		}
		s.carry("path")
	case rm.GetSafeRegex() != nil:
		rs := s.sub("safe_regex", rm.GetSafeRegex(), nil)
		re := rm.GetSafeRegex().GetRegex()
		if ci {
			re = "(?i)" + re
		}
		m.set("regex", re)
		rs.carry("regex", "google_re2")
		rs.done()
	case rm.GetPathSeparatedPrefix() != "":
		p := regexp.QuoteMeta(rm.GetPathSeparatedPrefix())
		if ci {
			p = "(?i)" + p
		}
		// Envoy's path_separated_prefix: the prefix, then the end of the
		// path or a /.
		m.set("regex", p+"(/.*)?")
		s.carry("path_separated_prefix")
	default:
		s.unsafe("path_match_policy", "Sightline matches paths by prefix, exact path or regex only")
		s.unsafe("connect_matcher", "Sightline tunnels no CONNECT")
		return false
	}
	if rm.GetGrpc() != nil {
		m.set("grpc", true)
		s.carry("grpc")
	}
	s.carry("headers")
	var hs []any
	for j, h := range rm.GetHeaders() {
		if hm := t.headerMatcher(s.elem("headers", j, h, nil), h); hm != nil {
			hs = append(hs, hm)
		} else {
			return false
		}
	}
	if len(hs) > 0 {
		m.set("headers", hs)
	}
	for _, f := range []string{"query_parameters", "runtime_fraction", "tls_context", "dynamic_metadata", "filter_state", "cookies"} {
		s.unsafe(f, "Sightline matches routes by path, headers and gRPC content-type only; without this condition the route would take requests Envoy gives to later routes")
	}
	return true
}

// headerMatcher translates a header matcher; nil when it cannot be
// carried (an error, or a skip with --skip-unsupported that drops the
// route).
func (t *translator) headerMatcher(s *scope, h *routev3.HeaderMatcher) *obj {
	defer s.done()
	name := h.GetName()
	if strings.HasPrefix(name, ":") {
		s.unsafeAll(fmt.Sprintf("Sightline matches regular headers only, not the pseudo-header %s", name))
		return nil
	}
	o := &obj{flow: true}
	o.set("name", name)
	s.carry("name")
	if h.GetInvertMatch() {
		o.set("invert", true)
	}
	s.carry("invert_match")
	s.skip("treat_missing_header_as_empty", "Sightline fails a matcher on an absent header, as Envoy does by default")
	switch {
	case s.has("exact_match"):
		o.set("exact", h.GetExactMatch())
		s.carry("exact_match")
	case h.GetSafeRegexMatch() != nil:
		o.set("regex", h.GetSafeRegexMatch().GetRegex())
		s.carry("safe_regex_match")
	case s.has("present_match"):
		if h.GetPresentMatch() {
			o.set("present", true)
		} else {
			// present_match: false matches requests without the header.
			o.set("present", true)
			o.set("invert", !h.GetInvertMatch())
		}
		s.carry("present_match")
	case s.has("prefix_match"):
		o.set("regex", regexp.QuoteMeta(h.GetPrefixMatch())+".*")
		s.carry("prefix_match")
	case s.has("suffix_match"):
		o.set("regex", ".*"+regexp.QuoteMeta(h.GetSuffixMatch()))
		s.carry("suffix_match")
	case s.has("contains_match"):
		o.set("regex", ".*"+regexp.QuoteMeta(h.GetContainsMatch())+".*")
		s.carry("contains_match")
	case h.GetStringMatch() != nil:
		sm := h.GetStringMatch()
		ss := s.sub("string_match", sm, nil)
		if ex, ok := sm.GetMatchPattern().(*matcherv3.StringMatcher_Exact); ok && !sm.GetIgnoreCase() {
			o.set("exact", ex.Exact)
		} else if re, ok := stringRegex(sm); ok {
			o.set("regex", re)
		} else {
			ss.done()
			s.unsafeAll("Sightline matches headers exactly, by regex or by presence; this string matcher cannot be written so")
			return nil
		}
		ss.carry("exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case")
		ss.done()
	case h.GetRangeMatch() != nil:
		s.unsafe("range_match", "Sightline has no range match of header values")
		return nil
	default:
		o.set("present", true)
	}
	return o
}

// stringRegex writes a StringMatcher as a regex that matches the whole
// value, as Sightline's header regexes do.
func stringRegex(sm *matcherv3.StringMatcher) (string, bool) {
	ci := ""
	if sm.GetIgnoreCase() {
		ci = "(?i)"
	}
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return ci + regexp.QuoteMeta(p.Exact), true
	case *matcherv3.StringMatcher_Prefix:
		return ci + regexp.QuoteMeta(p.Prefix) + ".*", true
	case *matcherv3.StringMatcher_Suffix:
		return ci + ".*" + regexp.QuoteMeta(p.Suffix), true
	case *matcherv3.StringMatcher_Contains:
		return ci + ".*" + regexp.QuoteMeta(p.Contains) + ".*", true
	case *matcherv3.StringMatcher_SafeRegex:
		if ci != "" {
			return "", false // ignore_case does not apply to safe_regex in Envoy
		}
		return p.SafeRegex.GetRegex(), true
	}
	return "", false
}

// routeAction translates a route's action into ro.
func (t *translator) routeAction(s *scope, ra *routev3.RouteAction, ro *obj, vhd *vhostDefaults) {
	defer s.done()
	switch {
	case ra.GetCluster() != "":
		ro.set("cluster", ra.GetCluster())
		s.carry("cluster")
	case ra.GetClusterHeader() != "":
		ro.set("cluster_header", ra.GetClusterHeader())
		s.carry("cluster_header")
	case ra.GetWeightedClusters() != nil:
		t.weightedClusters(s.sub("weighted_clusters", ra.GetWeightedClusters(), nil), ra.GetWeightedClusters(), ro)
	default:
		s.unsafe("cluster_specifier_plugin", "Sightline routes to a cluster, weighted clusters or a header's cluster only")
		s.unsafe("inline_cluster_specifier_plugin", "Sightline routes to a cluster, weighted clusters or a header's cluster only")
	}
	s.skip("cluster_not_found_response_code", "Sightline answers 503 (flag NC) when the cluster is unknown, Envoy's default")
	s.unsafe("metadata_match", "Sightline has no subset load balancing: the route would take every host of the cluster")
	s.unsafe("prefix_rewrite", "Sightline does not rewrite paths: the upstream would get the path as the client sent it")
	s.unsafe("regex_rewrite", "Sightline does not rewrite paths: the upstream would get the path as the client sent it")
	s.unsafe("path_rewrite_policy", "Sightline does not rewrite paths: the upstream would get the path as the client sent it")
	for _, f := range []string{"host_rewrite_literal", "auto_host_rewrite", "host_rewrite_header", "host_rewrite_path_regex"} {
		s.unsafe(f, "Sightline does not rewrite the host header: the upstream would get the client's :authority")
	}
	s.skip("append_x_forwarded_host", "Sightline does not rewrite the host, so has no x-forwarded-host to add")
	s.skip("priority", "Sightline has one routing priority")
	s.skip("hedge_policy", "Sightline does not hedge requests")
	s.skip("early_data_policy", "Sightline serves no TLS early data")
	s.unsafe("internal_redirect_policy", "Sightline does not follow upstream redirects: the client would get the 3xx")
	s.unsafe("max_internal_redirects", "Sightline does not follow upstream redirects: the client would get the 3xx")
	s.unsafe("cors", "Sightline has no CORS policy")
	s.skip("retry_policy_typed_config", "Sightline's retry policy is retry_policy")

	timeout := envoyRouteTimeout
	if d := ra.GetTimeout(); d != nil {
		timeout = d.AsDuration()
	}
	ro.set("timeout", timeout)
	s.carry("timeout")
	if d := ra.GetIdleTimeout(); d != nil {
		ro.set("idle_timeout", d.AsDuration())
	}
	s.carry("idle_timeout")
	if d := ra.GetMaxGrpcTimeout(); d != nil {
		ro.set("max_grpc_timeout", d.AsDuration())
	}
	if d := ra.GetGrpcTimeoutOffset(); d != nil {
		ro.set("grpc_timeout_offset", d.AsDuration())
	}
	s.carry("max_grpc_timeout", "grpc_timeout_offset")
	if msd := ra.GetMaxStreamDuration(); msd != nil {
		ms := s.sub("max_stream_duration", msd, nil)
		if d := msd.GetGrpcTimeoutHeaderMax(); d != nil {
			ro.set("max_grpc_timeout", d.AsDuration())
		}
		if d := msd.GetGrpcTimeoutHeaderOffset(); d != nil {
			ro.set("grpc_timeout_offset", d.AsDuration())
		}
		ms.carry("grpc_timeout_header_max", "grpc_timeout_header_offset")
		ms.skip("max_stream_duration", "Sightline bounds a request by the route's timeout")
		ms.done()
	}

	switch {
	case ra.GetRetryPolicy() != nil:
		if rp := t.retryPolicy(s.sub("retry_policy", ra.GetRetryPolicy(), nil), ra.GetRetryPolicy()); rp != nil {
			ro.set("retry_policy", rp)
		}
	case vhd.retry != nil:
		// The first route to use the virtual host's policy translates it,
		// accounting for its fields; the others reuse the result.
		if !vhd.retryDone {
			vhd.retryObj = t.retryPolicy(vhd.retryScope, vhd.retry)
			vhd.retryDone = true
		}
		if vhd.retryObj != nil {
			ro.set("retry_policy", vhd.retryObj)
		}
	}

	mirrors := ra.GetRequestMirrorPolicies()
	mf, ms := "request_mirror_policies", s
	if len(mirrors) == 0 && len(vhd.mirrors) > 0 {
		mirrors, ms = vhd.mirrors, vhd.mirrorScope
	}
	if len(mirrors) > 0 {
		if m := t.mirror(ms.elem(mf, 0, mirrors[0], nil), mirrors[0]); m != nil {
			ro.set("mirror", m)
		}
		for j := 1; j < len(mirrors); j++ {
			ms.elem(mf, j, mirrors[j], nil).skipAll("Sightline mirrors to one cluster per route; the first is carried")
		}
	}

	s.carry("hash_policy")
	var hps []any
	for j, hp := range ra.GetHashPolicy() {
		hs := s.elem("hash_policy", j, hp, nil)
		if h := hp.GetHeader(); h != nil {
			hh := hs.sub("header", h, nil)
			o := &obj{flow: true}
			o.set("header", h.GetHeaderName())
			hh.carry("header_name")
			hh.skip("regex_rewrite", "Sightline hashes the header's value as sent")
			hh.done()
			hps = append(hps, o)
		}
		hs.skip("cookie", "Sightline hashes on headers only; requests spread without this key")
		hs.skip("connection_properties", "Sightline hashes on headers only; requests spread without this key")
		hs.skip("query_parameter", "Sightline hashes on headers only; requests spread without this key")
		hs.skip("filter_state", "Sightline hashes on headers only; requests spread without this key")
		hs.skip("terminal", "Sightline hashes on every header policy")
		hs.done()
	}
	if len(hps) > 0 {
		ro.set("hash_policy", hps)
	}

	rls := t.rateLimits(s, "rate_limits", ra.GetRateLimits())
	if ra.GetIncludeVhRateLimits().GetValue() && len(ra.GetRateLimits()) > 0 && len(vhd.rateLimits) > 0 {
		// The virtual host's descriptors are added to the route's, as
		// include_vh_rate_limits asks; the virtual host's scope
		// accounts for their fields.
		rls = append(rls, t.rateLimits(t.open("", &routev3.Route{}, nil), "", vhd.rateLimits)...)
	}
	s.carry("include_vh_rate_limits")
	if rls != nil {
		ro.set("rate_limits", rls)
	}

	var ups []any
	for j, uc := range ra.GetUpgradeConfigs() {
		us := s.elem("upgrade_configs", j, uc, nil)
		u := &obj{flow: true}
		u.set("type", uc.GetUpgradeType())
		us.carry("upgrade_type")
		if e := uc.GetEnabled(); e != nil {
			u.set("enabled", e.GetValue())
		}
		us.carry("enabled")
		us.unsafe("connect_config", "Sightline tunnels no CONNECT")
		us.done()
		ups = append(ups, u)
	}
	s.seen["upgrade_configs"] = true
	if len(ups) > 0 {
		ro.set("upgrades", ups)
	}
}

// weightedClusters translates weighted_clusters.
func (t *translator) weightedClusters(s *scope, wc *routev3.WeightedCluster, ro *obj) {
	defer s.done()
	s.carry("clusters")
	var out []any
	for j, c := range wc.GetClusters() {
		cs := s.elem("clusters", j, c, nil)
		o := &obj{flow: true}
		o.set("cluster", c.GetName())
		cs.carry("name")
		w := uint32(1)
		if c.GetWeight() != nil {
			w = c.GetWeight().GetValue()
		}
		if w == 0 {
			// Weight 0 takes no traffic in Envoy; Sightline refuses it.
			cs.carry("weight")
			cs.done()
			continue
		}
		o.set("weight", int64(w))
		cs.carry("weight")
		cs.unsafe("cluster_header", "Sightline's weighted clusters name their cluster")
		cs.unsafe("metadata_match", "Sightline has no subset load balancing")
		cs.unsafe("host_rewrite_literal", "Sightline does not rewrite the host header")
		headerMutations(cs)
		cs.skip("typed_per_filter_config", "Sightline has no per-cluster filter configs")
		cs.done()
		out = append(out, o)
	}
	s.skip("total_weight", "Sightline divides by the sum of the weights, as Envoy does without total_weight")
	s.skip("runtime_key_prefix", "Sightline has no runtime")
	s.unsafe("header_name", "Sightline picks a weighted cluster at random, not by a header's value")
	s.unsafe("use_hash_policy", "Sightline picks a weighted cluster at random, not by the route's hash policy")
	ro.set("weighted_clusters", out)
}

// retryPolicy translates a retry policy; Envoy's defaults (one retry,
// 25ms to 250ms back-off) are Sightline's too.
func (t *translator) retryPolicy(s *scope, rp *routev3.RetryPolicy) *obj {
	defer s.done()
	o := &obj{}
	var on, dropped []string
	for w := range strings.SplitSeq(rp.GetRetryOn(), ",") {
		w = strings.TrimSpace(w)
		switch w {
		case "":
		case "5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx", "refused-stream",
			"cancelled", "deadline-exceeded", "resource-exhausted", "unavailable", "internal":
			on = append(on, w)
		case "reset-before-request":
			// A reset before any request byte went out is a subset of
			// reset.
			on = append(on, "reset")
		default:
			dropped = append(dropped, w)
		}
	}
	s.carry("retry_on")
	if len(dropped) > 0 {
		t.skip(s.at("retry_on")+"("+strings.Join(dropped, ",")+")", "retry_on", "Sightline does not retry on "+strings.Join(dropped, ", ")+": those failures go to the client as they are", s.out)
	}
	if len(on) == 0 {
		return nil
	}
	o.set("retry_on", strings.Join(on, ","))
	if n := rp.GetNumRetries(); n != nil {
		o.set("num_retries", int64(n.GetValue()))
	}
	s.carry("num_retries")
	if d := rp.GetPerTryTimeout(); d != nil {
		o.set("per_try_timeout", d.AsDuration())
	}
	s.carry("per_try_timeout")
	if b := rp.GetRetryBackOff(); b != nil {
		bs := s.sub("retry_back_off", b, nil)
		base := b.GetBaseInterval().AsDuration()
		o.set("backoff_base", base)
		if b.GetMaxInterval() != nil {
			o.set("backoff_max", b.GetMaxInterval().AsDuration())
		} else {
			o.set("backoff_max", 10*base) // Envoy's default: ten times the base
		}
		bs.carry("base_interval", "max_interval")
		bs.done()
	}
	s.carry("retry_host_predicate")
	for j, p := range rp.GetRetryHostPredicate() {
		ps := s.elem("retry_host_predicate", j, p, nil)
		if typeName(p.GetTypedConfig(), p.GetName()) == "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate" ||
			p.GetName() == "envoy.retry_host_predicates.previous_hosts" {
			// Sightline's retries go to another host whenever there is
			// one: what previous_hosts asks.
			ps.carry("name", "typed_config")
		} else {
			ps.skipAll("Sightline's retries avoid the hosts already tried; it has no other host predicate")
		}
		ps.done()
	}
	s.skip("host_selection_retry_max_attempts", "Sightline picks another host for a retry whenever there is one")
	s.skip("retriable_status_codes", "Sightline retries 5xx, gateway errors and 409 (retriable-4xx) only; these codes go to the client")
	s.skip("retriable_headers", "Sightline retries by retry_on only")
	s.skip("retriable_request_headers", "Sightline retries by retry_on only")
	s.skip("per_try_idle_timeout", "Sightline bounds an attempt by per_try_timeout and the stream idle timeout")
	s.skip("retry_priority", "Sightline has one priority")
	s.skip("rate_limited_retry_back_off", "Sightline backs off by backoff_base and backoff_max only")
	s.skip("retry_options_predicates", "Sightline has no retry options predicates")
	s.skip("refresh_cluster_on_retry", "Sightline has no such setting")
	return o
}

// mirror translates a request mirror policy.
func (t *translator) mirror(s *scope, mp *routev3.RouteAction_RequestMirrorPolicy) *obj {
	defer s.done()
	if mp.GetCluster() == "" {
		s.skipAll("Sightline mirrors to a named cluster only")
		return nil
	}
	o := &obj{flow: true}
	o.set("cluster", mp.GetCluster())
	s.carry("cluster")
	if rf := mp.GetRuntimeFraction(); rf != nil {
		rs := s.sub("runtime_fraction", rf, nil)
		o.set("percent", fractionPercent(rf.GetDefaultValue()))
		rs.carry("default_value", "runtime_key")
		rs.done()
	}
	s.skip("trace_sampled", "Sightline's mirrored requests carry the trace context as sent")
	s.skip("disable_shadow_host_suffix_append", "Sightline always appends -shadow to a mirrored request's authority, Envoy's default")
	s.skip("request_headers_mutations", "Sightline mirrors requests as they are")
	s.skip("host_rewrite_literal", "Sightline mirrors requests with their authority and -shadow")
	s.skip("cluster_header", "Sightline mirrors to a named cluster only")
	return o
}

// perFilterLocalRL reads the local rate limit of a typed_per_filter_config
// (of a route configuration, virtual host or route): carried as its
// local_rate_limit. Other filters' per-route configs are refused when the
// filter is one Sightline would refuse, and dropped when it is one that is
// safe to drop.
func (t *translator) perFilterLocalRL(s *scope, cfgs map[string]*anypb.Any) *obj {
	s.seen["typed_per_filter_config"] = true
	if len(cfgs) == 0 {
		return nil
	}
	var out *obj
	for _, k := range sortedKeys(cfgs) {
		a := cfgs[k]
		path := s.at("typed_per_filter_config") + "[" + k + "]"
		msg, err := unpackPerFilter(a)
		if lr, ok := msg.(*localrlv3.LocalRateLimit); ok && err == nil {
			if !t.localRLFilter {
				// Envoy reads a per-route config only in a filter chain
				// that has the filter.
				t.skip(path, s.rel("typed_per_filter_config")+"["+k+"]", "the HTTP connection manager has no local_ratelimit filter, so this limit applies to no request, in Envoy either", s.out)
				continue
			}
			ls := t.open(path, lr, s.out)
			out = t.localRateLimit(ls, lr)
			continue
		}
		name := typeName(a, k)
		if why, ok := safeFilters[name]; ok || safeFilters[k] != "" {
			if why == "" {
				why = safeFilters[k]
			}
			t.skip(path, s.rel("typed_per_filter_config")+"["+k+"]", why, s.out)
			continue
		}
		t.unsafe(path, s.rel("typed_per_filter_config")+"["+k+"]", "Sightline has no per-route config for "+name, s.out)
	}
	return out
}

// unpackPerFilter reads a per-filter config, looking inside Envoy's
// FilterConfig wrapper.
func unpackPerFilter(a *anypb.Any) (any, error) {
	msg, err := unpack(a)
	if err != nil {
		return nil, err
	}
	if fc, ok := msg.(*routev3.FilterConfig); ok {
		return unpack(fc.GetConfig())
	}
	return msg, nil
}

// fractionPercent is a FractionalPercent as a percentage.
func fractionPercent(f interface {
	GetNumerator() uint32
	GetDenominator() typev3.FractionalPercent_DenominatorType
}) float64 {
	return percentOf(f.GetNumerator(), f.GetDenominator())
}

// strs converts a []string into document values.
func strs(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// msDuration is v milliseconds.
func msDuration(v uint32) time.Duration { return time.Duration(v) * time.Millisecond }

var _ = corev3.RuntimeFractionalPercent{}
