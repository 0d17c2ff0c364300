package envoyconf

import (
	"fmt"
	"net"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
)

// envoyConnectTimeout is Envoy's connect_timeout when a cluster has
// none; Sightline's default is 1s, so it is written out.
const envoyConnectTimeout = 5 * time.Second

// httpProtocolOptionsName is the key of the upstream HTTP protocol
// options in typed_extension_protocol_options.
const httpProtocolOptionsName = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// cluster translates one cluster; nil when it cannot be translated.
func (t *translator) cluster(i int, c *clusterv3.Cluster) *obj {
	o := &obj{}
	s := t.top("clusters", ElemKey(c.ProtoReflect(), i), c, o)
	defer s.done()
	if c.GetName() == "" {
		s.fail("name", "a cluster needs a name")
		return nil
	}
	o.set("name", c.GetName())
	s.carry("name")

	var cla *endpointv3.ClusterLoadAssignment
	var claScope *scope
	switch c.GetType() {
	case clusterv3.Cluster_STATIC:
		o.set("type", "static")
		s.carry("type")
	case clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS:
		o.set("type", "strict_dns")
		if c.GetType() == clusterv3.Cluster_LOGICAL_DNS {
			// LOGICAL_DNS connects to the first address a lookup gives;
			// every address is a host here: the same backends, spread
			// more evenly.
			s.skip("type", "LOGICAL_DNS becomes strict_dns: every address the name resolves to is a host")
		} else {
			s.carry("type")
		}
	case clusterv3.Cluster_EDS:
		o.set("type", "static")
		s.carry("type")
		name := c.GetName()
		if ec := c.GetEdsClusterConfig(); ec != nil {
			es := s.sub("eds_cluster_config", ec, nil)
			if ec.GetServiceName() != "" {
				name = ec.GetServiceName()
			}
			// Where Envoy fetches the endpoints from: here they are among
			// the resources given.
			es.carry("service_name", "eds_config")
			es.done()
		}
		e, ok := t.endpoints[name]
		if !ok {
			s.fail("eds_cluster_config", "no cluster load assignment named %q for this EDS cluster", name)
			return nil
		}
		t.usedEndpoints[name] = true
		cla, claScope = e, t.top("endpoints", name, e, o)
	default:
		s.fail("type", "%s clusters are not supported: Sightline has static, strict_dns (and LOGICAL_DNS, EDS translated to them)", c.GetType())
		return nil
	}
	if c.GetClusterType() != nil {
		s.fail("cluster_type", "custom cluster types (%s) are not supported", c.GetClusterType().GetName())
		return nil
	}
	if cla == nil {
		cla = c.GetLoadAssignment()
		if cla == nil {
			s.fail("load_assignment", "a %s cluster needs a load_assignment", c.GetType())
			return nil
		}
		claScope = s.sub("load_assignment", cla, nil)
	} else {
		s.skip("load_assignment", "an EDS cluster takes its endpoints from its cluster load assignment")
	}
	t.loadAssignment(claScope, cla, o, c.GetType() != clusterv3.Cluster_STATIC && c.GetType() != clusterv3.Cluster_EDS)

	ct := envoyConnectTimeout
	if d := c.GetConnectTimeout(); d != nil {
		ct = d.AsDuration()
	}
	o.set("connect_timeout", ct)
	s.carry("connect_timeout")
	// Envoy's upstreams speak HTTP/1.1 unless HTTP/2 is asked for.
	o.set("protocol", "http1")

	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		o.set("lb_policy", "round_robin")
	case clusterv3.Cluster_LEAST_REQUEST:
		o.set("lb_policy", "least_request")
	case clusterv3.Cluster_RANDOM:
		o.set("lb_policy", "random")
	case clusterv3.Cluster_RING_HASH:
		o.set("lb_policy", "ring_hash")
	case clusterv3.Cluster_MAGLEV:
		o.set("lb_policy", "maglev")
	default:
		s.fail("lb_policy", "%s is not supported", c.GetLbPolicy())
	}
	s.carry("lb_policy")
	if rh := c.GetRingHashLbConfig(); rh != nil {
		rs := s.sub("ring_hash_lb_config", rh, nil)
		rs.skip("minimum_ring_size", "Sightline sizes its ring from the hosts' weights")
		rs.skip("maximum_ring_size", "Sightline sizes its ring from the hosts' weights")
		rs.skip("hash_function", "Sightline hashes with xxHash, Envoy's default")
		rs.done()
	}
	if ml := c.GetMaglevLbConfig(); ml != nil {
		ms := s.sub("maglev_lb_config", ml, nil)
		ms.skip("table_size", "Sightline's Maglev table has Envoy's default size, 65537")
		ms.done()
	}
	if lr := c.GetLeastRequestLbConfig(); lr != nil {
		ls := s.sub("least_request_lb_config", lr, nil)
		ls.skip("choice_count", "Sightline's least_request picks the better of two random hosts, Envoy's default")
		ls.skip("active_request_bias", "Sightline weighs hosts by their active requests alone")
		ls.skip("slow_start_config", "Sightline has no slow start")
		ls.done()
	}
	if rr := c.GetRoundRobinLbConfig(); rr != nil {
		s.sub("round_robin_lb_config", rr, nil).skipAll("Sightline has no slow start")
	}
	if cl := c.GetCommonLbConfig(); cl != nil {
		t.commonLB(s.sub("common_lb_config", cl, nil), cl, o)
	}

	if d := c.GetDnsRefreshRate(); d != nil {
		o.set("dns_refresh_rate", d.AsDuration())
	}
	s.carry("dns_refresh_rate")
	s.skip("respect_dns_ttl", "Sightline resolves every dns_refresh_rate")
	s.skip("dns_jitter", "Sightline resolves every dns_refresh_rate")
	s.skip("dns_failure_refresh_rate", "Sightline keeps the last good hosts and tries again at dns_refresh_rate")
	s.skip("dns_lookup_family", "Sightline takes every A and AAAA record")
	s.skip("use_tcp_for_dns_lookups", "Sightline resolves with the system resolver")
	s.skip("dns_resolution_config", "Sightline resolves with the system resolver")
	s.skip("typed_dns_resolver_config", "Sightline resolves with the system resolver")
	s.unsafe("dns_resolvers", "Sightline resolves with the system resolver; these resolvers may give other addresses")

	s.skip("per_connection_buffer_limit_bytes", "Sightline bounds what a connection holds by HTTP/2 flow control and overload.max_buffered_bytes")
	s.skip("alt_stat_name", "Sightline names a cluster's stats by its name")
	s.skip("metadata", "metadata is read by Envoy filters Sightline does not have")
	s.skip("wait_for_warm_on_init", "Sightline serves once its first DNS lookup or endpoint set is in")
	s.skip("cleanup_interval", "Sightline has no original-destination clusters")
	s.skip("upstream_connection_options", "Sightline sets TCP keepalive on upstream connections itself")
	s.skip("close_connections_on_host_health_failure", "Sightline stops sending new requests to an unhealthy host and lets its connections drain")
	s.skip("ignore_health_on_host_removal", "Sightline removes a host when its endpoint goes, as Envoy does by default")
	s.skip("track_timeout_budgets", "Sightline has no timeout budget histograms")
	s.skip("track_cluster_stats", "Sightline keeps its cluster stats")
	s.skip("preconnect_policy", "Sightline connects on demand")
	s.skip("connection_pool_per_downstream_connection", "Sightline shares a cluster's connections among downstream connections")
	s.skip("lrs_server", "Sightline reports no load")
	s.skip("lrs_report_endpoint_metrics", "Sightline reports no load")
	s.skip("upstream_bind_config", "Sightline lets the system choose the source address")
	s.unsafe("lb_subset_config", "Sightline has no subset load balancing: routes would reach every host of the cluster")
	s.unsafe("load_balancing_policy", "Sightline's load balancers are named by lb_policy")
	s.unsafe("transport_socket_matches", "Sightline has one transport socket per cluster")
	s.unsafe("filters", "Sightline has no upstream network filters")
	s.unsafe("upstream_config", "Sightline has no custom upstream")
	s.skip("protocol_selection", "Sightline's protocol: auto follows the downstream; explicit http1 or http2 otherwise")

	if n := c.GetMaxRequestsPerConnection(); n != nil {
		o.set("max_requests_per_connection", int64(n.GetValue()))
	}
	s.carry("max_requests_per_connection")
	if cb := c.GetCircuitBreakers(); cb != nil {
		t.circuitBreakers(s.sub("circuit_breakers", cb, nil), cb, o)
	}
	if od := c.GetOutlierDetection(); od != nil {
		t.outlierDetection(s.sub("outlier_detection", od, nil), od, o)
	}
	s.carry("health_checks")
	for j, hc := range c.GetHealthChecks() {
		hs := s.elem("health_checks", j, hc, nil)
		if j > 0 {
			hs.skipAll("Sightline runs one health check per cluster; the first is carried")
			continue
		}
		t.healthCheck(hs, hc, o)
	}

	if ts := c.GetTransportSocket(); ts != nil {
		t.upstreamTLS(s.sub("transport_socket", ts, nil), ts, o)
	}
	// Upstream protocol options: the deprecated fields first, then the
	// typed extension, which wins in Envoy.
	if p := c.GetHttp2ProtocolOptions(); p != nil {
		o.set("protocol", "http2")
		t.upstreamHTTP2(s.sub("http2_protocol_options", p, nil), p, o)
	}
	if p := c.GetHttpProtocolOptions(); p != nil {
		s.sub("http_protocol_options", p, nil).skipAll("Sightline's HTTP/1.1 client has no such options")
	}
	if p := c.GetCommonHttpProtocolOptions(); p != nil {
		t.upstreamCommon(s.sub("common_http_protocol_options", p, nil), p, o)
	}
	if p := c.GetUpstreamHttpProtocolOptions(); p != nil {
		t.upstreamHTTPOptions(s.sub("upstream_http_protocol_options", p, nil), p)
	}
	s.seen["typed_extension_protocol_options"] = true
	for _, k := range sortedKeys(c.GetTypedExtensionProtocolOptions()) {
		a := c.GetTypedExtensionProtocolOptions()[k]
		path := s.at("typed_extension_protocol_options") + "[" + k + "]"
		if typeName(a, k) != httpProtocolOptionsName {
			t.unsafe(path, s.rel("typed_extension_protocol_options")+"["+k+"]", "Sightline has no protocol options for "+typeName(a, k), o)
			continue
		}
		hpo := &upstreamhttpv3.HttpProtocolOptions{}
		if err := a.UnmarshalTo(hpo); err != nil {
			t.failf(path, "cannot read the HTTP protocol options: %v", err)
			continue
		}
		t.httpProtocolOptions(t.open(path, hpo, o), hpo, o)
	}

	return o
}

