package host

import "sync/atomic"

// OutlierState is outlier detection's per-host state.
//
// It lives in the Host, not in the detector, for two reasons: reporting a
// request's result is then a field access instead of a map lookup, and the
// state outlives the detector, so an ejected host stays ejected, and comes
// back on time, across a config reload that builds a new detector.
//
// Package outlier writes these fields, serializing ejections and returns
// under its own lock; everyone else only reads them (the admin pages, for
// one). Whether the host is ejected now is the FailedOutlierCheck flag, not
// anything here.
type OutlierState struct {
	// Consecutive5xx counts server errors and gateway failures since the
	// last success; the request path adds to it and resets it.
	Consecutive5xx atomic.Uint32
	// EjectedAt is when the host was last ejected, in nanoseconds on the
	// detector's monotonic clock.
	EjectedAt atomic.Int64
	// Multiplier is how many base ejection times the current (or last)
	// ejection lasts: each ejection raises it by one, up to a cap, and each
	// interval the host then spends in service lowers it by one, so a host
	// that keeps failing stays out longer and longer.
	Multiplier atomic.Uint32
	// Ejections counts every ejection of the host since it was created.
	Ejections atomic.Uint64
	// ReturnedAt is when the host last came back from an ejection, on the
	// same clock as EjectedAt; 0 if it never did.
	ReturnedAt atomic.Int64
}
