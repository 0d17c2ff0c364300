package observe

import (
	"testing"

	"github.com/sightline-proxy/sightline/proxy/config"
)

func TestTraceIDFromTraceparent(t *testing.T) {
	tests := []struct{ in, want string }{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", ""},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736", ""},
		{"", ""},
		{"garbage-garbage-garbage-garbage-garbage-garbage-garbage", ""},
	}
	for _, tt := range tests {
		if got := TraceIDFromTraceparent(tt.in); got != tt.want {
			t.Errorf("TraceIDFromTraceparent(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestIsHealthCheck(t *testing.T) {
	tests := []struct {
		path, ua string
		want     bool
	}{
		{"/grpc.health.v1.Health/Check", "grpc-go/1.85.0", true},
		{"/grpc.health.v1.Health/Watch", "", true},
		{"/healthz", "kube-probe/1.31", true},
		{"/healthz", "Sightline/HC", true},
		{"/healthz", "Envoy/HC", true},
		{"/grpc.testing.TestService/UnaryCall", "grpc-go/1.85.0", false},
		{"/", "curl/8.0", false},
	}
	for _, tt := range tests {
		if got := IsHealthCheck(tt.path, tt.ua); got != tt.want {
			t.Errorf("IsHealthCheck(%q, %q) = %v, want %v", tt.path, tt.ua, got, tt.want)
		}
	}
}

func TestRequestIDPolicy(t *testing.T) {
	no, yes := false, true
	tests := []struct {
		name     string
		rid      config.RequestID
		existing string
		keep     bool // the existing id comes back
		fresh    bool // a new id is made
	}{
		{"defaults keep", config.RequestID{}, "abc", true, false},
		{"defaults generate", config.RequestID{}, "", false, true},
		{"not preserving replaces", config.RequestID{PreserveExternal: &no}, "abc", false, true},
		{"no generate, none sent", config.RequestID{Generate: &no}, "", false, false},
		{"no generate keeps", config.RequestID{Generate: &no, PreserveExternal: &yes}, "abc", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := New(tt.rid, nil, nil).RequestID(tt.existing)
			switch {
			case tt.keep && got != tt.existing:
				t.Fatalf("got %q, want the external %q", got, tt.existing)
			case tt.fresh && (len(got) != 36 || got == tt.existing):
				t.Fatalf("got %q, want a new UUID", got)
			case !tt.keep && !tt.fresh && got != "":
				t.Fatalf("got %q, want none", got)
			}
		})
	}
	var nilObs *Observer
	if nilObs.RequestID("abc") != "" || nilObs.Logging() || nilObs.Tracing() || nilObs.SetInResponse() {
		t.Fatal("a nil Observer must observe nothing")
	}
	if New(config.RequestID{SetInResponse: &no}, nil, nil).SetInResponse() {
		t.Fatal("set_in_response: false ignored")
	}
}
