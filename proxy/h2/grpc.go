package h2

import (
	"strconv"

	"github.com/sightline-proxy/sightline/proxy/flags"
	"github.com/sightline-proxy/sightline/proxy/grpcproto"
)

// gRPC status codes the proxy itself answers with.
const (
	grpcDeadlineExceeded  = grpcproto.DeadlineExceeded
	grpcResourceExhausted = grpcproto.ResourceExhausted
	grpcUnimplemented     = grpcproto.Unimplemented
	grpcUnavailable       = grpcproto.Unavailable
)

// flag is a set of Envoy's response flags: the proxy puts them in
// x-sightline-response-flags of the responses it makes itself, and in the
// access log and the span of every call.
type flag = flags.Flags

const (
	flagNoHealthyUpstream      = flags.NoHealthyUpstream
	flagUpstreamConnectFailure = flags.UpstreamConnectFailure
	flagUpstreamOverflow       = flags.UpstreamOverflow
	flagNoRoute                = flags.NoRoute
	flagUpstreamRetryLimit     = flags.UpstreamRetryLimit
	flagUpstreamRequestTimeout = flags.UpstreamRequestTimeout
	flagUpstreamConnectionTerm = flags.UpstreamConnectionTerm
	flagDownstreamConnTerm     = flags.DownstreamConnectionTerm
	flagUpstreamRemoteReset    = flags.UpstreamRemoteReset
	flagOverload               = flags.OverloadManager
)

// grpcFailed reports whether a grpc-status value is an error.
func grpcFailed(status string) bool { return status != "" && status != "0" }

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
