package shrink

import (
	"reflect"
	"testing"
)

// TestMap: a set that held thousands of connections is made anew,
// with the same contents, once a quarter of them are left; a small one
// never is.
func TestMap(t *testing.T) {
	for _, tc := range []struct {
		name           string
		fill, keep     int
		remade         bool
		peakAfterwards int
	}{
		{"small set", At - 1, 0, false, At - 1},
		{"half left", 4000, 2000, false, 4000},
		{"a quarter left", 4000, 1000, true, 1000},
		{"emptied", 4000, 0, true, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, peak := map[int]int{}, 0
			for i := range tc.fill {
				m[i] = i
				Grew(m, &peak)
			}
			first := m
			remade := false
			for i := tc.fill - 1; i >= tc.keep; i-- {
				delete(m, i)
				if m = Map(m, &peak); reflect.ValueOf(m).UnsafePointer() != reflect.ValueOf(first).UnsafePointer() {
					remade = true
				}
			}
			if remade != tc.remade || peak != tc.peakAfterwards {
				t.Errorf("remade %v, peak %d; want %v, %d", remade, peak, tc.remade, tc.peakAfterwards)
			}
			if len(m) != tc.keep {
				t.Fatalf("%d entries left, want %d", len(m), tc.keep)
			}
			for i := range tc.keep {
				if m[i] != i {
					t.Fatalf("entry %d lost", i)
				}
			}
		})
	}
}

// TestSlack: only a large array with three quarters of it unused is
// worth letting go.
func TestSlack(t *testing.T) {
	for _, tc := range []struct {
		len, cap int
		slack    bool
	}{
		{0, At - 1, false}, // small: never
		{At / 4, At, true}, // a quarter left
		{At/4 + 1, At, false},
		{0, 4 * At, true},
	} {
		if got := Slack(make([]int, tc.len, tc.cap)); got != tc.slack {
			t.Errorf("Slack(len %d, cap %d) = %v, want %v", tc.len, tc.cap, got, tc.slack)
		}
	}
}
