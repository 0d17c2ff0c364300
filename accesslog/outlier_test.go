package accesslog

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestOutlierLogReopen: after the file is renamed (as logrotate does) and
// Reopen runs, the next events go to a new file at the path and none is
// lost; the stats count every line written.
func TestOutlierLogReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outlier.log")
	st := newStats()
	o, err := NewOutlierLog(path, st, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 11, 23, 21, 0, 0, 5e6, time.UTC)
	eject := &OutlierEvent{Eject: true, Timestamp: ts, ClusterName: "c", Host: "10.0.0.1:80", SecsSinceLastAction: -1, NumEjections: 1, Enforced: true}
	o.Log(eject)
	if err := renameAndReopen(path, o.Reopen); err != nil {
		t.Fatal(err)
	}
	o.Log(&OutlierEvent{Timestamp: ts.Add(30 * time.Second), ClusterName: "c", Host: "10.0.0.1:80", SecsSinceLastAction: 30, NumEjections: 1})
	closeLogger(t, o)

	for _, f := range []struct{ path, want string }{
		{path + ".1", `{"type":"CONSECUTIVE_5XX","timestamp":"2026-11-23T21:00:00.005Z","cluster_name":"c","upstream_url":"10.0.0.1:80","action":"EJECT","num_ejections":1,"enforced":true,"eject_consecutive_event":{}}`},
		{path, `{"type":"CONSECUTIVE_5XX","timestamp":"2026-11-23T21:00:30.005Z","secs_since_last_action":"30","cluster_name":"c","upstream_url":"10.0.0.1:80","action":"UNEJECT","num_ejections":1,"enforced":false}`},
	} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != f.want+"\n" {
			t.Errorf("%s:\ngot  %s\nwant %s", filepath.Base(f.path), b, f.want)
		}
	}
	if st.Written.Value() != 2 {
		t.Errorf("written = %d, want 2", st.Written.Value())
	}
}
