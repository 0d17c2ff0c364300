// Package config loads, checks and defaults Sightline's configuration.
//
// The types here are the whole configuration schema. Every field is a typed
// value (durations are time.Duration, sizes are ints) so that the rest of the
// proxy never parses strings. Load fills defaults and validates; a Config
// returned by Load without error is ready to build from.
package config

import (
	"crypto/sha256"
	"slices"
	"strings"
	"time"
)

// Config is the root of a configuration file (and of the files it includes).
type Config struct {
	Include   []string   `yaml:"include,omitempty" json:"include,omitempty"`
	Node      Node       `yaml:"node" json:"node"`
	Admin     Admin      `yaml:"admin" json:"admin"`
	Server    Server     `yaml:"server" json:"server"`
	Overload  Overload   `yaml:"overload" json:"overload"`
	Stats     Stats      `yaml:"stats" json:"stats"`
	Tracing   Tracing    `yaml:"tracing" json:"tracing"`
	Listeners []Listener `yaml:"listeners" json:"listeners"`
	Clusters  []Cluster  `yaml:"clusters" json:"clusters"`
	// Dynamic, when set, has a control plane send listeners and clusters
	// over Envoy's xDS API (see Dynamic); nil: the file is the whole
	// config.
	Dynamic *Dynamic `yaml:"dynamic,omitempty" json:"dynamic,omitempty"`

	// Files lists every file the config was read from, the main file first.
	Files []string `yaml:"-" json:"files,omitempty"`
	// FileHashes holds the SHA-256 of each file's content as it was read,
	// by its name in Files, for a watcher to compare later content with
	// what the config was built from (watch.Seen). A document given to
	// LoadData stands for its file and has none.
	FileHashes map[string][sha256.Size]byte `yaml:"-" json:"-"`
	// Warnings are what Load found doubtful but not wrong (no listener, an
	// include glob that matches no file), placed as problems are; the
	// binary prints them on validate and logs them on run and reload.
	Warnings []Problem `yaml:"-" json:"-"`

	// at maps field paths of the config to where they were written, for
	// Locate: those that runtimePositions keeps.
	at map[string]position
}

// Node describes the proxy itself. A control plane (see Dynamic) is
// told all three, as Envoy's node id, cluster and locality.zone.
type Node struct {
	ID string `yaml:"id" json:"id"`
	// Cluster is Envoy's service cluster (node.cluster): the group of
	// proxies the node belongs to, which a control plane may serve as one.
	Cluster string `yaml:"cluster,omitempty" json:"cluster,omitempty"`
	Zone    string `yaml:"zone" json:"zone"`
}

// Dynamic is Envoy's dynamic_resources with an ads_config: one gRPC
// stream to a control plane (the aggregated discovery service,
// state-of-the-world) carries the listeners, routes, clusters, endpoints
// and secrets named by Resources. They are added to the file's own
// listeners and clusters, and checked as if the file had included them.
type Dynamic struct {
	ADS ADS `yaml:"ads" json:"ads"`
	// Resources are the kinds the control plane sends: listeners (LDS,
	// with their route configurations by RDS) and clusters (CDS, with
	// their endpoints by EDS); secrets (SDS) follow from the TLS contexts
	// of either. Both by default.
	Resources []string `yaml:"resources,omitempty" json:"resources,omitempty"`
}

// Kinds of dynamic resources.
const (
	DynamicListeners = "listeners"
	DynamicClusters  = "clusters"
)

// Wants reports whether the control plane sends the kind of resources
// (DynamicListeners or DynamicClusters), as Resources, defaulted, says.
func (d *Dynamic) Wants(kind string) bool {
	return d != nil && slices.Contains(d.Resources, kind)
}

// ADS is the control plane's address and how the stream to it is kept.
type ADS struct {
	// Address is the control plane's gRPC endpoint, host:port (a DNS name
	// is resolved on each connection).
	Address string `yaml:"address" json:"address"`
	// TLS makes the stream TLS, as a cluster's tls does; plaintext
	// HTTP/2 when unset.
	TLS *UpstreamTLS `yaml:"tls,omitempty" json:"tls,omitempty"`
	// InitialFetchTimeout (Envoy's initial_fetch_timeout) is how long the
	// proxy waits for the first full set of resources before it reports
	// ready anyway, with what it has; 15s by default, 0s waits for ever.
	InitialFetchTimeout *Duration `yaml:"initial_fetch_timeout,omitempty" json:"initial_fetch_timeout,omitempty"`
	// RetryBackOff is how long the proxy waits before it connects again
	// after the stream failed: Envoy's retry_back_off, exponential from
	// base_interval (500ms) up to max_interval (30s), each wait drawn at
	// random up to its bound (full jitter). A stream that got a response
	// starts again from base_interval.
	RetryBackOff BackOff `yaml:"retry_back_off" json:"retry_back_off"`
}

// BackOff is Envoy's BackoffStrategy.
type BackOff struct {
	BaseInterval Duration `yaml:"base_interval" json:"base_interval"`
	MaxInterval  Duration `yaml:"max_interval" json:"max_interval"`
}

// InitialFetch is initial_fetch_timeout (defaulted when loaded); 0: none.
func (a *ADS) InitialFetch() time.Duration {
	if a.InitialFetchTimeout == nil {
		return time.Duration(defaultInitialFetchTimeout)
	}
	return a.InitialFetchTimeout.D()
}

// Admin is the admin server.
type Admin struct {
	Address string `yaml:"address" json:"address"`
	// Pprof serves Go's profiles at /debug/pprof/ on the admin address;
	// on by default (the admin address is loopback by default).
	Pprof *bool `yaml:"pprof,omitempty" json:"pprof,omitempty"`
}

// PprofOn reports whether admin.pprof is on (the default).
func (a Admin) PprofOn() bool { return a.Pprof == nil || *a.Pprof }

