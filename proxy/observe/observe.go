// Package observe holds what a listener's request paths need to identify,
// trace and log each request: the request-ID policy, the tracer and the
// access logs. Both the HTTP/2 engine and the HTTP/1.1 path take one, so
// the two paths decide ids, spans and log lines the same way.
package observe

import (
	"strings"

	"github.com/sightline-proxy/sightline/accesslog"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/tracing"
)

// Observer is one listener's request-ID policy, tracer and access logs. A
// nil *Observer observes nothing: no id, no span, no log line.
type Observer struct {
	rid           config.RequestID
	setInResponse bool
	tracer        *tracing.Tracer
	logs          []*accesslog.Logger
}

// New returns the Observer of a listener. tracer may be nil (no tracing)
// and logs empty (no access log).
func New(rid config.RequestID, tracer *tracing.Tracer, logs []*accesslog.Logger) *Observer {
	return &Observer{
		rid:           rid,
		setInResponse: rid.SetInResponse == nil || *rid.SetInResponse,
		tracer:        tracer,
		logs:          logs,
	}
}

// RequestID returns the x-request-id of a request that carried existing
// ("" when absent), as the listener's request_id settings decide: kept,
// replaced by a new UUIDv4, or "" for none.
func (o *Observer) RequestID(existing string) string {
	if o == nil {
		return ""
	}
	id, _ := tracing.RequestID(existing, o.rid)
	return id
}

// SetInResponse reports whether the request ID goes on the response.
func (o *Observer) SetInResponse() bool { return o != nil && o.setInResponse }

// Tracer is the listener's tracer; nil or disabled means no spans.
func (o *Observer) Tracer() *tracing.Tracer {
	if o == nil {
		return nil
	}
	return o.tracer
}

// Tracing reports whether spans are made.
func (o *Observer) Tracing() bool { return o != nil && o.tracer.Enabled() }

// Logging reports whether any access log is configured, so a request path
// can skip gathering what only the log needs.
func (o *Observer) Logging() bool { return o != nil && len(o.logs) > 0 }

// Log writes e to every access log of the listener (each applies its own
// filter). It never blocks and does not keep e.
func (o *Observer) Log(e *accesslog.Entry) {
	if o == nil {
		return
	}
	for _, l := range o.logs {
		l.Log(e)
	}
}

// End is the one finish step of a request's observation, for both codecs:
// e, filled in by the codec, ends the SERVER span srv (the status the
// client got, its gRPC status and response flags, the upstream it went
// to) and is written to every access log. The codec ends the open
// attempt's CLIENT span first.
func (o *Observer) End(e *accesslog.Entry, srv tracing.Span) {
	if o.Tracing() {
		srv.End(tracing.Result{
			HTTPStatus: e.ResponseCode, GRPCStatus: e.GRPCStatus, HasGRPCStatus: e.GRPCStatus >= 0,
			ResponseFlags: e.ResponseFlags, Cluster: e.UpstreamCluster, Host: e.UpstreamHost, Zone: e.UpstreamZone,
			Route: e.RouteName, UserAgent: e.UserAgent, ClientAddress: e.DownstreamRemoteAddress, Protocol: e.Protocol,
		})
	}
	if o.Logging() {
		e.HealthCheck = IsHealthCheck(e.Path, e.UserAgent)
		o.Log(e)
	}
}

// healthCheckAgents are the user-agent prefixes of health checkers: the
// proxy's own, Envoy's and Kubernetes' probes.
var healthCheckAgents = [...]string{"Sightline/HC", "Envoy/HC", "kube-probe/"}

// IsHealthCheck reports whether a request is a health check, for the access
// log's not_health_check filter: a gRPC health check (grpc.health.v1), or a
// request from a known health checker's user agent.
func IsHealthCheck(path, userAgent string) bool {
	if strings.HasPrefix(path, "/grpc.health.v1.Health/") {
		return true
	}
	for _, a := range healthCheckAgents {
		if strings.HasPrefix(userAgent, a) {
			return true
		}
	}
	return false
}

// TraceIDFromTraceparent returns the trace id of a W3C traceparent value
// ("00-<32 hex>-<16 hex>-<2 hex>"), or "" when it is malformed. It lets the
// access log carry the caller's trace id even when the proxy does not trace.
func TraceIDFromTraceparent(v string) string {
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return ""
	}
	id := v[3:35]
	zero := true
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return ""
		}
		if c != '0' {
			zero = false
		}
	}
	if zero {
		return ""
	}
	return id
}
