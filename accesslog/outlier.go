package accesslog

import (
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/stats"
)

// OutlierEvent is one line of the outlier-detection event log, written
// as Envoy writes its OutlierDetectionEvent (proto JSON, fields in its
// order, uint64 as strings):
//
//	{"type":"CONSECUTIVE_5XX","timestamp":"2026-01-02T15:04:05.000Z",
//	 "cluster_name":"primary","upstream_url":"10.0.0.1:5101","action":"EJECT",
//	 "num_ejections":1,"enforced":true,"eject_consecutive_event":{}}
type OutlierEvent struct {
	Eject       bool // EJECT, or UNEJECT when the host returns
	Timestamp   time.Time
	ClusterName string
	Host        string // ip:port: upstream_url
	// SecsSinceLastAction is the time since the host's previous ejection
	// or return; negative when it has none (left out, as Envoy does).
	SecsSinceLastAction int64
	NumEjections        uint64
	Enforced            bool
}

// OutlierLog is the outlier-detection event log of the clusters that name
// its path (outlier_detection.event_log_path).
type OutlierLog struct{ *eventLog }

// NewOutlierLog opens an outlier-detection event log at path ("-" is
// stdout). st may be nil.
func NewOutlierLog(path string, st *stats.AccessLog, log zerolog.Logger) (*OutlierLog, error) {
	l, err := openEventLog(path, st, log)
	if err != nil {
		return nil, err
	}
	return &OutlierLog{l}, nil
}

// Log writes ev. Sightline ejects on consecutive failures only, 5xx and
// gateway failures counted together: the type is always CONSECUTIVE_5XX.
func (o *OutlierLog) Log(ev *OutlierEvent) {
	e := o.enc.Log()
	if e == nil {
		o.st.Dropped.Inc(1)
		return
	}
	e.Str("type", "CONSECUTIVE_5XX")
	appendTime(e, "timestamp", ev.Timestamp)
	if ev.SecsSinceLastAction >= 0 {
		e.Str("secs_since_last_action", strconv.FormatInt(ev.SecsSinceLastAction, 10))
	}
	e.Str("cluster_name", ev.ClusterName)
	e.Str("upstream_url", ev.Host)
	if ev.Eject {
		e.Str("action", "EJECT")
	} else {
		e.Str("action", "UNEJECT")
	}
	e.Uint64("num_ejections", ev.NumEjections)
	e.Bool("enforced", ev.Enforced)
	if ev.Eject {
		e.Dict("eject_consecutive_event", zerolog.Dict())
	}
	e.Send()
}
