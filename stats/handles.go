package stats

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The ranges of the numeric tags.
const (
	minCode       = 100
	maxCode       = 599
	maxGRPCStatus = 16 // UNAUTHENTICATED
)

// Every handle below is built when the config is, or on first use, and kept
// by the caller; the request path only calls methods on handles it holds.
// A handle's nil *Counter, *Gauge or *Histogram fields are stats the config
// excluded: their methods do nothing.

// Cluster holds the stats of one upstream cluster. Get it from
// Store.Cluster when the cluster is built. Each family (Upstream,
// Connections, …) is created on its first use: a cluster that never sees a
// request has none of its request stats, in memory or in any sink. A
// family left unchanged for stats.compact_after is compacted (compact.go)
// and made again, with its values, on its next use: hold the Cluster, or
// the ZonePair, and ask for the family each time it is used, never keep
// the family itself.
type Cluster struct {
	sc         scope
	upstream   lazy[Upstream]
	conns      lazy[Connections]
	membership lazy[Membership]
	health     lazy[HealthCheck]
	outlier    lazy[OutlierDetection]
	breakers   lazy[CircuitBreakers]
	lb         lazy[LoadBalancer]
	grpc       lazy[grpcMethods]
	rateLimit  lazy[RateLimit]
	zones      []*ZonePair // guarded by the Store's lock; a cluster's hosts are in a few zones

	// hot are the compactable families made, cold the compacted ones,
	// retired those compacted lately (compact.go); all guarded by the
	// Store's lock. hot and retired are copied on write.
	hot     []*group
	cold    []byte
	retired []*retired
}

// Upstream is a cluster's request stats (cluster.<name>.upstream_rq_*).
type Upstream struct {
	RqTotal           *Counter
	RqTime            *Histogram
	RqActive          *Gauge
	RqPendingActive   *Gauge
	RqRetry           *Counter
	RqRetrySuccess    *Counter
	RqRetryOverflow   *Counter
	RqTimeout         *Counter
	RqPerTryTimeout   *Counter
	RqPendingOverflow *Counter
	// RqShareOverflow counts requests refused for their connection's
	// share of max_requests (breaker.Share).
	RqShareOverflow *Counter
	RqRxReset       *Counter
	RqTxReset       *Counter
	RqCancelled     *Counter
	// RqRetryLimitExceeded counts calls whose retriable outcome found no
	// retry left (num_retries used up).
	RqRetryLimitExceeded *Counter
	RqPendingTotal       *Counter
	// RqFinished is Envoy's upstream_rq_completed: calls that ended with
	// an upstream response or a local reply charged to the cluster.
	RqFinished    *Counter
	CxNoneHealthy *Counter
	// Responses counts upstream_rq_<code> and upstream_rq_<N>xx: the
	// response each call ended with, once per call.
	Responses
	// Retried counts retry.upstream_rq_<code> and retry.upstream_rq_<N>xx:
	// responses that were retried instead of forwarded.
	Retried Responses
}

// noUpstream and noConnections are a nil Cluster's families: nil handles
// that count nothing.
var (
	noUpstream    Upstream
	noConnections Connections
)

// Upstream returns the cluster's request stats, creating them on first use;
// a nil Cluster's count nothing. Hold the Cluster, not the family, where
// the family may never be used: a cluster that serves nothing then has
// none of its request stats.
func (c *Cluster) Upstream() *Upstream {
	if c == nil {
		return &noUpstream
	}
	if v := c.upstream.p.Load(); v != nil {
		return v
	}
	return thaw(c, &c.upstream, famUpstream, "", c.sc, buildUpstream)
}

