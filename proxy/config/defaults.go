package config

import (
	"strings"
	"time"
)

// Every default lives here, each with why it is what it is. Load applies
// them after validation, to fields left at their zero value (or nil, for
// pointers), so the rest of the proxy never has to know that a field could
// be unset.
const (
	// defaultAdminAddress is loopback only: the admin server can drain the
	// proxy and fail its readiness, so it is never reachable from the
	// network unless the user writes an address that is.
	defaultAdminAddress = "127.0.0.1:9901"

	// defaultDrainTime is how long /ready fails while listeners still
	// accept, after SIGTERM: long enough for a load balancer polling every
	// few seconds to notice and stop sending new connections.
	defaultDrainTime = Duration(5 * time.Second)
	// defaultDrainTimeout bounds how long in-flight calls get after GOAWAY:
	// most RPCs finish well within it, and orchestrators' usual grace
	// period (Kubernetes' 30s) still covers drain time plus this.
	defaultDrainTimeout = Duration(10 * time.Second)

	// defaultStatsFlushInterval pushes stats every second, the resolution
	// statsd dashboards usually plot at, for one small batch per sink per
	// second.
	defaultStatsFlushInterval = Duration(time.Second)
	// defaultMaxGRPCMethods bounds per-method gRPC stats per cluster: far
	// more methods than real services have, yet a client inventing method
	// names cannot grow memory without end.
	defaultMaxGRPCMethods = 1000
	// defaultStatsCompactAfter compacts a cluster's stats families five
	// flushes (at the default interval) after their last change: a
	// cluster that went quiet gives back its stats' memory within
	// seconds, and one that keeps serving, even one call every few
	// seconds, is never compacted.
	defaultStatsCompactAfter = Duration(5 * time.Second)
	// defaultAccessLogOTLPTimeout bounds one export of access-log lines to
	// a collector, as the OpenTelemetry exporters' default does.
	defaultAccessLogOTLPTimeout = Duration(10 * time.Second)

	// defaultPrometheusNamespace prefixes every Prometheus family, as the
	// contract's family names (sightline_cluster_…) show.
	defaultPrometheusNamespace = "sightline"
	// defaultStatsdProtocol is UDP, statsd's native transport: a slow or
	// absent agent never slows the proxy down.
	defaultStatsdProtocol = "udp"
	// defaultStatsdTags is "none", plain statsd, which every agent reads;
	// DogStatsD tags are opt-in.
	defaultStatsdTags = "none"
	// defaultStatsdHistogramType is a timer (|ms), what Envoy's statsd
	// and DogStatsD sinks send for every duration histogram.
	defaultStatsdHistogramType = "ms"
	// defaultStatsdHistograms sends every sample, as Envoy does: the
	// agent's mean and percentiles are then exact, not bucket midpoints.
	defaultStatsdHistograms = "samples"
	// defaultOTLPProtocol is gRPC, the OTLP transport every collector
	// serves on its default port 4317.
	defaultOTLPProtocol = "grpc"

	// defaultTracingSampling keeps every new trace once an OTLP exporter is
	// configured: whoever sets up a collector wants to see traces, and can
	// lower it under load. Without an exporter it stays 0: nothing to keep.
	defaultTracingSampling = 100.0
	// defaultServiceName names the proxy's spans.
	defaultServiceName = "sightline"

	// defaultMaxConcurrentStreams caps HTTP/2 streams per downstream
	// connection; 1024 leaves room for busy gRPC channels while bounding
	// what one client can pin.
	defaultMaxConcurrentStreams = 1024
	// defaultMaxHeaderBytes is 64 KiB, above any sane header block and
	// well below net/http's 1 MiB, to bound memory per request.
	defaultMaxHeaderBytes = 64 << 10
	// defaultIdleTimeout closes downstream connections idle for 5 minutes,
	// longer than typical client keepalives, so clients close first.
	defaultIdleTimeout = Duration(5 * time.Minute)
	// defaultStreamIdleTimeout is Envoy's stream_idle_timeout: a request
	// with no activity either way for 5 minutes is ended.
	defaultStreamIdleTimeout = Duration(5 * time.Minute)
	// defaultMaxBufferedBytes and defaultOverloadRefresh are the overload
	// manager's (proxy/overload): a 64 MiB budget for buffered DATA,
	// read every 100 ms.
	defaultMaxBufferedBytes = 64 << 20
	defaultOverloadRefresh  = Duration(100 * time.Millisecond)
	// defaultHeaderReadTimeout bounds how long a client may take to send
	// request headers, against slowloris-style attacks.
	defaultHeaderReadTimeout = Duration(10 * time.Second)

	// defaultAccessLogFlushInterval bounds how old a buffered access-log
	// entry can be when written: batched writes, still near real time.
	defaultAccessLogFlushInterval = Duration(time.Second)
	// defaultAccessLogBufferBytes batches a couple of hundred typical
	// entries per write, a few syscalls a second even under heavy load.
	defaultAccessLogBufferBytes = 64 << 10
	// defaultAccessLogSamplePercent logs every request the filter passes.
	defaultAccessLogSamplePercent = 100.0

	// defaultBackoffBase and defaultBackoffMax are Envoy's retry back-off:
	// 25ms jittered, doubling up to 250ms, so retries spread out without
	// adding much latency.
	defaultBackoffBase = Duration(25 * time.Millisecond)
	defaultBackoffMax  = Duration(250 * time.Millisecond)

	// defaultInitialFetchTimeout is Envoy's initial_fetch_timeout: a
	// control plane that has not sent the first full set of resources in
	// 15s does not hold the proxy's readiness back any longer.
	defaultInitialFetchTimeout = Duration(15 * time.Second)
	// defaultADSBackOffBase and defaultADSBackOffMax are Envoy's xDS
	// reconnect back-off: 500ms, doubling up to 30s, fully jittered, so
	// that a fleet whose control plane restarts does not reconnect all at
	// once.
	defaultADSBackOffBase = Duration(500 * time.Millisecond)
	defaultADSBackOffMax  = Duration(30 * time.Second)

	// defaultClusterType is static: endpoints are IP addresses, resolved
	// once, the simplest and most common case.
	defaultClusterType = "static"
	// defaultUpstreamProtocol is HTTP/2, since Sightline is built for gRPC.
	defaultUpstreamProtocol = "http2"
	// defaultConnectTimeout fails an upstream connect after 1s: a healthy
	// host on a LAN answers in milliseconds, and a retry elsewhere beats
	// waiting out a dead one.
	defaultConnectTimeout = Duration(time.Second)
	// defaultKeepaliveInterval and defaultKeepaliveTimeout: an upstream
	// HTTP/2 connection that read nothing for 30s sends a PING and closes
	// when its ACK has not come 15s later. Envoy sends no keepalive
	// unless asked; a proxy whose upstreams sit behind NATs and load
	// balancers should find dead connections before a request does.
	defaultKeepaliveInterval = Duration(30 * time.Second)
	defaultKeepaliveTimeout  = Duration(15 * time.Second)
	// defaultLBPolicy is round robin: fair, stateless and predictable.
	defaultLBPolicy = "round_robin"
	// defaultDNSRefreshRate re-resolves strict_dns names every 5s, Envoy's
	// default, so new hosts get traffic soon without hammering DNS.
	defaultDNSRefreshRate = Duration(5 * time.Second)
	// defaultEndpointWeight is 1: unweighted endpoints share equally.
	defaultEndpointWeight uint32 = 1
	// defaultPanicThreshold is Envoy's 50%: below half the hosts healthy,
	// health is probably what is broken, so all hosts are used.
	defaultPanicThreshold = 50.0
	// defaultZoneMinClusterSize is Envoy's 6: below it, zone-aware routing
	// would put too much load on too few local hosts.
	defaultZoneMinClusterSize = 6

	// Circuit breakers are Envoy's defaults: 1024 connections, pending and
	// active requests are far above one healthy cluster's needs, and 3
	// concurrent retries stop retry storms.
	defaultMaxConnections     = 1024
	defaultMaxPendingRequests = 1024
	defaultMaxRequests        = 1024
	defaultMaxRetries         = 3

	// defaultHealthCheckInterval probes every 5s: a dead host is found in
	// about 15s (three failures) at a negligible probe load.
	defaultHealthCheckInterval = Duration(5 * time.Second)
	// defaultHealthCheckTimeout fails a probe after 1s; a healthy host
	// answers a health check in milliseconds.
	defaultHealthCheckTimeout = Duration(time.Second)
	// defaultHealthyThreshold needs two good probes to bring a host back,
	// so that a flapping host is not put back on one lucky answer.
	defaultHealthyThreshold = 2
	// defaultUnhealthyThreshold needs three failed probes to take a host
	// out, so that one lost packet does not.
	defaultUnhealthyThreshold = 3
	// defaultNoTrafficInterval is Envoy's: a cluster no request was routed
	// to yet is checked once a minute, which keeps its hosts' health
	// roughly known without probing idle clusters every interval.
	defaultNoTrafficInterval = Duration(60 * time.Second)

	// Outlier detection is Envoy's defaults: eject after 5 consecutive
	// 5xx, check every 10s, eject for 30s (times the ejection count), and
	// never more than 10% of a cluster, so that detection cannot empty it.
	defaultConsecutive5xx     = 5
	defaultOutlierInterval    = Duration(10 * time.Second)
	defaultBaseEjectionTime   = Duration(30 * time.Second)
	defaultMaxEjectionPercent = 10
)

