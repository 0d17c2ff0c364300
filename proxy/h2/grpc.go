package h2

import (
	"strconv"
	"strings"
	"time"
)

// gRPC status codes the proxy itself answers with (grpc/grpc
// doc/statuscodes.md).
const (
	grpcDeadlineExceeded  = 4
	grpcResourceExhausted = 8
	grpcUnimplemented     = 12
	grpcUnavailable       = 14
)

// flag is one of Envoy's response flags, the letters the proxy puts in
// x-sightline-response-flags of the responses it makes itself. They are the
// same letters as forward.Flags; this package does not import forward so
// that forward can import it.
type flag string

const (
	flagNoHealthyUpstream      flag = "UH"
	flagUpstreamConnectFailure flag = "UF"
	flagNoRoute                flag = "NR"
	flagUpstreamRequestTimeout flag = "UT"
	flagUpstreamConnectionTerm flag = "UC"
	flagUpstreamRemoteReset    flag = "UR"
	flagLocalReset             flag = "LR"
)

// isGRPC reports whether a content type is gRPC's (application/grpc,
// application/grpc+proto, …), as forward.isGRPC does.
func isGRPC(contentType string) bool {
	const p = "application/grpc"
	return len(contentType) >= len(p) && strings.EqualFold(contentType[:len(p)], p) &&
		(len(contentType) == len(p) || contentType[len(p)] == '+' || contentType[len(p)] == ';')
}

// parseGRPCTimeout decodes a grpc-timeout header: 1 to 8 digits and a unit
// (H, M, S, m, u, n). It reports false for anything else, which the proxy
// then ignores, as grpc-go does (http_util.go decodeTimeout).
func parseGRPCTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v)-1; i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
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

// grpcFailed reports whether a grpc-status value is an error.
func grpcFailed(status string) bool { return status != "" && status != "0" }

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

// smallInts holds the decimal strings of 0..999, so that the common
// x-sightline-upstream-service-time values and gRPC status codes cost no
// allocation.
var smallInts = func() (s [1000]string) {
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

func itoa(n int64) string {
	if n >= 0 && n < int64(len(smallInts)) {
		return smallInts[n]
	}
	return strconv.FormatInt(n, 10)
}
