package tick

import (
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	s := time.Second
	tests := []struct {
		elapsed, d, want time.Duration
	}{
		{0, s, s},
		{1, s, s - 1},
		{s / 4, s, 3 * s / 4},
		{s, s, s},
		{7*s + s/10, s, 9 * s / 10},
		{7*s + s/10, 5 * s, 2*s + 9*s/10},
	}
	for _, tt := range tests {
		got := until(tt.elapsed, tt.d)
		if got != tt.want {
			t.Errorf("until(%v, %v) = %v, want %v", tt.elapsed, tt.d, got, tt.want)
		}
		if (tt.elapsed+got)%tt.d != 0 {
			t.Errorf("until(%v, %v) = %v: not on a multiple of the period", tt.elapsed, tt.d, got)
		}
	}
}

// TestTicker: a Ticker ticks again and again, and never once Stop has
// returned.
func TestTicker(t *testing.T) {
	const d = 10 * time.Millisecond
	tk := NewTicker(d)
	for range 3 {
		select {
		case <-tk.C:
		case <-time.After(10 * time.Second):
			t.Fatal("no tick in 10 s")
		}
	}
	tk.Stop()
	select {
	case <-tk.C: // sent before Stop, not read
	default:
	}
	time.Sleep(5 * d)
	select {
	case <-tk.C:
		t.Error("a tick after Stop")
	default:
	}
	tk.Stop() // idempotent
}
