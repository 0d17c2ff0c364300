package xds

import (
	"time"
)

// backOff is Envoy's jittered exponential back-off ("full jitter"): the
// n-th wait in a row is drawn uniformly from [0, min(max, base·2ⁿ)), so
// that a fleet that lost its control plane at once does not come back at
// once. It is not safe for concurrent use.
type backOff struct {
	base, max time.Duration
	// rand returns a number in [0, n); injected so that tests choose
	// the draw.
	rand func(n int64) int64
	n    uint // waits since the last reset
}

// next returns how long to wait before the next attempt.
func (b *backOff) next() time.Duration {
	bound := b.max
	if b.n < 62 && b.base<<b.n > 0 && b.base<<b.n < b.max {
		bound = b.base << b.n
	}
	b.n++
	if bound <= 0 {
		return 0
	}
	return time.Duration(b.rand(int64(bound)))
}

// reset starts again from base, after an attempt that worked.
func (b *backOff) reset() { b.n = 0 }