// Server holds process-wide settings.
type Server struct {
	DrainTime    Duration `yaml:"drain_time" json:"drain_time"`
	DrainTimeout Duration `yaml:"drain_timeout" json:"drain_timeout"`
	Watch        bool     `yaml:"watch" json:"watch"`
	// MaxConnections caps the downstream connections open on all listeners
	// together (Envoy's downstream_connections resource monitor); a
	// connection past it is accepted and closed at once, and counted in
	// its listener's downstream_global_cx_overflow. 0, the default, is no
	// cap.
	MaxConnections int `yaml:"max_connections" json:"max_connections"`
	// AdaptiveConcurrency runs the proxy on one thread while its load
	// needs no more, and on all it may use (GOMAXPROCS: the CPUs of the
	// machine and its cgroup limit) as soon as it does: Go's idle threads
	// cost CPU at light load (package procs). On by default.
	AdaptiveConcurrency *bool `yaml:"adaptive_concurrency,omitempty" json:"adaptive_concurrency,omitempty"`
}

// AdaptiveConcurrencyOn reports whether server.adaptive_concurrency is on
// (the default).
func (s Server) AdaptiveConcurrencyOn() bool {
	return s.AdaptiveConcurrency == nil || *s.AdaptiveConcurrency
}

// Overload is the overload manager (Envoy's, with fixed monitors): a
// budget for the bytes held in flight for peers, optionally one for the Go
// heap, and the pressure, from 0 to 1 of the budget, at which each action
// turns on.
type Overload struct {
	// MaxBufferedBytes is the budget of DATA held for slow receivers,
	// counted by buffer size; default 64 MiB.
	MaxBufferedBytes int `yaml:"max_buffered_bytes" json:"max_buffered_bytes"`
	// MaxHeapBytes, when set, makes the Go heap a second monitor (Envoy's
	// fixed_heap); 0, the default, watches buffers only.
	MaxHeapBytes int `yaml:"max_heap_bytes" json:"max_heap_bytes"`
	// MaxActiveRequests, when set, is the concurrency budget: downstream
	// requests in flight in the whole process. A request past it is
	// refused at once (503 or gRPC UNAVAILABLE, flag OM), and the
	// budget's pressure turns stop_accepting_requests and
	// stop_accepting_connections on at their thresholds. 0, the
	// default: no budget.
	MaxActiveRequests int             `yaml:"max_active_requests" json:"max_active_requests"`
	RefreshInterval   Duration        `yaml:"refresh_interval" json:"refresh_interval"`
	Actions           OverloadActions `yaml:"actions" json:"actions"`
}

// OverloadActions are the thresholds of the overload actions; each is a
// fraction of the budget from 0 (exclusive) to 1, or more than 1 to leave
// the action off.
type OverloadActions struct {
	ResetHighMemoryStream    float64 `yaml:"reset_high_memory_stream" json:"reset_high_memory_stream"`
	StopAcceptingRequests    float64 `yaml:"stop_accepting_requests" json:"stop_accepting_requests"`
	StopAcceptingConnections float64 `yaml:"stop_accepting_connections" json:"stop_accepting_connections"`
}

// Stats configures the stats model and its sinks.
type Stats struct {
	FlushInterval Duration `yaml:"flush_interval" json:"flush_interval"`
	Exclude       []string `yaml:"exclude,omitempty" json:"exclude,omitempty"`
	Include       []string `yaml:"include,omitempty" json:"include,omitempty"`
	EmitZeros     bool     `yaml:"emit_zeros" json:"emit_zeros"`
	// MaxGRPCMethodsPerCluster caps the gRPC methods that get stats of
	// their own in each cluster; calls past it count under grpc.other.other.
	MaxGRPCMethodsPerCluster int `yaml:"max_grpc_methods_per_cluster" json:"max_grpc_methods_per_cluster"`
	// CompactAfter is how long a family of a cluster's stats (its
	// request, connection, membership, circuit breaker, zone pair or gRPC
	// method stats) stays unchanged before it is compacted: its values
	// kept in a few bytes a stat, its objects freed, until its next use
	// makes it again. Every sink shows the same values throughout. 5s by
	// default; 0s turns it off.
	CompactAfter *Duration  `yaml:"compact_after,omitempty" json:"compact_after,omitempty"`
	Sinks        []Sink     `yaml:"sinks,omitempty" json:"sinks,omitempty"`
	Prometheus   Prometheus `yaml:"prometheus" json:"prometheus"`
}

// Sink is one push sink; exactly one field is set.
type Sink struct {
	Statsd *StatsdSink `yaml:"statsd,omitempty" json:"statsd,omitempty"`
	OTLP   *OTLP       `yaml:"otlp,omitempty" json:"otlp,omitempty"`
}

// StatsdSink pushes to a statsd agent.
type StatsdSink struct {
	Address  string `yaml:"address" json:"address"`
	Prefix   string `yaml:"prefix" json:"prefix"`
	Protocol string `yaml:"protocol" json:"protocol"` // udp | tcp
	Tags     string `yaml:"tags" json:"tags"`         // none | dogstatsd
	// ConstantTags are added to every metric as DogStatsD tags, key:value
	// in key order ({env: prod, zone: us-east-1a} is
	// |#…,env:prod,zone:us-east-1a); with tags: dogstatsd only.
	ConstantTags map[string]string `yaml:"constant_tags,omitempty" json:"constant_tags,omitempty"`
	// HistogramType is the type of histogram lines: ms (a timer, the
	// default, as Envoy's statsd and DogStatsD sinks send), or with tags:
	// dogstatsd h (a histogram, aggregated by each agent) or d (a
	// distribution: percentiles computed across hosts by Datadog).
	HistogramType string `yaml:"histogram_type,omitempty" json:"histogram_type,omitempty"`
	// Histograms is how histograms are sent: samples (the default, as
	// Envoy does: every sample its own line, so the agent's mean and
	// percentiles are exact) or buckets (one line per bucket with a
	// sample rate, the bucket's middle as value: fewer lines, rounded).
	Histograms string `yaml:"histograms,omitempty" json:"histograms,omitempty"`
}

