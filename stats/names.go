package stats

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// tagValues says, for each tag key, which strings are values of it. Parse
// uses it to tell where a tag ends in a flat name; it is what makes
// "upstream_rq_200" a response code and "upstream_rq_total" not.
var tagValues = map[string]func(string) bool{
	// Names from the config may hold dots: a cluster "api.example.com", a
	// gRPC service "grpc.testing.TestService", a listener "127.0.0.1:10000".
	TagCluster:     nonEmpty,
	TagGRPCService: nonEmpty,
	TagHTTPPrefix:  nonEmpty,
	TagListener:    nonEmpty,
	TagAccessLog:   nonEmpty,
	TagSink:        nonEmpty,
	// A stat_prefix of the config; it leads the flat name.
	TagLocalRateLimit: nonEmpty,
	// One segment each.
	TagFromZone:   segment,
	TagToZone:     segment,
	TagGRPCMethod: segment,
	TagResponseCode: func(s string) bool {
		n, err := strconv.Atoi(s)
		return err == nil && len(s) == 3 && n >= minCode && n <= maxCode
	},
	TagResponseClass: func(s string) bool { return len(s) == 1 && s[0] >= '1' && s[0] <= '5' },
	TagGRPCStatus: func(s string) bool {
		n, err := strconv.Atoi(s)
		return err == nil && n >= 0 && n <= maxGRPCStatus && strconv.Itoa(n) == s
	},
}

func nonEmpty(s string) bool { return s != "" }

func segment(s string) bool { return s != "" && !strings.Contains(s, ".") }

// parseOrder is the catalog with the most literal text first, so that a
// flat name that fits a zone or gRPC pattern is read as one before the
// plainer cluster pattern is tried. It is built on first use, after every
// catalog variable has been initialized.
var parseOrder = sync.OnceValue(func() []*Def {
	order := slices.Clone(catalog)
	slices.SortStableFunc(order, func(a, b *Def) int { return cmp.Compare(literalLen(b), literalLen(a)) })
	return order
})

func literalLen(d *Def) int {
	n := 0
	for _, p := range d.pieces {
		n += len(p.lit)
	}
	return n
}

// Parse reads a flat name back into its Def and tag values (in TagKeys
// order). It exists for people and tools that start from a flat name; the
// stats model itself never parses, since a flat name can be ambiguous: a
// cluster named "a.grpc.b" makes "cluster.a.grpc.b.grpc.S.M.total" readable
// two ways. Parse takes the shortest value for the first tag that lets the
// rest match, which is right whenever names do not contain the pattern's
// own literal parts.
func Parse(flat string) (*Def, []string, bool) {
	for _, d := range parseOrder() {
		values := make([]string, len(d.tags))
		if d.match(d.pieces, flat, values) {
			return d, values, true
		}
	}
	return nil, nil, false
}

func (d *Def) match(pieces []piece, s string, values []string) bool {
	if len(pieces) == 0 {
		return s == ""
	}
	p := pieces[0]
	if p.tag < 0 {
		rest, ok := strings.CutPrefix(s, p.lit)
		return ok && d.match(pieces[1:], rest, values)
	}
	valid := tagValues[d.tags[p.tag]]
	for end := 1; end <= len(s); end++ {
		if v := s[:end]; valid(v) {
			values[p.tag] = v
			if d.match(pieces[1:], s[end:], values) {
				return true
			}
		}
	}
	return false
}
