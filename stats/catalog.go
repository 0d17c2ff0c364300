package stats

import (
	"fmt"
	"slices"
	"strings"
)

// Tag keys: the label names of the Prometheus families, the OTLP attribute
// keys and the DogStatsD tag keys. Each is a part of a flat name too.
const (
	TagCluster       = "cluster_name"
	TagFromZone      = "from_zone"
	TagToZone        = "to_zone"
	TagResponseCode  = "response_code"
	TagResponseClass = "response_code_class"
	TagGRPCService   = "grpc_service"
	TagGRPCMethod    = "grpc_method"
	TagGRPCStatus    = "grpc_status"
	TagHTTPPrefix    = "http_conn_manager_prefix"
	TagListener      = "listener_address"
	TagAccessLog     = "accesslog_name"
	TagSink          = "sink_name"
	// TagLocalRateLimit is a local rate limit's stat_prefix, named as
	// Envoy's tag extractor names it (envoy.local_http_ratelimit_prefix).
	TagLocalRateLimit = "local_http_ratelimit_prefix"
)

// Kind is what a stat measures.
type Kind uint8

// The kinds of stat.
const (
	// KindCounter only goes up; push sinks get deltas (statsd) or the total
	// since start (OTLP, Prometheus).
	KindCounter Kind = iota + 1
	// KindGauge is a current value.
	KindGauge
	// KindHistogram is a distribution of durations; each sink shows it in
	// its unit (seconds in Prometheus and OTLP, milliseconds in statsd).
	KindHistogram
)