// OTLP is an OpenTelemetry collector endpoint.
type OTLP struct {
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	Protocol string `yaml:"protocol" json:"protocol"` // grpc | http
	Insecure bool   `yaml:"insecure" json:"insecure"`
	// Temporality of the metrics sink's counters and histograms:
	// cumulative (the default) or delta (each export has what changed
	// since the last one the collector took; Envoy's OpenTelemetry stat
	// sink's report_counters_as_deltas and report_histograms_as_deltas).
	// Not for tracing.otlp.
	Temporality string `yaml:"temporality,omitempty" json:"temporality,omitempty"`
}

// Prometheus configures the /stats/prometheus exposition.
type Prometheus struct {
	Namespace string `yaml:"namespace" json:"namespace"`
	// Naming is sightline (the default: <namespace>_ families with
	// labels named as the stats catalog's tag keys) or envoy (Envoy's admin
	// exposition, envoy_ families named by Envoy's tag extraction, so that
	// dashboards written for Envoy work unchanged; namespace is then unused).
	Naming string `yaml:"naming" json:"naming"`
	// Units is base (the default with naming: sightline: durations in
	// seconds and sizes in bytes, each family ending in its unit as
	// Prometheus' conventions ask: _seconds, _bytes) or ms (histograms in
	// milliseconds and no unit suffix, as Sightline 1.x named them).
	// naming: envoy is always Envoy's milliseconds.
	Units string `yaml:"units" json:"units"`
	// Created adds to OpenMetrics scrapes a _created sample per counter
	// and histogram: when the stat came to be. On by default; Prometheus
	// stores them as series of their own unless its
	// created-timestamp-zero-ingestion feature is on, so a user who pays
	// per series may turn them off.
	Created *bool `yaml:"created,omitempty" json:"created,omitempty"`
}

// The values of Prometheus.Units.
const (
	PrometheusUnitsBase = "base"
	PrometheusUnitsMs   = "ms"
)

// The values of Prometheus.Naming.
const (
	PrometheusNamingSightline = "sightline"
	PrometheusNamingEnvoy     = "envoy"
)

// Tracing configures spans and propagation.
type Tracing struct {
	Sampling    float64  `yaml:"sampling" json:"sampling"`
	Propagation []string `yaml:"propagation,omitempty" json:"propagation,omitempty"`
	OTLP        *OTLP    `yaml:"otlp,omitempty" json:"otlp,omitempty"`
	ServiceName string   `yaml:"service_name" json:"service_name"`
}

// Listener is one downstream socket and what it serves.
type Listener struct {
	Name                string       `yaml:"name" json:"name"`
	Address             string       `yaml:"address" json:"address"`
	StatPrefix          string       `yaml:"stat_prefix" json:"stat_prefix"`
	Protocols           []string     `yaml:"protocols,omitempty" json:"protocols,omitempty"` // h2c, http1; with tls: h2, http1
	TLS                 *ListenerTLS `yaml:"tls,omitempty" json:"tls,omitempty"`
	RequestID           RequestID    `yaml:"request_id" json:"request_id"`
	TrustRequestHeaders bool         `yaml:"trust_request_headers" json:"trust_request_headers"`
	AccessLog           []AccessLog  `yaml:"access_log,omitempty" json:"access_log,omitempty"`
	Limits              Limits       `yaml:"limits" json:"limits"`
	// LocalRateLimit applies to every request on the listener whose
	// virtual host and route have none of their own (Envoy's
	// local_ratelimit filter config, which per-route config overrides).
	LocalRateLimit *LocalRateLimit `yaml:"local_rate_limit,omitempty" json:"local_rate_limit,omitempty"`
	// RateLimit is the global rate limit service the listener's routes
	// ask (Envoy's envoy.filters.http.ratelimit); the descriptors come
	// from the routes' (or virtual hosts') rate_limits.
	RateLimit    *RateLimitService `yaml:"rate_limit,omitempty" json:"rate_limit,omitempty"`
	VirtualHosts []VirtualHost     `yaml:"virtual_hosts" json:"virtual_hosts"`

	// Upgrades lists the HTTP/1.1 upgrades (Upgrade: websocket, …) the
	// listener's routes accept, as Envoy's upgrade_configs on the HTTP
	// connection manager; a route's own upgrades override it per type.
	// None by default: an Upgrade request is refused with 403.
	Upgrades []Upgrade `yaml:"upgrades,omitempty" json:"upgrades,omitempty"`
}

// Upgrade allows or refuses one HTTP/1.1 upgrade type (Envoy's
// UpgradeConfig).
type Upgrade struct {
	// Type is the protocol the client names in its Upgrade header
	// ("websocket"), compared without regard to case.
	Type string `yaml:"type" json:"type"`
	// Enabled allows (the default) or refuses the upgrade.
	Enabled *bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
}

// ListenerTLS terminates TLS on a listener; ALPN picks h2 or http/1.1.
// The key pair is in files (cert_file, key_file), or inline as PEM
// (cert_pem, key_pem: what a control plane's secrets give, never written
// to disk, logged or shown in /config_dump); one or the other.
type ListenerTLS struct {
	CertFile string `yaml:"cert_file" json:"cert_file"`
	KeyFile  string `yaml:"key_file" json:"key_file"`
	CertPEM  string `yaml:"cert_pem,omitempty" json:"cert_pem,omitempty" redact:"true"`
	KeyPEM   string `yaml:"key_pem,omitempty" json:"key_pem,omitempty" redact:"true"`
}

