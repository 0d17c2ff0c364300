package outlier

import (
	"strings"
	"testing"
)

// TestHealthCheckPassedUnejects: with successful_active_health_check_uneject_host
// (Envoy's default, and what an unset field means) a passing active health
// check returns an ejected host at once, long before its ejection time;
// turned off, the host waits out its ejection. Hosts not ejected, and
// hosts of other clusters, are left alone.
func TestHealthCheckPassedUnejects(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name        string
		give        *bool
		wantEjected bool
	}{
		{name: "unset is true", give: nil, wantEjected: false},
		{name: "true", give: &yes, wantEjected: false},
		{name: "false", give: &no, wantEjected: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg(2, 100)
			c.SuccessfulActiveHealthCheckUnejectHost = tt.give
			f := newFixture(t, 4, c)
			h := f.hosts[0]
			f.fail(h, 2)
			if !ejected(h) {
				t.Fatal("host not ejected after consecutive_5xx failures")
			}
			changes := f.changes.Load()
			f.d.HealthCheckPassed(f.hosts[1]) // not ejected: nothing happens
			f.d.HealthCheckPassed(h)
			if ejected(h) != tt.wantEjected {
				t.Fatalf("after a passing health check: ejected = %v, want %v", ejected(h), tt.wantEjected)
			}
			wantActive, wantChanges := int64(1), changes
			if !tt.wantEjected {
				wantActive, wantChanges = 0, changes+1
			}
			if got := f.stats.EjectionsActive.Value(); got != wantActive {
				t.Errorf("ejections_active = %d, want %d", got, wantActive)
			}
			if got := f.changes.Load(); got != wantChanges {
				t.Errorf("OnChange called %d times, want %d", got-changes, wantChanges-changes)
			}
			if !tt.wantEjected {
				if m := h.Outlier.Multiplier.Load(); m != 1 {
					t.Errorf("multiplier = %d after the early return, want 1 (kept, as Envoy keeps it)", m)
				}
				if !strings.Contains(strings.Join(f.log.lines(), "\n"), "passed an active health check") {
					t.Errorf("no log line says why the host came back:\n%s", strings.Join(f.log.lines(), "\n"))
				}
				// Ejected again on the next run of failures.
				f.fail(h, 2)
				if !ejected(h) {
					t.Error("host not ejected again after consecutive_5xx more failures")
				}
			}
		})
	}
}

// TestHealthCheckPassedOnForeignHost: a host the detector does not own
// (removed from the cluster, or another detector's) is not returned.
func TestHealthCheckPassedOnForeignHost(t *testing.T) {
	f := newFixture(t, 2, cfg(1, 100))
	g := newFixture(t, 2, cfg(1, 100))
	h := g.hosts[0]
	g.fail(h, 1)
	f.d.HealthCheckPassed(h)
	if !ejected(h) {
		t.Error("a detector returned a host that is not one of its own")
	}
	var nilDetector *Detector
	nilDetector.HealthCheckPassed(h) // no detection: a no-op
}