// defaultPropagation reads and writes W3C trace context and baggage, the
// standard every OpenTelemetry SDK speaks; B3 is for those who ask.
func defaultPropagation() []string { return []string{"tracecontext", "baggage"} }

// defaultProtocols serves HTTP/2 and HTTP/1.1 on every listener: h2c in
// plaintext (gRPC clients speak it without upgrade), h2 by ALPN with tls.
func defaultProtocols(tls bool) []string {
	if tls {
		return []string{"h2", "http1"}
	}
	return []string{"h2c", "http1"}
}

// applyDefaults fills every unset field of a valid config.
func (c *Config) applyDefaults() {
	setDefault(&c.Admin.Address, defaultAdminAddress)
	setDefault(&c.Server.DrainTime, defaultDrainTime)
	setDefault(&c.Server.DrainTimeout, defaultDrainTimeout)
	setDefault(&c.Overload.MaxBufferedBytes, defaultMaxBufferedBytes)
	setDefault(&c.Overload.RefreshInterval, defaultOverloadRefresh)
	setDefault(&c.Overload.Actions.ResetHighMemoryStream, 0.80)
	setDefault(&c.Overload.Actions.StopAcceptingRequests, 0.95)
	setDefault(&c.Overload.Actions.StopAcceptingConnections, 0.95)

	setDefault(&c.Stats.FlushInterval, defaultStatsFlushInterval)
	if c.Stats.CompactAfter == nil {
		c.Stats.CompactAfter = ptr(defaultStatsCompactAfter)
	}
	setDefault(&c.Stats.MaxGRPCMethodsPerCluster, defaultMaxGRPCMethods)
	setDefault(&c.Stats.Prometheus.Namespace, defaultPrometheusNamespace)
	setDefault(&c.Stats.Prometheus.Naming, PrometheusNamingSightline)
	if c.Stats.Prometheus.Naming == PrometheusNamingEnvoy {
		setDefault(&c.Stats.Prometheus.Units, PrometheusUnitsMs)
	}
	setDefault(&c.Stats.Prometheus.Units, PrometheusUnitsBase)
	for i := range c.Stats.Sinks {
		if s := c.Stats.Sinks[i].Statsd; s != nil {
			setDefault(&s.Protocol, defaultStatsdProtocol)
			setDefault(&s.Tags, defaultStatsdTags)
			setDefault(&s.HistogramType, defaultStatsdHistogramType)
			setDefault(&s.Histograms, defaultStatsdHistograms)
		}
		if o := c.Stats.Sinks[i].OTLP; o != nil {
			setDefault(&o.Protocol, defaultOTLPProtocol)
		}
	}

	t := &c.Tracing
	if t.OTLP != nil {
		setDefault(&t.Sampling, defaultTracingSampling)
		setDefault(&t.OTLP.Protocol, defaultOTLPProtocol)
	}
	if len(t.Propagation) == 0 {
		t.Propagation = defaultPropagation()
	}
	setDefault(&t.ServiceName, defaultServiceName)

	for i := range c.Listeners {
		c.Listeners[i].applyDefaults()
	}
	for i := range c.Clusters {
		c.Clusters[i].applyDefaults()
	}
	if d := c.Dynamic; d != nil {
		d.applyDefaults()
	}
}

