package envoyconf

import (
	"sort"
)

// reason is why a field is not carried, for the fields done() finds
// unhandled: known fields of messages the translation does not walk one
// by one.
type reason struct {
	why    string
	unsafe bool
}

// reasons gives the why of fields no translation step names, by the
// message's full name and the field's name.
var reasons = map[string]reason{
	"envoy.config.listener.v3.Listener.udp_listener_config":                        {why: "Sightline has no UDP listeners", unsafe: true},
	"envoy.config.listener.v3.Listener.additional_addresses":                       {why: "Sightline listens on one address per listener", unsafe: true},
	"envoy.config.listener.v3.Listener.freebind":                                   {why: "Sightline binds addresses the host has"},
	"envoy.config.listener.v3.Listener.transparent":                                {why: "Sightline has no transparent proxying", unsafe: true},
	"envoy.config.listener.v3.Listener.filter_chain_matcher":                       {why: "Sightline serves one filter chain per listener", unsafe: true},
	"envoy.config.listener.v3.Listener.internal_listener":                          {why: "Sightline has no internal listeners", unsafe: true},
	"envoy.config.listener.v3.Listener.api_listener":                               {why: "Sightline has no API listeners", unsafe: true},
	"envoy.config.listener.v3.Listener.bind_to_port":                               {why: "Sightline binds every listener to its port"},
	"envoy.config.listener.v3.Listener.max_connections_to_accept_per_socket_event": {why: "Go's runtime accepts connections as they come"},
	"envoy.config.listener.v3.Listener.enable_mptcp":                               {why: "Sightline listens on TCP"},
	"envoy.config.listener.v3.Listener.ignore_global_conn_limit":                   {why: "Sightline counts every listener against server.max_connections"},
	"envoy.config.listener.v3.Listener.bypass_overload_manager":                    {why: "Sightline's overload manager watches every listener"},
	"envoy.config.listener.v3.Listener.listener_specifier":                         {why: "Sightline has no internal listeners", unsafe: true},
	"envoy.config.listener.v3.Listener.fcds_config":                                {why: "Sightline has no filter chain discovery", unsafe: true},
}

// unsafeMessages are the messages whose unknown fields are unsafe to
// drop: those that decide who may connect or which route serves.
var unsafeMessages = map[string]bool{
	"envoy.config.route.v3.RouteMatch":                                       true,
	"envoy.config.route.v3.HeaderMatcher":                                    true,
	"envoy.config.listener.v3.FilterChainMatch":                              true,
	"envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext":         true,
	"envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext":           true,
	"envoy.extensions.transport_sockets.tls.v3.CommonTlsContext":             true,
	"envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext": true,
}

// safeFilters are the HTTP filters whose loss leaves what the proxy does
// with a request the same in kind (what it lets through, where it sends
// it): by the typed_config's type, and the filter's well-known name, with
// what Sightline does instead. Every other filter is unsafe to drop:
// those that authenticate or authorize (ext_authz, jwt_authn, rbac,
// oauth2, basic_auth), rewrite requests (lua, wasm, header_mutation), or
// answer for the upstream (grpc_json_transcoder, cors).
var safeFilters = map[string]string{
	"envoy.extensions.filters.http.grpc_stats.v3.FilterConfig":                  "Sightline counts gRPC calls per method itself (cluster.<name>.grpc.<service>.<method>.*)",
	"envoy.filters.http.grpc_stats":                                             "Sightline counts gRPC calls per method itself (cluster.<name>.grpc.<service>.<method>.*)",
	"envoy.extensions.filters.http.health_check.v3.HealthCheck":                 "Sightline answers health checks on the admin port (/ready); requests for this path are proxied",
	"envoy.filters.http.health_check":                                           "Sightline answers health checks on the admin port (/ready); requests for this path are proxied",
	"envoy.extensions.filters.http.buffer.v3.Buffer":                            "Sightline streams request bodies",
	"envoy.filters.http.buffer":                                                 "Sightline streams request bodies",
	"envoy.extensions.filters.http.compressor.v3.Compressor":                    "Sightline passes bodies as the upstream sent them, uncompressed if so",
	"envoy.filters.http.compressor":                                             "Sightline passes bodies as the upstream sent them, uncompressed if so",
	"envoy.extensions.filters.http.decompressor.v3.Decompressor":                "Sightline passes bodies as they are sent",
	"envoy.extensions.filters.http.fault.v3.HTTPFault":                          "Sightline injects no faults",
	"envoy.filters.http.fault":                                                  "Sightline injects no faults",
	"envoy.extensions.filters.http.grpc_web.v3.GrpcWeb":                         "Sightline does not translate gRPC-Web; gRPC-Web clients get the upstream's answer as it is",
	"envoy.filters.http.grpc_web":                                               "Sightline does not translate gRPC-Web; gRPC-Web clients get the upstream's answer as it is",
	"envoy.extensions.filters.http.grpc_http1_bridge.v3.Config":                 "Sightline does not bridge HTTP/1.1 to gRPC",
	"envoy.extensions.filters.http.adaptive_concurrency.v3.AdaptiveConcurrency": "Sightline bounds concurrency by circuit breakers and overload.max_active_requests",
	"envoy.extensions.filters.http.admission_control.v3.AdmissionControl":       "Sightline bounds concurrency by circuit breakers and overload.max_active_requests",
	"envoy.extensions.filters.http.cache.v3.CacheConfig":                        "Sightline caches no responses",
	"envoy.extensions.filters.http.tap.v3.Tap":                                  "Sightline has no tap",
	"envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec":             "Sightline encodes upstream requests itself",
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
