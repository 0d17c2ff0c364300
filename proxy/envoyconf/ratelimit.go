package envoyconf

import (
	"fmt"

	"google.golang.org/protobuf/reflect/protoreflect"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	localrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

// envoyRateLimitTimeout is the ratelimit filter's timeout when none is
// given; Sightline's default is the same, written out for clarity.
const envoyRateLimitTimeout = "20ms"

// localRateLimit translates a local_ratelimit config (the filter's own,
// or a per-route one). Envoy enables and enforces a local limit for no
// request unless filter_enabled and filter_enforced say so; Sightline
// does it for every request by default, so their values, 0 when absent,
// are written out.
func (t *translator) localRateLimit(s *scope, m *localrlv3.LocalRateLimit) *obj {
	defer s.done()
	o := &obj{}
	if p := m.GetStatPrefix(); p != "" {
		o.set("stat_prefix", p)
	}
	s.carry("stat_prefix")
	if tb := m.GetTokenBucket(); tb != nil {
		o.set("token_bucket", t.tokenBucket(s.sub("token_bucket", tb, nil), tb))
	}
	o.set("filter_enabled", runtimePercent(m.GetFilterEnabled()))
	o.set("filter_enforced", runtimePercent(m.GetFilterEnforced()))
	s.carry("filter_enabled", "filter_enforced")
	if st := m.GetStatus(); st != nil {
		o.set("status", int64(st.GetCode()))
	}
	s.carry("status")
	s.carry("descriptors")
	var ds []any
	for j, d := range m.GetDescriptors() {
		dsc := s.elem("descriptors", j, d, nil)
		do := &obj{}
		do.set("entries", descriptorEntries(dsc, d.GetEntries()))
		if tb := d.GetTokenBucket(); tb != nil {
			do.set("token_bucket", t.tokenBucket(dsc.sub("token_bucket", tb, nil), tb))
		}
		if d.GetShadowMode() {
			dsc.skip("shadow_mode", "Sightline enforces each descriptor's bucket; filter_enforced counts without refusing for the whole limit")
		}
		dsc.done()
		ds = append(ds, do)
	}
	if len(ds) > 0 {
		o.set("descriptors", ds)
	}
	if v := m.GetAlwaysConsumeDefaultTokenBucket(); v != nil {
		o.set("always_consume_default_token_bucket", v.GetValue())
	}
	s.carry("always_consume_default_token_bucket")
	// Envoy answers a gRPC client UNAVAILABLE unless this is set;
	// Sightline's default is RESOURCE_EXHAUSTED.
	o.set("rate_limited_as_resource_exhausted", m.GetRateLimitedAsResourceExhausted())
	s.carry("rate_limited_as_resource_exhausted")
	if m.GetEnableXRatelimitHeaders() == ratelimitcommonv3.XRateLimitHeadersRFCVersion_DRAFT_VERSION_03 {
		o.set("enable_x_ratelimit_headers", "DRAFT_VERSION_03")
	}
	s.carry("enable_x_ratelimit_headers")
	// Envoy's default is 20 dynamic buckets; Sightline's 1024 recycles
	// fewer buckets, which only refuses more exactly.
	if v := m.GetMaxDynamicDescriptors(); v != nil {
		o.set("max_dynamic_descriptors", int64(v.GetValue()))
	}
	s.carry("max_dynamic_descriptors")
	s.skip("request_headers_to_add_when_not_enforced", "Sightline has no header mutations")
	s.skip("response_headers_to_add", "Sightline has no header mutations")
	s.skip("stage", "Sightline has one rate limit stage")
	s.skip("local_rate_limit_per_downstream_connection", "Sightline's buckets are shared by every connection of the listener")
	s.skip("local_cluster_rate_limit", "Sightline does not share a limit across a cluster of proxies")
	s.skip("vh_rate_limits", "Sightline takes a route's rate_limits, or its virtual host's when it has none")
	s.skip("rate_limits", "Sightline makes descriptors from the route's rate_limits")
	s.skip("enable_retry_after_header", "Sightline sends no retry-after header")
	return o
}

// tokenBucket translates a token bucket.
func (t *translator) tokenBucket(s *scope, tb *typev3.TokenBucket) *obj {
	defer s.done()
	o := &obj{flow: true}
	o.set("max_tokens", int64(tb.GetMaxTokens()))
	if v := tb.GetTokensPerFill(); v != nil {
		o.set("tokens_per_fill", int64(v.GetValue()))
	}
	o.set("fill_interval", tb.GetFillInterval().AsDuration())
	s.carry("max_tokens", "tokens_per_fill", "fill_interval")
	return o
}

// descriptorEntries translates a local descriptor's entries.
func descriptorEntries(s *scope, es []*ratelimitcommonv3.RateLimitDescriptor_Entry) []any {
	s.carry("entries")
	out := make([]any, 0, len(es))
	for _, e := range es {
		o := &obj{flow: true}
		o.set("key", e.GetKey())
		if e.GetValue() != "" {
			o.set("value", e.GetValue())
		}
		out = append(out, o)
	}
	return out
}

// runtimePercent is a RuntimeFractionalPercent's default as a percentage,
// 0 when absent (Envoy's default for a local limit).
func runtimePercent(p *corev3.RuntimeFractionalPercent) float64 {
	if p == nil || p.GetDefaultValue() == nil {
		return 0
	}
	return fractionPercent(p.GetDefaultValue())
}

// percentOf converts numerator over Envoy's denominator to a percentage.
func percentOf(n uint32, d typev3.FractionalPercent_DenominatorType) float64 {
	switch d {
	case typev3.FractionalPercent_TEN_THOUSAND:
		return float64(n) / 100
	case typev3.FractionalPercent_MILLION:
		return float64(n) / 10000
	}
	return float64(n)
}

// rateLimitFilter translates the global ratelimit filter into the
// listener's rate_limit.
func (t *translator) rateLimitFilter(s *scope, m *ratelimitv3.RateLimit) *obj {
	defer s.done()
	o := &obj{}
	o.set("domain", m.GetDomain())
	s.carry("domain")
	svc := m.GetRateLimitService()
	if svc == nil || svc.GetGrpcService().GetEnvoyGrpc() == nil {
		s.fail("rate_limit_service", "Sightline reaches the rate limit service through a cluster (grpc_service.envoy_grpc.cluster_name)")
		return nil
	}
	ss := s.sub("rate_limit_service", svc, nil)
	gs := ss.sub("grpc_service", svc.GetGrpcService(), nil)
	es := gs.sub("envoy_grpc", svc.GetGrpcService().GetEnvoyGrpc(), nil)
	o.set("cluster", svc.GetGrpcService().GetEnvoyGrpc().GetClusterName())
	es.carry("cluster_name")
	es.skip("authority", "Sightline sends the cluster's name as :authority")
	es.skip("retry_policy", "Sightline does not retry rate limit checks")
	es.skip("max_receive_message_length", "Sightline reads the service's answers whole")
	es.skip("skip_envoy_headers", "Sightline sends no x-envoy-* headers")
	es.done()
	gs.skip("timeout", "the filter's timeout bounds each check")
	gs.skip("initial_metadata", "Sightline sends no extra metadata to the rate limit service")
	gs.skip("retry_policy", "Sightline does not retry rate limit checks")
	gs.done()
	// v3 is the only transport version.
	ss.carry("transport_api_version")
	ss.done()
	if d := m.GetTimeout(); d != nil {
		o.set("timeout", d.AsDuration())
	} else {
		o.set("timeout", envoyRateLimitTimeout)
	}
	s.carry("timeout")
	o.set("failure_mode_deny", m.GetFailureModeDeny())
	s.carry("failure_mode_deny")
	o.set("rate_limited_as_resource_exhausted", m.GetRateLimitedAsResourceExhausted())
	s.carry("rate_limited_as_resource_exhausted")
	if m.GetEnableXRatelimitHeaders() == ratelimitv3.RateLimit_DRAFT_VERSION_03 {
		o.set("enable_x_ratelimit_headers", "DRAFT_VERSION_03")
	}
	s.carry("enable_x_ratelimit_headers")
	if st := m.GetRateLimitedStatus(); st != nil {
		o.set("status", int64(st.GetCode()))
	}
	s.carry("rate_limited_status")
	s.skip("stage", "Sightline has one rate limit stage")
	s.skip("request_type", "Sightline checks every request, internal or external")
	s.skip("disable_x_envoy_ratelimited_header", "Sightline sends no x-envoy-ratelimited header")
	s.skip("response_headers_to_add", "Sightline has no header mutations")
	s.skip("status_on_error", "Sightline answers 500 (or UNAVAILABLE) when a failed check refuses")
	s.skip("stat_prefix", "Sightline charges the checks to the route's cluster, as Envoy does without stat_prefix")
	s.skip("filter_enabled", "Sightline checks every request whose route makes a descriptor")
	s.skip("filter_enforced", "Sightline enforces every OVER_LIMIT answer")
	s.skip("failure_mode_deny_percent", "Sightline follows failure_mode_deny for every failed check")
	s.skip("rate_limits", "Sightline makes descriptors from the route's rate_limits")
	s.skip("metadata_namespace", "Sightline writes no dynamic metadata")
	s.skip("enable_retry_after_header", "Sightline sends no retry-after header")
	return o
}

// rateLimits translates the rate_limits of a virtual host or route (field
// f of s): the actions that make the request's descriptors. An entry with
// an action Sightline does not have is dropped whole, since a partial
// descriptor would match other limits.
func (t *translator) rateLimits(s *scope, f string, rls []*routev3.RateLimit) []any {
	s.seen[f] = true
	var out []any
	for j, rl := range rls {
		rs := s.elem(f, j, rl, nil)
		if o := t.rateLimit(rs, rl); o != nil {
			out = append(out, o)
		}
	}
	return out
}

// rateLimit translates one rate limit entry; nil when it is dropped.
func (t *translator) rateLimit(s *scope, rl *routev3.RateLimit) *obj {
	defer s.done()
	if rl.GetStage().GetValue() != 0 {
		s.skipAll("Sightline has one rate limit stage (0); this entry's stage is never checked by a stage-0 filter")
		return nil
	}
	s.carry("stage")
	s.skip("disable_key", "Sightline has no runtime to disable rate limits with")
	s.skip("limit", "Sightline takes limits from the service's configuration")
	s.skip("hits_addend", "Sightline counts one hit per request")
	s.skip("apply_on_stream_done", "Sightline checks when the request starts")
	s.skip("x_ratelimit_option", "Sightline sends x-ratelimit headers by the filter's enable_x_ratelimit_headers")
	var actions []any
	s.carry("actions")
	for j, a := range rl.GetActions() {
		as := s.elem("actions", j, a, nil)
		o, why := rateLimitAction(as, a)
		if o == nil {
			as.done()
			t.skip(s.path, s.rel("actions"), fmt.Sprintf("this rate limit entry is dropped: %s", why), s.out)
			return nil
		}
		as.done()
		actions = append(actions, o)
	}
	o := &obj{}
	o.set("actions", actions)
	return o
}

// rateLimitAction translates one action; nil and why when Sightline has
// no such action.
func rateLimitAction(s *scope, a *routev3.RateLimit_Action) (*obj, string) {
	o := &obj{flow: true}
	switch {
	case a.GetRequestHeaders() != nil:
		rh := a.GetRequestHeaders()
		rs := s.sub("request_headers", rh, nil)
		x := &obj{flow: true}
		x.set("header_name", rh.GetHeaderName())
		x.set("descriptor_key", rh.GetDescriptorKey())
		if rh.GetSkipIfAbsent() {
			x.set("skip_if_absent", true)
		}
		rs.carry("header_name", "descriptor_key", "skip_if_absent")
		rs.done()
		o.set("request_headers", x)
	case a.GetRemoteAddress() != nil:
		s.carry("remote_address")
		x := &obj{keep: true}
		o.set("remote_address", x)
	case a.GetGenericKey() != nil:
		gk := a.GetGenericKey()
		gs := s.sub("generic_key", gk, nil)
		x := &obj{flow: true}
		x.set("descriptor_value", gk.GetDescriptorValue())
		if gk.GetDescriptorKey() != "" {
			x.set("descriptor_key", gk.GetDescriptorKey())
		}
		gs.carry("descriptor_value", "descriptor_key")
		gs.done()
		o.set("generic_key", x)
	case a.GetHeaderValueMatch() != nil:
		hv := a.GetHeaderValueMatch()
		hs := s.sub("header_value_match", hv, nil)
		x := &obj{}
		x.set("descriptor_value", hv.GetDescriptorValue())
		if hv.GetDescriptorKey() != "" {
			x.set("descriptor_key", hv.GetDescriptorKey())
		}
		if v := hv.GetExpectMatch(); v != nil {
			x.set("expect_match", v.GetValue())
		}
		hs.carry("descriptor_value", "descriptor_key", "expect_match", "headers")
		var hms []any
		for j, h := range hv.GetHeaders() {
			hm := s.t.headerMatcher(hs.elem("headers", j, h, nil), h)
			if hm == nil {
				hs.done()
				return nil, "a header matcher Sightline cannot write"
			}
			hms = append(hms, hm)
		}
		x.set("headers", hms)
		hs.done()
		o.set("header_value_match", x)
	default:
		s.m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
			s.seen[string(fd.Name())] = true
			return true
		})
		return nil, "Sightline's actions are request_headers, remote_address, generic_key and header_value_match"
	}
	return o, ""
}
