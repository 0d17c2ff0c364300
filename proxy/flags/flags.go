// Package flags holds Envoy's response flags: short letters that say why a
// request ended the way it did (UH: no healthy upstream, UF: connect failure,
// URX: retries ran out, ...). Both request paths set them, the proxy's own
// error responses carry them in x-sightline-response-flags, and the access
// log and spans record them.
package flags

import "strings"

// Flags is a set of response flags.
type Flags uint16

// The response flags, with Envoy's letters.
const (
	NoHealthyUpstream        Flags = 1 << iota // UH
	UpstreamConnectFailure                     // UF
	UpstreamOverflow                           // UO: a circuit breaker was open
	NoRoute                                    // NR
	NoClusterFound                             // NC
	UpstreamRetryLimit                         // URX: retries ran out
	UpstreamRequestTimeout                     // UT
	UpstreamConnectionTerm                     // UC
	DownstreamConnectionTerm                   // DC
	UpstreamRemoteReset                        // UR
	LocalReset                                 // LR
	RateLimited                                // RL
	OverloadManager                            // OM: refused or reset by the overload manager
	StreamIdleTimeout                          // SI: no activity either way for the stream idle timeout
	RateLimitServiceError                      // RLSE: refused because the rate limit service failed (failure_mode_deny)
	count                    = iota
)

var letters = [count]string{"UH", "UF", "UO", "NR", "NC", "URX", "UT", "UC", "DC", "UR", "LR", "RL", "OM", "SI", "RLSE"}

// envoyOrder is the order Envoy joins its flags in (its ResponseFlag bit
// order: UH UT LR UR UF UC UO NR RL RLSE DC URX SI NC OM), by index in letters,
// so that a line with several flags reads as Envoy's would.
var envoyOrder = [count]uint8{0, 6, 10, 9, 1, 7, 2, 3, 11, 14, 8, 5, 13, 4, 12}

// String joins the letters with commas in Envoy's order, or returns "" when
// no flag is set. A single flag, by far the common case, costs no
// allocation.
func (f Flags) String() string {
	if f == 0 {
		return ""
	}
	if f&(f-1) == 0 {
		for i := range letters {
			if f == 1<<i {
				return letters[i]
			}
		}
	}
	var b strings.Builder
	for _, i := range envoyOrder {
		if f&(1<<i) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(letters[i])
	}
	return b.String()
}

// Has reports whether every flag of g is set in f.
func (f Flags) Has(g Flags) bool { return f&g == g }
