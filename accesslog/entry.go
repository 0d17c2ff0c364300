package accesslog

import (
	"time"

	"github.com/rs/zerolog"
)

// Entry is one request as the access log sees it. The proxy fills one per
// request (it may pool them: Log does not keep e).
//
// Empties follow one rule: a value that is not known is JSON null, whatever
// its type. Strings are null when empty, start_time when zero, response_code
// when 0 (no response was sent), grpc_status when negative (not a gRPC call or
// no status) and upstream_service_time_ms when negative (no upstream answered).
// Counts and sizes that are really zero (bytes, attempts, duration) are 0.
// Use Reset to get an Entry with the "not known" sentinels set.
type Entry struct {
	StartTime time.Time
	Method    string
	Authority string
	Path      string // without the query: the JSON line's path
	// PathQuery is the request target as the client sent it, query
	// included: Envoy's :path, what %REQ(:PATH)% prints. Empty means Path.
	PathQuery               string
	Protocol                string // HTTP/1.1, HTTP/2
	ResponseCode            int    // 0: none sent
	GRPCStatus              int    // -1: none
	ResponseFlags           string // Envoy's letters, comma-joined: "UH,URX"
	BytesReceived           int64
	BytesSent               int64
	Duration                time.Duration
	UpstreamServiceTime     time.Duration // negative: no upstream answered
	UpstreamHost            string
	UpstreamCluster         string
	UpstreamZone            string
	RouteName               string
	Attempts                int
	RequestID               string
	TraceID                 string
	DownstreamRemoteAddress string
	XForwardedFor           string
	UserAgent               string

	// HealthCheck marks a request from a health checker; it is not written,
	// only used by the not_health_check filter.
	HealthCheck bool
}

// Reset clears e for reuse and sets the sentinels meaning "not known", so a
// pooled Entry never leaks the previous request's values.
func (e *Entry) Reset() {
	*e = Entry{GRPCStatus: -1, UpstreamServiceTime: -1}
}

// The access log keys, in the order they are written.
const (
	KeyStartTime               = "start_time"
	KeyMethod                  = "method"
	KeyAuthority               = "authority"
	KeyPath                    = "path"
	KeyProtocol                = "protocol"
	KeyResponseCode            = "response_code"
	KeyGRPCStatus              = "grpc_status"
	KeyResponseFlags           = "response_flags"
	KeyBytesReceived           = "bytes_received"
	KeyBytesSent               = "bytes_sent"
	KeyDurationMS              = "duration_ms"
	KeyUpstreamServiceTimeMS   = "upstream_service_time_ms"
	KeyUpstreamHost            = "upstream_host"
	KeyUpstreamCluster         = "upstream_cluster"
	KeyUpstreamZone            = "upstream_zone"
	KeyRouteName               = "route_name"
	KeyAttempts                = "attempts"
	KeyRequestID               = "request_id"
	KeyTraceID                 = "trace_id"
	KeyDownstreamRemoteAddress = "downstream_remote_address"
	KeyXForwardedFor           = "x_forwarded_for"
	KeyUserAgent               = "user_agent"
)

var jsonNull = []byte("null")

// timeLayout is RFC 3339 with milliseconds; times are converted to UTC first,
// so it always ends in Z.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// encode writes e's fields into ev. It allocates nothing: zerolog pools its
// events, and the time is formatted into a stack buffer.
func (e *Entry) encode(ev *zerolog.Event) {
	appendTime(ev, KeyStartTime, e.StartTime)
	str(ev, KeyMethod, e.Method)
	str(ev, KeyAuthority, e.Authority)
	str(ev, KeyPath, e.Path)
	str(ev, KeyProtocol, e.Protocol)
	if e.ResponseCode > 0 {
		ev.Int(KeyResponseCode, e.ResponseCode)
	} else {
		ev.RawJSON(KeyResponseCode, jsonNull)
	}
	if e.GRPCStatus >= 0 {
		ev.Int(KeyGRPCStatus, e.GRPCStatus)
	} else {
		ev.RawJSON(KeyGRPCStatus, jsonNull)
	}
	str(ev, KeyResponseFlags, e.ResponseFlags)
	ev.Int64(KeyBytesReceived, e.BytesReceived)
	ev.Int64(KeyBytesSent, e.BytesSent)
	ev.Float64(KeyDurationMS, millis(e.Duration))
	if e.UpstreamServiceTime >= 0 {
		ev.Float64(KeyUpstreamServiceTimeMS, millis(e.UpstreamServiceTime))
	} else {
		ev.RawJSON(KeyUpstreamServiceTimeMS, jsonNull)
	}
	str(ev, KeyUpstreamHost, e.UpstreamHost)
	str(ev, KeyUpstreamCluster, e.UpstreamCluster)
	str(ev, KeyUpstreamZone, e.UpstreamZone)
	str(ev, KeyRouteName, e.RouteName)
	ev.Int(KeyAttempts, e.Attempts)
	str(ev, KeyRequestID, e.RequestID)
	str(ev, KeyTraceID, e.TraceID)
	str(ev, KeyDownstreamRemoteAddress, e.DownstreamRemoteAddress)
	str(ev, KeyXForwardedFor, e.XForwardedFor)
	str(ev, KeyUserAgent, e.UserAgent)
}

// str writes s, or null when it is empty.
func str(ev *zerolog.Event, key, s string) {
	if s == "" {
		ev.RawJSON(key, jsonNull)
		return
	}
	ev.Str(key, s)
}

// appendTime writes t in UTC as RFC 3339 with milliseconds, or null when t is
// zero. zerolog's own Time follows the global TimeFieldFormat, which the
// binary sets for its own log; the access log format must not move with it.
func appendTime(ev *zerolog.Event, key string, t time.Time) {
	if t.IsZero() {
		ev.RawJSON(key, jsonNull)
		return
	}
	var b [40]byte
	s := append(b[:0], '"')
	s = t.UTC().AppendFormat(s, timeLayout)
	s = append(s, '"')
	ev.RawJSON(key, s)
}

// millis is d in milliseconds, rounded to the microsecond: finer digits are
// noise that only lengthens the line.
func millis(d time.Duration) float64 {
	return float64(d.Round(time.Microsecond)) / float64(time.Millisecond)
}