func (d *Dynamic) applyDefaults() {
	if len(d.Resources) == 0 {
		d.Resources = []string{DynamicListeners, DynamicClusters}
	}
	if d.ADS.InitialFetchTimeout == nil {
		d.ADS.InitialFetchTimeout = ptr(defaultInitialFetchTimeout)
	}
	b := &d.ADS.RetryBackOff
	setDefault(&b.BaseInterval, defaultADSBackOffBase)
	setDefault(&b.MaxInterval, max(defaultADSBackOffMax, b.BaseInterval))
}

func (l *Listener) applyDefaults() {
	// The listener name is already unique and stable: the natural stat
	// prefix when none is given.
	setDefault(&l.StatPrefix, l.Name)
	if len(l.Protocols) == 0 {
		l.Protocols = defaultProtocols(l.TLS != nil)
	}
	// Request IDs are on by default: every hop can then be found in the
	// access logs and traces by one id.
	for _, b := range []**bool{&l.RequestID.Generate, &l.RequestID.PreserveExternal, &l.RequestID.SetInResponse} {
		if *b == nil {
			*b = ptr(true)
		}
	}
	setDefault(&l.Limits.MaxConcurrentStreams, defaultMaxConcurrentStreams)
	setDefault(&l.Limits.MaxHeaderBytes, defaultMaxHeaderBytes)
	setDefault(&l.Limits.IdleTimeout, defaultIdleTimeout)
	setDefault(&l.Limits.HeaderReadTimeout, defaultHeaderReadTimeout)
	if l.Limits.StreamIdleTimeout == nil {
		l.Limits.StreamIdleTimeout = ptr(defaultStreamIdleTimeout)
	}
	for i := range l.AccessLog {
		a := &l.AccessLog[i]
		setDefault(&a.FlushInterval, defaultAccessLogFlushInterval)
		setDefault(&a.BufferBytes, defaultAccessLogBufferBytes)
		if o := a.OTLP; o != nil {
			setDefault(&o.Protocol, "grpc")
			setDefault(&o.Timeout, defaultAccessLogOTLPTimeout)
		}
		if a.Filter.SamplePercent == nil {
			a.Filter.SamplePercent = ptr(defaultAccessLogSamplePercent)
		}
	}
	for i := range l.Upgrades {
		if l.Upgrades[i].Enabled == nil {
			l.Upgrades[i].Enabled = ptr(true)
		}
	}
	if rl := l.RateLimit; rl != nil {
		rl.applyDefaults()
	}
	l.LocalRateLimit.applyDefaults(l.StatPrefix)
	for i := range l.VirtualHosts {
		vh := &l.VirtualHosts[i]
		vh.LocalRateLimit.applyDefaults(l.StatPrefix)
		rateLimitDefaults(vh.RateLimits)
		for j := range l.VirtualHosts[i].Routes {
			r := &l.VirtualHosts[i].Routes[j]
			r.LocalRateLimit.applyDefaults(l.StatPrefix)
			rateLimitDefaults(r.RateLimits)
			if rp := r.RetryPolicy; rp != nil {
				setDefault(&rp.NumRetries, 1) // Envoy's default
				setDefault(&rp.BackoffBase, defaultBackoffBase)
				setDefault(&rp.BackoffMax, defaultBackoffMax)
			}
			if m := r.Mirror; m != nil && m.Percent == nil {
				m.Percent = ptr(100.0)
			}
			r.Upgrades = inheritUpgrades(r.Upgrades, l.Upgrades)
			if r.IdleTimeout == nil {
				r.IdleTimeout = ptr(*l.Limits.StreamIdleTimeout)
			}
		}
	}
}

