package forward

import "strings"

// Flags are Envoy's response flags: why a request ended the way it did. They
// go into the x-sightline-response-flags header of responses the proxy makes
// itself, and into the access log.
type Flags uint16

// The response flags, with Envoy's letters.
const (
	FlagNoHealthyUpstream        Flags = 1 << iota // UH
	FlagUpstreamConnectFailure                     // UF
	FlagUpstreamOverflow                           // UO
	FlagNoRoute                                    // NR
	FlagNoClusterFound                             // NC
	FlagUpstreamRetryLimit                         // URX
	FlagUpstreamRequestTimeout                     // UT
	FlagUpstreamConnectionTerm                     // UC
	FlagDownstreamConnectionTerm                   // DC
	FlagUpstreamRemoteReset                        // UR
	FlagLocalReset                                 // LR
	FlagRateLimited                                // RL
)

var flagLetters = [...]string{"UH", "UF", "UO", "NR", "NC", "URX", "UT", "UC", "DC", "UR", "LR", "RL"}

// String joins the letters with commas, or returns "-" when no flag is set.
func (f Flags) String() string {
	if f == 0 {
		return "-"
	}
	var b strings.Builder
	for i, l := range flagLetters {
		if f&(1<<i) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l)
	}
	return b.String()
}
