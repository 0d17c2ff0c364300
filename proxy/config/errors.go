package config

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a configuration, placed where the user
// has to look: the file, the line and column of the offending YAML node
// (1-based; 0 when unknown, e.g. for a file that cannot be parsed at all),
// the field path in the merged config (e.g.
// "listeners[0].virtual_hosts[1].routes[2].cluster"), what is wrong, and
// when we can tell, how to fix it.
type Problem struct {
	File         string
	Line, Column int
	Path         string
	Message      string
	Hint         string
}

// String formats p as "file:line:column: path: message (hint)". The path is
// left out when empty, the hint when empty, and line and column when
// unknown.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":" + strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Column))
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Message)
	if p.Hint != "" {
		b.WriteString(" (" + p.Hint + ")")
	}
	return b.String()
}

// Errors is every problem Load found in one run, so that a user fixes a
// config in one round instead of one error per try. Load returns it sorted
// by file, then line and column.
type Errors []Problem

// Error gives one line per problem, as Problem.String formats it.
func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, p := range e {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sort orders e by file, then position; path and message break ties so the
// output is the same on every run.
func (e Errors) sort() {
	slices.SortStableFunc(e, func(a, b Problem) int {
		return cmp.Or(
			cmp.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Column, b.Column),
			cmp.Compare(a.Path, b.Path),
			cmp.Compare(a.Message, b.Message),
		)
	})
}
