package envoyconf

import (
	"fmt"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	localrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// hcm translates an HTTP connection manager into the listener o.
func (t *translator) hcm(s *scope, m *hcmv3.HttpConnectionManager, o *obj) {
	defer s.done()
	if p := m.GetStatPrefix(); p != "" {
		o.set("stat_prefix", p)
	}
	s.carry("stat_prefix")

	switch m.GetCodecType() {
	case hcmv3.HttpConnectionManager_AUTO:
		s.carry("codec_type")
	case hcmv3.HttpConnectionManager_HTTP1:
		o.set("protocols", []any{"http1"})
		s.carry("codec_type")
	case hcmv3.HttpConnectionManager_HTTP2:
		if o.get("tls") != nil {
			o.set("protocols", []any{"h2"})
		} else {
			o.set("protocols", []any{"h2c"})
		}
		s.carry("codec_type")
	default:
		s.fail("codec_type", "%s is not supported: Sightline serves HTTP/1.1 and HTTP/2", m.GetCodecType())
	}

	// Request IDs. Envoy generates one when absent (generate_request_id,
	// true by default); it keeps the client's unless the request is an
	// edge request (use_remote_address) and preserve_external_request_id
	// is false; it sets it in the response only when asked.
	rid := o.child("request_id")
	rid.flow = true
	if g := m.GetGenerateRequestId(); g != nil {
		rid.set("generate", g.GetValue())
	}
	s.carry("generate_request_id")
	if m.GetUseRemoteAddress().GetValue() && !m.GetPreserveExternalRequestId() {
		rid.set("preserve_external", false)
	}
	s.carry("preserve_external_request_id")
	rid.set("set_in_response", m.GetAlwaysSetRequestIdInResponse())
	s.carry("always_set_request_id_in_response")
	s.skip("use_remote_address", "Sightline always appends the peer's address to x-forwarded-for and treats every request as external for request ids (what use_remote_address: true does)")
	if m.GetUseRemoteAddress() != nil && !m.GetUseRemoteAddress().GetValue() {
		// Explicit false is Envoy's default.
		s.carry("use_remote_address")
	}
	s.skip("request_id_extension", "Sightline's request ids are UUIDv4, as Envoy's default extension makes them")
	s.skip("xff_num_trusted_hops", "Sightline takes the peer's address as the client's address")
	s.skip("skip_xff_append", "Sightline always appends the peer's address to x-forwarded-for")
	s.skip("via", "Sightline adds no via header")
	s.skip("server_name", "Sightline sets no server header of its own on proxied responses")
	s.skip("server_header_transformation", "Sightline passes the upstream's server header")
	s.skip("add_user_agent", "Sightline does not add user-agent or x-envoy-downstream-service-cluster")
	s.skip("internal_address_config", "Sightline treats no address as internal")
	s.skip("local_reply_config", "Sightline's own replies keep their status; gRPC clients get gRPC-shaped errors")
	s.skip("drain_timeout", "Sightline drains by server.drain_time and server.drain_timeout")
	s.skip("delayed_close_timeout", "Sightline closes a connection once its last response is written")
	s.skip("strip_matching_host_port", "Sightline's domains match with or without a port ('api' and 'api:*')")
	s.skip("strip_any_host_port", "Sightline's domains match with or without a port ('api' and 'api:*')")
	s.skip("strip_trailing_host_dot", "Sightline has no such setting")
	s.skip("stream_error_on_invalid_http_message", "Sightline resets the stream (HTTP/2) or closes the connection (HTTP/1.1) on an invalid message")
	s.skip("proxy_status_config", "Sightline sends no proxy-status header")
	s.skip("access_log_flush_interval", "Sightline writes an access log line when the request ends")
	s.skip("flush_access_log_on_new_request", "Sightline writes an access log line when the request ends")
	s.skip("access_log_options", "Sightline writes an access log line when the request ends")
	if kb := m.GetMaxRequestHeadersKb(); kb != nil {
		o.child("limits").set("max_header_bytes", int64(kb.GetValue())*1024)
	}
	s.carry("max_request_headers_kb")
	if d := m.GetStreamIdleTimeout(); d != nil {
		o.child("limits").set("stream_idle_timeout", d.AsDuration())
	}
	s.carry("stream_idle_timeout")
	s.skip("request_timeout", "Sightline bounds requests by their route's timeout; it has no whole-request timeout per listener")
	if d := m.GetRequestHeadersTimeout(); d != nil && d.AsDuration() > 0 {
		o.child("limits").set("header_read_timeout", d.AsDuration())
		s.carry("request_headers_timeout")
	} else {
		s.skip("request_headers_timeout", "0 (none) is Envoy's default; Sightline bounds a request's headers by limits.header_read_timeout, 10s")
	}
	if p := m.GetCommonHttpProtocolOptions(); p != nil {
		t.downstreamProtocolOptions(s.sub("common_http_protocol_options", p, nil), p, o)
	}
	if p := m.GetHttp2ProtocolOptions(); p != nil {
		ps := s.sub("http2_protocol_options", p, nil)
		if n := p.GetMaxConcurrentStreams(); n != nil {
			o.child("limits").set("max_concurrent_streams", int64(n.GetValue()))
		}
		ps.carry("max_concurrent_streams")
		http2Skips(ps)
		ps.done()
	}
	s.skip("http_protocol_options", "Sightline's HTTP/1.1 server has no such options")
	if m.GetNormalizePath().GetValue() || m.GetMergeSlashes() ||
		m.GetPathWithEscapedSlashesAction() > hcmv3.HttpConnectionManager_KEEP_UNCHANGED {
		s.unsafe("normalize_path", "Sightline matches routes on the path as sent; without normalization a path such as /a/../b may match other routes than in Envoy")
		s.unsafe("merge_slashes", "Sightline matches routes on the path as sent; without normalization a path such as /a//b may match other routes than in Envoy")
		s.unsafe("path_with_escaped_slashes_action", "Sightline matches routes on the path as sent; escaped slashes are not decoded or refused")
	} else {
		s.carry("normalize_path", "merge_slashes", "path_with_escaped_slashes_action")
	}
	if m.GetForwardClientCertDetails() != hcmv3.HttpConnectionManager_SANITIZE {
		s.unsafe("forward_client_cert_details", "Sightline neither forwards nor sets x-forwarded-client-cert")
	} else {
		s.carry("forward_client_cert_details")
	}
	s.unsafe("set_current_client_cert_details", "Sightline neither forwards nor sets x-forwarded-client-cert")

	t.upgrades(s, "upgrade_configs", m.GetUpgradeConfigs(), o)
	t.hcmTracing(s, m, o)

	s.carry("access_log")
	for j, al := range m.GetAccessLog() {
		if a := t.accessLog(s.elem("access_log", j, al, nil), al); a != nil {
			logs, _ := o.get("access_log").([]any)
			o.set("access_log", append(logs, a))
		}
	}

	// The routes go after the filters that read them (the local rate
	// limit's per-route configs), so they are translated last.
	t.httpFilters(s, m.GetHttpFilters(), o)
	rc, rs := t.routeConfig(s, m)
	if rc != nil {
		t.routeConfiguration(rs, rc, o)
	}
}

// http2Skips notes the HTTP/2 tuning Sightline does its own way.
func http2Skips(s *scope) {
	s.skip("initial_stream_window_size", "Sightline starts a stream's window at 64 KiB from a client and 16 KiB from an upstream, and grows it, up to 1 MiB, for peers whose bytes are read fast")
	s.skip("initial_connection_window_size", "Sightline sizes the connection's window from its streams' windows")
	s.skip("hpack_table_size", "Sightline uses HTTP/2's default HPACK table (4 KiB)")
	for _, f := range []string{"max_outbound_frames", "max_outbound_control_frames", "max_consecutive_inbound_frames_with_empty_payload",
		"max_inbound_priority_frames_per_stream", "max_inbound_window_update_frames_per_data_frame_sent"} {
		s.skip(f, "Sightline bounds a peer's frames by its own allowance (README: Memory and abusive peers)")
	}
	s.skip("allow_connect", "Sightline tunnels no CONNECT")
	s.skip("allow_metadata", "Sightline drops METADATA frames")
	s.skip("stream_error_on_invalid_http_messaging", "Sightline resets the stream on an invalid message")
	s.skip("override_stream_error_on_invalid_http_message", "Sightline resets the stream on an invalid message")
	if !s.seen["connection_keepalive"] {
		// A listener's: a cluster's is carried as its keepalive_interval.
		s.skip("connection_keepalive", "Sightline's downstream HTTP/2 connections send no keepalive PING; limits.idle_timeout closes idle ones")
	}
}

// downstreamProtocolOptions translates an HTTP connection manager's
// common_http_protocol_options into the listener's limits.
func (t *translator) downstreamProtocolOptions(s *scope, p *corev3.HttpProtocolOptions, o *obj) {
	defer s.done()
	if d := p.GetIdleTimeout(); d != nil {
		o.child("limits").set("idle_timeout", d.AsDuration())
	}
	s.carry("idle_timeout")
	if n := p.GetMaxRequestsPerConnection(); n != nil {
		o.child("limits").set("max_requests_per_connection", int64(n.GetValue()))
	}
	s.carry("max_requests_per_connection")
	s.skip("max_connection_duration", "Sightline closes downstream connections only when idle (limits.idle_timeout) or after max_requests_per_connection")
	s.skip("max_headers_count", "Sightline bounds request headers by size (limits.max_header_bytes)")
	s.skip("max_response_headers_kb", "Sightline bounds response headers by size")
	s.skip("max_stream_duration", "Sightline bounds requests by their route's timeout")
	if p.GetHeadersWithUnderscoresAction() != corev3.HttpProtocolOptions_ALLOW {
		s.unsafe("headers_with_underscores_action", "Sightline passes headers with underscores in their names")
	} else {
		s.carry("headers_with_underscores_action")
	}
}

// upgrades translates upgrade_configs (of a manager or a route) into
// upgrades: [{type, enabled}].
func (t *translator) upgrades(s *scope, f string, ucs []*hcmv3.HttpConnectionManager_UpgradeConfig, o *obj) {
	var ups []any
	for j, uc := range ucs {
		us := s.elem(f, j, uc, nil)
		u := &obj{flow: true}
		u.set("type", uc.GetUpgradeType())
		us.carry("upgrade_type")
		if e := uc.GetEnabled(); e != nil {
			u.set("enabled", e.GetValue())
		}
		us.carry("enabled")
		if len(uc.GetFilters()) > 0 {
			us.unsafe("filters", "Sightline runs no HTTP filters on upgraded connections")
		}
		us.done()
		ups = append(ups, u)
	}
	if len(ups) > 0 {
		o.set("upgrades", ups)
	}
	s.seen[f] = true
}

// hcmTracing handles the manager's tracing: process-wide in Sightline
// (tracing:), so an import lifts it there; a control plane's listener
// cannot change it.
func (t *translator) hcmTracing(s *scope, m *hcmv3.HttpConnectionManager, _ *obj) {
	tr := m.GetTracing()
	if tr == nil {
		return
	}
	ts := s.sub("tracing", tr, nil)
	defer ts.done()
	if t.tracing == nil {
		ts.skipAll("tracing is process-wide in Sightline (tracing: in the config file), not per listener")
		return
	}
	if rs := tr.GetRandomSampling(); rs != nil {
		t.tracing.set("sampling", rs.GetValue())
	}
	ts.carry("random_sampling")
	if p := tr.GetProvider(); p != nil {
		t.traceProvider(ts.sub("provider", p, nil), p)
	}
	ts.skip("client_sampling", "Sightline keeps a sampled parent's decision and samples new traces by tracing.sampling")
	ts.skip("overall_sampling", "Sightline samples new traces by tracing.sampling")
	ts.skip("verbose", "Sightline's spans carry no annotations")
	ts.skip("max_path_tag_length", "Sightline's spans carry the whole path")
	ts.skip("custom_tags", "Sightline's spans carry a fixed set of attributes")
	ts.skip("spawn_upstream_span", "Sightline makes a client span for every upstream attempt")
}

// httpFilters translates the manager's HTTP filters: the router is the
// proxying itself; the rate limit filters are carried; the others are
// dropped when that is safe (stats, compression, buffering, faults) and
// refused otherwise.
func (t *translator) httpFilters(s *scope, filters []*hcmv3.HttpFilter, o *obj) {
	s.seen["http_filters"] = true
	t.localRLFilter = false
	for j, f := range filters {
		fs := s.elem("http_filters", j, f, nil)
		// is_optional lets Envoy start without a filter it does not know;
		// Sightline decides by the filter's type below.
		fs.carry("name", "is_optional")
		tc := f.GetTypedConfig()
		name := typeName(tc, f.GetName())
		if f.GetDisabled() {
			fs.carry("disabled")
			fs.sub("typed_config", tc, nil).skipAll("a disabled filter runs only on routes that enable it in typed_per_filter_config, which Sightline does not read for this filter")
			fs.done()
			continue
		}
		if f.GetConfigDiscovery() != nil {
			fs.unsafe("config_discovery", "Sightline has no filter config discovery (ECDS)")
			fs.done()
			continue
		}
		if tc == nil {
			// A filter named only by its well-known name.
			switch {
			case name == "envoy.filters.http.router":
			case safeFilters[name] != "":
				fs.skipAll(safeFilters[name])
			default:
				fs.unsafeAll("Sightline has no HTTP filter " + name)
			}
			fs.done()
			continue
		}
		msg, err := unpack(tc)
		if err != nil && safeFilters[name] == "" {
			fs.unsafe("typed_config", fmt.Sprintf("Sightline has no HTTP filter %s", name))
			fs.done()
			continue
		}
		switch m := msg.(type) {
		case *routerv3.Router:
			rs := fs.sub("typed_config", m, nil)
			routerSkips(rs)
			rs.done()
		case *localrlv3.LocalRateLimit:
			t.localRLFilter = true
			if m.GetTokenBucket() != nil || len(m.GetDescriptors()) > 0 {
				if rl := t.localRateLimit(fs.sub("typed_config", m, nil), m); rl != nil {
					o.set("local_rate_limit", rl)
				}
			} else {
				// A filter with no bucket of its own applies the routes'
				// per-route configs only.
				t.localRateLimit(fs.sub("typed_config", m, nil), m)
			}
		case *ratelimitv3.RateLimit:
			if rl := t.rateLimitFilter(fs.sub("typed_config", m, nil), m); rl != nil {
				o.set("rate_limit", rl)
			}
		default:
			if why := safeFilters[name]; why != "" {
				fs.skip("typed_config", why)
			} else {
				fs.unsafe("typed_config", fmt.Sprintf("Sightline has no HTTP filter %s", name))
			}
		}
		fs.done()
	}
}

// routerSkips notes the router options Sightline does not have.
func routerSkips(s *scope) {
	s.skip("dynamic_stats", "Sightline always keeps its per-cluster request stats")
	s.skip("start_child_span", "Sightline makes a client span for every upstream attempt")
	s.skip("upstream_log", "Sightline logs requests, with the attempts they took")
	s.skip("upstream_log_options", "Sightline logs requests, with the attempts they took")
	s.skip("suppress_envoy_headers", "Sightline sends no x-envoy-* headers; its own are x-sightline-*")
	s.skip("strict_check_headers", "Sightline reads x-sightline-* override headers only on listeners with trust_request_headers")
	s.skip("respect_expected_rq_timeout", "Sightline has no such setting")
	s.skip("suppress_grpc_request_failure_code_stats", "Sightline keeps its gRPC stats")
	s.skip("upstream_http_filters", "Sightline runs no upstream HTTP filters")
}

// unpack reads an extension's typed_config; an error when its type is not
// one this build knows.
func unpack(a *anypb.Any) (proto.Message, error) {
	if a == nil {
		return nil, fmt.Errorf("no typed_config")
	}
	return a.UnmarshalNew()
}

// accessLog translates one access log of the manager; nil when it cannot
// be carried (a note says why).
func (t *translator) accessLog(s *scope, al *accesslogv3.AccessLog) *obj {
	defer s.done()
	s.carry("name")
	msg, err := unpack(al.GetTypedConfig())
	if err != nil {
		s.skip("typed_config", "Sightline writes access logs to files, stdout and OpenTelemetry collectors; not "+typeName(al.GetTypedConfig(), al.GetName()))
		s.skip("filter", "its access log is not carried")
		return nil
	}
	a := &obj{}
	ts := s.sub("typed_config", msg, nil)
	defer ts.done()
	var lf *corev3.SubstitutionFormatString
	switch m := msg.(type) {
	case *filev3.FileAccessLog:
		a.set("path", m.GetPath())
		ts.carry("path")
		switch {
		case m.GetLogFormat() != nil:
			lf = m.GetLogFormat()
		case m.GetFormat() != "":
			a.set("format", m.GetFormat())
			ts.carry("format")
		case m.GetJsonFormat() != nil:
			t.jsonFormat(ts, "json_format", m.GetJsonFormat(), a)
		case m.GetTypedJsonFormat() != nil:
			t.jsonFormat(ts, "typed_json_format", m.GetTypedJsonFormat(), a)
		default:
			a.set("format", "envoy")
		}
	case *streamv3.StdoutAccessLog:
		a.set("path", "-")
		lf = m.GetLogFormat()
		if lf == nil {
			a.set("format", "envoy")
		}
	case *streamv3.StderrAccessLog:
		ts.skipAll("Sightline writes access logs to files or stdout, and logs its own lines to stderr")
		s.skip("filter", "its access log is not carried")
		return nil
	default:
		ts.skipAll("Sightline writes access logs to files, stdout and OpenTelemetry collectors; not " + string(al.GetTypedConfig().MessageName()))
		s.skip("filter", "its access log is not carried")
		return nil
	}
	if lf != nil {
		fs := ts.sub("log_format", lf, nil)
		switch {
		case lf.GetTextFormat() != "":
			a.set("format", lf.GetTextFormat())
			fs.carry("text_format")
		case lf.GetTextFormatSource() != nil:
			if txt := lf.GetTextFormatSource().GetInlineString(); txt != "" {
				a.set("format", txt)
				fs.carry("text_format_source")
			} else {
				fs.skip("text_format_source", "Sightline reads a format inline only; the default Envoy line is written")
				a.set("format", "envoy")
			}
		case lf.GetJsonFormat() != nil:
			t.jsonFormat(fs, "json_format", lf.GetJsonFormat(), a)
		}
		fs.skip("omit_empty_values", "Sightline writes every key of a JSON format, '-' for an empty value in a text format")
		fs.skip("content_type", "Sightline's access log lines have no content type")
		fs.skip("formatters", "Sightline's format language has no extensions")
		fs.skip("json_format_options", "Sightline writes JSON lines with sorted keys")
		fs.done()
	}
	if f := al.GetFilter(); f != nil {
		t.accessLogFilter(s.sub("filter", f, nil), f, a.child("filter"))
	}
	return a
}

// jsonFormat carries a json_format whose values are all format strings;
// a nested one is not (Sightline's json_format is flat).
func (t *translator) jsonFormat(s *scope, f string, st *structpb.Struct, a *obj) {
	jf := &obj{}
	for _, k := range sortedKeys(st.GetFields()) {
		v := st.GetFields()[k]
		sv, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok {
			s.skip(f, fmt.Sprintf("Sightline's json_format maps keys to format strings; %q is not a string, so the default Envoy line is written", k))
			a.set("format", "envoy")
			return
		}
		jf.set(k, sv.StringValue)
	}
	a.set("json_format", jf)
	s.carry(f)
}

// accessLogFilter translates an access log filter into filter: {...}: the
// status, duration, health check and sampling filters, alone or and-ed.
func (t *translator) accessLogFilter(s *scope, f *accesslogv3.AccessLogFilter, out *obj) {
	defer s.done()
	switch {
	case f.GetStatusCodeFilter() != nil:
		sf := s.sub("status_code_filter", f.GetStatusCodeFilter(), nil)
		t.comparison(sf, f.GetStatusCodeFilter().GetComparison(), func(v uint32) { out.set("status_min", int64(v)) }, false)
		sf.done()
	case f.GetDurationFilter() != nil:
		df := s.sub("duration_filter", f.GetDurationFilter(), nil)
		t.comparison(df, f.GetDurationFilter().GetComparison(), func(v uint32) { out.set("duration_min", msDuration(v)) }, false)
		df.done()
	case f.GetNotHealthCheckFilter() != nil:
		out.set("not_health_check", true)
		s.carry("not_health_check_filter")
	case f.GetRuntimeFilter() != nil:
		rf := f.GetRuntimeFilter()
		rs := s.sub("runtime_filter", rf, nil)
		rs.carry("runtime_key")
		if p := rf.GetPercentSampled(); p != nil {
			out.set("sample_percent", fractionPercent(p))
		} else {
			out.set("sample_percent", 0.0)
		}
		rs.carry("percent_sampled")
		rs.skip("use_independent_randomness", "Sightline samples each request on its own")
		rs.done()
	case f.GetAndFilter() != nil:
		as := s.sub("and_filter", f.GetAndFilter(), nil)
		as.seen["filters"] = true
		for j, sub := range f.GetAndFilter().GetFilters() {
			t.accessLogFilter(as.elem("filters", j, sub, nil), sub, out)
		}
		as.done()
	}
	// The others log fewer requests than Envoy would: more lines, never
	// fewer, so dropping them is safe.
}

// comparison carries a GE comparison (as status_min and duration_min
// mean); others are skipped.
func (t *translator) comparison(s *scope, c *accesslogv3.ComparisonFilter, set func(uint32), _ bool) {
	if c == nil {
		return
	}
	cs := s.sub("comparison", c, nil)
	defer cs.done()
	if c.GetOp() != accesslogv3.ComparisonFilter_GE {
		cs.skip("op", "Sightline's filter logs requests at or above a threshold (GE); this filter is dropped, and every request logged")
		cs.skip("value", "the comparison is not carried")
		return
	}
	cs.carry("op")
	vs := cs.sub("value", c.GetValue(), nil)
	set(c.GetValue().GetDefaultValue())
	vs.carry("default_value", "runtime_key")
	vs.done()
}
