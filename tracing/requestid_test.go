package tracing

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/sightline-proxy/sightline/proxy/config"
)

func TestRequestID(t *testing.T) {
	yes, no := true, false
	long := strings.Repeat("a", maxRequestIDLen+1)
	tests := []struct {
		name     string
		existing string
		cfg      config.RequestID
		wantKept bool // the existing id is returned
		wantGen  bool // a new UUIDv4 is returned
	}{
		{"absent, defaults", "", config.RequestID{}, false, true},
		{"present, defaults", "abc-123", config.RequestID{}, true, false},
		{"present, preserve", "abc-123", config.RequestID{Generate: &yes, PreserveExternal: &yes}, true, false},
		{"present, not preserved", "abc-123", config.RequestID{Generate: &yes, PreserveExternal: &no}, false, true},
		{"absent, generate off", "", config.RequestID{Generate: &no, PreserveExternal: &yes}, false, false},
		{"present, generate off, preserve", "abc", config.RequestID{Generate: &no, PreserveExternal: &yes}, true, false},
		{"present, generate off, not preserved", "abc", config.RequestID{Generate: &no, PreserveExternal: &no}, false, false},
		{"too long", long, config.RequestID{}, false, true},
		{"control char", "a\nb", config.RequestID{}, false, true},
		{"non-ascii", "é", config.RequestID{}, false, true},
		{"max length kept", long[1:], config.RequestID{}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, gen := RequestID(tt.existing, tt.cfg)
			if gen != tt.wantGen {
				t.Errorf("generated = %v, want %v", gen, tt.wantGen)
			}
			switch {
			case tt.wantKept:
				if id != tt.existing {
					t.Errorf("id = %q, want the existing %q", id, tt.existing)
				}
			case tt.wantGen:
				u, err := uuid.Parse(id)
				if err != nil || u.Version() != 4 || u.Variant() != uuid.RFC4122 || len(id) != 36 {
					t.Errorf("id = %q, want a UUIDv4 (err %v)", id, err)
				}
			default:
				if id != "" {
					t.Errorf("id = %q, want none", id)
				}
			}
		})
	}
	a, _ := RequestID("", config.RequestID{})
	b, _ := RequestID("", config.RequestID{})
	if a == b {
		t.Errorf("two generated ids are equal: %s", a)
	}
}

func BenchmarkRequestID(b *testing.B) {
	b.Run("generate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			RequestID("", config.RequestID{})
		}
	})
	b.Run("preserve", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			RequestID("0f8fad5b-d9cb-469f-a165-70867728950e", config.RequestID{})
		}
	})
}