// loadAssignment translates a cluster load assignment into the cluster's
// endpoints. Sightline has one priority: the hosts of the lowest priority
// are carried and the others noted, since Envoy sends them traffic only
// when the first priority is unhealthy.
func (t *translator) loadAssignment(s *scope, cla *endpointv3.ClusterLoadAssignment, o *obj, dns bool) {
	defer s.done()
	s.carry("cluster_name")
	if p := cla.GetPolicy(); p != nil {
		ps := s.sub("policy", p, nil)
		ps.skip("overprovisioning_factor", "Sightline has one priority and shifts no traffic between priorities")
		ps.skip("drop_overloads", "Sightline drops no requests by category")
		ps.skip("endpoint_stale_after", "Sightline keeps endpoints until the next assignment")
		ps.skip("weighted_priority_health", "Sightline has one priority")
		ps.done()
	}
	s.carry("named_endpoints")
	lowest := uint32(0)
	for j, le := range cla.GetEndpoints() {
		if j == 0 || le.GetPriority() < lowest {
			lowest = le.GetPriority()
		}
	}
	var eps []any
	s.carry("endpoints")
	for j, le := range cla.GetEndpoints() {
		ls := s.elem("endpoints", j, le, nil)
		if le.GetPriority() != lowest {
			ls.skipAll(fmt.Sprintf("Sightline has one priority; the hosts of priority %d get traffic only when those of priority %d are unhealthy in Envoy", le.GetPriority(), lowest))
			continue
		}
		ls.carry("priority")
		zone := ""
		if loc := le.GetLocality(); loc != nil {
			lcs := ls.sub("locality", loc, nil)
			zone = loc.GetZone()
			lcs.carry("zone")
			lcs.skip("region", "Sightline's zone-aware routing compares zones only")
			lcs.skip("sub_zone", "Sightline's zone-aware routing compares zones only")
			lcs.done()
		}
		ls.skip("load_balancing_weight", "Sightline weighs hosts, not localities")
		ls.skip("metadata", "metadata is read by Envoy filters Sightline does not have")
		ls.skip("proximity", "Sightline has no locality proximity")
		ls.unsafe("leds_cluster_locality_config", "Sightline has no LEDS")
		ls.carry("lb_endpoints")
		for k, lbe := range le.GetLbEndpoints() {
			if e := t.lbEndpoint(ls.elem("lb_endpoints", k, lbe, nil), lbe, zone, dns); e != nil {
				eps = append(eps, e)
			}
		}
		ls.done()
	}
	if len(eps) == 0 {
		s.fail("endpoints", "a cluster needs at least one endpoint Sightline can carry")
		return
	}
	o.set("endpoints", eps)
}

