package config

import (
	"fmt"
	"strings"
)

// suggest helps with a value s that is not one of candidates: it asks
// "did you mean …?" when one is close enough to be what was meant, and
// otherwise lists them after label ("known keys: a, b"), unless label is
// empty.
func suggest(s string, candidates []string, label string) string {
	if c := closest(s, candidates); c != "" {
		return fmt.Sprintf("did you mean %q?", c)
	}
	if label == "" || len(candidates) == 0 {
		return ""
	}
	const most = 12
	if len(candidates) > most {
		return label + ": " + strings.Join(candidates[:most], ", ") + ", …"
	}
	return label + ": " + strings.Join(candidates, ", ")
}

// closest returns the candidate nearest to s when the two differ by at most
// two edits and the edits are a small part of the candidate, or "" when
// nothing is that close. Case is ignored: "Static" is a typo of "static".
func closest(s string, candidates []string) string {
	// Long strings are not typos of our short names, and the edit distance
	// is quadratic: keep a fuzzed config from making it slow.
	const longest = 64
	if len(s) > longest {
		return ""
	}
	best, bestDist := "", -1
	for _, c := range candidates {
		if len(c) > longest {
			continue
		}
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		if d <= 2 && d*3 <= len(c) && (bestDist < 0 || d < bestDist) {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
