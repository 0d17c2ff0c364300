// Package shrink gives back the memory of Go maps and slices that once
// held far more than they do now. A Go map keeps the buckets of its
// largest size for good: a set of connections or hosts that a burst
// filled with 10,000 entries keeps about a megabyte after they are all
// gone; a slice reused for each pass keeps its largest array.
package shrink

// At is the fewest entries a map must once have held for Map to make it
// anew (the least capacity for Slack, for a slice): under it, what a map
// or slice keeps is not worth a copy.
const At = 1024

// Grew notes m's size after an insert in *peak, the most it held since
// it was made.
func Grew[K comparable, V any](m map[K]V, peak *int) {
	*peak = max(*peak, len(m))
}

// Map returns m after a delete, or once m holds a quarter of the most it
// held (*peak, kept by Grew) a copy of it in a map of its own size, and
// resets *peak. The copies cost the deletes O(1) each, amortised.
func Map[K comparable, V any](m map[K]V, peak *int) map[K]V {
	if *peak < At || len(m) > *peak/4 {
		return m
	}
	n := make(map[K]V, len(m))
	for k, v := range m {
		n[k] = v
	}
	*peak = len(n)
	return n
}

// Slack reports whether s is down to a quarter of a capacity of at least
// At: time to let its array go, or copy s into a smaller one.
func Slack[T any](s []T) bool {
	return cap(s) >= At && len(s) <= cap(s)/4
}