func buildUpstream(sc scope) *Upstream {
	return &Upstream{
		RqTotal:              sc.counter(upstreamRqTotal),
		RqTime:               sc.histogram(upstreamRqTime),
		RqActive:             sc.gauge(upstreamRqActive),
		RqPendingActive:      sc.gauge(upstreamRqPendingActive),
		RqRetry:              sc.counter(upstreamRqRetry),
		RqRetrySuccess:       sc.counter(upstreamRqRetrySuccess),
		RqRetryOverflow:      sc.counter(upstreamRqRetryOverflow),
		RqTimeout:            sc.counter(upstreamRqTimeout),
		RqPerTryTimeout:      sc.counter(upstreamRqPerTryTimeout),
		RqPendingOverflow:    sc.counter(upstreamRqPendingOverflow),
		RqShareOverflow:      sc.counter(upstreamRqShareOverflow),
		RqRxReset:            sc.counter(upstreamRqRxReset),
		RqTxReset:            sc.counter(upstreamRqTxReset),
		RqCancelled:          sc.counter(upstreamRqCancelled),
		RqRetryLimitExceeded: sc.counter(upstreamRqRetryLimitExceeded),
		RqPendingTotal:       sc.counter(upstreamRqPendingTotal),
		RqFinished:           sc.counter(upstreamRqFinished),
		CxNoneHealthy:        sc.counter(upstreamCxNoneHealthy),
		Responses:            Responses{codes: sc.keyed(upstreamRqCode, TagResponseCode), classes: sc.keyed(upstreamRqClass, TagResponseClass)},
		Retried:              Responses{codes: sc.keyed(retryRqCode, TagResponseCode), classes: sc.keyed(retryRqClass, TagResponseClass)},
	}
}

// Connections is a cluster's connection stats (upstream_cx_*).
type Connections struct {
	CxTotal          *Counter
	CxConnectFail    *Counter
	CxConnectTimeout *Counter
	CxDestroy        *Counter
	CxDestroyLocal   *Counter
	CxDestroyRemote  *Counter
	CxActive         *Gauge
	CxHTTP1Total     *Counter
	CxHTTP2Total     *Counter
	CxConnectMs      *Histogram
	CxLengthMs       *Histogram
	// CxProtocolError counts connections closed for the host's protocol
	// errors, CxMaxRequests those retired at max_requests_per_connection,
	// CxIdleTimeout those closed at idle_timeout, CxBackoff the calls
	// refused a new connection while the pool waits after a protocol
	// error (HTTP/2 pool only).
	CxProtocolError *Counter
	CxMaxRequests   *Counter
	CxIdleTimeout   *Counter
	CxBackoff       *Counter
}

// Connections returns the cluster's connection stats, creating them on
// first use; a nil Cluster's count nothing.
func (c *Cluster) Connections() *Connections {
	if c == nil {
		return &noConnections
	}
	if v := c.conns.p.Load(); v != nil {
		return v
	}
	return thaw(c, &c.conns, famConnections, "", c.sc, buildConnections)
}

func buildConnections(sc scope) *Connections {
	return &Connections{
		CxTotal:          sc.counter(upstreamCxTotal),
		CxConnectFail:    sc.counter(upstreamCxConnectFail),
		CxConnectTimeout: sc.counter(upstreamCxConnectTimeout),
		CxDestroy:        sc.counter(upstreamCxDestroy),
		CxDestroyLocal:   sc.counter(upstreamCxDestroyLocal),
		CxDestroyRemote:  sc.counter(upstreamCxDestroyRemote),
		CxActive:         sc.gauge(upstreamCxActive),
		CxHTTP1Total:     sc.counter(upstreamCxHTTP1Total),
		CxHTTP2Total:     sc.counter(upstreamCxHTTP2Total),
		CxConnectMs:      sc.histogram(upstreamCxConnectMs),
		CxLengthMs:       sc.histogram(upstreamCxLengthMs),
		CxProtocolError:  sc.counter(upstreamCxProtocolError),
		CxMaxRequests:    sc.counter(upstreamCxMaxRequests),
		CxIdleTimeout:    sc.counter(upstreamCxIdleTimeout),
		CxBackoff:        sc.counter(upstreamCxBackoff),
	}
}

// Opened counts a connection attempt as it begins, as Envoy does:
// upstream_cx_total, its protocol's total, and upstream_cx_active until
// Ended. The pools of both protocols call it.
func (c *Connections) Opened(http2 bool) {
	c.CxTotal.Inc(1)
	if http2 {
		c.CxHTTP2Total.Inc(1)
	} else {
		c.CxHTTP1Total.Inc(1)
	}
	c.CxActive.Inc()
}

// ConnEnd is how an upstream connection ended.
type ConnEnd struct {
	ConnectFail bool // it never became ready
	Timeout     bool // …because connect_timeout passed
	Local       bool // the proxy closed it, not the peer
}

// Ended counts the end of a connection Opened counted, started at start:
// every one in upstream_cx_destroy and its _local or _remote and in
// upstream_cx_length_ms; one that never became ready in
// upstream_cx_connect_fail too, and in upstream_cx_connect_timeout when
// the connect timeout ended it.
func (c *Connections) Ended(e ConnEnd, start time.Time) {
	if e.ConnectFail {
		c.CxConnectFail.Inc(1)
		if e.Timeout {
			c.CxConnectTimeout.Inc(1)
		}
	}
	c.CxDestroy.Inc(1)
	if e.Local {
		c.CxDestroyLocal.Inc(1)
	} else {
		c.CxDestroyRemote.Inc(1)
	}
	c.CxActive.Dec()
	c.CxLengthMs.RecordDuration(time.Since(start))
}