// Limits are the listener's server limits. Zero values are replaced by
// defaults when the config is loaded.
type Limits struct {
	MaxConcurrentStreams int      `yaml:"max_concurrent_streams" json:"max_concurrent_streams"`
	MaxHeaderBytes       int      `yaml:"max_header_bytes" json:"max_header_bytes"`
	IdleTimeout          Duration `yaml:"idle_timeout" json:"idle_timeout"`
	HeaderReadTimeout    Duration `yaml:"header_read_timeout" json:"header_read_timeout"`
	// MaxRequestsPerConnection closes a connection gracefully after this many
	// requests; 0 (the default) means no cap.
	MaxRequestsPerConnection int `yaml:"max_requests_per_connection" json:"max_requests_per_connection"`
	// MaxConnections caps the connections open on this listener (Envoy's
	// per-listener connection limit); a connection past it is accepted
	// and closed at once, and counted in downstream_cx_overflow. 0, the
	// default, is no cap.
	MaxConnections int `yaml:"max_connections" json:"max_connections"`
	// StreamIdleTimeout (Envoy's stream_idle_timeout) ends a request with
	// no frame, or body byte, either way for this long; 5m by default, 0s
	// turns it off. A route's idle_timeout overrides it.
	StreamIdleTimeout *Duration `yaml:"stream_idle_timeout,omitempty" json:"stream_idle_timeout,omitempty"`
}

// RequestID controls x-request-id handling.
type RequestID struct {
	Generate         *bool `yaml:"generate,omitempty" json:"generate,omitempty"`
	PreserveExternal *bool `yaml:"preserve_external,omitempty" json:"preserve_external,omitempty"`
	SetInResponse    *bool `yaml:"set_in_response,omitempty" json:"set_in_response,omitempty"`
}

// AccessLog is one access-log destination of a listener.
type AccessLog struct {
	// Path is the file ("-": stdout); OTLP sends the lines to an
	// OpenTelemetry collector instead. Exactly one of them is set.
	Path string         `yaml:"path,omitempty" json:"path,omitempty"`
	OTLP *AccessLogOTLP `yaml:"otlp,omitempty" json:"otlp,omitempty"`
	// Format is json (the default: the JSON line of the contract), envoy
	// (Envoy's default text line) or a text format in Envoy's format
	// language (%START_TIME%, %REQ(:PATH)%, %RESPONSE_FLAGS%, ...).
	Format string `yaml:"format,omitempty" json:"format,omitempty"`
	// JSONFormat is Envoy's json_format: each key's value in Envoy's
	// format language, one JSON object a line, keys sorted. It replaces
	// format.
	JSONFormat    map[string]string `yaml:"json_format,omitempty" json:"json_format,omitempty"`
	FlushInterval Duration          `yaml:"flush_interval" json:"flush_interval"`
	BufferBytes   int               `yaml:"buffer_bytes" json:"buffer_bytes"`
	Filter        AccessLogFilter   `yaml:"filter" json:"filter"`
}

// AccessLogOTLP sends an access log to an OpenTelemetry collector as OTLP
// logs (Envoy's envoy.access_loggers.open_telemetry).
type AccessLogOTLP struct {
	Endpoint string            `yaml:"endpoint" json:"endpoint"`
	Protocol string            `yaml:"protocol" json:"protocol"` // grpc | http
	Insecure bool              `yaml:"insecure" json:"insecure"`
	Headers  map[string]string `yaml:"headers,omitempty" json:"headers,omitempty" redact:"true"`
	// Timeout bounds one export; a batch not taken in time is dropped.
	Timeout Duration `yaml:"timeout" json:"timeout"`
}

// AccessLogFilter decides which requests are logged.
type AccessLogFilter struct {
	StatusMin      int      `yaml:"status_min" json:"status_min"`
	DurationMin    Duration `yaml:"duration_min" json:"duration_min"`
	NotHealthCheck bool     `yaml:"not_health_check" json:"not_health_check"`
	SamplePercent  *float64 `yaml:"sample_percent,omitempty" json:"sample_percent,omitempty"`
}

// VirtualHost groups routes under a set of domains.
type VirtualHost struct {
	Name    string   `yaml:"name" json:"name"`
	Domains []string `yaml:"domains" json:"domains"`
	Routes  []Route  `yaml:"routes" json:"routes"`
	// LocalRateLimit applies to the virtual host's routes that have none
	// of their own; it overrides the listener's.
	LocalRateLimit *LocalRateLimit `yaml:"local_rate_limit,omitempty" json:"local_rate_limit,omitempty"`
	// RateLimits make the descriptors of the virtual host's routes that
	// have no rate_limits of their own.
	RateLimits []RateLimitPolicy `yaml:"rate_limits,omitempty" json:"rate_limits,omitempty"`
}

