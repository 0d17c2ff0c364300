package tracing

import (
	"crypto/rand"

	"github.com/google/uuid"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// RequestIDHeader is the header that carries the request ID, downstream,
// upstream and on the response.
const RequestIDHeader = "x-request-id"

// maxRequestIDLen bounds an external id: it is copied into every access-log
// line and span, so a client must not be able to make it arbitrarily large.
const maxRequestIDLen = 128

// RequestID decides the x-request-id of a request from the value the client
// sent (empty when absent) and the listener's request_id settings. A nil
// setting means true, as config defaults it.
//
//   - An external id is kept when preserve_external is on and it is a
//     printable ASCII string of at most 128 bytes; otherwise it is treated as
//     absent, so an untrusted or malformed id never reaches logs and traces.
//   - When there is no usable id and generate is on, a new UUIDv4 is made and
//     generated is true.
//   - Otherwise the result is empty: the request carries no id.
func RequestID(existing string, cfg config.RequestID) (id string, generated bool) {
	if existing != "" && boolOr(cfg.PreserveExternal, true) && validRequestID(existing) {
		return existing, false
	}
	if !boolOr(cfg.Generate, true) {
		return "", false
	}
	return newUUIDv4(), true
}

// newUUIDv4 is uuid.NewString without its intermediate allocation: the random
// bytes are read straight into a stack UUID (crypto/rand.Read never fails
// since Go 1.24) and the version and variant bits set as RFC 9562 says.
func newUUIDv4() string {
	var u uuid.UUID
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // variant 10 (RFC 9562)
	return u.String()
}

func validRequestID(s string) bool {
	if len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}