// Membership is how many hosts a cluster has, and how many are healthy.
type Membership struct {
	Total   *Gauge
	Healthy *Gauge
}

// Membership returns the cluster's membership gauges, creating them on
// first use.
func (c *Cluster) Membership() *Membership {
	if v := c.membership.p.Load(); v != nil {
		return v
	}
	return thaw(c, &c.membership, famMembership, "", c.sc, buildMembership)
}

// SetMembership sets membership_total and membership_healthy. A cluster
// sets them whenever its hosts or their health change, which for most is
// once, when it is built: so while the family is compacted, or not made
// yet, and no push sink needs to be told of the change, the values are
// written into its cold bytes (compact.go) instead of making the family,
// and an idle cluster never holds its gauges as objects. Pull sinks read
// them from there; they show the new values from that moment, where a
// family's gauges show them from the next flush.
func (c *Cluster) SetMembership(total, healthy int64) {
	if m := c.membership.p.Load(); m != nil {
		m.Total.Set(total)
		m.Healthy.Set(healthy)
		return
	}
	if s := c.sc.s; len(s.push) == 0 && s.compactAfter > 0 && c.setColdMembership(total, healthy) {
		return
	}
	m := c.Membership()
	m.Total.Set(total)
	m.Healthy.Set(healthy)
}

func buildMembership(sc scope) *Membership {
	return &Membership{Total: sc.gauge(membershipTotal), Healthy: sc.gauge(membershipHealthy)}
}

// HealthCheck is a cluster's active health checking stats.
type HealthCheck struct {
	Attempt *Counter
	Success *Counter
	Failure *Counter
	// NetworkFailure counts the failures that were connect failures,
	// resets or timeouts rather than a bad answer.
	NetworkFailure *Counter
	Healthy        *Gauge
}

// HealthCheck returns the cluster's health check stats, creating them on
// first use.
func (c *Cluster) HealthCheck() *HealthCheck {
	return c.health.get(c.sc.s, func() *HealthCheck {
		sc := c.sc
		return &HealthCheck{
			Attempt:        sc.counter(healthCheckAttempt),
			Success:        sc.counter(healthCheckSuccess),
			Failure:        sc.counter(healthCheckFailure),
			NetworkFailure: sc.counter(healthCheckNetworkFailure),
			Healthy:        sc.gauge(healthCheckHealthy),
		}
	})
}

// OutlierDetection is a cluster's outlier ejection stats.
type OutlierDetection struct {
	EjectionsEnforced *Counter
	EjectionsActive   *Gauge
}

// OutlierDetection returns the cluster's outlier detection stats, creating
// them on first use.
func (c *Cluster) OutlierDetection() *OutlierDetection {
	return c.outlier.get(c.sc.s, func() *OutlierDetection {
		return &OutlierDetection{
			EjectionsEnforced: c.sc.counter(outlierEjectionsEnforced),
			EjectionsActive:   c.sc.gauge(outlierEjectionsActive),
		}
	})
}

// CircuitBreakers are 1 while the matching limit is reached, else 0.
type CircuitBreakers struct {
	RqOpen        *Gauge
	CxOpen        *Gauge
	RqPendingOpen *Gauge
	RqRetryOpen   *Gauge
	CxPoolOpen    *Gauge
}

// CircuitBreakers returns the cluster's circuit breaker gauges, creating
// them on first use.
func (c *Cluster) CircuitBreakers() *CircuitBreakers {
	if v := c.breakers.p.Load(); v != nil {
		return v
	}
	return thaw(c, &c.breakers, famBreakers, "", c.sc, buildBreakers)
}

func buildBreakers(sc scope) *CircuitBreakers {
	return &CircuitBreakers{
		RqOpen:        sc.gauge(breakerRqOpen),
		CxOpen:        sc.gauge(breakerCxOpen),
		RqPendingOpen: sc.gauge(breakerRqPendingOpen),
		RqRetryOpen:   sc.gauge(breakerRqRetryOpen),
		CxPoolOpen:    sc.gauge(breakerCxPoolOpen),
	}
}