// Rate limit defaults: Envoy's, except that a local rate limit is enabled
// and enforced for every request unless told otherwise (Envoy leaves it
// off without filter_enabled), and gRPC clients get RESOURCE_EXHAUSTED.
const (
	defaultRateLimitStatus       = 429
	defaultRateLimitTimeout      = Duration(20 * time.Millisecond)
	defaultMaxDynamicDescriptors = 1024
)

// applyDefaults fills a local rate limit's unset fields; statPrefix is its
// listener's. A nil limit stays nil.
func (rl *LocalRateLimit) applyDefaults(statPrefix string) {
	if rl == nil {
		return
	}
	setDefault(&rl.StatPrefix, statPrefix)
	if tb := rl.TokenBucket; tb != nil {
		setDefault(&tb.TokensPerFill, 1)
	}
	for i := range rl.Descriptors {
		setDefault(&rl.Descriptors[i].TokenBucket.TokensPerFill, 1)
	}
	if rl.AlwaysConsumeDefaultTokenBucket == nil {
		rl.AlwaysConsumeDefaultTokenBucket = ptr(true)
	}
	if rl.FilterEnabled == nil {
		rl.FilterEnabled = ptr(100.0)
	}
	if rl.FilterEnforced == nil {
		rl.FilterEnforced = ptr(100.0)
	}
	setDefault(&rl.Status, defaultRateLimitStatus)
	if rl.RateLimitedAsResourceExhausted == nil {
		rl.RateLimitedAsResourceExhausted = ptr(true)
	}
	setDefault(&rl.EnableXRateLimitHeaders, XRateLimitOff)
	setDefault(&rl.MaxDynamicDescriptors, defaultMaxDynamicDescriptors)
}