// Route matches requests and names where they go.
type Route struct {
	Name             string            `yaml:"name,omitempty" json:"name,omitempty"`
	Match            RouteMatch        `yaml:"match" json:"match"`
	Cluster          string            `yaml:"cluster,omitempty" json:"cluster,omitempty"`
	WeightedClusters []WeightedCluster `yaml:"weighted_clusters,omitempty" json:"weighted_clusters,omitempty"`
	// ClusterHeader routes to the cluster a request header names (Envoy's
	// cluster_header); a request naming no known cluster gets 503 (NC).
	ClusterHeader string `yaml:"cluster_header,omitempty" json:"cluster_header,omitempty"`
	// DirectResponse answers the route's requests from the proxy itself,
	// with no cluster.
	DirectResponse *DirectResponse `yaml:"direct_response,omitempty" json:"direct_response,omitempty"`
	// Timeout bounds the whole request; 0 means none. A gRPC client's
	// grpc-timeout also bounds it: the smaller wins.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// MaxGRPCTimeout (Envoy's max_grpc_timeout), when set, makes a gRPC
	// request's timeout its grpc-timeout, capped at this; a request
	// without grpc-timeout gets this. 0s means no cap (and no timeout for
	// a request without grpc-timeout); the route's timeout is then not
	// used for gRPC requests. GRPCTimeoutOffset (Envoy's
	// grpc_timeout_offset) is taken off the client's grpc-timeout first,
	// when it is smaller, so that the proxy times out before the client.
	MaxGRPCTimeout    *Duration `yaml:"max_grpc_timeout,omitempty" json:"max_grpc_timeout,omitempty"`
	GRPCTimeoutOffset Duration  `yaml:"grpc_timeout_offset" json:"grpc_timeout_offset"`
	// IdleTimeout (Envoy's route idle_timeout) is the stream idle timeout
	// of the route's requests: its listener's stream_idle_timeout when
	// unset, none when 0s.
	IdleTimeout *Duration    `yaml:"idle_timeout,omitempty" json:"idle_timeout,omitempty"`
	RetryPolicy *RetryPolicy `yaml:"retry_policy,omitempty" json:"retry_policy,omitempty"`
	HashPolicy  []HashPolicy `yaml:"hash_policy,omitempty" json:"hash_policy,omitempty"`
	Mirror      *Mirror      `yaml:"mirror,omitempty" json:"mirror,omitempty"`
	// Upgrades allows or refuses HTTP/1.1 upgrades on this route, type by
	// type, over the listener's upgrades. Once the config is loaded it
	// holds the listener's entries too, for the types the route does not
	// name: it is the route's whole answer.
	Upgrades []Upgrade `yaml:"upgrades,omitempty" json:"upgrades,omitempty"`
	// LocalRateLimit is the route's own local rate limit; it overrides
	// its virtual host's and its listener's.
	LocalRateLimit *LocalRateLimit `yaml:"local_rate_limit,omitempty" json:"local_rate_limit,omitempty"`
	// RateLimits make the request's descriptors (Envoy's route
	// rate_limits), for the global rate limit service and for the
	// descriptors of local rate limits.
	RateLimits []RateLimitPolicy `yaml:"rate_limits,omitempty" json:"rate_limits,omitempty"`
}

// Upgrade returns whether the route accepts the upgrade type typ
// (case-insensitive), as its Upgrades say once the config is loaded.
func (r *Route) Upgrade(typ string) bool {
	for i := range r.Upgrades {
		if u := &r.Upgrades[i]; strings.EqualFold(u.Type, typ) {
			return u.Enabled == nil || *u.Enabled
		}
	}
	return false
}

// RouteMatch is what a request must look like; exactly one of Prefix, Path
// and Regex is set.
type RouteMatch struct {
	Prefix  string          `yaml:"prefix,omitempty" json:"prefix,omitempty"`
	Path    string          `yaml:"path,omitempty" json:"path,omitempty"`
	Regex   string          `yaml:"regex,omitempty" json:"regex,omitempty"`
	Headers []HeaderMatcher `yaml:"headers,omitempty" json:"headers,omitempty"`
	// GRPC matches only requests whose content-type is application/grpc*.
	GRPC bool `yaml:"grpc,omitempty" json:"grpc,omitempty"`
}

// HeaderMatcher matches one request header; exactly one of Exact, Present
// and Regex is set.
type HeaderMatcher struct {
	Name    string `yaml:"name" json:"name"`
	Exact   string `yaml:"exact,omitempty" json:"exact,omitempty"`
	Present bool   `yaml:"present,omitempty" json:"present,omitempty"`
	Regex   string `yaml:"regex,omitempty" json:"regex,omitempty"`
	// Invert turns the match around: the header must not match.
	Invert bool `yaml:"invert,omitempty" json:"invert,omitempty"`
}

// Limits of rate limit descriptors: a request's descriptors are built in
// fixed arrays, so that building them allocates nothing.
const (
	// MaxRateLimitActions is the most actions (descriptor entries) of one
	// rate_limits entry, and the most entries of a local descriptor.
	MaxRateLimitActions = 8
	// MaxRateLimits is the most rate_limits entries of a route or a
	// virtual host.
	MaxRateLimits = 8
	// MinFillInterval is the shortest fill_interval of a token bucket, as
	// in Envoy.
	MinFillInterval = 50 * time.Millisecond
)

// X-RateLimit header versions (Envoy's XRateLimitHeadersRFCVersion).
const (
	XRateLimitOff     = "OFF"
	XRateLimitDraft03 = "DRAFT_VERSION_03"
)

// LocalRateLimit is a token-bucket rate limit kept in the proxy (Envoy's
// local_ratelimit filter config): a listener's, a virtual host's or a
// route's, the most specific applying.
type LocalRateLimit struct {
	// StatPrefix names the stats: <stat_prefix>.http_local_rate_limit.*;
	// the listener's stat_prefix by default.
	StatPrefix string `yaml:"stat_prefix" json:"stat_prefix"`
	// TokenBucket is the default bucket: every request takes a token
	// from it (unless a descriptor matched and
	// always_consume_default_token_bucket is false).
	TokenBucket *TokenBucket `yaml:"token_bucket,omitempty" json:"token_bucket,omitempty"`
	// Descriptors give buckets of their own to requests whose
	// descriptors (made by rate_limits) match.
	Descriptors                     []LocalRateLimitDescriptor `yaml:"descriptors,omitempty" json:"descriptors,omitempty"`
	AlwaysConsumeDefaultTokenBucket *bool                      `yaml:"always_consume_default_token_bucket,omitempty" json:"always_consume_default_token_bucket,omitempty"`
	// FilterEnabled is the percent of requests checked, FilterEnforced the
	// percent of those over the limit that are refused (the others are
	// only counted). Both 100 by default.
	FilterEnabled  *float64 `yaml:"filter_enabled,omitempty" json:"filter_enabled,omitempty"`
	FilterEnforced *float64 `yaml:"filter_enforced,omitempty" json:"filter_enforced,omitempty"`
	// Status is the HTTP status of a refusal; 429 by default.
	Status int `yaml:"status" json:"status"`
	// RateLimitedAsResourceExhausted answers gRPC clients
	// RESOURCE_EXHAUSTED (8), the default, or UNAVAILABLE (14) when false.
	RateLimitedAsResourceExhausted *bool `yaml:"rate_limited_as_resource_exhausted,omitempty" json:"rate_limited_as_resource_exhausted,omitempty"`
	// EnableXRateLimitHeaders adds x-ratelimit-limit, -remaining and
	// -reset to the responses of checked requests: OFF (the default) or
	// DRAFT_VERSION_03.
	EnableXRateLimitHeaders string `yaml:"enable_x_ratelimit_headers" json:"enable_x_ratelimit_headers"`
	// MaxDynamicDescriptors bounds the buckets of each descriptor with an
	// entry of any value (no value); 1024 by default.
	MaxDynamicDescriptors int `yaml:"max_dynamic_descriptors" json:"max_dynamic_descriptors"`
}