// LoadBalancer counts the balancer's zone routing and panic decisions.
type LoadBalancer struct {
	ZoneRoutingAllDirectly *Counter
	ZoneRoutingSampled     *Counter
	ZoneRoutingCrossZone   *Counter
	ZoneClusterTooSmall    *Counter
	ZoneNoCapacityLeft     *Counter
	LocalClusterNotOK      *Counter
	HealthyPanic           *Counter
}

// LoadBalancer returns the cluster's balancer stats, creating them on first
// use.
func (c *Cluster) LoadBalancer() *LoadBalancer {
	return c.lb.get(c.sc.s, func() *LoadBalancer {
		sc := c.sc
		return &LoadBalancer{
			ZoneRoutingAllDirectly: sc.counter(lbZoneRoutingAllDirectly),
			ZoneRoutingSampled:     sc.counter(lbZoneRoutingSampled),
			ZoneRoutingCrossZone:   sc.counter(lbZoneRoutingCrossZone),
			ZoneClusterTooSmall:    sc.counter(lbZoneClusterTooSmall),
			ZoneNoCapacityLeft:     sc.counter(lbZoneNoCapacityLeft),
			LocalClusterNotOK:      sc.counter(lbLocalClusterNotOK),
			HealthyPanic:           sc.counter(lbHealthyPanic),
		}
	})
}

// ZonePair holds the stats of requests from this proxy's zone (node.zone)
// to a cluster's hosts in one zone.
type ZonePair struct {
	c  *Cluster
	to string
	rq lazy[ZoneUpstream]
}

// ZoneUpstream is the request stats of a zone pair
// (cluster.<name>.zone.<from>.<to>.upstream_rq_*).
type ZoneUpstream struct {
	RqTime *Histogram
	// Responses counts upstream_rq_<code> and upstream_rq_<N>xx.
	Responses
}

// noZone is the ZonePair of a host or proxy without a zone: every stat of
// it is excluded.
var noZone = func() *ZonePair {
	z := &ZonePair{}
	z.rq.p.Store(&ZoneUpstream{})
	return z
}()

