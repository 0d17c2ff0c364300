package config

import (
	"testing"
	"time"
)

// TestHealthKeysDefaults: no_traffic_interval is Envoy's 60s,
// no_traffic_healthy_interval follows it, and
// successful_active_health_check_uneject_host is true; values written are
// kept.
func TestHealthKeysDefaults(t *testing.T) {
	inDir(t, map[string]string{"main.yaml": `clusters:
  - name: defaults
    endpoints: [{address: 127.0.0.1:1}]
    health_check: {tcp: {}}
    outlier_detection: {}
  - name: written
    endpoints: [{address: 127.0.0.1:2}]
    health_check:
      http: {path: /healthz, retriable_statuses: [429, 500]}
      no_traffic_interval: 30s
    outlier_detection: {successful_active_health_check_uneject_host: false}
  - name: both
    endpoints: [{address: 127.0.0.1:3}]
    health_check: {tcp: {}, no_traffic_interval: 10s, no_traffic_healthy_interval: 2m}
`})
	cfg, err := Load("main.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                       string
		give                       Cluster
		wantNoTraffic, wantHealthy time.Duration
		wantUneject                *bool
	}{
		{name: "defaults", give: cfg.Clusters[0], wantNoTraffic: time.Minute, wantHealthy: time.Minute, wantUneject: ptr(true)},
		{name: "written", give: cfg.Clusters[1], wantNoTraffic: 30 * time.Second, wantHealthy: 30 * time.Second, wantUneject: ptr(false)},
		{name: "both", give: cfg.Clusters[2], wantNoTraffic: 10 * time.Second, wantHealthy: 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc := tt.give.HealthCheck
			if got := hc.NoTrafficInterval.D(); got != tt.wantNoTraffic {
				t.Errorf("no_traffic_interval = %s, want %s", got, tt.wantNoTraffic)
			}
			if got := hc.NoTrafficHealthyInterval.D(); got != tt.wantHealthy {
				t.Errorf("no_traffic_healthy_interval = %s, want %s", got, tt.wantHealthy)
			}
			od := tt.give.OutlierDetection
			switch {
			case tt.wantUneject == nil && od != nil:
				t.Errorf("outlier_detection = %+v, want none", od)
			case tt.wantUneject == nil:
			case od == nil || od.SuccessfulActiveHealthCheckUnejectHost == nil:
				t.Errorf("successful_active_health_check_uneject_host unset, want %v", *tt.wantUneject)
			case *od.SuccessfulActiveHealthCheckUnejectHost != *tt.wantUneject:
				t.Errorf("successful_active_health_check_uneject_host = %v, want %v",
					*od.SuccessfulActiveHealthCheckUnejectHost, *tt.wantUneject)
			}
		})
	}
	if got := cfg.Clusters[1].HealthCheck.HTTP.RetriableStatuses; len(got) != 2 || got[0] != 429 || got[1] != 500 {
		t.Errorf("retriable_statuses = %v, want [429 500]", got)
	}
}

// TestHealthKeysErrors: the new keys are checked like every other, each
// problem placed at file:line:column.
func TestHealthKeysErrors(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		wantErr string
	}{
		{
			name: "zero and negative intervals",
			give: `clusters:
  - name: c
    endpoints: [{address: 127.0.0.1:1}]
    health_check: {tcp: {}, no_traffic_interval: 0s, no_traffic_healthy_interval: -1s}
`,
			wantErr: "main.yaml:4:50: clusters[0].health_check.no_traffic_interval: must be greater than 0 (leave it out for the default)\n" +
				"main.yaml:4:83: clusters[0].health_check.no_traffic_healthy_interval: must not be negative, got -1s",
		},
		{
			name: "interval without a unit",
			give: `clusters:
  - name: c
    endpoints: [{address: 127.0.0.1:1}]
    health_check: {tcp: {}, no_traffic_interval: 60}
`,
			wantErr: "main.yaml:4:50: clusters[0].health_check.no_traffic_interval: duration 60 has no unit (durations need a unit, e.g. 60s)",
		},
		{
			name: "retriable status out of range",
			give: `clusters:
  - name: c
    endpoints: [{address: 127.0.0.1:1}]
    health_check: {http: {path: /h, retriable_statuses: [503, 700]}}
`,
			wantErr: "main.yaml:4:63: clusters[0].health_check.http.retriable_statuses[1]: must be a status code from 100 to 599, got 700",
		},
		{
			name: "uneject not a boolean",
			give: `clusters:
  - name: c
    endpoints: [{address: 127.0.0.1:1}]
    outlier_detection: {successful_active_health_check_uneject_host: sometimes}
`,
			wantErr: "main.yaml:4:70: clusters[0].outlier_detection.successful_active_health_check_uneject_host:",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inDir(t, map[string]string{"main.yaml": tt.give})
			got := loadProblems(t, "main.yaml")
			if len(got) < len(tt.wantErr) || got[:len(tt.wantErr)] != tt.wantErr {
				t.Errorf("problems:\n%s\nwant them to start with:\n%s", got, tt.wantErr)
			}
		})
	}
}
