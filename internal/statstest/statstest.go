// Package statstest reads a stats.Store as an operator does, through its
// /stats JSON, for the tests of the packages that count upstream
// connections.
package statstest

import (
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/stats"
)

// Connections are a cluster's upstream_cx_* stats, its pending requests
// and its cx_pool_open gauge; the histograms are their sample counts.
type Connections struct {
	Total, HTTP1, HTTP2                    int64
	ConnectFail, ConnectTimeout            int64
	Destroy, DestroyLocal, DestroyRemote   int64
	Active                                 int64
	ConnectMs, LengthMs                    uint64
	PendingTotal, PendingActive, PoolsOpen int64
}

// ReadConnections reads cluster's connection stats from s's /stats JSON.
func ReadConnections(t testing.TB, s *stats.Store, cluster string) Connections {
	t.Helper()
	prefix := "cluster." + cluster + "."
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/stats?format=json&filter="+url.QueryEscape("^"+regexp.QuoteMeta(prefix)), nil))
	var out struct {
		Stats []struct {
			Name  string `json:"name"`
			Value int64  `json:"value"`
			Count uint64 `json:"count"`
		} `json:"stats"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("/stats: %v", err)
	}
	var c Connections
	for _, st := range out.Stats {
		v := st.Value
		switch strings.TrimPrefix(st.Name, prefix) {
		case "upstream_cx_total":
			c.Total = v
		case "upstream_cx_http1_total":
			c.HTTP1 = v
		case "upstream_cx_http2_total":
			c.HTTP2 = v
		case "upstream_cx_connect_fail":
			c.ConnectFail = v
		case "upstream_cx_connect_timeout":
			c.ConnectTimeout = v
		case "upstream_cx_destroy":
			c.Destroy = v
		case "upstream_cx_destroy_local":
			c.DestroyLocal = v
		case "upstream_cx_destroy_remote":
			c.DestroyRemote = v
		case "upstream_cx_active":
			c.Active = v
		case "upstream_cx_connect_ms":
			c.ConnectMs = st.Count
		case "upstream_cx_length_ms":
			c.LengthMs = st.Count
		case "upstream_rq_pending_total":
			c.PendingTotal = v
		case "upstream_rq_pending_active":
			c.PendingActive = v
		case "circuit_breakers.default.cx_pool_open":
			c.PoolsOpen = v
		}
	}
	return c
}

// WaitConnections polls cluster's connection stats until they are want or
// 5s pass, calling each (when set) before every look: connections are
// counted by their own goroutines, a moment after a client's answer.
func WaitConnections(t testing.TB, s *stats.Store, cluster string, want Connections, each func()) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if each != nil {
			each()
		}
		got := ReadConnections(t, s, cluster)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats of cluster %s:\n got %+v\nwant %+v", cluster, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