// lbEndpoint translates one host.
func (t *translator) lbEndpoint(s *scope, lbe *endpointv3.LbEndpoint, zone string, dns bool) *obj {
	defer s.done()
	ep := lbe.GetEndpoint()
	if ep == nil {
		s.fail("host_identifier", "only endpoint hosts are supported (no named endpoints)")
		return nil
	}
	es := s.sub("endpoint", ep, nil)
	defer es.done()
	if ep.GetAddress() == nil {
		es.fail("address", "an endpoint needs an address")
		return nil
	}
	addr, ok := es.socketAddress("address", ep.GetAddress())
	if !ok {
		return nil
	}
	host, _, _ := net.SplitHostPort(addr)
	if !dns && net.ParseIP(host) == nil {
		es.fail("address", "a STATIC or EDS host must be an IP address, got %q", host)
		return nil
	}
	e := &obj{flow: true}
	e.set("address", addr)
	if zone != "" {
		e.set("zone", zone)
	}
	es.skip("hostname", "Sightline names hosts by address")
	es.skip("additional_addresses", "Sightline connects to a host's one address")
	if hc := ep.GetHealthCheckConfig(); hc != nil {
		if proto.Size(hc) > 0 {
			es.unsafe("health_check_config", "Sightline health-checks a host on its own address and port")
		} else {
			es.carry("health_check_config")
		}
	}
	if w := lbe.GetLoadBalancingWeight(); w != nil && w.GetValue() != 1 {
		e.set("weight", int64(w.GetValue()))
	}
	s.carry("load_balancing_weight")
	switch lbe.GetHealthStatus() {
	case corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY:
		s.carry("health_status")
	default:
		// An EDS health status marks a host Envoy sends no traffic to
		// (unhealthy, draining, timeout): the host is left out.
		s.carry("health_status")
		return nil
	}
	s.skip("metadata", "metadata is read by Envoy filters Sightline does not have")
	return e
}

