package envoyconf

import (
	"fmt"
	"net"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// listener translates one listener: its address, its one filter chain's
// TLS and HTTP connection manager. nil when it cannot be translated.
func (t *translator) listener(i int, l *listenerv3.Listener) *obj {
	o := &obj{}
	s := t.top("listeners", ElemKey(l.ProtoReflect(), i), l, o)
	defer s.done()
	name := l.GetName()
	if name == "" {
		name = fmt.Sprintf("listener_%d", i)
	}
	o.set("name", name)
	s.carry("name")
	if l.GetAddress() == nil {
		s.fail("address", "a listener needs an address")
	} else if addr, ok := s.socketAddress("address", l.GetAddress()); ok {
		o.set("address", addr)
	}

	s.skip("stat_prefix", "Sightline names a listener's stats by its address (listener.<address>.*), as Envoy does without stat_prefix")
	s.skip("traffic_direction", "only informs tracing and stats in Envoy; Sightline has no such setting")
	s.skip("per_connection_buffer_limit_bytes", "Sightline bounds what a connection holds by HTTP/2 flow control and overload.max_buffered_bytes")
	s.skip("listener_filters_timeout", "Sightline has no listener filters")
	s.skip("continue_on_listener_filters_timeout", "Sightline has no listener filters")
	s.skip("enable_reuse_port", "Sightline binds one socket per listener")
	s.skip("tcp_backlog_size", "Sightline uses the system's backlog")
	s.skip("metadata", "metadata is read by Envoy filters Sightline does not have")
	s.skip("drain_type", "Sightline drains every listener on SIGTERM and /drain_listeners (drain_type DEFAULT)")
	s.skip("access_log", "listener access logs record connections that never became requests; Sightline logs requests (the HTTP connection manager's access_log)")
	s.skip("socket_options", "Sightline sets its own socket options (TCP keepalive on accepted connections)")
	s.skip("connection_balance_config", "Go's runtime spreads accepted connections over its threads")
	s.carry("listener_filters")
	for j, lf := range l.GetListenerFilters() {
		t.listenerFilter(s.elem("listener_filters", j, lf, nil), lf)
	}

	chains := l.GetFilterChains()
	var chain *listenerv3.FilterChain
	var cs *scope
	switch {
	case len(chains) > 0:
		chain = chains[0]
		cs = s.elem("filter_chains", 0, chain, nil)
		for j := 1; j < len(chains); j++ {
			s.elem("filter_chains", j, chains[j], nil).unsafeAll("Sightline serves one HTTP connection manager per listener; the connections this chain would take go to the first chain")
		}
		if dc := l.GetDefaultFilterChain(); dc != nil {
			s.sub("default_filter_chain", dc, nil).unsafeAll("Sightline serves one HTTP connection manager per listener; the connections this chain would take go to the first chain")
		}
	case l.GetDefaultFilterChain() != nil:
		chain = l.GetDefaultFilterChain()
		cs = s.sub("default_filter_chain", chain, nil)
	default:
		s.fail("filter_chains", "a listener needs a filter chain with an HTTP connection manager")
		return nil
	}
	if !t.filterChain(cs, chain, o) {
		return nil
	}
	return o
}

// listenerFilter handles a listener filter: the inspectors only help
// select filter chains, and Sightline has one chain; others would change
// what the connection carries.
func (t *translator) listenerFilter(s *scope, lf *listenerv3.ListenerFilter) {
	switch typeName(lf.GetTypedConfig(), lf.GetName()) {
	case "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector", "envoy.filters.listener.tls_inspector",
		"envoy.extensions.filters.listener.http_inspector.v3.HttpInspector", "envoy.filters.listener.http_inspector":
		s.skipAll("an inspector selects among filter chains; Sightline serves one chain, and detects TLS, HTTP/1.1 and HTTP/2 itself")
	default:
		s.unsafeAll("Sightline has no listener filters; this one changes what the connection carries (" + typeName(lf.GetTypedConfig(), lf.GetName()) + ")")
	}
}

// filterChain translates a listener's filter chain into o: its TLS
// context and its HTTP connection manager.
func (t *translator) filterChain(s *scope, fc *listenerv3.FilterChain, o *obj) bool {
	defer s.done()
	s.skip("name", "the chain's name only names it")
	s.skip("metadata", "metadata is read by Envoy filters Sightline does not have")
	s.skip("transport_socket_connect_timeout", "Sightline bounds a TLS handshake by limits.header_read_timeout")
	if m := fc.GetFilterChainMatch(); m != nil && proto.Size(m) > 0 {
		s.unsafe("filter_chain_match", "Sightline serves every connection of a listener with its one chain; this match would refuse the others")
	} else {
		s.carry("filter_chain_match")
	}
	if ts := fc.GetTransportSocket(); ts != nil {
		t.downstreamTLS(s.sub("transport_socket", ts, nil), ts, o)
	}
	var hcm *hcmv3.HttpConnectionManager
	s.carry("filters")
	for j, f := range fc.GetFilters() {
		fs := s.elem("filters", j, f, nil)
		tc := f.GetTypedConfig()
		if typeName(tc, f.GetName()) == "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager" && hcm == nil && tc != nil {
			m := &hcmv3.HttpConnectionManager{}
			if err := anypb.UnmarshalTo(tc, m, proto.UnmarshalOptions{}); err != nil {
				fs.fail("typed_config", "cannot read the HTTP connection manager: %v", err)
				return false
			}
			hcm = m
			fs.carry("name")
			t.hcm(fs.sub("typed_config", m, nil), m, o)
			fs.done()
			continue
		}
		switch typeName(tc, f.GetName()) {
		case "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager":
			fs.unsafeAll("a second HTTP connection manager on one chain never sees a request in Envoy either, but is likely a mistake")
		case "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy":
			fs.unsafeAll("Sightline proxies HTTP only; a TCP proxy cannot be carried")
		default:
			fs.unsafeAll("Sightline has no network filters but the HTTP connection manager (" + typeName(tc, f.GetName()) + ")")
		}
	}
	if hcm == nil {
		t.failf(s.at("filters"), "no envoy.filters.network.http_connection_manager: Sightline proxies HTTP only")
		return false
	}
	return true
}

// socketAddress translates an Address at field f into host:port.
func (s *scope) socketAddress(f string, a *corev3.Address) (string, bool) {
	as := s.sub(f, a, nil)
	defer as.done()
	sa := a.GetSocketAddress()
	if sa == nil {
		as.fail("address", "only socket_address is supported (no pipe or internal addresses)")
		as.seen["pipe"], as.seen["envoy_internal_address"] = true, true
		return "", false
	}
	ss := as.sub("socket_address", sa, nil)
	defer ss.done()
	ss.carry("address", "port_value")
	ss.skip("ipv4_compat", "Go listens on both families for [::] by default")
	if sa.GetProtocol() == corev3.SocketAddress_UDP {
		ss.fail("protocol", "UDP is not supported")
	} else {
		ss.carry("protocol")
	}
	if sa.GetNamedPort() != "" {
		ss.fail("named_port", "named ports are not supported: give port_value")
		return "", false
	}
	if sa.GetResolverName() != "" {
		ss.unsafe("resolver_name", "Sightline resolves with the system resolver")
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10)), true
}