// Zone returns the stats of requests to hosts in zone to. Call it when the
// hosts are built, once per host zone, and keep it with the host. When the
// proxy or the host has no zone there is no pair, and the stats returned
// count nothing.
func (c *Cluster) Zone(to string) *ZonePair {
	s := c.sc.s
	if s.fromZone == "" || to == "" {
		return noZone
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, z := range c.zones {
		if z.to == to {
			return z
		}
	}
	z := &ZonePair{c: c, to: to}
	c.zones = append(c.zones, z)
	return z
}

// Upstream returns the zone pair's request stats, creating them on first
// use.
func (z *ZonePair) Upstream() *ZoneUpstream {
	if v := z.rq.p.Load(); v != nil {
		return v
	}
	// The pair's labels are made with its stats: a pair that serves
	// nothing, or is compacted, holds none.
	sc := z.c.sc.with(TagFromZone, z.c.sc.s.fromZone).with(TagToZone, z.to)
	return thaw(z.c, &z.rq, famZone, z.to, sc, buildZoneUpstream)
}

func buildZoneUpstream(sc scope) *ZoneUpstream {
	return &ZoneUpstream{
		RqTime:    sc.histogram(zoneRqTime),
		Responses: Responses{codes: sc.keyed(zoneRqCode, TagResponseCode), classes: sc.keyed(zoneRqClass, TagResponseClass)},
	}
}

// Responses counts completed requests by status code and status class.
type Responses struct {
	codes   *keyed
	classes *keyed
}

// RqCompleted counts one response with HTTP status code: in the
// <code> and the <N>xx stats of its family (HTTP has classes only). A code
// outside 100–599 means no response and counts nowhere. A code seen for the
// first time creates its counter; after that it is a scan of the few codes
// seen and one atomic add.
func (r *Responses) RqCompleted(code int) {
	if code < minCode || code > maxCode {
		return
	}
	r.classes.get(code / 100).Inc(1)
	r.codes.get(code).Inc(1)
}

// keyed holds the counters of one stat that differ only in one numeric tag
// (a status code or class), each created when its value is first seen, so
// that only codes that happen exist. The values are bounded by their range.
type keyed struct {
	sc  scope
	def *Def
	key string
	// p is the copy-on-write list of counters so far; a nil *Counter in it
	// is a value the config excluded.
	p atomic.Pointer[[]keyedCounter]
}

type keyedCounter struct {
	k int
	c *Counter
}

func (sc scope) keyed(d *Def, key string) *keyed {
	t := &keyed{sc: sc, def: d, key: key}
	if sc.g != nil {
		sc.g.keyed = append(sc.g.keyed, t)
	}
	return t
}

// get returns the counter for value k; nil (a no-op) when t is.
func (t *keyed) get(k int) *Counter {
	if t == nil {
		return nil
	}
	if p := t.p.Load(); p != nil {
		for _, e := range *p {
			if e.k == k {
				return e.c
			}
		}
	}
	return t.add(k)
}

func (t *keyed) add(k int) *Counter {
	s := t.sc.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return t.addLocked(k)
}

// addLocked is add with the Store's lock held.
func (t *keyed) addLocked(k int) *Counter {
	var old []keyedCounter
	if p := t.p.Load(); p != nil {
		old = *p
	}
	for _, e := range old {
		if e.k == k {
			return e.c
		}
	}
	c := t.sc.with(t.key, strconv.Itoa(k)).counter(t.def)
	next := append(slices.Clip(old), keyedCounter{k: k, c: c})
	t.p.Store(&next)
	return c
}

// GRPCMethod holds the stats of one gRPC method called on a cluster.
type GRPCMethod struct {
	Total   *Counter
	Success *Counter
	Failure *Counter
	RqTime  *Histogram
	// RequestMessages and ResponseMessages count the length-prefixed
	// messages of the call each way.
	RequestMessages  *Counter
	ResponseMessages *Counter
	statuses         *keyed
}

// Completed counts one call that ended with grpc-status status: in total,
// in success (status 0) or failure, and in the per-status counter. A status
// outside 0–16 counts in total and failure only.
func (m *GRPCMethod) Completed(status int) {
	m.Total.Inc(1)
	if status == 0 {
		m.Success.Inc(1)
	} else {
		m.Failure.Inc(1)
	}
	if status >= 0 && status <= maxGRPCStatus {
		m.statuses.get(status).Inc(1)
	}
}

func (sc scope) newGRPCMethod(service, method string) *GRPCMethod {
	sc = sc.with(TagGRPCService, service).with(TagGRPCMethod, method)
	return &GRPCMethod{
		Total:            sc.counter(grpcTotal),
		Success:          sc.counter(grpcSuccess),
		Failure:          sc.counter(grpcFailure),
		RqTime:           sc.histogram(grpcRqTime),
		RequestMessages:  sc.counter(grpcRequestMessages),
		ResponseMessages: sc.counter(grpcResponseMessages),
		statuses:         sc.keyed(grpcStatus, TagGRPCStatus),
	}
}

// grpcMethods is a cluster's per-method stats, by request path.
type grpcMethods struct {
	// byPath is copy-on-write: readers load it without a lock, a new
	// method replaces it under the Store's lock. Each method's stats are
	// a compactable family in their slot; a compacted method keeps its
	// slot, so that it still counts against the cap.
	byPath atomic.Pointer[map[string]*lazy[GRPCMethod]]
	// full is set once the cluster has the maximum number of methods, so
	// refused calls take no lock.
	full  atomic.Bool
	other *lazy[GRPCMethod]
}

// noMethods is the method table of a cluster with none yet.
var noMethods = map[string]*lazy[GRPCMethod]{}

// maxGRPCName bounds a service or method name that gets its own stats.
const maxGRPCName = 256

// GRPC returns the stats of the gRPC method a request path names
// ("/pkg.Service/Method"); call it for gRPC requests only (content-type
// application/grpc). It is meant for the request path: for a method
// seen before it is an atomic load and a map lookup, with no allocation.
// The first call of a method creates its stats under the Store's lock, up
// to the cap per cluster (Options.MaxGRPCMethods); past the cap the call
// counts under grpc.other.other and in stats.overflow. A path that is not a
// gRPC method (not /Service/Method, or names with characters protobuf does
// not allow) counts under grpc.other.other too, without an overflow: stat
// names never carry arbitrary request bytes.
func (c *Cluster) GRPC(path string) *GRPCMethod {
	t := c.grpc.get(c.sc.s, func() *grpcMethods { return c.newGRPCMethodsLocked() })
	if sl, ok := (*t.byPath.Load())[path]; ok {
		if m := sl.p.Load(); m != nil {
			return m
		}
		return thaw(c, sl, famGRPC, path, c.sc, func(sc scope) *GRPCMethod {
			service, method, _ := splitGRPCPath(path)
			return sc.newGRPCMethod(service, method)
		})
	}
	return c.addGRPC(t, path)
}

// newGRPCMethodsLocked makes the cluster's method table: the first time,
// or again after every method was compacted (compact.go), with a slot for
// each method the cluster has, compacted or not. The Store's lock is held.
func (c *Cluster) newGRPCMethodsLocked() *grpcMethods {
	t := &grpcMethods{other: &lazy[GRPCMethod]{}}
	paths := c.coldPathsLocked()
	var hot []*group
	for _, g := range c.hot {
		switch g.id {
		case famGRPC:
			hot = append(hot, g)
		case famGRPCOther:
			// Made on a table since compacted: the slot it is in
			// stays the one.
			t.other = g.slot.(*lazy[GRPCMethod])
		}
	}
	if len(paths)+len(hot) == 0 {
		t.byPath.Store(&noMethods)
		return t
	}
	m := make(map[string]*lazy[GRPCMethod], len(paths)+len(hot))
	for _, p := range paths {
		m[p] = &lazy[GRPCMethod]{}
	}
	for _, g := range hot {
		m[g.key] = g.slot.(*lazy[GRPCMethod])
	}
	t.byPath.Store(&m)
	return t
}

func (c *Cluster) addGRPC(t *grpcMethods, path string) *GRPCMethod {
	s := c.sc.s
	service, method, ok := splitGRPCPath(path)
	if ok {
		if m := c.addMethod(t, path, service, method); m != nil {
			return m
		}
		s.overflow.Inc(1)
	}
	if m := t.other.p.Load(); m != nil {
		return m
	}
	return thaw(c, t.other, famGRPCOther, "", c.sc, buildOther)
}

func buildOther(sc scope) *GRPCMethod { return sc.newGRPCMethod("other", "other") }

// addMethod creates a method's stats, or returns nil when the cluster has
// the maximum number of methods already.
func (c *Cluster) addMethod(t *grpcMethods, path, service, method string) *GRPCMethod {
	if t.full.Load() {
		return nil
	}
	s := c.sc.s
	s.mu.Lock()
	old := *t.byPath.Load()
	if _, ok := old[path]; ok {
		s.mu.Unlock()
		return c.GRPC(path)
	}
	if len(old) >= s.maxMethods {
		t.full.Store(true)
		s.mu.Unlock()
		return nil
	}
	sl := &lazy[GRPCMethod]{}
	next := maps.Clone(old)
	next[path] = sl
	t.byPath.Store(&next)
	s.mu.Unlock()
	return thaw(c, sl, famGRPC, path, c.sc, func(sc scope) *GRPCMethod { return sc.newGRPCMethod(service, method) })
}

// splitGRPCPath splits "/pkg.Service/Method" into its service and method.
func splitGRPCPath(path string) (service, method string, ok bool) {
	rest, ok := strings.CutPrefix(path, "/")
	if !ok {
		return "", "", false
	}
	service, method, ok = strings.Cut(rest, "/")
	if !ok || !protoName(service, true) || !protoName(method, false) {
		return "", "", false
	}
	return service, method, true
}

// protoName reports whether s is a protobuf name: letters, digits and
// underscores, and for a service dots between non-empty parts.
func protoName(s string, dotted bool) bool {
	if s == "" || len(s) > maxGRPCName {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9', b == '_':
		case b == '.' && dotted && i > 0 && i < len(s)-1 && s[i-1] != '.':
		default:
			return false
		}
	}
	return true
}

