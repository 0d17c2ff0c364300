package accesslog

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/stats"
)

// HealthEventType says which of Envoy's three event bodies a HealthEvent has.
type HealthEventType int

const (
	// EjectUnhealthy: the host went unhealthy (eject_unhealthy_event).
	EjectUnhealthy HealthEventType = iota + 1
	// AddHealthy: the host became healthy (add_healthy_event).
	AddHealthy
	// HealthCheckFailure: a check failed without changing the host's state
	// (health_check_failure_event).
	HealthCheckFailure
)

// Failure types, as Envoy's HealthCheckFailureType names them.
const (
	FailureActive         = "ACTIVE"
	FailurePassive        = "PASSIVE"
	FailureNetwork        = "NETWORK"
	FailureNetworkTimeout = "NETWORK_TIMEOUT"
)

// Health checker types.
const (
	CheckerGRPC = "GRPC"
	CheckerHTTP = "HTTP"
	CheckerTCP  = "TCP"
)

// HealthEvent is one line of the health-check event log, shaped as Envoy's
// HealthCheckEvent so tools written for Envoy's event log read it:
//
//	{"health_checker_type":"GRPC","host":{"address":"10.0.0.1","port":5101},
//	 "cluster_name":"primary","timestamp":"2026-01-02T15:04:05.000Z",
//	 "eject_unhealthy_event":{"failure_type":"ACTIVE"}}
type HealthEvent struct {
	CheckerType string // GRPC, HTTP, TCP
	HostAddress string
	HostPort    int
	ClusterName string
	Timestamp   time.Time
	Type        HealthEventType
	FailureType string // EjectUnhealthy and HealthCheckFailure
	FirstCheck  bool   // AddHealthy and HealthCheckFailure
	Zone        string // the host's zone: locality.zone in Envoy's shape
}

// HealthLog is a cluster's health-check event log (event_log_path).
type HealthLog struct {
	*eventLog
	envoy bool // Envoy's exact HealthCheckEvent JSON (event_log_format: envoy)
}

// eventLog is a file of JSON events, one a line: the health-check and
// outlier-detection event logs. It shares the access log's batching
// writer: events are rare, but no checker or detector may wait on a disk.
type eventLog struct {
	w   *batchWriter
	enc zerolog.Logger
	st  *stats.AccessLog
}

// openEventLog opens path ("-" is stdout) with the default flush interval
// and buffer. st may be nil.
func openEventLog(path string, st *stats.AccessLog, log zerolog.Logger) (*eventLog, error) {
	if path == "" {
		return nil, errors.New("accesslog: empty event log path")
	}
	open, reopens := pathOpener(path)
	return newEventLog(path, st, log, DefaultFlushInterval, open, reopens)
}

func newEventLog(path string, st *stats.AccessLog, log zerolog.Logger, interval time.Duration, open opener, reopens bool) (*eventLog, error) {
	if st == nil {
		st = &stats.AccessLog{}
	}
	w, err := newBatchWriter(path, interval, DefaultBufferBytes, st, log, open, reopens)
	if err != nil {
		return nil, err
	}
	return &eventLog{w: w, enc: zerolog.New(w), st: st}, nil
}

// Reopen reopens the file for log rotation, as Logger.Reopen does.
func (l *eventLog) Reopen() error { return l.w.Reopen() }

// Close writes every buffered event and closes the file, as Logger.Close
// does.
func (l *eventLog) Close(ctx context.Context) error { return l.w.Close(ctx) }

// NewHealthLog opens a health-check event log at path ("-" is stdout);
// format is "sightline" (or empty) or "envoy" (event_log_format). st may
// be nil.
func NewHealthLog(path, format string, st *stats.AccessLog, log zerolog.Logger) (*HealthLog, error) {
	l, err := openEventLog(path, st, log)
	if err != nil {
		return nil, err
	}
	return &HealthLog{eventLog: l, envoy: format == "envoy"}, nil
}

// Log writes ev. An event of unknown Type is a bug in the caller; it is
// counted as dropped rather than written without a body.
func (h *HealthLog) Log(ev *HealthEvent) {
	var key string
	switch ev.Type {
	case EjectUnhealthy:
		key = "eject_unhealthy_event"
	case AddHealthy:
		key = "add_healthy_event"
	case HealthCheckFailure:
		key = "health_check_failure_event"
	default:
		h.st.Dropped.Inc(1)
		return
	}
	e := h.enc.Log()
	if e == nil {
		h.st.Dropped.Inc(1)
		return
	}
	body := zerolog.Dict()
	if ev.Type != AddHealthy {
		str(body, "failure_type", ev.FailureType)
	}
	if ev.Type != EjectUnhealthy {
		body.Bool("first_check", ev.FirstCheck)
	}
	str(e, "health_checker_type", ev.CheckerType)
	if !h.envoy {
		e.Dict("host", zerolog.Dict().Str("address", ev.HostAddress).Int("port", ev.HostPort))
		str(e, "cluster_name", ev.ClusterName)
		appendTime(e, "timestamp", ev.Timestamp)
		e.Dict(key, body)
		e.Send()
		return
	}
	// Envoy's HealthCheckEvent as Envoy writes it: proto JSON with every
	// field printed, in field-number order (the event body before the
	// timestamp for eject and add, after it for a failure).
	e.Dict("host", zerolog.Dict().Dict("socket_address", zerolog.Dict().
		Str("protocol", "TCP").Str("address", ev.HostAddress).Int("port_value", ev.HostPort).
		Str("resolver_name", "").Bool("ipv4_compat", false)))
	str(e, "cluster_name", ev.ClusterName)
	if ev.Type != HealthCheckFailure {
		e.Dict(key, body)
		appendTime(e, "timestamp", ev.Timestamp)
	} else {
		appendTime(e, "timestamp", ev.Timestamp)
		e.Dict(key, body)
	}
	e.Dict("metadata", zerolog.Dict().Dict("filter_metadata", zerolog.Dict()).Dict("typed_filter_metadata", zerolog.Dict()))
	e.Dict("locality", zerolog.Dict().Str("region", "").Str("zone", ev.Zone).Str("sub_zone", ""))
	e.Send()
}