// commonLB translates common_lb_config.
func (t *translator) commonLB(s *scope, cl *clusterv3.Cluster_CommonLbConfig, o *obj) {
	defer s.done()
	if p := cl.GetHealthyPanicThreshold(); p != nil {
		o.set("panic_threshold", p.GetValue())
	}
	s.carry("healthy_panic_threshold")
	if z := cl.GetZoneAwareLbConfig(); z != nil {
		zs := s.sub("zone_aware_lb_config", z, nil)
		za := o.child("zone_aware")
		za.flow = true
		rp := 100.0
		if r := z.GetRoutingEnabled(); r != nil {
			rp = r.GetValue()
		}
		za.set("enabled", rp > 0)
		if rp > 0 && rp < 100 {
			t.skip(zs.at("routing_enabled"), "routing_enabled", "Sightline routes by zone for every request or none; enabled", o)
		}
		zs.carry("routing_enabled")
		// Envoy's default min_cluster_size is 6, as Sightline's.
		if m := z.GetMinClusterSize(); m != nil {
			za.set("min_cluster_size", int64(m.GetValue()))
		}
		zs.carry("min_cluster_size")
		zs.skip("fail_traffic_on_panic", "Sightline uses every host in panic")
		zs.skip("force_locality_direct_routing", "Sightline has no such setting")
		zs.skip("force_local_zone", "Sightline has no such setting")
		zs.skip("locality_basis", "Sightline weighs zones by their healthy hosts")
		zs.done()
	} else {
		s.carry("zone_aware_lb_config")
	}
	s.skip("locality_weighted_lb_config", "Sightline weighs hosts, not localities")
	s.skip("update_merge_window", "Sightline applies host changes at once")
	s.skip("ignore_new_hosts_until_first_hc", "Sightline sends traffic to a new host until its first health check fails")
	s.skip("close_connections_on_host_set_change", "Sightline keeps connections to hosts that remain")
	s.skip("consistent_hashing_lb_config", "Sightline hashes by the route's hash_policy with its own defaults")
	s.skip("override_host_status", "Sightline has no host override")
}

