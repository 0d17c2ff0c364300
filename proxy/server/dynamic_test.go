package server

import (
	"encoding/json"
	"strings"
	"testing"
)

type rawDump string

func (r rawDump) MarshalJSON() ([]byte, error) { return []byte(r), nil }

// TestDynamicDumpAndReadiness: /config_dump shows what the control plane
// sent under "xds", after the config's own keys, and /ready stays
// INITIALIZING until the control plane's first resources run.
func TestDynamicDumpAndReadiness(t *testing.T) {
	s := started(t, load(t, "admin: {address: 127.0.0.1:0}\nserver: {drain_time: 10ms}\n"))
	ready := make(chan struct{})
	s.HoldReady(ready)
	if got := s.State(); got != "INITIALIZING" {
		t.Errorf("state %s while the control plane has sent nothing, want INITIALIZING", got)
	}
	close(ready)
	if got := s.State(); got != "LIVE" {
		t.Errorf("state %s once it has, want LIVE", got)
	}

	s.SetDynamicDump(func() json.Marshaler { return rawDump(`{"configs":[{"version_info":"7"}]}`) })
	b, err := s.ConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Admin struct{ Address string }
		XDS   struct {
			Configs []struct {
				VersionInfo string `json:"version_info"`
			}
		}
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	if got.Admin.Address != "127.0.0.1:0" || len(got.XDS.Configs) != 1 || got.XDS.Configs[0].VersionInfo != "7" {
		t.Errorf("dump %s", b)
	}
	if i, j := strings.Index(string(b), `"admin"`), strings.Index(string(b), `"xds"`); i < 0 || j < i {
		t.Errorf("xds is not after the config's keys:\n%s", b)
	}
}