// String returns the Prometheus type name of k.
func (k Kind) String() string {
	switch k {
	case KindCounter:
		return "counter"
	case KindGauge:
		return "gauge"
	case KindHistogram:
		return "histogram"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Def declares one stat: its flat-name pattern, kind, unit and help. The
// tagged name, the tag keys and the Prometheus family name are derived from
// the pattern, so that every name a sink prints comes from this one
// declaration. A Def is immutable.
type Def struct {
	flat string // pattern: "cluster.{cluster_name}.upstream_rq_total"
	kind Kind
	unit string // UCUM, as OTLP wants it: "ms", "s", "By", or "" for a count
	help string
	// name overrides the tagged name when taking the tag parts out of the
	// pattern leaves something meaningless ("cluster.upstream_rq_").
	name string
	// prom overrides the Prometheus family (without namespace) where the
	// contract's rule would fail promtool's lint: a gauge ending in _total,
	// or a unit abbreviation in the name.
	prom string
	// promBase is prom with its unit in Prometheus' base unit and named
	// at the end, as Prometheus' conventions ask: histograms in seconds
	// (_seconds), sizes in _bytes.
	promBase string

	tags   []string // tag keys in pattern order
	pieces []piece
	idx    int // index in catalog: how compacted stats name it
}

// piece is a literal run of a pattern, or a tag placeholder when tag >= 0.
type piece struct {
	lit string
	tag int
}

// Flat returns the flat-name pattern, tag keys in braces.
func (d *Def) Flat() string { return d.flat }

// Kind returns what the stat measures.
func (d *Def) Kind() Kind { return d.kind }

// Unit returns the unit in UCUM ("ms", "s", "By"), or "" for a count.
func (d *Def) Unit() string { return d.unit }

// Help returns the one-sentence description sinks print.
func (d *Def) Help() string { return d.help }

// Name returns the tagged name: the flat pattern with the tag parts taken
// out ("cluster.upstream_rq_total"). It names the stat in tally, OTLP and
// DogStatsD.
func (d *Def) Name() string { return d.name }

// TagKeys returns the tag keys in pattern order; tag values are always
// given in this order. The slice must not be modified.
func (d *Def) TagKeys() []string { return d.tags }

// PrometheusName returns the family name under namespace: the tagged name
// with dots as underscores, the unit in Prometheus' base unit at the end
// (_seconds, _bytes), counters ending in _total. Histograms of such a
// family are shown in seconds.
func (d *Def) PrometheusName(namespace string) string {
	return prefixed(namespace, d.promBase)
}

// PrometheusMsName returns the family name as it is with units: ms: no
// unit suffix, histograms in milliseconds.
func (d *Def) PrometheusMsName(namespace string) string {
	return prefixed(namespace, d.prom)
}

// PrometheusUnit returns the base unit PrometheusName ends in ("seconds",
// "bytes"), or "" for a count: OpenMetrics' UNIT.
func (d *Def) PrometheusUnit() string {
	switch d.unit {
	case "ms", "s":
		return "seconds"
	case "By":
		return "bytes"
	}
	return ""
}

func prefixed(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "_" + name
}

// FlatName renders the flat name for tag values given in TagKeys order.
func (d *Def) FlatName(values []string) string {
	var b [128]byte
	return string(d.AppendFlatName(b[:0], values))
}

// AppendFlatName appends the flat name for tag values given in TagKeys
// order to b: a reader that keeps few of the names it makes (a filter)
// makes them all in one buffer.
func (d *Def) AppendFlatName(b []byte, values []string) []byte {
	for _, p := range d.pieces {
		if p.tag >= 0 {
			b = append(b, values[p.tag]...)
		} else {
			b = append(b, p.lit...)
		}
	}
	return b
}

// catalog lists every Def in declaration order; byName indexes it by tagged
// name for the sinks.
var (
	catalog []*Def
	byName  = map[string]*Def{}
)

// define compiles d, checks it against the rest of the catalog and adds it.
// A mistake here is a programming error, caught when the package loads.
func define(d Def) *Def {
	if err := d.compile(); err != nil {
		panic(fmt.Sprintf("stats: catalog entry %q: %v", d.flat, err))
	}
	if _, dup := byName[d.name]; dup {
		panic(fmt.Sprintf("stats: catalog entry %q: tagged name %q declared twice", d.flat, d.name))
	}
	for _, o := range catalog {
		if o.prom == d.prom || o.promBase == d.promBase {
			panic(fmt.Sprintf("stats: catalog entries %q and %q share Prometheus family %q", o.flat, d.flat, d.prom))
		}
	}
	p := &d
	p.idx = len(catalog)
	catalog = append(catalog, p)
	byName[d.name] = p
	return p
}

func (d *Def) compile() error {
	rest := d.flat
	var derived strings.Builder
	for rest != "" {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			d.pieces = append(d.pieces, piece{lit: rest, tag: -1})
			derived.WriteString(rest)
			break
		}
		if open > 0 {
			d.pieces = append(d.pieces, piece{lit: rest[:open], tag: -1})
			derived.WriteString(rest[:open])
		} else if len(d.pieces) > 0 {
			return fmt.Errorf("two tags with nothing between them")
		}
		end := strings.IndexByte(rest, '}')
		if end < open {
			return fmt.Errorf("unclosed tag")
		}
		key := rest[open+1 : end]
		if _, ok := tagValues[key]; !ok {
			return fmt.Errorf("unknown tag key %q", key)
		}
		if slices.Contains(d.tags, key) {
			return fmt.Errorf("tag key %q used twice", key)
		}
		d.pieces = append(d.pieces, piece{tag: len(d.tags)})
		d.tags = append(d.tags, key)
		rest = rest[end+1:]
	}
	if d.name == "" {
		// A tag that fills a whole segment goes with its dot; a tag inside
		// a segment ("upstream_rq_{response_code_class}xx") just goes.
		parts := strings.Split(derived.String(), ".")
		parts = slices.DeleteFunc(parts, func(s string) bool { return s == "" })
		d.name = strings.Join(parts, ".")
		if strings.HasSuffix(d.name, "_") || strings.Contains(d.name, "_.") {
			return fmt.Errorf("tagged name %q is not meaningful: declare one", d.name)
		}
	}
	if d.prom == "" {
		d.prom = strings.ReplaceAll(d.name, ".", "_")
		if d.kind == KindCounter && !strings.HasSuffix(d.prom, "_total") {
			d.prom += "_total"
		}
	}
	d.promBase = d.prom
	if u := d.PrometheusUnit(); u != "" {
		stem, total := strings.CutSuffix(d.prom, "_total")
		if !strings.HasSuffix(stem, "_"+u) {
			d.promBase = stem + "_" + u
			if total {
				d.promBase += "_total"
			}
		}
	}
	return nil
}

// Resolve returns the Def a sink is allocating a stat of, from the tagged
// name and tags the Store gives, and the tag values in TagKeys order.
func Resolve(name string, tags map[string]string) (*Def, []string, error) {
	d, ok := byName[name]
	if !ok {
		return nil, nil, fmt.Errorf("stats: %q is not in the catalog", name)
	}
	values := make([]string, len(d.tags))
	for i, k := range d.tags {
		values[i] = tags[k]
	}
	return d, values, nil
}

// Catalog returns every stat Sightline can have, in declaration order.
func Catalog() []*Def { return slices.Clone(catalog) }

// The catalog: every stat, once. Handles and sinks refer to these values;
// nothing else declares a stat name.
var (
	// Cluster: requests.
	upstreamRqTotal = define(Def{flat: "cluster.{cluster_name}.upstream_rq_total", kind: KindCounter,
		help: "Upstream requests sent, each attempt (retries included) counted when it is sent to a host."})
	upstreamRqCode = define(Def{flat: "cluster.{cluster_name}.upstream_rq_{response_code}", kind: KindCounter,
		name: "cluster.upstream_rq_completed",
		help: "Upstream attempts completed, by response status code, counted when the status is known."})
	upstreamRqClass = define(Def{flat: "cluster.{cluster_name}.upstream_rq_{response_code_class}xx", kind: KindCounter,
		help: "Upstream attempts completed, by response status class (2 for 2xx), counted when the status is known."})
	upstreamRqTime = define(Def{flat: "cluster.{cluster_name}.upstream_rq_time", kind: KindHistogram, unit: "ms",
		help: "Upstream attempt duration, from sending the request to the end of the response."})
	upstreamRqActive = define(Def{flat: "cluster.{cluster_name}.upstream_rq_active", kind: KindGauge,
		help: "Upstream requests in flight."})
	upstreamRqPendingActive = define(Def{flat: "cluster.{cluster_name}.upstream_rq_pending_active", kind: KindGauge,
		help: "Requests waiting for an upstream connection or stream."})
	upstreamRqRetry = define(Def{flat: "cluster.{cluster_name}.upstream_rq_retry", kind: KindCounter,
		help: "Retries sent."})
	upstreamRqRetrySuccess = define(Def{flat: "cluster.{cluster_name}.upstream_rq_retry_success", kind: KindCounter,
		help: "Retries whose response was not retried again."})
	upstreamRqRetryOverflow = define(Def{flat: "cluster.{cluster_name}.upstream_rq_retry_overflow", kind: KindCounter,
		help: "Retries not sent because the max_retries circuit breaker was open."})
	upstreamRqTimeout = define(Def{flat: "cluster.{cluster_name}.upstream_rq_timeout", kind: KindCounter,
		help: "Requests that hit the route timeout waiting for the upstream."})
	upstreamRqPerTryTimeout = define(Def{flat: "cluster.{cluster_name}.upstream_rq_per_try_timeout", kind: KindCounter,
		help: "Attempts that hit the per-try timeout."})
	upstreamRqPendingOverflow = define(Def{flat: "cluster.{cluster_name}.upstream_rq_pending_overflow", kind: KindCounter,
		help: "Requests refused because a circuit breaker was open."})
	upstreamRqShareOverflow = define(Def{flat: "cluster.{cluster_name}.upstream_rq_connection_share_overflow", kind: KindCounter,
		help: "Requests refused (503, flag UO) because their downstream connection already held its share of max_requests while the cluster's requests were over half of it."})
	upstreamRqRxReset = define(Def{flat: "cluster.{cluster_name}.upstream_rq_rx_reset", kind: KindCounter,
		help: "Upstream requests reset by the host."})
	upstreamRqTxReset = define(Def{flat: "cluster.{cluster_name}.upstream_rq_tx_reset", kind: KindCounter,
		help: "Upstream requests reset by the proxy."})
	upstreamRqCancelled = define(Def{flat: "cluster.{cluster_name}.upstream_rq_cancelled", kind: KindCounter,
		help: "Upstream requests cancelled because the client went away before the response was complete."})
	upstreamRqRetryLimitExceeded = define(Def{flat: "cluster.{cluster_name}.upstream_rq_retry_limit_exceeded", kind: KindCounter,
		help: "Requests not retried because the route's num_retries was used up."})
	upstreamRqPendingTotal = define(Def{flat: "cluster.{cluster_name}.upstream_rq_pending_total", kind: KindCounter,
		help: "Requests that had to wait for an upstream connection or stream."})
	upstreamRqFinished = define(Def{flat: "cluster.{cluster_name}.upstream_rq_completed", kind: KindCounter,
		name: "cluster.upstream_rq_finished",
		help: "Upstream requests completed with a response the client got (Envoy's upstream_rq_completed)."})
	upstreamCxNoneHealthy = define(Def{flat: "cluster.{cluster_name}.upstream_cx_none_healthy", kind: KindCounter,
		help: "Requests answered 503 because the cluster had no healthy host."})
	retryRqCode = define(Def{flat: "cluster.{cluster_name}.retry.upstream_rq_{response_code}", kind: KindCounter,
		name: "cluster.retry.upstream_rq_completed",
		help: "Upstream responses that were retried, by response status code."})
	retryRqClass = define(Def{flat: "cluster.{cluster_name}.retry.upstream_rq_{response_code_class}xx", kind: KindCounter,
		help: "Upstream responses that were retried, by response status class."})

	// Cluster: connections.
	upstreamCxTotal = define(Def{flat: "cluster.{cluster_name}.upstream_cx_total", kind: KindCounter,
		help: "Upstream connections opened."})
	upstreamCxConnectFail = define(Def{flat: "cluster.{cluster_name}.upstream_cx_connect_fail", kind: KindCounter,
		help: "Upstream connection attempts that failed."})
	upstreamCxConnectTimeout = define(Def{flat: "cluster.{cluster_name}.upstream_cx_connect_timeout", kind: KindCounter,
		help: "Upstream connection attempts that timed out."})
	upstreamCxDestroy = define(Def{flat: "cluster.{cluster_name}.upstream_cx_destroy", kind: KindCounter,
		help: "Upstream connections closed."})
	upstreamCxActive = define(Def{flat: "cluster.{cluster_name}.upstream_cx_active", kind: KindGauge,
		help: "Upstream connections open."})
	upstreamCxHTTP1Total = define(Def{flat: "cluster.{cluster_name}.upstream_cx_http1_total", kind: KindCounter,
		help: "Upstream HTTP/1.1 connections opened."})
	upstreamCxHTTP2Total = define(Def{flat: "cluster.{cluster_name}.upstream_cx_http2_total", kind: KindCounter,
		help: "Upstream HTTP/2 connections opened."})
	upstreamCxDestroyLocal = define(Def{flat: "cluster.{cluster_name}.upstream_cx_destroy_local", kind: KindCounter,
		help: "Upstream connections the proxy closed."})
	upstreamCxDestroyRemote = define(Def{flat: "cluster.{cluster_name}.upstream_cx_destroy_remote", kind: KindCounter,
		help: "Upstream connections the host closed (or lost)."})
	upstreamCxProtocolError = define(Def{flat: "cluster.{cluster_name}.upstream_cx_protocol_error", kind: KindCounter,
		help: "Upstream connections closed for a protocol error of the host (flow-control violations, reset floods, malformed frames)."})
	upstreamCxBackoff = define(Def{flat: "cluster.{cluster_name}.upstream_cx_backoff", kind: KindCounter,
		help: "Requests refused a new upstream connection while the host waits out its last protocol error."})
	upstreamCxMaxRequests = define(Def{flat: "cluster.{cluster_name}.upstream_cx_max_requests", kind: KindCounter,
		help: "Upstream connections retired after max_requests_per_connection streams."})
	upstreamCxIdleTimeout = define(Def{flat: "cluster.{cluster_name}.upstream_cx_idle_timeout", kind: KindCounter,
		help: "Upstream connections closed after idle_timeout without a request."})
	upstreamCxConnectMs = define(Def{flat: "cluster.{cluster_name}.upstream_cx_connect_ms", kind: KindHistogram, unit: "ms",
		prom: "cluster_upstream_cx_connect_time",
		help: "Upstream connection set-up time (TCP, TLS and the peer's SETTINGS)."})
	upstreamCxLengthMs = define(Def{flat: "cluster.{cluster_name}.upstream_cx_length_ms", kind: KindHistogram, unit: "ms",
		prom: "cluster_upstream_cx_length_time",
		help: "Upstream connection lifetime."})

	// Cluster: membership.
	membershipTotal = define(Def{flat: "cluster.{cluster_name}.membership_total", kind: KindGauge,
		prom: "cluster_membership_hosts",
		help: "Hosts in the cluster."})
	membershipHealthy = define(Def{flat: "cluster.{cluster_name}.membership_healthy", kind: KindGauge,
		help: "Hosts in the cluster that neither health checking nor outlier detection has taken out."})

	// Cluster: active health checking.
	healthCheckAttempt = define(Def{flat: "cluster.{cluster_name}.health_check.attempt", kind: KindCounter,
		help: "Active health checks sent."})
	healthCheckSuccess = define(Def{flat: "cluster.{cluster_name}.health_check.success", kind: KindCounter,
		help: "Active health checks that passed."})
	healthCheckFailure = define(Def{flat: "cluster.{cluster_name}.health_check.failure", kind: KindCounter,
		help: "Active health checks that failed or timed out."})
	healthCheckNetworkFailure = define(Def{flat: "cluster.{cluster_name}.health_check.network_failure", kind: KindCounter,
		help: "Active health checks that failed for a network reason (connect failure, reset, timeout)."})
	healthCheckHealthy = define(Def{flat: "cluster.{cluster_name}.health_check.healthy", kind: KindGauge,
		help: "Hosts passing active health checks."})

	// Cluster: outlier detection.
	outlierEjectionsEnforced = define(Def{flat: "cluster.{cluster_name}.outlier_detection.ejections_enforced_total", kind: KindCounter,
		help: "Hosts ejected by outlier detection."})
	outlierEjectionsActive = define(Def{flat: "cluster.{cluster_name}.outlier_detection.ejections_active", kind: KindGauge,
		help: "Hosts ejected by outlier detection now."})

	// Cluster: circuit breakers (the default priority, the only one).
	breakerRqOpen = define(Def{flat: "cluster.{cluster_name}.circuit_breakers.default.rq_open", kind: KindGauge,
		help: "1 while the max_requests circuit breaker is open, else 0."})
	breakerCxOpen = define(Def{flat: "cluster.{cluster_name}.circuit_breakers.default.cx_open", kind: KindGauge,
		help: "1 while the max_connections circuit breaker is open, else 0."})
	breakerRqPendingOpen = define(Def{flat: "cluster.{cluster_name}.circuit_breakers.default.rq_pending_open", kind: KindGauge,
		help: "1 while the max_pending_requests circuit breaker is open, else 0."})
	breakerRqRetryOpen = define(Def{flat: "cluster.{cluster_name}.circuit_breakers.default.rq_retry_open", kind: KindGauge,
		help: "1 while the max_retries circuit breaker is open, else 0."})
	breakerCxPoolOpen = define(Def{flat: "cluster.{cluster_name}.circuit_breakers.default.cx_pool_open", kind: KindGauge,
		help: "1 while the max_connection_pools circuit breaker is open, else 0."})

	// Cluster: load balancing.
	lbZoneRoutingAllDirectly = define(Def{flat: "cluster.{cluster_name}.lb_zone_routing_all_directly", kind: KindCounter,
		help: "Requests sent to the local zone because it can take all traffic."})
	lbZoneRoutingSampled = define(Def{flat: "cluster.{cluster_name}.lb_zone_routing_sampled", kind: KindCounter,
		help: "Requests sent to the local zone by sampling, the local zone taking only a share."})
	lbZoneRoutingCrossZone = define(Def{flat: "cluster.{cluster_name}.lb_zone_routing_cross_zone", kind: KindCounter,
		help: "Requests zone-aware routing sent to another zone."})
	lbZoneClusterTooSmall = define(Def{flat: "cluster.{cluster_name}.lb_zone_cluster_too_small", kind: KindCounter,
		help: "Times zone-aware routing was off because the cluster had fewer than min_cluster_size hosts."})
	lbZoneNoCapacityLeft = define(Def{flat: "cluster.{cluster_name}.lb_zone_no_capacity_left", kind: KindCounter,
		help: "Requests zone-aware routing sent to a random zone because no other zone had spare capacity."})
	lbLocalClusterNotOK = define(Def{flat: "cluster.{cluster_name}.lb_local_cluster_not_ok", kind: KindCounter,
		help: "Times zone-aware routing was off because this proxy's zone had no healthy host or its shares were unknown."})
	lbHealthyPanic = define(Def{flat: "cluster.{cluster_name}.lb_healthy_panic", kind: KindCounter,
		help: "Requests balanced over all hosts because too few were healthy (panic mode)."})

	// Cluster: per zone pair (this proxy's zone to the host's).
	zoneRqCode = define(Def{flat: "cluster.{cluster_name}.zone.{from_zone}.{to_zone}.upstream_rq_{response_code}", kind: KindCounter,
		name: "cluster.zone.upstream_rq_completed",
		help: "Upstream attempts from this proxy's zone to hosts in to_zone, by response status code."})
	zoneRqClass = define(Def{flat: "cluster.{cluster_name}.zone.{from_zone}.{to_zone}.upstream_rq_{response_code_class}xx", kind: KindCounter,
		help: "Upstream attempts from this proxy's zone to hosts in to_zone, by response status class."})
	zoneRqTime = define(Def{flat: "cluster.{cluster_name}.zone.{from_zone}.{to_zone}.upstream_rq_time", kind: KindHistogram, unit: "ms",
		help: "Upstream attempt duration, from this proxy's zone to hosts in to_zone."})

	// Cluster: the global rate limit service's answers for the calls
	// routed to it (Envoy's cluster.<route target cluster>.ratelimit.*).
	rateLimitOK = define(Def{flat: "cluster.{cluster_name}.ratelimit.ok", kind: KindCounter,
		help: "Calls the rate limit service found under the limit."})
	rateLimitOverLimit = define(Def{flat: "cluster.{cluster_name}.ratelimit.over_limit", kind: KindCounter,
		help: "Calls the rate limit service found over the limit: refused with 429, or RESOURCE_EXHAUSTED for gRPC, flag RL."})
	rateLimitError = define(Def{flat: "cluster.{cluster_name}.ratelimit.error", kind: KindCounter,
		help: "Calls whose rate limit check failed: the service did not answer in time, could not be reached, or answered with an error."})
	rateLimitFailureModeAllowed = define(Def{flat: "cluster.{cluster_name}.ratelimit.failure_mode_allowed", kind: KindCounter,
		help: "Calls let through after a failed rate limit check, as failure_mode_deny false (the default) asks."})

	// Cluster: per gRPC method.
	grpcTotal = define(Def{flat: "cluster.{cluster_name}.grpc.{grpc_service}.{grpc_method}.total", kind: KindCounter,
		help: "gRPC calls completed, counted when the status is known."})
	grpcSuccess = define(Def{flat: "cluster.{cluster_name}.grpc.{grpc_service}.{grpc_method}.success", kind: KindCounter,
		help: "gRPC calls completed with status OK."})
	grpcFailure = define(Def{flat: "cluster.{cluster_name}.grpc.{grpc_service}.{grpc_method}.failure", kind: KindCounter,
		help: "gRPC calls completed with a status other than OK."})
	grpcStatus = define(Def{flat: "cluster.{cluster_name}.grpc.{grpc_service}.{grpc_method}.{grpc_status}", kind: KindCounter,
		name: "cluster.grpc.completed",
		help: "gRPC calls completed, by status code (0 OK to 16 UNAUTHENTICATED)."})
	grpcRequestMessages = define(Def{flat: "cluster.{cluster_name}.grpc.{grpc_service}.{grpc_method}.request_message_count", kind: KindCounter,
		help: "gRPC request messages sent upstream."})
	grpcResponseMessages = define(Def{flat: "cluster.{cluster_name}.grpc.{grpc_service}.{grpc_method}.response_message_count", kind: KindCounter,
		help: "gRPC response messages sent to the client."})
	grpcRqTime = define(Def{flat: "cluster.{cluster_name}.grpc.{grpc_service}.{grpc_method}.upstream_rq_time", kind: KindHistogram, unit: "ms",
		help: "gRPC call duration, from the request to the trailers."})

	// HTTP connection manager, by listener stat_prefix.
	httpRqTotal = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_rq_total", kind: KindCounter,
		help: "Downstream requests received, counted when their headers are."})
	httpRqClass = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_rq_{response_code_class}xx", kind: KindCounter,
		help: "Downstream responses by status class (2 for 2xx), counted when the response headers are sent."})
	httpRqTime = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_rq_time", kind: KindHistogram, unit: "ms",
		help: "Downstream request duration, from the request headers to the end of the response."})
	httpRqActive = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_rq_active", kind: KindGauge,
		help: "Downstream requests in flight."})
	httpCxTotal = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_cx_total", kind: KindCounter,
		help: "Downstream connections accepted."})
	httpCxActive = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_cx_active", kind: KindGauge,
		help: "Downstream connections open."})
	httpCxHTTP2Total = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_cx_http2_total", kind: KindCounter,
		help: "Downstream HTTP/2 connections accepted."})
	httpCxHTTP1Total = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_cx_http1_total", kind: KindCounter,
		help: "Downstream HTTP/1.1 connections accepted."})
	httpCxHTTP1Active = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_cx_http1_active", kind: KindGauge,
		help: "Downstream HTTP/1.1 connections open."})
	httpCxHTTP2Active = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_cx_http2_active", kind: KindGauge,
		help: "Downstream HTTP/2 connections open."})
	httpCxRxBytes = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_cx_rx_bytes_total", kind: KindCounter, unit: "By",
		help: "Bytes read from downstream connections."})
	httpCxTxBytes = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_cx_tx_bytes_total", kind: KindCounter, unit: "By",
		help: "Bytes written to downstream connections."})
	httpCxProtocolError = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_cx_protocol_error", kind: KindCounter,
		help: "Downstream connections closed for a protocol error."})
	httpCxUpgradesTotal = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_cx_upgrades_total", kind: KindCounter,
		help: "Downstream HTTP/1.1 connections upgraded (WebSocket and other Upgrade types): the upstream answered 101 and the bytes are tunnelled."})
	httpCxUpgradesActive = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_cx_upgrades_active", kind: KindGauge,
		help: "Upgraded downstream connections whose tunnel is open."})
	httpRqHTTP1Total = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_rq_http1_total", kind: KindCounter,
		help: "Downstream HTTP/1.1 requests received."})
	httpRqHTTP2Total = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_rq_http2_total", kind: KindCounter,
		help: "Downstream HTTP/2 requests received."})
	httpRqRxReset = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_rq_rx_reset", kind: KindCounter,
		help: "Downstream requests the client reset or abandoned before the response was complete."})
	httpRqTxReset = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_rq_tx_reset", kind: KindCounter,
		help: "Downstream requests the proxy reset."})
	httpRqCompleted = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_rq_completed", kind: KindCounter,
		help: "Downstream requests that got a complete response."})
	httpRqIdleTimeout = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_rq_idle_timeout", kind: KindCounter,
		help: "Downstream requests ended by the stream idle timeout: nothing either way for the route's idle_timeout (or the listener's stream_idle_timeout)."})
	httpRqOverloadClose = define(Def{flat: "http.{http_conn_manager_prefix}.downstream_rq_overload_close", kind: KindCounter,
		help: "Downstream requests refused (503, gRPC UNAVAILABLE, flag OM) because the overload manager's stop_accepting_requests action was on."})
	httpNoRoute = define(Def{flat: "http.{http_conn_manager_prefix}.no_route", kind: KindCounter,
		help: "Requests that matched no route."})
	httpNoCluster = define(Def{flat: "http.{http_conn_manager_prefix}.no_cluster", kind: KindCounter,
		help: "Requests whose route names a cluster that does not exist."})
	httpRqDirectResponse = define(Def{flat: "http.{http_conn_manager_prefix}.rq_direct_response", kind: KindCounter,
		help: "Requests the proxy answered itself."})

	// Local rate limits, by their stat_prefix (Envoy's
	// <stat_prefix>.http_local_rate_limit.*).
	localRateLimitEnabled = define(Def{flat: "{local_http_ratelimit_prefix}.http_local_rate_limit.enabled", kind: KindCounter,
		help: "Requests a local rate limit checked (its filter_enabled share)."})
	localRateLimitOK = define(Def{flat: "{local_http_ratelimit_prefix}.http_local_rate_limit.ok", kind: KindCounter,
		help: "Requests a local rate limit checked and found under the limit."})
	localRateLimitLimited = define(Def{flat: "{local_http_ratelimit_prefix}.http_local_rate_limit.rate_limited", kind: KindCounter,
		help: "Requests a local rate limit found over the limit, refused or not (filter_enforced)."})
	localRateLimitEnforced = define(Def{flat: "{local_http_ratelimit_prefix}.http_local_rate_limit.enforced", kind: KindCounter,
		help: "Requests a local rate limit refused: 429, or RESOURCE_EXHAUSTED for gRPC, with response flag RL."})

	// Listener, by address.
	listenerCxTotal = define(Def{flat: "listener.{listener_address}.downstream_cx_total", kind: KindCounter,
		help: "Connections accepted on the listener."})
	listenerCxActive = define(Def{flat: "listener.{listener_address}.downstream_cx_active", kind: KindGauge,
		help: "Connections open on the listener."})
	listenerCxOverflow = define(Def{flat: "listener.{listener_address}.downstream_cx_overflow", kind: KindCounter,
		help: "Connections closed at once because the listener had limits.max_connections open."})
	listenerGlobalCxOverflow = define(Def{flat: "listener.{listener_address}.downstream_global_cx_overflow", kind: KindCounter,
		help: "Connections closed at once because the proxy had server.max_connections open on all listeners."})

	listenerCxOverloadReject = define(Def{flat: "listener.{listener_address}.downstream_cx_overload_reject", kind: KindCounter,
		help: "Connections closed at once because the overload manager's stop_accepting_connections action was on."})

	// Overload manager.
	overloadBufferPressure = define(Def{flat: "overload.buffer.pressure", kind: KindGauge,
		help: "Bytes held in flight for peers (DATA queued for slow receivers), in percent of overload.max_buffered_bytes."})
	overloadHeapPressure = define(Def{flat: "overload.heap.pressure", kind: KindGauge,
		help: "Go heap in use, in percent of overload.max_heap_bytes (0 when no heap limit is set)."})
	overloadActiveRequestsPressure = define(Def{flat: "overload.active_requests.pressure", kind: KindGauge,
		help: "Downstream requests in flight, in percent of overload.max_active_requests (0 when no budget is set)."})
	overloadResetStreamsActive = define(Def{flat: "overload.reset_high_memory_stream.active", kind: KindGauge,
		help: "1 while the reset_high_memory_stream action is on: the calls holding the most buffered bytes are reset."})
	overloadResetStreams = define(Def{flat: "overload.reset_high_memory_stream.count", kind: KindCounter,
		help: "Calls reset by the reset_high_memory_stream action."})
	overloadShrinkHeap = define(Def{flat: "overload.shrink_heap.shrink_count", kind: KindCounter,
		help: "Times the shrink_heap action gave the heap's free pages back to the system."})
	overloadStopRequestsActive = define(Def{flat: "overload.stop_accepting_requests.active", kind: KindGauge,
		help: "1 while the stop_accepting_requests action is on: new requests are refused."})
	overloadStopConnectionsActive = define(Def{flat: "overload.stop_accepting_connections.active", kind: KindGauge,
		help: "1 while the stop_accepting_connections action is on: new connections are closed at once."})

	// Server.
	serverUptime = define(Def{flat: "server.uptime", kind: KindGauge, unit: "s",
		help: "Seconds since the proxy started."})
	serverMemoryAllocated = define(Def{flat: "server.memory_allocated", kind: KindGauge, unit: "By",
		help: "Bytes of heap held by Go objects (runtime/metrics /memory/classes/heap/objects:bytes)."})
	serverConcurrency = define(Def{flat: "server.concurrency", kind: KindGauge,
		help: "GOMAXPROCS: how many threads run Go code at once."})
	serverLive = define(Def{flat: "server.live", kind: KindGauge,
		help: "1 while the proxy serves, 0 while it drains."})
	serverHotRestartEpoch = define(Def{flat: "server.hot_restart_epoch", kind: KindGauge,
		help: "Binary upgrades (POST /upgrade, SIGUSR2) since the first process: 0 for a process started afresh. Envoy's hot restart epoch, counted by the proxy rather than passed on the command line."})
	serverHotRestartGeneration = define(Def{flat: "server.hot_restart_generation", kind: KindGauge,
		help: "Binary upgrades since the first process, each new process one more than the process it replaced (Envoy's hot restart generation); equal to server.hot_restart_epoch."})
	serverConfigReload = define(Def{flat: "server.config_reload", kind: KindCounter,
		help: "Config reloads applied."})
	serverConfigReloadFailed = define(Def{flat: "server.config_reload_failed", kind: KindCounter,
		help: "Config reloads refused, the running config kept."})
	serverDaysUntilCertExpiring = define(Def{flat: "server.days_until_first_cert_expiring", kind: KindGauge,
		// promtool refuses a unit other than the base one in a name.
		prom: "server_first_cert_expiry_remaining",
		help: "Whole days until the first of the certificates the proxy serves or presents expires; 0 once one has, 4294967295 when there is none."})
	serverCertUpdate = define(Def{flat: "server.cert_update", kind: KindCounter,
		help: "Certificate and key pairs loaded again and swapped in after their files changed."})
	serverCertUpdateRejected = define(Def{flat: "server.cert_update_rejected", kind: KindCounter,
		help: "Changed certificate or key files that did not load (unparsable, key mismatch); the previous pair keeps serving."})
	serverGCPause = define(Def{flat: "server.go.gc_pause_ms", kind: KindHistogram, unit: "ms",
		prom: "server_go_gc_pause_time",
		help: "Stop-the-world pauses of the Go garbage collector."})
	serverGoroutines = define(Def{flat: "server.go.goroutines", kind: KindGauge,
		help: "Live goroutines."})

	// Access logs, by name.
	accessLogWritten = define(Def{flat: "accesslog.{accesslog_name}.written", kind: KindCounter,
		help: "Access log entries written."})
	accessLogDropped = define(Def{flat: "accesslog.{accesslog_name}.dropped", kind: KindCounter,
		help: "Access log entries dropped because the buffer was full."})
	accessLogFlushes = define(Def{flat: "accesslog.{accesslog_name}.flushes", kind: KindCounter,
		help: "Access log buffer flushes."})

	// Push sinks (statsd, OTLP), by name.
	sinkBatchesDropped = define(Def{flat: "sink.{sink_name}.batches_dropped", kind: KindCounter,
		help: "Flushes a push sink could not deliver: the agent or collector down, refusing or too slow."})
	sinkReconnects = define(Def{flat: "sink.{sink_name}.reconnects", kind: KindCounter,
		help: "Times a push sink delivered again after failing: the agent or collector came back."})

	// Tracing.
	tracingSpansDropped = define(Def{flat: "tracing.spans_dropped", kind: KindCounter,
		help: "Sampled spans lost: the export queue was full, or the collector failed their batch."})

	// The stats system itself.
	statsOverflow = define(Def{flat: "stats.overflow", kind: KindCounter,
		help: "gRPC calls counted under grpc.other.other because their cluster already had the maximum number of per-method stats."})
)