// HTTP holds the stats of an HTTP connection manager: a listener's
// requests, under its stat_prefix.
type HTTP struct {
	DownstreamRqTotal         *Counter
	DownstreamRqTime          *Histogram
	DownstreamRqActive        *Gauge
	DownstreamCxTotal         *Counter
	DownstreamCxActive        *Gauge
	DownstreamCxHTTP2Total    *Counter
	DownstreamCxHTTP1Total    *Counter
	DownstreamCxHTTP1Active   *Gauge
	DownstreamCxHTTP2Active   *Gauge
	DownstreamCxRxBytes       *Counter
	DownstreamCxTxBytes       *Counter
	DownstreamCxProtocolError *Counter
	DownstreamRqHTTP1Total    *Counter
	DownstreamRqHTTP2Total    *Counter
	DownstreamRqRxReset       *Counter
	DownstreamRqTxReset       *Counter
	// DownstreamRqOverloadClose counts requests the overload manager
	// refused.
	DownstreamRqOverloadClose *Counter
	// DownstreamRqIdleTimeout counts requests ended by the stream idle
	// timeout (both codecs).
	DownstreamRqIdleTimeout *Counter
	DownstreamRqCompleted   *Counter
	NoRoute                 *Counter
	NoCluster               *Counter
	RqDirectResponse        *Counter

	// DownstreamCxUpgradesTotal and DownstreamCxUpgradesActive count the
	// upgraded connections: a 101 from the upstream, then a tunnel.
	DownstreamCxUpgradesTotal  *Counter
	DownstreamCxUpgradesActive *Gauge
	// Responses counts downstream_rq_<N>xx (there are no per-code
	// downstream stats).
	Responses
}