// circuitBreakers translates the DEFAULT priority's thresholds (Envoy's
// defaults, 1024/1024/1024/3, are Sightline's).
func (t *translator) circuitBreakers(s *scope, cb *clusterv3.CircuitBreakers, o *obj) {
	defer s.done()
	s.carry("thresholds")
	for j, th := range cb.GetThresholds() {
		ts := s.elem("thresholds", j, th, nil)
		if th.GetPriority() != corev3.RoutingPriority_DEFAULT {
			ts.skipAll("Sightline has one routing priority; the HIGH thresholds apply to no request")
			continue
		}
		ts.carry("priority")
		b := o.child("circuit_breakers")
		b.flow = true
		for _, f := range []struct {
			name string
			v    interface{ GetValue() uint32 }
		}{
			{"max_connections", th.GetMaxConnections()},
			{"max_pending_requests", th.GetMaxPendingRequests()},
			{"max_requests", th.GetMaxRequests()},
			{"max_retries", th.GetMaxRetries()},
			{"max_connection_pools", th.GetMaxConnectionPools()},
		} {
			if ts.has(f.name) {
				b.set(f.name, int64(f.v.GetValue()))
			}
			ts.carry(f.name)
		}
		ts.skip("track_remaining", "Sightline always keeps the remaining gauges")
		ts.unsafe("retry_budget", "Sightline limits concurrent retries by max_retries only; the budget would allow other numbers of retries")
		ts.done()
	}
	s.skip("per_host_thresholds", "Sightline has no per-host breakers")
}

// outlierDetection translates consecutive-5xx ejection, carrying
// Envoy's values (its defaults are Sightline's).
func (t *translator) outlierDetection(s *scope, od *clusterv3.OutlierDetection, o *obj) {
	defer s.done()
	out := o.child("outlier_detection")
	out.keep = true
	out.flow = true
	if v := od.GetConsecutive_5Xx(); v != nil {
		out.set("consecutive_5xx", int64(v.GetValue()))
	}
	s.carry("consecutive_5xx")
	if d := od.GetInterval(); d != nil {
		out.set("interval", d.AsDuration())
	}
	s.carry("interval")
	if d := od.GetBaseEjectionTime(); d != nil {
		out.set("base_ejection_time", d.AsDuration())
	}
	s.carry("base_ejection_time")
	if v := od.GetMaxEjectionPercent(); v != nil {
		out.set("max_ejection_percent", int64(v.GetValue()))
	}
	s.carry("max_ejection_percent")
	if v := od.GetSuccessfulActiveHealthCheckUnejectHost(); v != nil {
		out.set("successful_active_health_check_uneject_host", v.GetValue())
	}
	s.carry("successful_active_health_check_uneject_host")
	// Sightline writes the outlier event log where Envoy's bootstrap
	// names it (cluster_manager.outlier_detection.event_log_path), which
	// an import carries onto every cluster with outlier detection.
	if t.outlierLog != "" {
		out.set("event_log_path", t.outlierLog)
	}
	if v := od.GetEnforcingConsecutive_5Xx(); v != nil && v.GetValue() != 100 {
		s.skip("enforcing_consecutive_5xx", "Sightline always ejects on consecutive 5xx (100%)")
	} else {
		s.carry("enforcing_consecutive_5xx")
	}
	for _, f := range []string{"consecutive_gateway_failure", "enforcing_consecutive_gateway_failure", "consecutive_local_origin_failure",
		"enforcing_consecutive_local_origin_failure", "split_external_local_origin_errors"} {
		s.skip(f, "Sightline counts consecutive 5xx and connection failures together (consecutive_5xx)")
	}
	for _, f := range []string{"success_rate_minimum_hosts", "success_rate_request_volume", "success_rate_stdev_factor",
		"enforcing_success_rate", "enforcing_local_origin_success_rate", "failure_percentage_threshold",
		"enforcing_failure_percentage", "enforcing_failure_percentage_local_origin", "failure_percentage_minimum_hosts",
		"failure_percentage_request_volume"} {
		s.skip(f, "Sightline ejects on consecutive 5xx only, not on success rate or failure percentage")
	}
	s.skip("max_ejection_time", "Sightline's ejection time grows with each ejection without a cap")
	s.skip("max_ejection_time_jitter", "Sightline ejects for exactly its ejection time")
	s.skip("always_eject_one_host", "Sightline keeps max_ejection_percent")
	s.skip("monitor", "Sightline has no outlier monitors")
	s.skip("detect_degraded_hosts", "Sightline has no degraded hosts")
}

