package otelres

import (
	"testing"

	"github.com/sightline-proxy/sightline/internal/version"
	"github.com/sightline-proxy/sightline/proxy/config"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		service string
		node    config.Node
		want    map[string]string
		absent  []string
	}{
		{"all", "edge", config.Node{ID: "n1", Zone: "z1"},
			map[string]string{"service.name": "edge", "service.instance.id": "n1", "cloud.availability_zone": "z1"}, nil},
		{"defaults", "", config.Node{},
			map[string]string{"service.name": DefaultServiceName}, []string{"service.instance.id", "cloud.availability_zone"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.service, tt.node)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, kv := range r.Attributes() {
				got[string(kv.Key)] = kv.Value.String()
			}
			tt.want["service.version"] = version.Get().Version
			tt.want["telemetry.sdk.language"] = "go"
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q (all: %v)", k, got[k], v, got)
				}
			}
			for _, k := range tt.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s present: %v", k, got)
				}
			}
		})
	}
}
