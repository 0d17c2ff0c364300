package xds

import (
	"testing"
	"time"
)

func TestBackOff(t *testing.T) {
	tests := []struct {
		name     string
		base     time.Duration
		max      time.Duration
		draws    int
		wantMost []time.Duration // the bound of each draw
	}{
		{
			name: "doubles up to max",
			base: 500 * time.Millisecond, max: 3 * time.Second, draws: 6,
			wantMost: []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second, 3 * time.Second},
		},
		{
			name: "max below base caps at max",
			base: time.Second, max: 100 * time.Millisecond, draws: 2,
			wantMost: []time.Duration{100 * time.Millisecond, 100 * time.Millisecond},
		},
		{
			name: "no overflow after many attempts",
			base: time.Second, max: time.Hour, draws: 80,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var bounds []int64
			b := &backOff{base: tt.base, max: tt.max, rand: func(n int64) int64 { bounds = append(bounds, n); return n - 1 }}
			for i := range tt.draws {
				got := b.next()
				if got < 0 || got > tt.max {
					t.Fatalf("draw %d = %s, outside [0, %s]", i, got, tt.max)
				}
			}
			for i, want := range tt.wantMost {
				if time.Duration(bounds[i]) != want {
					t.Errorf("draw %d bound %s, want %s", i, time.Duration(bounds[i]), want)
				}
			}
			if last := time.Duration(bounds[len(bounds)-1]); last != tt.max {
				t.Errorf("last bound %s, want max %s", last, tt.max)
			}
			b.reset()
			bounds = nil
			b.next()
			if want := min(tt.base, tt.max); time.Duration(bounds[0]) != want {
				t.Errorf("after reset the bound is %s, want %s", time.Duration(bounds[0]), want)
			}
		})
	}
}