// TokenBucket is Envoy's token_bucket: it starts full, and gains
// tokens_per_fill tokens every fill_interval, up to max_tokens.
type TokenBucket struct {
	MaxTokens     uint32   `yaml:"max_tokens" json:"max_tokens"`
	TokensPerFill uint32   `yaml:"tokens_per_fill" json:"tokens_per_fill"` // 1 by default
	FillInterval  Duration `yaml:"fill_interval" json:"fill_interval"`
}

// LocalRateLimitDescriptor is a bucket for the requests with a
// descriptor whose entries match these, in number and order. An entry with
// no value matches any value, and each value gets a bucket of its own.
type LocalRateLimitDescriptor struct {
	Entries     []RateLimitEntry `yaml:"entries" json:"entries"`
	TokenBucket TokenBucket      `yaml:"token_bucket" json:"token_bucket"`
}

// RateLimitEntry is one entry of a descriptor.
type RateLimitEntry struct {
	Key   string `yaml:"key" json:"key"`
	Value string `yaml:"value,omitempty" json:"value,omitempty"`
}

// RateLimitService is a listener's global rate limit: Envoy's rate limit
// service protocol (envoy.service.ratelimit.v3.RateLimitService), asked
// over gRPC on a cluster.
type RateLimitService struct {
	// Domain is the rate limit service's domain for these requests.
	Domain string `yaml:"domain" json:"domain"`
	// Cluster runs the rate limit service (gRPC: protocol http2).
	Cluster string `yaml:"cluster" json:"cluster"`
	// Timeout bounds each check; 20ms by default, as in Envoy.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// FailureModeDeny refuses requests when the service cannot answer;
	// by default they are let through and counted.
	FailureModeDeny bool `yaml:"failure_mode_deny" json:"failure_mode_deny"`
	// Status, RateLimitedAsResourceExhausted and EnableXRateLimitHeaders
	// are as for local rate limits.
	Status                         int    `yaml:"status" json:"status"`
	RateLimitedAsResourceExhausted *bool  `yaml:"rate_limited_as_resource_exhausted,omitempty" json:"rate_limited_as_resource_exhausted,omitempty"`
	EnableXRateLimitHeaders        string `yaml:"enable_x_ratelimit_headers" json:"enable_x_ratelimit_headers"`
}

// RateLimitPolicy is one rate_limits entry: its actions make one
// descriptor, one entry each, in order. When an action cannot make its
// entry (a header that is absent), the request gets no descriptor from
// this entry, as in Envoy.
type RateLimitPolicy struct {
	Actions []RateLimitAction `yaml:"actions" json:"actions"`
}

// RateLimitAction makes one descriptor entry; exactly one of its fields is
// set.
type RateLimitAction struct {
	RequestHeaders   *RequestHeadersAction   `yaml:"request_headers,omitempty" json:"request_headers,omitempty"`
	RemoteAddress    *RemoteAddressAction    `yaml:"remote_address,omitempty" json:"remote_address,omitempty"`
	GenericKey       *GenericKeyAction       `yaml:"generic_key,omitempty" json:"generic_key,omitempty"`
	HeaderValueMatch *HeaderValueMatchAction `yaml:"header_value_match,omitempty" json:"header_value_match,omitempty"`
}

// RequestHeadersAction makes the entry (descriptor_key, the header's
// value). The pseudo-headers :path (without the query), :authority and
// :method are accepted too; for gRPC, :path is /package.Service/Method.
type RequestHeadersAction struct {
	HeaderName    string `yaml:"header_name" json:"header_name"`
	DescriptorKey string `yaml:"descriptor_key" json:"descriptor_key"`
	// SkipIfAbsent leaves the entry out, instead of the whole descriptor,
	// when the header is absent.
	SkipIfAbsent bool `yaml:"skip_if_absent" json:"skip_if_absent"`
}

// RemoteAddressAction makes the entry ("remote_address", the client's IP
// address).
type RemoteAddressAction struct{}

// GenericKeyAction makes the entry (descriptor_key, descriptor_value);
// descriptor_key is "generic_key" by default.
type GenericKeyAction struct {
	DescriptorKey   string `yaml:"descriptor_key" json:"descriptor_key"`
	DescriptorValue string `yaml:"descriptor_value" json:"descriptor_value"`
}

// HeaderValueMatchAction makes the entry (descriptor_key,
// descriptor_value) when the request's headers match (or, with
// expect_match false, do not match) every matcher; descriptor_key is
// "header_match" by default.
type HeaderValueMatchAction struct {
	DescriptorKey   string          `yaml:"descriptor_key" json:"descriptor_key"`
	DescriptorValue string          `yaml:"descriptor_value" json:"descriptor_value"`
	ExpectMatch     *bool           `yaml:"expect_match,omitempty" json:"expect_match,omitempty"`
	Headers         []HeaderMatcher `yaml:"headers" json:"headers"`
}