// healthCheck translates a cluster's active health check.
func (t *translator) healthCheck(s *scope, hc *corev3.HealthCheck, o *obj) {
	defer s.done()
	h := o.child("health_check")
	switch {
	case hc.GetHttpHealthCheck() != nil:
		hh := hc.GetHttpHealthCheck()
		hs := s.sub("http_health_check", hh, nil)
		x := h.child("http")
		x.flow = true
		x.set("path", hh.GetPath())
		hs.carry("path")
		if rs := hh.GetExpectedStatuses(); len(rs) > 0 {
			if codes, ok := statusRanges(rs); ok {
				x.set("expected_statuses", codes)
				hs.carry("expected_statuses")
			} else {
				hs.skip("expected_statuses", "Sightline lists the statuses one by one; a range this wide is not carried, 200 only is expected")
			}
		}
		if rs := hh.GetRetriableStatuses(); len(rs) > 0 {
			if codes, ok := statusRanges(rs); ok {
				x.set("retriable_statuses", codes)
				hs.carry("retriable_statuses")
			} else {
				hs.skip("retriable_statuses", "Sightline lists the statuses one by one; a range this wide is not carried")
			}
		}
		hs.skip("host", "Sightline's HTTP health checks send the cluster's name as the host, as Envoy does without host")
		hs.skip("request_headers_to_add", "Sightline's health checks send no extra headers")
		hs.skip("request_headers_to_remove", "Sightline's health checks send no extra headers")
		hs.skip("codec_client_type", "Sightline's HTTP health checks use the cluster's protocol")
		hs.skip("service_name_matcher", "Sightline does not check x-envoy-upstream-healthchecked-cluster")
		hs.skip("send", "Sightline's HTTP health checks send GET with no body")
		hs.skip("receive", "Sightline's HTTP health checks judge by status only")
		hs.skip("response_buffer_size", "Sightline's HTTP health checks judge by status only")
		hs.skip("method", "Sightline's HTTP health checks send GET")
		hs.done()
	case hc.GetGrpcHealthCheck() != nil:
		gh := hc.GetGrpcHealthCheck()
		gs := s.sub("grpc_health_check", gh, nil)
		x := h.child("grpc")
		x.flow = true
		x.keep = true
		if gh.GetServiceName() != "" {
			x.set("service_name", gh.GetServiceName())
		}
		gs.carry("service_name")
		gs.skip("authority", "Sightline's gRPC health checks send the cluster's name as :authority")
		gs.skip("initial_metadata", "Sightline's gRPC health checks send no extra metadata")
		gs.done()
	case hc.GetTcpHealthCheck() != nil:
		th := hc.GetTcpHealthCheck()
		ts := s.sub("tcp_health_check", th, nil)
		x := h.child("tcp")
		x.keep = true
		if th.GetSend() != nil || len(th.GetReceive()) > 0 {
			ts.skip("send", "Sightline's TCP health check connects only; no payload is sent or matched")
			ts.skip("receive", "Sightline's TCP health check connects only; no payload is sent or matched")
		}
		ts.skip("proxy_protocol_config", "Sightline sends no PROXY protocol header")
		ts.done()
	default:
		s.fail("health_checker", "Sightline has HTTP, gRPC and TCP health checks only")
		o.set("health_check", nil)
		return
	}
	if d := hc.GetInterval(); d != nil {
		h.set("interval", d.AsDuration())
	}
	if d := hc.GetIntervalJitter(); d != nil {
		h.set("interval_jitter", d.AsDuration())
	}
	if d := hc.GetTimeout(); d != nil {
		h.set("timeout", d.AsDuration())
	}
	if v := hc.GetHealthyThreshold(); v != nil {
		h.set("healthy_threshold", int64(v.GetValue()))
	}
	if v := hc.GetUnhealthyThreshold(); v != nil {
		h.set("unhealthy_threshold", int64(v.GetValue()))
	}
	if d := hc.GetNoTrafficInterval(); d != nil {
		h.set("no_traffic_interval", d.AsDuration())
	}
	if d := hc.GetNoTrafficHealthyInterval(); d != nil {
		h.set("no_traffic_healthy_interval", d.AsDuration())
	}
	s.carry("interval", "interval_jitter", "timeout", "healthy_threshold", "unhealthy_threshold", "no_traffic_interval", "no_traffic_healthy_interval")
	if p := hc.GetEventLogPath(); p != "" {
		h.set("event_log_path", p)
	}
	s.carry("event_log_path")
	s.skip("event_logger", "Sightline writes health check events to event_log_path only")
	s.skip("interval_jitter_percent", "Sightline jitters by interval_jitter")
	s.skip("initial_jitter", "Sightline jitters by interval_jitter")
	s.skip("unhealthy_interval", "Sightline checks at interval whatever the host's state")
	s.skip("unhealthy_edge_interval", "Sightline checks at interval whatever the host's state")
	s.skip("healthy_edge_interval", "Sightline checks at interval whatever the host's state")
	s.skip("always_log_health_check_failures", "Sightline logs the transitions of a host")
	s.skip("always_log_health_check_success", "Sightline logs the transitions of a host")
	s.skip("reuse_connection", "Sightline reuses health check connections, Envoy's default")
	s.skip("alt_port", "Sightline checks a host on its own port")
	s.skip("event_service", "Sightline writes health check events to event_log_path only")
	s.skip("tls_options", "Sightline's health checks use the cluster's TLS")
	s.skip("transport_socket_match_criteria", "Sightline's health checks use the cluster's TLS")
}

