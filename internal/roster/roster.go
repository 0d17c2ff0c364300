// Package roster keeps a set of pointers in a slice, so that a sweep can
// walk tens of thousands of them a chunk at a time.
//
// A Go map can only be walked whole under its lock: with 19,000 idle
// connections, the sweeps that went through a map of them held the
// process's only P (GOMAXPROCS=1) for 1.5 to 3 ms each second, and a
// client whose bytes arrived then waited for it. A Roster's members sit
// at fixed positions, so a sweep copies a chunk under the lock, lets the
// lock go, works through the chunk (yielding as it likes), and takes the
// next.
//
// Removing a member moves the last one into its place. A sweep running
// meanwhile may then miss the moved member once, or see one twice; a
// sweep that runs again soon (every second) is fine with either.
package roster

import "github.com/sightline-proxy/sightline/internal/shrink"

// Slot is a member's place in its roster. A type joins a roster by
// embedding a Slot; it can be in one roster at a time.
type Slot struct {
	at int32 // position + 1; 0: in no roster
}

func (s *Slot) slot() *Slot { return s }

// Member is a pointer to a type that embeds Slot.
type Member interface {
	comparable
	slot() *Slot
}

// A Roster is a set of members. It has no lock of its own: its owner
// guards it.
type Roster[T Member] struct {
	s []T
}

// Add puts x in the roster, unless it is there; x must be in no other.
func (r *Roster[T]) Add(x T) {
	if r.has(x) {
		return
	}
	r.s = append(r.s, x)
	x.slot().at = int32(len(r.s))
}

// has reports whether x is in the roster.
func (r *Roster[T]) has(x T) bool {
	i := int(x.slot().at) - 1
	return i >= 0 && i < len(r.s) && r.s[i] == x
}

// Remove takes x out of the roster; it does nothing when x is not in it.
// A roster down to a quarter of a large capacity is copied into a slice
// of its size, so that one burst does not keep its memory for good.
func (r *Roster[T]) Remove(x T) {
	if !r.has(x) {
		return
	}
	sl := x.slot()
	i := int(sl.at) - 1
	last := len(r.s) - 1
	if i != last {
		r.s[i] = r.s[last]
		r.s[i].slot().at = int32(i + 1)
	}
	var zero T
	r.s[last] = zero
	r.s = r.s[:last]
	sl.at = 0
	if shrink.Slack(r.s) {
		r.s = append(make([]T, 0, 2*len(r.s)), r.s...)
	}
}

// Len is how many members the roster holds.
func (r *Roster[T]) Len() int { return len(r.s) }

// Chunk appends to dst the members from position from on, at most n of
// them, and returns it; past the end it returns dst unchanged.
func (r *Roster[T]) Chunk(dst []T, from, n int) []T {
	if from >= len(r.s) {
		return dst
	}
	return append(dst, r.s[from:min(from+n, len(r.s))]...)
}