// DirectResponse is a route's fixed answer: a status and a body.
type DirectResponse struct {
	Status int    `yaml:"status" json:"status"`
	Body   string `yaml:"body,omitempty" json:"body,omitempty"`
}

// WeightedCluster is one target of a weighted route.
type WeightedCluster struct {
	Cluster string `yaml:"cluster" json:"cluster"`
	Weight  uint32 `yaml:"weight" json:"weight"`
}

// RetryPolicy says when and how often a request is tried again.
type RetryPolicy struct {
	RetryOn       string   `yaml:"retry_on" json:"retry_on"`
	NumRetries    int      `yaml:"num_retries" json:"num_retries"`
	PerTryTimeout Duration `yaml:"per_try_timeout" json:"per_try_timeout"`
	BackoffBase   Duration `yaml:"backoff_base" json:"backoff_base"`
	BackoffMax    Duration `yaml:"backoff_max" json:"backoff_max"`
}

// HashPolicy names what ring_hash and maglev hash on.
type HashPolicy struct {
	Header string `yaml:"header" json:"header"`
}

// Mirror copies a share of requests to another cluster.
type Mirror struct {
	Cluster string `yaml:"cluster" json:"cluster"`
	// Percent of requests copied; unset means every request, as in Envoy.
	Percent *float64 `yaml:"percent,omitempty" json:"percent,omitempty"`
}

// Cluster is a named group of upstream hosts.
type Cluster struct {
	Name             string            `yaml:"name" json:"name"`
	Type             string            `yaml:"type" json:"type"`         // static | strict_dns
	Protocol         string            `yaml:"protocol" json:"protocol"` // http2 | http1 | auto
	ConnectTimeout   Duration          `yaml:"connect_timeout" json:"connect_timeout"`
	LBPolicy         string            `yaml:"lb_policy" json:"lb_policy"` // round_robin | least_request | random | ring_hash | maglev
	DNSRefreshRate   Duration          `yaml:"dns_refresh_rate" json:"dns_refresh_rate"`
	ZoneAware        ZoneAware         `yaml:"zone_aware" json:"zone_aware"`
	PanicThreshold   *float64          `yaml:"panic_threshold,omitempty" json:"panic_threshold,omitempty"`
	Endpoints        []Endpoint        `yaml:"endpoints" json:"endpoints"`
	HealthCheck      *HealthCheck      `yaml:"health_check,omitempty" json:"health_check,omitempty"`
	OutlierDetection *OutlierDetection `yaml:"outlier_detection,omitempty" json:"outlier_detection,omitempty"`
	CircuitBreakers  CircuitBreakers   `yaml:"circuit_breakers" json:"circuit_breakers"`
	TLS              *UpstreamTLS      `yaml:"tls,omitempty" json:"tls,omitempty"`
	// MaxConcurrentStreams caps the streams of one upstream HTTP/2
	// connection below the peer's SETTINGS_MAX_CONCURRENT_STREAMS (Envoy's
	// http2_protocol_options.max_concurrent_streams); the pool opens
	// another connection, up to circuit_breakers.max_connections, when
	// every one is at the cap. 0, the default, leaves the peer's value.
	MaxConcurrentStreams uint32 `yaml:"max_concurrent_streams" json:"max_concurrent_streams"`
	// MaxRequestsPerConnection retires an upstream HTTP/2 connection once
	// it has carried this many streams (Envoy's
	// common_http_protocol_options.max_requests_per_connection); it closes
	// when they finish. 0, the default, is no cap.
	MaxRequestsPerConnection uint32 `yaml:"max_requests_per_connection" json:"max_requests_per_connection"`
	// KeepaliveInterval is how long an upstream HTTP/2 connection may
	// read nothing before it sends a PING (Envoy's
	// http2_protocol_options.connection_keepalive.interval); unset means
	// 30s, 0s turns the PINGs off. KeepaliveTimeout is how long the PING
	// may wait for its ACK before the connection is closed (Envoy's
	// connection_keepalive.timeout); 0 means 15s.
	KeepaliveInterval *Duration `yaml:"keepalive_interval,omitempty" json:"keepalive_interval,omitempty"`
	KeepaliveTimeout  Duration  `yaml:"keepalive_timeout" json:"keepalive_timeout"`
	// IdleTimeout closes an upstream connection that has carried no
	// request for this long (Envoy's
	// common_http_protocol_options.idle_timeout, counted in
	// upstream_cx_destroy_local); unset means 1h, 0s never closes one.
	// A cluster that served a burst and went quiet gives its connections
	// back.
	IdleTimeout *Duration `yaml:"idle_timeout,omitempty" json:"idle_timeout,omitempty"`
}

// UpstreamIdleTimeout is idle_timeout with its default; 0: never.
func (c *Cluster) UpstreamIdleTimeout() time.Duration {
	if c.IdleTimeout == nil {
		return time.Hour
	}
	return c.IdleTimeout.D()
}

// Endpoint is one configured upstream address. For strict_dns clusters the
// host part is a name whose every A/AAAA record becomes a host.
type Endpoint struct {
	Address string `yaml:"address" json:"address"`
	Zone    string `yaml:"zone,omitempty" json:"zone,omitempty"`
	Weight  uint32 `yaml:"weight,omitempty" json:"weight,omitempty"`
}

// ZoneAware configures zone-aware routing.
type ZoneAware struct {
	Enabled        bool `yaml:"enabled" json:"enabled"`
	MinClusterSize int  `yaml:"min_cluster_size" json:"min_cluster_size"`
	// LocalCluster names a cluster whose endpoints list the proxy fleet by
	// zone (Envoy's local_cluster_name): their spread is the share of the
	// traffic each zone originates. Unset, every zone of the upstream
	// cluster is taken to originate an equal share.
	LocalCluster string `yaml:"local_cluster,omitempty" json:"local_cluster,omitempty"`
}

