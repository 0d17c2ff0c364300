package server

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/accesslog"
)

// TestReopenLogsOutlierLog: POST /reopen_logs reopens the outlier event
// log as it does the access and health-check logs: after a rename, as
// logrotate does, the next event goes to a new file at the configured
// path, and the shutdown writes it.
func TestReopenLogsOutlierLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outlier.log")
	s := started(t, load(t, fmt.Sprintf(`admin: {address: 127.0.0.1:0}
server: {drain_time: 10ms}
listeners:
  - name: in
    address: 127.0.0.1:0
    virtual_hosts: [{name: all, domains: ['*'], routes: [{match: {prefix: /}, cluster: a}]}]
clusters:
  - name: a
    endpoints: [{address: 127.0.0.1:1}]
    outlier_detection: {event_log_path: %q}
`, path)))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+s.AdminAddr()+"/reopen_logs", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /reopen_logs = %d", resp.StatusCode)
	}
	s.logMu.Lock()
	l := s.ologs[path]
	s.logMu.Unlock()
	if l == nil {
		t.Fatalf("no outlier event log open at %s", path)
	}
	l.Log(&accesslog.OutlierEvent{Eject: true, Timestamp: time.Now(), ClusterName: "a", Host: "127.0.0.1:1",
		SecsSinceLastAction: -1, NumEjections: 1, Enforced: true})
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"cluster_name":"a","upstream_url":"127.0.0.1:1","action":"EJECT"`) {
		t.Errorf("the reopened outlier log holds %q, want the ejection", b)
	}
	if old, err := os.ReadFile(path + ".1"); err != nil || len(old) != 0 {
		t.Errorf("the rotated file holds %q (%v), want nothing", old, err)
	}
}
