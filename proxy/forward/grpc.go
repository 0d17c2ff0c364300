package forward

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// gRPC status codes the proxy itself answers with.
const (
	grpcDeadlineExceeded = 4
	grpcUnimplemented    = 12
	grpcUnavailable      = 14
)

// isGRPC reports whether a content type is gRPC's (application/grpc,
// application/grpc+proto, …).
func isGRPC(contentType string) bool {
	const p = "application/grpc"
	return len(contentType) >= len(p) && strings.EqualFold(contentType[:len(p)], p) &&
		(len(contentType) == len(p) || contentType[len(p)] == '+' || contentType[len(p)] == ';')
}

// parseGRPCTimeout decodes a grpc-timeout header: 1 to 8 digits and a unit
// (H, M, S, m, u, n). It reports false for anything else, which the proxy
// then ignores, as grpc-go does.
func parseGRPCTimeout(v string) (time.Duration, bool) {
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

// writeGRPCError answers a gRPC client with a trailers-only response: HTTP
// 200 and grpc-status in the only HEADERS frame, which is what gRPC clients
// expect of a proxy's own errors (a bare HTTP 503 surfaces as a confusing
// "Unavailable: unexpected HTTP status" instead of the real cause).
func writeGRPCError(w http.ResponseWriter, code int, msg, flags string) {
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(code))
	if msg != "" {
		h.Set("Grpc-Message", encodeGRPCMessage(msg))
	}
	if flags != "" {
		h.Set(headerResponseFlags, flags)
	}
	w.WriteHeader(http.StatusOK)
}

// setGRPCTrailerStatus ends an already started gRPC response with a status
// in its trailers.
func setGRPCTrailerStatus(w http.ResponseWriter, code int, msg, flags string) {
	h := w.Header()
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			delete(h, k)
		}
	}
	h.Set(http.TrailerPrefix+"Grpc-Status", strconv.Itoa(code))
	if msg != "" {
		h.Set(http.TrailerPrefix+"Grpc-Message", encodeGRPCMessage(msg))
	}
	if flags != "" {
		h.Set(http.TrailerPrefix+headerResponseFlags, flags)
	}
}

// encodeGRPCMessage percent-encodes a grpc-message value as the gRPC HTTP/2
// protocol asks: bytes outside printable ASCII, and '%' itself.
func encodeGRPCMessage(msg string) string {
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
