// Package logfield gives a zerolog logger one more field at a few bytes'
// cost. zerolog's With copies the context into a new 500-byte buffer per
// logger; a config of 10,000 clusters, each with a logger naming it, paid
// megabytes for loggers that mostly never write. A hook adds the field to
// each event instead, and only to events that are written.
package logfield

import "github.com/rs/zerolog"

// With returns l whose events carry key: val, after the fields they set.
func With(l zerolog.Logger, key, val string) zerolog.Logger {
	return l.Hook(field{key, val})
}

type field struct{ key, val string }

func (f field) Run(e *zerolog.Event, _ zerolog.Level, _ string) { e.Str(f.key, f.val) }