func (sc scope) newHTTP() *HTTP {
	return &HTTP{
		DownstreamRqTotal:         sc.counter(httpRqTotal),
		DownstreamRqTime:          sc.histogram(httpRqTime),
		DownstreamRqActive:        sc.gauge(httpRqActive),
		DownstreamCxTotal:         sc.counter(httpCxTotal),
		DownstreamCxActive:        sc.gauge(httpCxActive),
		DownstreamCxHTTP2Total:    sc.counter(httpCxHTTP2Total),
		DownstreamCxHTTP1Total:    sc.counter(httpCxHTTP1Total),
		DownstreamCxHTTP1Active:   sc.gauge(httpCxHTTP1Active),
		DownstreamCxHTTP2Active:   sc.gauge(httpCxHTTP2Active),
		DownstreamCxRxBytes:       sc.counter(httpCxRxBytes),
		DownstreamCxTxBytes:       sc.counter(httpCxTxBytes),
		DownstreamCxProtocolError: sc.counter(httpCxProtocolError),
		DownstreamRqHTTP1Total:    sc.counter(httpRqHTTP1Total),
		DownstreamRqHTTP2Total:    sc.counter(httpRqHTTP2Total),
		DownstreamRqRxReset:       sc.counter(httpRqRxReset),
		DownstreamRqTxReset:       sc.counter(httpRqTxReset),
		DownstreamRqOverloadClose: sc.counter(httpRqOverloadClose),
		DownstreamRqIdleTimeout:   sc.counter(httpRqIdleTimeout),
		DownstreamRqCompleted:     sc.counter(httpRqCompleted),
		NoRoute:                   sc.counter(httpNoRoute),
		NoCluster:                 sc.counter(httpNoCluster),
		RqDirectResponse:          sc.counter(httpRqDirectResponse),
		Responses:                 Responses{classes: sc.keyed(httpRqClass, TagResponseClass)},

		DownstreamCxUpgradesTotal:  sc.counter(httpCxUpgradesTotal),
		DownstreamCxUpgradesActive: sc.gauge(httpCxUpgradesActive),
	}
}

// LocalRateLimit holds the stats of the local rate limits that share a
// stat_prefix: <stat_prefix>.http_local_rate_limit.{enabled, ok,
// rate_limited, enforced}, as Envoy names them. Get it from
// Store.LocalRateLimit when the config is built.
type LocalRateLimit struct {
	Enabled     *Counter
	OK          *Counter
	RateLimited *Counter
	Enforced    *Counter
}

// RateLimit is a cluster's global rate limit stats
// (cluster.<name>.ratelimit.*): the rate limit service's answers for the
// calls routed to the cluster.
type RateLimit struct {
	OK                 *Counter
	OverLimit          *Counter
	Error              *Counter
	FailureModeAllowed *Counter
}

// RateLimit returns the cluster's global rate limit stats, creating them
// on first use; a nil Cluster's count nothing. Call it when the config is
// built.
func (c *Cluster) RateLimit() *RateLimit {
	if c == nil {
		return &RateLimit{}
	}
	return c.rateLimit.get(c.sc.s, func() *RateLimit {
		sc := c.sc
		return &RateLimit{
			OK:                 sc.counter(rateLimitOK),
			OverLimit:          sc.counter(rateLimitOverLimit),
			Error:              sc.counter(rateLimitError),
			FailureModeAllowed: sc.counter(rateLimitFailureModeAllowed),
		}
	})
}

