package router

import (
	"github.com/sightline-proxy/sightline/proxy/flags"
	"github.com/sightline-proxy/sightline/proxy/grpcproto"
	"github.com/sightline-proxy/sightline/proxy/ratelimit"
)

// Reply is an answer the proxy makes itself: what an HTTP client gets, what
// a gRPC client gets (a trailers-only response with grpc-status), and the
// response flag that says why.
type Reply struct {
	Flag    flags.Flags
	Status  int // HTTP status for HTTP clients
	GRPC    int // grpc-status for gRPC clients
	Message string
	// Direct: a route's direct_response, sent as configured (Status and
	// Message as the body) to every client, gRPC or not, with no flag.
	Direct bool
	// RateLimit, when set, goes on the reply as x-ratelimit-* headers
	// (a rate limit's refusal).
	RateLimit RateLimitHeaders
	// Headers, when set, go on the reply as they are (the rate limit
	// service's response_headers_to_add). A pointer keeps Reply
	// comparable.
	Headers *HeaderList
}

// HeaderList is a list of response headers to add, names as given.
type HeaderList []ratelimit.Entry

// Messages of the proxy's own errors, Envoy's words.
const (
	msgNoHealthyUpstream = "no healthy upstream"
	msgConnectFailure    = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
	msgRemoteReset       = "upstream connect error or disconnect/reset before headers. reset reason: remote reset"
	msgConnTermination   = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
	msgOverflow          = "upstream connect error or disconnect/reset before headers. reset reason: overflow"
	msgTimeout           = "upstream request timeout"
)

// The proxy's own replies, one per response flag that ends a call.
var (
	ReplyNoRoute           = Reply{Flag: flags.NoRoute, Status: 404, GRPC: grpcproto.Unimplemented, Message: "no route"}
	ReplyNoCluster         = Reply{Flag: flags.NoClusterFound, Status: 503, GRPC: grpcproto.Unavailable, Message: "cluster not found"}
	ReplyNoHealthyUpstream = Reply{Flag: flags.NoHealthyUpstream, Status: 503, GRPC: grpcproto.Unavailable, Message: msgNoHealthyUpstream}
	ReplyOverflow          = Reply{Flag: flags.UpstreamOverflow, Status: 503, GRPC: grpcproto.Unavailable, Message: msgOverflow}
	ReplyConnectFailure    = Reply{Flag: flags.UpstreamConnectFailure, Status: 503, GRPC: grpcproto.Unavailable, Message: msgConnectFailure}
	ReplyRemoteReset       = Reply{Flag: flags.UpstreamRemoteReset, Status: 503, GRPC: grpcproto.Unavailable, Message: msgRemoteReset}
	ReplyConnTermination   = Reply{Flag: flags.UpstreamConnectionTerm, Status: 503, GRPC: grpcproto.Unavailable, Message: msgConnTermination}
	ReplyTimeout           = Reply{Flag: flags.UpstreamRequestTimeout, Status: 504, GRPC: grpcproto.DeadlineExceeded, Message: msgTimeout}
	// ReplyOverloaded answers a request the overload manager's
	// stop_accepting_requests refused (Envoy's 503, flag OM).
	ReplyOverloaded = Reply{Flag: flags.OverloadManager, Status: 503, GRPC: grpcproto.Unavailable, Message: "overloaded"}
)

// ReplyStreamIdle is the answer to a request whose stream idle timeout
// passed before any response: 504 once the client had sent all of its
// request, 408 while it was still sending (Envoy's choice); gRPC clients
// get DEADLINE_EXCEEDED, as for the route timeout.
func ReplyStreamIdle(requestDone bool) Reply {
	r := Reply{Flag: flags.StreamIdleTimeout, Status: 504, GRPC: grpcproto.DeadlineExceeded, Message: "stream timeout"}
	if !requestDone {
		r.Status = 408
	}
	return r
}

// Text is the message for a client: for gRPC no-route replies the path is
// named, as gRPC's own UNIMPLEMENTED does.
func (r Reply) Text(grpc bool, path string) string {
	if grpc && r.Flag == flags.NoRoute {
		return "no route for " + path
	}
	return r.Message
}

// ReplyFor is the reply for an attempt that ended without a response as
// e says (the zero Reply for EndResponse and EndCancelled: there is no
// one to answer, or nothing to say).
func ReplyFor(e End) Reply {
	switch e {
	case EndConnectFailure:
		return ReplyConnectFailure
	case EndReset:
		return ReplyRemoteReset
	case EndOverflow:
		return ReplyOverflow
	case EndNoHealthy:
		return ReplyNoHealthyUpstream
	case EndPerTryTimeout, EndTimeout:
		return ReplyTimeout
	}
	return Reply{}
}
