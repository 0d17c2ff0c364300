package config

import (
	"encoding/json"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"
)

func TestDurationUnmarshalYAML(t *testing.T) {
	tests := []struct {
		name    string
		give    string // a YAML value
		want    Duration
		wantErr string
	}{
		{name: "milliseconds", give: "500ms", want: Duration(500 * time.Millisecond)},
		{name: "seconds", give: "15s", want: Duration(15 * time.Second)},
		{name: "minutes", give: "2m", want: Duration(2 * time.Minute)},
		{name: "compound", give: "1h30m", want: Duration(90 * time.Minute)},
		{name: "fraction", give: "1.5s", want: Duration(1500 * time.Millisecond)},
		{name: "zero with unit", give: "0s"},
		{name: "bare zero", give: "0"},
		{name: "bare zero float", give: "0.0"},
		{name: "quoted", give: `"250ms"`, want: Duration(250 * time.Millisecond)},
		{name: "bare number", give: "15", wantErr: "duration 15 has no unit (durations need a unit, e.g. 15s)"},
		{name: "quoted bare number", give: `'15'`, wantErr: "duration 15 has no unit (durations need a unit, e.g. 15s)"},
		{name: "bare float", give: "2.5", wantErr: "duration 2.5 has no unit (durations need a unit, e.g. 2.5s)"},
		{name: "bare exponent", give: "1e3", wantErr: "duration 1e3 has no unit (durations need a unit, e.g. 15s)"},
		{name: "negative", give: "-5s", wantErr: "must not be negative, got -5s"},
		{name: "negative bare number", give: "-3", wantErr: "must not be negative, got -3"},
		{name: "not a duration", give: "soon", wantErr: `invalid duration "soon" (use a Go duration such as 500ms, 15s or 2m)`},
		{name: "unknown unit", give: "5d", wantErr: `invalid duration "5d" (use a Go duration such as 500ms, 15s or 2m)`},
		{name: "not a number", give: "nan", wantErr: `invalid duration "nan" (use a Go duration such as 500ms, 15s or 2m)`},
		{name: "mapping", give: "{s: 1}", wantErr: "must be a duration such as 15s, got a mapping"},
		{name: "list", give: "[1s]", wantErr: "must be a duration such as 15s, got a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc yaml.Node
			if err := yaml.Load([]byte(tt.give), &doc); err != nil {
				t.Fatal(err)
			}
			var got Duration
			err := got.UnmarshalYAML(doc.Content[0])
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("UnmarshalYAML(%s) error = %v, want %q", tt.give, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("UnmarshalYAML(%s) = %v, %v; want %v", tt.give, got, err, tt.want)
			}
		})
	}
}

func TestDurationMarshal(t *testing.T) {
	tests := []struct {
		name string
		give Duration
		want string
	}{
		{name: "zero", give: 0, want: "0s"},
		{name: "fraction", give: Duration(1500 * time.Millisecond), want: "1.5s"},
		{name: "minutes", give: Duration(5 * time.Minute), want: "5m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := json.Marshal(tt.give)
			if err != nil || string(j) != `"`+tt.want+`"` {
				t.Errorf("MarshalJSON = %s, %v; want %q", j, err, tt.want)
			}
			y, err := yaml.Dump(struct {
				D Duration `yaml:"d"`
			}{tt.give})
			if err != nil || string(y) != "d: "+tt.want+"\n" {
				t.Errorf("MarshalYAML = %q, %v; want d: %s", y, err, tt.want)
			}
			var back Duration
			if err := json.Unmarshal(j, &back); err != nil || back != tt.give {
				t.Errorf("UnmarshalJSON(%s) = %v, %v; want %v", j, back, err, tt.give)
			}
		})
	}
}

func TestDurationUnmarshalJSONRefusesNumbers(t *testing.T) {
	for _, give := range []string{`15`, `"15"`, `"-1s"`} {
		var d Duration
		if err := json.Unmarshal([]byte(give), &d); err == nil {
			t.Errorf("UnmarshalJSON(%s) = %v, want an error", give, d)
		}
	}
}
