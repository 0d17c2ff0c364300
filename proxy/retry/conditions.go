package retry

import (
	"errors"
	"fmt"
	"strings"
)

// Conditions is a set of retry_on conditions, parsed once per route so
// that deciding on a retry is a few bit tests.
type Conditions uint16

// The retry_on conditions, named as in Envoy's x-envoy-retry-on and
// x-envoy-retry-grpc-on.
const (
	// On5xx retries any 5xx response, and every failure to get a response
	// at all: connect failures, resets, refused streams, per-try timeouts.
	On5xx Conditions = 1 << iota
	// OnGatewayError retries 502, 503 and 504, and, since the proxy
	// answers them with 503 or 504 itself, connect failures, resets,
	// refused streams and per-try timeouts.
	OnGatewayError
	// OnReset retries when the upstream gave no response: a reset, a
	// refused stream, a connect failure or a per-try timeout.
	OnReset
	// OnConnectFailure retries when connecting to the upstream failed:
	// nothing was sent, so a retry is always safe.
	OnConnectFailure
	// OnRetriable4xx retries 409 Conflict, the only 4xx Envoy deems
	// retriable: an optimistic-concurrency conflict may well pass next time.
	OnRetriable4xx
	// OnRefusedStream retries an HTTP/2 REFUSED_STREAM reset, by which the
	// upstream says it did not process the request.
	OnRefusedStream
	// OnCancelled, OnDeadlineExceeded, OnResourceExhausted, OnUnavailable
	// and OnInternal retry a gRPC response whose headers carry that
	// grpc-status (a trailers-only response): a status in trailers after
	// a response body comes too late to retry.
	OnCancelled
	OnDeadlineExceeded
	OnResourceExhausted
	OnUnavailable
	OnInternal
)

// names maps each condition word to its bit, in the order String writes
// them.
var names = []struct {
	name string
	bit  Conditions
}{
	{"5xx", On5xx},
	{"gateway-error", OnGatewayError},
	{"reset", OnReset},
	{"connect-failure", OnConnectFailure},
	{"retriable-4xx", OnRetriable4xx},
	{"refused-stream", OnRefusedStream},
	{"cancelled", OnCancelled},
	{"deadline-exceeded", OnDeadlineExceeded},
	{"resource-exhausted", OnResourceExhausted},
	{"unavailable", OnUnavailable},
	{"internal", OnInternal},
}

// ErrUnknownCondition is what ParseConditions wraps when a word is no
// retry condition.
var ErrUnknownCondition = errors.New("unknown retry condition")

// ParseConditions parses a comma-separated retry_on list ("5xx,reset,
// unavailable"); spaces around words are ignored. It fails on an empty
// word or an unknown one, as the config's validation does.
func ParseConditions(s string) (Conditions, error) {
	var c Conditions
	for word := range strings.SplitSeq(s, ",") {
		word = strings.TrimSpace(word)
		if word == "" {
			return 0, fmt.Errorf("parsing retry_on %q: empty condition", s)
		}
		bit, ok := lookup(word)
		if !ok {
			return 0, fmt.Errorf("parsing retry_on %q: %w %q", s, ErrUnknownCondition, word)
		}
		c |= bit
	}
	return c, nil
}

func lookup(word string) (Conditions, bool) {
	for _, n := range names {
		if n.name == word {
			return n.bit, true
		}
	}
	return 0, false
}

// Has reports whether c includes every condition of o.
func (c Conditions) Has(o Conditions) bool { return c&o == o }

// String writes c as a retry_on list, in a fixed order.
func (c Conditions) String() string {
	var b strings.Builder
	for _, n := range names {
		if c&n.bit != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n.name)
		}
	}
	return b.String()
}
