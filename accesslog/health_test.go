package accesslog

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestHealthEventShape(t *testing.T) {
	ts := time.Date(2026, 11, 23, 21, 0, 0, 5e6, time.UTC)
	base := HealthEvent{CheckerType: CheckerGRPC, HostAddress: "127.0.0.1", HostPort: 5101, ClusterName: "primary", Timestamp: ts}
	with := func(typ HealthEventType, failure string, first bool) *HealthEvent {
		e := base
		e.Type, e.FailureType, e.FirstCheck = typ, failure, first
		return &e
	}
	common := map[string]any{
		"health_checker_type": "GRPC",
		"host":                map[string]any{"address": "127.0.0.1", "port": 5101.0},
		"cluster_name":        "primary",
		"timestamp":           "2026-11-23T21:00:00.005Z",
	}
	tests := []struct {
		name string
		ev   *HealthEvent
		key  string
		body map[string]any
	}{
		{"eject", with(EjectUnhealthy, FailureActive, true), "eject_unhealthy_event", map[string]any{"failure_type": "ACTIVE"}},
		{"add healthy", with(AddHealthy, "", true), "add_healthy_event", map[string]any{"first_check": true}},
		{"failure", with(HealthCheckFailure, FailureNetworkTimeout, false), "health_check_failure_event",
			map[string]any{"failure_type": "NETWORK_TIMEOUT", "first_check": false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "hc.log")
			st := newStats()
			h, err := NewHealthLog(path, st, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			h.Log(tt.ev)
			h.Log(&HealthEvent{}) // no Type: a caller bug, counted not written
			closeLogger(t, h)
			lines := readLines(t, path)
			if len(lines) != 1 {
				t.Fatalf("got %d lines, want 1", len(lines))
			}
			want := map[string]any{tt.key: tt.body}
			for k, v := range common {
				want[k] = v
			}
			if !reflect.DeepEqual(lines[0], want) {
				t.Errorf("got  %v\nwant %v", lines[0], want)
			}
			if st.Written.Value() != 1 || st.Dropped.Value() != 1 {
				t.Errorf("written %d dropped %d; want 1, 1", st.Written.Value(), st.Dropped.Value())
			}
		})
	}
}

func TestHealthLogReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hc.log")
	h, err := NewHealthLog(path, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ev := &HealthEvent{CheckerType: CheckerTCP, HostAddress: "::1", HostPort: 1, Type: AddHealthy, Timestamp: time.Now()}
	h.Log(ev)
	if err := renameAndReopen(path, h.Reopen); err != nil {
		t.Fatal(err)
	}
	h.Log(ev)
	h.Log(ev)
	closeLogger(t, h)
	if a, b := countLines(t, path+".1"), countLines(t, path); a != 1 || b != 2 {
		t.Errorf("rotated %d lines, new %d; want 1, 2", a, b)
	}
}