func (rl *RateLimitService) applyDefaults() {
	setDefault(&rl.Timeout, defaultRateLimitTimeout)
	setDefault(&rl.Status, defaultRateLimitStatus)
	if rl.RateLimitedAsResourceExhausted == nil {
		rl.RateLimitedAsResourceExhausted = ptr(true)
	}
	setDefault(&rl.EnableXRateLimitHeaders, XRateLimitOff)
}

// rateLimitDefaults fills the actions' default descriptor keys, as Envoy
// names them.
func rateLimitDefaults(policies []RateLimitPolicy) {
	for i := range policies {
		for j := range policies[i].Actions {
			a := &policies[i].Actions[j]
			if g := a.GenericKey; g != nil {
				setDefault(&g.DescriptorKey, "generic_key")
			}
			if h := a.HeaderValueMatch; h != nil {
				setDefault(&h.DescriptorKey, "header_match")
				if h.ExpectMatch == nil {
					h.ExpectMatch = ptr(true)
				}
			}
		}
	}
}

// inheritUpgrades is a route's upgrades with enabled filled in and the
// listener's entries added for the types the route does not name: a
// route's entry overrides the listener's, either way, as in Envoy.
func inheritUpgrades(route, listener []Upgrade) []Upgrade {
	for i := range route {
		if route[i].Enabled == nil {
			route[i].Enabled = ptr(true)
		}
	}
	n := len(route)
	for _, lu := range listener {
		named := false
		for _, ru := range route[:n] {
			named = named || strings.EqualFold(ru.Type, lu.Type)
		}
		if !named {
			route = append(route, Upgrade{Type: lu.Type, Enabled: ptr(*lu.Enabled)})
		}
	}
	return route
}

func (c *Cluster) applyDefaults() {
	setDefault(&c.Type, defaultClusterType)
	setDefault(&c.Protocol, defaultUpstreamProtocol)
	setDefault(&c.ConnectTimeout, defaultConnectTimeout)
	setDefault(&c.LBPolicy, defaultLBPolicy)
	setDefault(&c.DNSRefreshRate, defaultDNSRefreshRate)
	for i := range c.Endpoints {
		setDefault(&c.Endpoints[i].Weight, defaultEndpointWeight)
	}
	if c.PanicThreshold == nil {
		c.PanicThreshold = ptr(defaultPanicThreshold)
	}
	setDefault(&c.ZoneAware.MinClusterSize, defaultZoneMinClusterSize)
	if c.KeepaliveInterval == nil {
		c.KeepaliveInterval = ptr(defaultKeepaliveInterval)
	}
	setDefault(&c.KeepaliveTimeout, defaultKeepaliveTimeout)

	cb := &c.CircuitBreakers
	setDefault(&cb.MaxConnections, defaultMaxConnections)
	setDefault(&cb.MaxPendingRequests, defaultMaxPendingRequests)
	setDefault(&cb.MaxRequests, defaultMaxRequests)
	setDefault(&cb.MaxRetries, defaultMaxRetries)
	// max_connection_pools stays 0: unlimited, Envoy's default.

	if hc := c.HealthCheck; hc != nil {
		setDefault(&hc.Interval, defaultHealthCheckInterval)
		setDefault(&hc.Timeout, defaultHealthCheckTimeout)
		setDefault(&hc.HealthyThreshold, defaultHealthyThreshold)
		setDefault(&hc.UnhealthyThreshold, defaultUnhealthyThreshold)
		setDefault(&hc.NoTrafficInterval, defaultNoTrafficInterval)
		// Envoy's default: the no-traffic interval whatever the health.
		setDefault(&hc.NoTrafficHealthyInterval, hc.NoTrafficInterval)
	}
	if od := c.OutlierDetection; od != nil {
		setDefault(&od.Consecutive5xx, defaultConsecutive5xx)
		setDefault(&od.Interval, defaultOutlierInterval)
		setDefault(&od.BaseEjectionTime, defaultBaseEjectionTime)
		setDefault(&od.MaxEjectionPercent, defaultMaxEjectionPercent)
		if od.SuccessfulActiveHealthCheckUnejectHost == nil {
			od.SuccessfulActiveHealthCheckUnejectHost = ptr(true) // Envoy's default
		}
	}
}

// setDefault sets *p to def when *p is the zero value. It writes nothing
// otherwise: a reload reuses clusters already defaulted, which the running
// config shares (see reuse.go).
func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

func ptr[T any](v T) *T { return &v }
