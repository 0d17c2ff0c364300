package envoyconf

import (
	"net"
	"net/url"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
)

const otelTracerType = "envoy.config.trace.v3.OpenTelemetryConfig"

// traceProvider carries an OpenTelemetry tracer into the document's
// tracing.otlp; the other tracers (Zipkin, Datadog, ...) are dropped,
// which loses spans but changes no request.
func (t *translator) traceProvider(s *scope, p *tracev3.Tracing_Http) {
	defer s.done()
	s.carry("name")
	if typeName(p.GetTypedConfig(), p.GetName()) != otelTracerType {
		s.skip("typed_config", "Sightline exports traces by OTLP only, not "+typeName(p.GetTypedConfig(), p.GetName()))
		return
	}
	oc := &tracev3.OpenTelemetryConfig{}
	if err := p.GetTypedConfig().UnmarshalTo(oc); err != nil {
		s.fail("typed_config", "cannot read the OpenTelemetry config: %v", err)
		return
	}
	cs := s.sub("typed_config", oc, nil)
	defer cs.done()
	otlp := &obj{flow: true}
	switch {
	case oc.GetGrpcService() != nil:
		gs := cs.sub("grpc_service", oc.GetGrpcService(), nil)
		ep, ok := t.grpcTarget(gs, oc.GetGrpcService())
		gs.done()
		if !ok {
			return
		}
		otlp.set("endpoint", ep)
		otlp.set("protocol", "grpc")
		otlp.set("insecure", !t.clusterTLS(oc.GetGrpcService().GetEnvoyGrpc().GetClusterName()))
	case oc.GetHttpService() != nil:
		hs := cs.sub("http_service", oc.GetHttpService(), nil)
		u := oc.GetHttpService().GetHttpUri()
		us := hs.sub("http_uri", u, nil)
		pu, err := url.Parse(u.GetUri())
		if err != nil || pu.Host == "" {
			us.fail("uri", "not an absolute URL: %q", u.GetUri())
			us.done()
			hs.done()
			return
		}
		host := pu.Host
		if pu.Port() == "" {
			port := "80"
			if pu.Scheme == "https" {
				port = "443"
			}
			host = net.JoinHostPort(pu.Hostname(), port)
		}
		otlp.set("endpoint", host)
		otlp.set("protocol", "http")
		otlp.set("insecure", pu.Scheme != "https")
		us.carry("uri", "cluster", "timeout")
		us.done()
		hs.skip("request_headers_to_add", "Sightline's OTLP exporter sends no extra headers")
		hs.skip("formatters", "Sightline's OTLP exporter sends no extra headers")
		hs.done()
	default:
		cs.skip("exporter", "Sightline exports traces by OTLP over gRPC or HTTP only")
		return
	}
	t.tracing.set("otlp", otlp)
	if n := oc.GetServiceName(); n != "" {
		t.tracing.set("service_name", n)
	}
	cs.carry("service_name")
	cs.skip("resource_detectors", "Sightline sets the service name and its own resource attributes")
	cs.skip("sampler", "Sightline samples by tracing.sampling")
	cs.skip("max_cache_size", "Sightline batches spans by the OpenTelemetry SDK's defaults")
	cs.skip("set_telemetry_sdk_resource_attributes", "Sightline sets its own resource attributes")
	cs.skip("set_service_name_resource_attribute", "Sightline sets service.name")
	cs.skip("set_instrumentation_scope", "Sightline sets its own instrumentation scope")
}

// grpcTarget is the host:port a gRPC service reaches: the first endpoint
// of its Envoy cluster, or a Google gRPC target.
func (t *translator) grpcTarget(s *scope, g *corev3.GrpcService) (string, bool) {
	s.skip("timeout", "Sightline's exporters have their own timeouts")
	s.skip("initial_metadata", "Sightline's exporters send no extra metadata")
	s.skip("retry_policy", "Sightline's exporters retry by the OpenTelemetry SDK's defaults")
	switch {
	case g.GetEnvoyGrpc() != nil:
		es := s.sub("envoy_grpc", g.GetEnvoyGrpc(), nil)
		defer es.done()
		es.carry("cluster_name")
		es.skip("authority", "Sightline's exporters send the endpoint as :authority")
		es.skip("retry_policy", "Sightline's exporters retry by the OpenTelemetry SDK's defaults")
		es.skip("max_receive_message_length", "Sightline's exporters read answers whole")
		es.skip("skip_envoy_headers", "Sightline's exporters send no x-envoy-* headers")
		addr := t.clusterAddress(g.GetEnvoyGrpc().GetClusterName())
		if addr == "" {
			es.fail("cluster_name", "no cluster %q with an endpoint to export to", g.GetEnvoyGrpc().GetClusterName())
			return "", false
		}
		return addr, true
	case g.GetGoogleGrpc() != nil:
		gs := s.sub("google_grpc", g.GetGoogleGrpc(), nil)
		defer gs.done()
		gs.carry("target_uri", "stat_prefix")
		gs.unsafe("channel_credentials", "Sightline's exporters speak plaintext to a Google gRPC target")
		gs.unsafe("call_credentials", "Sightline's exporters send no call credentials")
		return g.GetGoogleGrpc().GetTargetUri(), true
	}
	s.fail("target_specifier", "a gRPC service needs envoy_grpc or google_grpc")
	return "", false
}

// clusterAddress is the first endpoint of the named cluster, whose
// exporters (statsd, OTLP) reach one address in Sightline; "" when the
// cluster is unknown or has none.
func (t *translator) clusterAddress(name string) string {
	c, ok := t.clusters[name]
	if !ok {
		return ""
	}
	cla := c.GetLoadAssignment()
	if c.GetType() == clusterv3.Cluster_EDS {
		n := c.GetEdsClusterConfig().GetServiceName()
		if n == "" {
			n = name
		}
		cla = t.endpoints[n]
	}
	for _, le := range cla.GetEndpoints() {
		for _, lbe := range le.GetLbEndpoints() {
			sa := lbe.GetEndpoint().GetAddress().GetSocketAddress()
			if sa != nil {
				return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
			}
		}
	}
	return ""
}

// clusterTLS reports whether the named cluster speaks TLS.
func (t *translator) clusterTLS(name string) bool {
	c, ok := t.clusters[name]
	return ok && c.GetTransportSocket() != nil && typeName(c.GetTransportSocket().GetTypedConfig(), c.GetTransportSocket().GetName()) == upstreamTLSType
}
