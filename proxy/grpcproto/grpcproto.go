// Package grpcproto holds the small pieces of gRPC's HTTP/2 wire protocol
// (grpc/grpc doc/PROTOCOL-HTTP2.md) that the proxy needs without linking a
// gRPC implementation into the request path: recognising a gRPC request,
// reading grpc-timeout and grpc-status, writing grpc-message, and counting
// the length-prefixed messages of a call (MessageCounter).
package grpcproto

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Status codes the proxy answers with itself.
const (
	DeadlineExceeded  = 4
	ResourceExhausted = 8
	Unimplemented     = 12
	Unavailable       = 14
)

// IsGRPC reports whether a content type is gRPC's: "application/grpc",
// optionally followed by "+codec" or parameters. grpc-web
// ("application/grpc-web") is not gRPC on the wire.
func IsGRPC(contentType string) bool {
	const p = "application/grpc"
	return len(contentType) >= len(p) && strings.EqualFold(contentType[:len(p)], p) &&
		(len(contentType) == len(p) || contentType[len(p)] == '+' || contentType[len(p)] == ';')
}

// ParseTimeout decodes a grpc-timeout value: 1 to 8 digits and a unit (H,
// M, S, m, u, n). It reports false for anything else, which the proxy then
// ignores, as grpc-go does. Values too large for a time.Duration are clamped.
func ParseTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	const maxDur = time.Duration(1<<63 - 1)
	if n > int64(maxDur/unit) {
		return maxDur, true
	}
	return time.Duration(n) * unit, true
}

// EncodeMessage percent-encodes a grpc-message value as the protocol asks:
// bytes outside printable ASCII, and '%' itself.
func EncodeMessage(msg string) string {
	clean := true
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < 0x20 || c > 0x7e || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return msg
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// StatusOf reads grpc-status from the first of hs that has one (the
// response headers of a trailers-only response, then the trailers); -1
// when none has a valid one.
func StatusOf(hs ...http.Header) int {
	for _, h := range hs {
		if v := h["Grpc-Status"]; len(v) > 0 {
			n, err := strconv.Atoi(v[0])
			if err != nil || n < 0 {
				return -1
			}
			return n
		}
	}
	return -1
}