// HealthCheck configures active health checking; exactly one of GRPC, HTTP
// and TCP is set.
type HealthCheck struct {
	GRPC               *GRPCHealthCheck `yaml:"grpc,omitempty" json:"grpc,omitempty"`
	HTTP               *HTTPHealthCheck `yaml:"http,omitempty" json:"http,omitempty"`
	TCP                *TCPHealthCheck  `yaml:"tcp,omitempty" json:"tcp,omitempty"`
	Interval           Duration         `yaml:"interval" json:"interval"`
	IntervalJitter     Duration         `yaml:"interval_jitter" json:"interval_jitter"`
	Timeout            Duration         `yaml:"timeout" json:"timeout"`
	HealthyThreshold   int              `yaml:"healthy_threshold" json:"healthy_threshold"`
	UnhealthyThreshold int              `yaml:"unhealthy_threshold" json:"unhealthy_threshold"`
	// NoTrafficInterval is Envoy's no_traffic_interval: the interval
	// between checks while the cluster has had no request routed to it
	// (default 60s). Once it has, Interval applies.
	NoTrafficInterval Duration `yaml:"no_traffic_interval" json:"no_traffic_interval"`
	// NoTrafficHealthyInterval is Envoy's no_traffic_healthy_interval: the
	// interval, while the cluster has had no traffic, after a check that
	// found its host healthy (default: NoTrafficInterval).
	NoTrafficHealthyInterval Duration `yaml:"no_traffic_healthy_interval" json:"no_traffic_healthy_interval"`
	EventLogPath             string   `yaml:"event_log_path,omitempty" json:"event_log_path,omitempty"`
	// EventLogFormat shapes the event log's lines: sightline (the
	// default: host as {address, port}) or envoy (Envoy's
	// HealthCheckEvent JSON exactly: host.socket_address, locality).
	// Clusters that share a log file share its format.
	EventLogFormat string `yaml:"event_log_format,omitempty" json:"event_log_format,omitempty"`
}

// GRPCHealthCheck uses grpc.health.v1.Health/Check.
type GRPCHealthCheck struct {
	ServiceName string `yaml:"service_name" json:"service_name"`
}

// HTTPHealthCheck sends a GET to Path.
type HTTPHealthCheck struct {
	Path             string `yaml:"path" json:"path"`
	ExpectedStatuses []int  `yaml:"expected_statuses,omitempty" json:"expected_statuses,omitempty"`
	// RetriableStatuses are Envoy's retriable_statuses: answers that fail
	// the check but count toward unhealthy_threshold. Any other status
	// not in ExpectedStatuses ejects the host at once, as in Envoy.
	RetriableStatuses []int `yaml:"retriable_statuses,omitempty" json:"retriable_statuses,omitempty"`
}

// TCPHealthCheck only connects.
type TCPHealthCheck struct{}

// OutlierDetection ejects hosts that keep failing.
type OutlierDetection struct {
	Consecutive5xx     int      `yaml:"consecutive_5xx" json:"consecutive_5xx"`
	Interval           Duration `yaml:"interval" json:"interval"`
	BaseEjectionTime   Duration `yaml:"base_ejection_time" json:"base_ejection_time"`
	MaxEjectionPercent int      `yaml:"max_ejection_percent" json:"max_ejection_percent"`
	// SuccessfulActiveHealthCheckUnejectHost is Envoy's
	// successful_active_health_check_uneject_host (default true): a
	// passing active health check returns an ejected host to service at
	// once.
	SuccessfulActiveHealthCheckUnejectHost *bool `yaml:"successful_active_health_check_uneject_host,omitempty" json:"successful_active_health_check_uneject_host,omitempty"`
	// EventLogPath is the outlier-detection event log: one line per
	// ejection and return, in Envoy's OutlierDetectionEvent JSON (Envoy
	// has one for the cluster manager; here each cluster names its own,
	// and clusters may share one file).
	EventLogPath string `yaml:"event_log_path,omitempty" json:"event_log_path,omitempty"`
}

// CircuitBreakers bound what a cluster may have outstanding.
type CircuitBreakers struct {
	MaxConnections     int `yaml:"max_connections" json:"max_connections"`
	MaxPendingRequests int `yaml:"max_pending_requests" json:"max_pending_requests"`
	MaxRequests        int `yaml:"max_requests" json:"max_requests"`
	MaxRetries         int `yaml:"max_retries" json:"max_retries"`
	// MaxConnectionPools caps the connection pools of the cluster's hosts
	// that hold at least one connection at once (Envoy's
	// max_connection_pools); a host has one pool per upstream protocol it
	// is reached with. 0, the default, is unlimited, as in Envoy.
	MaxConnectionPools int `yaml:"max_connection_pools" json:"max_connection_pools"`
}

// UpstreamTLS makes the cluster's connections TLS.
type UpstreamTLS struct {
	SNI                string `yaml:"sni,omitempty" json:"sni,omitempty"`
	CAFile             string `yaml:"ca_file,omitempty" json:"ca_file,omitempty"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify" json:"insecure_skip_verify"`
	// CertFile and KeyFile are the client certificate the proxy presents
	// when the upstream asks for one (mutual TLS); both or neither.
	CertFile string `yaml:"cert_file,omitempty" json:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty" json:"key_file,omitempty"`
	// CAPEM, CertPEM and KeyPEM are ca_file, cert_file and key_file
	// inline, as PEM (what a control plane's secrets give): one of each
	// pair, never both; never logged or shown in /config_dump.
	CAPEM   string `yaml:"ca_pem,omitempty" json:"ca_pem,omitempty" redact:"true"`
	CertPEM string `yaml:"cert_pem,omitempty" json:"cert_pem,omitempty" redact:"true"`
	KeyPEM  string `yaml:"key_pem,omitempty" json:"key_pem,omitempty" redact:"true"`
}

// Duration is a time.Duration written as a Go duration string ("500ms").
// A bare number is refused with a hint, since "timeout: 15" is ambiguous.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
