package ratelimit

import (
	"sync/atomic"
	"time"
)

// Clock returns the time elapsed since a fixed origin, monotonic. Buckets
// count their fill intervals from the clock of the limiter that owns them;
// tests inject one to step time by hand.
type Clock func() time.Duration

// origin is the process's clock origin.
var origin = time.Now()

// Monotonic is the real clock: time since the process started, read from
// the monotonic clock (no allocation, no system call on Linux).
func Monotonic() time.Duration { return time.Since(origin) }

// MinFillInterval is the shortest fill interval a bucket may have, as in
// Envoy (its local rate limit refuses fill_interval under 50ms). It also
// keeps the 32-bit fill count of a bucket from wrapping for over six years.
const MinFillInterval = 50 * time.Millisecond

// TokenBucket is the shape of a bucket: Envoy's token_bucket. It starts
// full; every FillInterval, TokensPerFill tokens are added, up to
// MaxTokens. Fills are discrete, at whole intervals from the limiter's
// start, as Envoy's local rate limit's timer fills them.
type TokenBucket struct {
	MaxTokens     uint32
	TokensPerFill uint32
	FillInterval  time.Duration
}

// bucket is one token bucket's state in a single atomic word, so that a
// check is one load and one compare-and-swap: no lock, no allocation.
//
// The high 32 bits count the tokens used (MaxTokens - available), the low
// 32 bits the fill interval the state was last refilled at. Counting used
// tokens rather than available ones makes the zero word a full bucket,
// which lets a dynamic descriptor's slot be claimed and used before its
// state is written.
type bucket struct {
	state atomic.Uint64
}

// take takes one token from b, shaped tb, at fill interval k; ok reports
// whether there was one, remaining how many are left after it.
func (b *bucket) take(tb *TokenBucket, k uint32) (ok bool, remaining uint32) {
	for {
		s := b.state.Load()
		used, last := uint32(s>>32), uint32(s)
		// Refill for the intervals passed since last. A state written
		// by a check that read a later clock is left as is (int32(d) <=
		// 0): fills only move forward.
		if d := k - last; int32(d) > 0 {
			fill := uint64(d) * uint64(tb.TokensPerFill)
			if fill >= uint64(used) {
				used = 0
			} else {
				used -= uint32(fill)
			}
			last = k
		}
		if used >= tb.MaxTokens {
			return false, 0
		}
		if b.state.CompareAndSwap(s, uint64(used+1)<<32|uint64(last)) {
			return true, tb.MaxTokens - used - 1
		}
	}
}

// interval is the fill interval that elapsed falls in, and how long until
// the next one begins.
func (tb *TokenBucket) interval(elapsed time.Duration) (k uint32, reset time.Duration) {
	if elapsed < 0 {
		elapsed = 0
	}
	n := elapsed / tb.FillInterval
	return uint32(n), tb.FillInterval - (elapsed - n*tb.FillInterval)
}