// statusRanges lists the codes of Envoy's [start, end) status ranges;
// false when they hold more than a short list should.
func statusRanges(rs []*typev3.Int64Range) ([]any, bool) {
	var out []any
	for _, r := range rs {
		for c := r.GetStart(); c < r.GetEnd(); c++ {
			if c < 100 || c > 599 || len(out) >= 100 {
				return nil, false
			}
			out = append(out, c)
		}
	}
	return out, len(out) > 0
}

// upstreamHTTP2 translates a cluster's HTTP/2 options.
func (t *translator) upstreamHTTP2(s *scope, p *corev3.Http2ProtocolOptions, o *obj) {
	defer s.done()
	if n := p.GetMaxConcurrentStreams(); n != nil {
		o.set("max_concurrent_streams", int64(n.GetValue()))
	}
	s.carry("max_concurrent_streams")
	if ka := p.GetConnectionKeepalive(); ka != nil {
		ks := s.sub("connection_keepalive", ka, nil)
		if d := ka.GetInterval(); d != nil {
			o.set("keepalive_interval", d.AsDuration())
		}
		if d := ka.GetTimeout(); d != nil {
			o.set("keepalive_timeout", d.AsDuration())
		}
		ks.carry("interval", "timeout")
		ks.skip("interval_jitter", "Sightline pings at exactly keepalive_interval")
		ks.skip("connection_idle_interval", "Sightline pings at keepalive_interval only")
		ks.done()
	} else {
		// Envoy sends no keepalive PING without connection_keepalive;
		// Sightline's default does, which only detects dead connections
		// sooner.
		s.carry("connection_keepalive")
	}
	http2Skips(s)
}

// upstreamCommon translates a cluster's common HTTP protocol options.
func (t *translator) upstreamCommon(s *scope, p *corev3.HttpProtocolOptions, o *obj) {
	defer s.done()
	if d := p.GetIdleTimeout(); d != nil {
		o.set("idle_timeout", d.AsDuration())
	}
	s.carry("idle_timeout")
	if n := p.GetMaxRequestsPerConnection(); n != nil {
		o.set("max_requests_per_connection", int64(n.GetValue()))
	}
	s.carry("max_requests_per_connection")
	s.skip("max_connection_duration", "Sightline closes upstream connections when idle or after max_requests_per_connection")
	s.skip("max_headers_count", "Sightline bounds response headers by size")
	s.skip("max_response_headers_kb", "Sightline bounds response headers by size")
	s.skip("max_stream_duration", "Sightline bounds requests by their route's timeout")
	s.skip("headers_with_underscores_action", "Sightline passes headers with underscores in their names")
}