// Listener holds the connection stats of one listener.
type Listener struct {
	DownstreamCxTotal  *Counter
	DownstreamCxActive *Gauge
	// DownstreamCxOverflow and DownstreamGlobalCxOverflow count the
	// connections closed at accept for the listener's and the process's
	// connection limits.
	DownstreamCxOverflow       *Counter
	DownstreamGlobalCxOverflow *Counter
	// DownstreamCxOverloadReject counts the connections closed at accept
	// while the overload manager's stop_accepting_connections was on.
	DownstreamCxOverloadReject *Counter
}

func (sc scope) newListener() *Listener {
	return &Listener{
		DownstreamCxTotal:          sc.counter(listenerCxTotal),
		DownstreamCxActive:         sc.gauge(listenerCxActive),
		DownstreamCxOverflow:       sc.counter(listenerCxOverflow),
		DownstreamGlobalCxOverflow: sc.counter(listenerGlobalCxOverflow),
		DownstreamCxOverloadReject: sc.counter(listenerCxOverloadReject),
	}
}

// AccessLog holds the stats of one access log.
type AccessLog struct {
	Written *Counter
	Dropped *Counter
	Flushes *Counter
}

// SinkStats is a push sink's own stats: sink.<name>.*.
type SinkStats struct {
	// BatchesDropped counts flushes the sink could not deliver.
	BatchesDropped *Counter
	// Reconnects counts deliveries that worked again after failures.
	Reconnects *Counter
}

// Server holds the process-wide stats. The Store itself sets Uptime,
// MemoryAllocated, Concurrency, GoGoroutines and GoGCPause at every flush,
// from runtime/metrics; the server sets Live and counts reloads.
// Overload is the overload manager's stats (proxy/overload).
type Overload struct {
	BufferPressure, HeapPressure *Gauge
	// ActiveRequestsPressure is the concurrency budget's pressure.
	ActiveRequestsPressure *Gauge
	ResetStreamsActive     *Gauge
	ResetStreams           *Counter
	ShrinkHeap             *Counter
	StopRequestsActive     *Gauge
	StopConnectionsActive  *Gauge
}

func (sc scope) newOverload() *Overload {
	return &Overload{
		BufferPressure:         sc.gauge(overloadBufferPressure),
		HeapPressure:           sc.gauge(overloadHeapPressure),
		ActiveRequestsPressure: sc.gauge(overloadActiveRequestsPressure),
		ResetStreamsActive:     sc.gauge(overloadResetStreamsActive),
		ResetStreams:           sc.counter(overloadResetStreams),
		ShrinkHeap:             sc.counter(overloadShrinkHeap),
		StopRequestsActive:     sc.gauge(overloadStopRequestsActive),
		StopConnectionsActive:  sc.gauge(overloadStopConnectionsActive),
	}
}

type Server struct {
	Uptime             *Gauge
	MemoryAllocated    *Gauge
	Concurrency        *Gauge
	Live               *Gauge
	ConfigReload       *Counter
	ConfigReloadFailed *Counter
	GoGCPause          *Histogram
	GoGoroutines       *Gauge
	// SpansDropped counts sampled spans lost: no room in the tracer's
	// export queue, or a batch the collector did not take.
	SpansDropped *Counter
	// DaysUntilFirstCertExpiring, CertUpdate and CertUpdateRejected are
	// kept by the server's certificate manager.
	DaysUntilFirstCertExpiring *Gauge
	CertUpdate                 *Counter
	CertUpdateRejected         *Counter

	// HotRestartEpoch and HotRestartGeneration are the binary upgrades
	// since the first process; the binary sets them once at start.
	HotRestartEpoch      *Gauge
	HotRestartGeneration *Gauge
}

func (sc scope) newServer() *Server {
	return &Server{
		Uptime:             sc.gauge(serverUptime),
		MemoryAllocated:    sc.gauge(serverMemoryAllocated),
		Concurrency:        sc.gauge(serverConcurrency),
		Live:               sc.gauge(serverLive),
		ConfigReload:       sc.counter(serverConfigReload),
		ConfigReloadFailed: sc.counter(serverConfigReloadFailed),
		GoGCPause:          sc.histogram(serverGCPause),
		GoGoroutines:       sc.gauge(serverGoroutines),
		SpansDropped:       sc.counter(tracingSpansDropped),

		DaysUntilFirstCertExpiring: sc.gauge(serverDaysUntilCertExpiring),
		CertUpdate:                 sc.counter(serverCertUpdate),
		CertUpdateRejected:         sc.counter(serverCertUpdateRejected),

		HotRestartEpoch:      sc.gauge(serverHotRestartEpoch),
		HotRestartGeneration: sc.gauge(serverHotRestartGeneration),
	}
}
