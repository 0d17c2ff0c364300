package yamljson

import "testing"

func TestMarshal(t *testing.T) {
	tests := []struct {
		name string
		give any
		want string
	}{
		{"scalar", 3, `3`},
		{"string keys", map[string]any{"a": []any{1, "x"}}, `{"a":[1,"x"]}`},
		{"keys of any type", map[any]any{1: true, false: map[any]any{"n": nil}}, `{"1":true,"false":{"n":null}}`},
		{"nested in a list", []any{map[any]any{2: "two"}}, `[{"2":"two"}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Marshal(tt.give)
			if err != nil || string(got) != tt.want {
				t.Errorf("Marshal(%v) = %s, %v; want %s", tt.give, got, err, tt.want)
			}
		})
	}
}
