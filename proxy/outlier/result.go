package outlier

// Result is how one request to a host ended, as outlier detection sees it.
type Result uint8

const (
	// Success is any response that is not a server error: 2xx, 3xx and
	// 4xx alike, since a client's mistake says nothing about the host.
	Success Result = iota
	// Error is a server error from the host itself: a 5xx other than 502,
	// 503 and 504, or a gRPC status that maps to one (UNKNOWN, INTERNAL,
	// DATA_LOSS).
	Error
	// GatewayFailure is a 502, 503 or 504, a gRPC status that maps to one
	// (UNAVAILABLE, DEADLINE_EXCEEDED), or a failure to get any response:
	// a connect failure, a reset, a timeout the proxy answered with 504.
	GatewayFailure
)

// String names r for logs and test failures.
func (r Result) String() string {
	switch r {
	case Success:
		return "success"
	case Error:
		return "error"
	case GatewayFailure:
		return "gateway_failure"
	}
	return "unknown"
}

// gRPC status codes the classification needs (google.golang.org/grpc/codes).
const (
	grpcUnknown          = 2
	grpcDeadlineExceeded = 4
	grpcInternal         = 13
	grpcUnavailable      = 14
	grpcDataLoss         = 15
)

// Classify turns what the forwarder knows about a finished request into a
// Result, so that every caller applies the same rule.
//
// httpStatus is the status charged to the upstream (0 when there was no
// response); grpcStatus is the response's grpc-status, and must be -1 when
// it had none and for every request that is not gRPC: 0 is OK, and would
// hide an HTTP 5xx.
// connectFailure and reset say the request got no response at all.
//
// As in Envoy, a grpc-status wins over the HTTP status (gRPC errors travel
// in 200 responses) and is judged by the HTTP status gRPC maps it to:
// UNAVAILABLE is 503 and DEADLINE_EXCEEDED 504, gateway failures; UNKNOWN,
// INTERNAL and DATA_LOSS are 500. Every other status, client errors such as
// NOT_FOUND or RESOURCE_EXHAUSTED included, counts as a success.
func Classify(httpStatus, grpcStatus int, connectFailure, reset bool) Result {
	switch {
	case connectFailure || reset:
		return GatewayFailure
	case grpcStatus >= 0:
		switch grpcStatus {
		case grpcUnavailable, grpcDeadlineExceeded:
			return GatewayFailure
		case grpcUnknown, grpcInternal, grpcDataLoss:
			return Error
		}
		return Success
	case httpStatus == 502 || httpStatus == 503 || httpStatus == 504:
		return GatewayFailure
	case httpStatus >= 500 && httpStatus <= 599:
		return Error
	}
	return Success
}