// typeName is the full message name of an extension's typed_config, or
// its name when it has none.
func typeName(a *anypb.Any, name string) string {
	if a == nil {
		return name
	}
	return string(a.MessageName())
}

// routeConfig returns the route configuration an HTTP connection manager
// uses: inline, or by RDS name; s is the manager's scope.
func (t *translator) routeConfig(s *scope, hcm *hcmv3.HttpConnectionManager) (*routev3.RouteConfiguration, *scope) {
	if rc := hcm.GetRouteConfig(); rc != nil {
		return rc, s.sub("route_config", rc, nil)
	}
	if rds := hcm.GetRds(); rds != nil {
		rs := s.sub("rds", rds, nil)
		// The config source says where Envoy fetches it; here it is among
		// the resources given (static_resources, or what ADS sent).
		rs.carry("route_config_name", "config_source")
		rs.done()
		name := rds.GetRouteConfigName()
		rc, ok := t.routes[name]
		if !ok {
			t.failf(rs.at("route_config_name"), "no route configuration named %q", name)
			return nil, nil
		}
		t.usedRoutes[name] = true
		return rc, t.top("routes", name, rc, s.out)
	}
	if hcm.GetScopedRoutes() != nil {
		s.unsafe("scoped_routes", "Sightline has no scoped routes")
		return nil, nil
	}
	t.failf(s.path, "the HTTP connection manager has no route_config or rds")
	return nil, nil
}