// upstreamHTTPOptions notes the upstream HTTP options Sightline does its
// own way.
func (t *translator) upstreamHTTPOptions(s *scope, p *corev3.UpstreamHttpProtocolOptions) {
	defer s.done()
	s.skip("auto_sni", "Sightline sends the cluster's tls.sni, not the request's host")
	s.skip("auto_san_validation", "Sightline checks the upstream certificate against tls.sni")
	s.skip("override_auto_sni_header", "Sightline sends the cluster's tls.sni")
}

// httpProtocolOptions translates the typed HttpProtocolOptions of a
// cluster.
func (t *translator) httpProtocolOptions(s *scope, p *upstreamhttpv3.HttpProtocolOptions, o *obj) {
	defer s.done()
	if c := p.GetCommonHttpProtocolOptions(); c != nil {
		t.upstreamCommon(s.sub("common_http_protocol_options", c, nil), c, o)
	}
	if u := p.GetUpstreamHttpProtocolOptions(); u != nil {
		t.upstreamHTTPOptions(s.sub("upstream_http_protocol_options", u, nil), u)
	}
	switch {
	case p.GetExplicitHttpConfig() != nil:
		e := p.GetExplicitHttpConfig()
		es := s.sub("explicit_http_config", e, nil)
		switch {
		case e.GetHttp2ProtocolOptions() != nil:
			o.set("protocol", "http2")
			t.upstreamHTTP2(es.sub("http2_protocol_options", e.GetHttp2ProtocolOptions(), nil), e.GetHttp2ProtocolOptions(), o)
		case e.GetHttpProtocolOptions() != nil:
			o.set("protocol", "http1")
			es.sub("http_protocol_options", e.GetHttpProtocolOptions(), nil).skipAll("Sightline's HTTP/1.1 client has no such options")
		case e.GetHttp3ProtocolOptions() != nil:
			es.fail("http3_protocol_options", "HTTP/3 upstreams are not supported")
		}
		es.done()
	case p.GetUseDownstreamProtocolConfig() != nil:
		d := p.GetUseDownstreamProtocolConfig()
		ds := s.sub("use_downstream_protocol_config", d, nil)
		o.set("protocol", "auto")
		if h2 := d.GetHttp2ProtocolOptions(); h2 != nil {
			t.upstreamHTTP2(ds.sub("http2_protocol_options", h2, nil), h2, o)
		}
		ds.skip("http_protocol_options", "Sightline's HTTP/1.1 client has no such options")
		ds.skip("http3_protocol_options", "Sightline has no HTTP/3")
		ds.done()
	case p.GetAutoConfig() != nil:
		a := p.GetAutoConfig()
		as := s.sub("auto_config", a, nil)
		// ALPN picks HTTP/2 or HTTP/1.1 over TLS; without TLS Envoy's
		// auto speaks HTTP/1.1.
		as.skip("http3_protocol_options", "Sightline has no HTTP/3")
		as.skip("alternate_protocols_cache_options", "Sightline has no HTTP/3")
		if h2 := a.GetHttp2ProtocolOptions(); h2 != nil {
			t.upstreamHTTP2(as.sub("http2_protocol_options", h2, nil), h2, o)
		}
		as.skip("http_protocol_options", "Sightline's HTTP/1.1 client has no such options")
		if o.get("tls") != nil {
			o.set("protocol", "http2")
		} else {
			o.set("protocol", "http1")
		}
		as.done()
	}
	s.unsafe("http_filters", "Sightline runs no upstream HTTP filters")
	s.skip("header_validation_config", "Sightline validates headers by HTTP's rules")
	s.skip("outlier_detection", "Sightline counts 5xx responses for outlier detection")
	s.skip("request_mirror_policies", "Sightline mirrors by route only")
	s.skip("hash_policy", "Sightline hashes by the route's hash_policy")
	s.skip("retry_policy", "Sightline retries by the route's retry_policy")
}
