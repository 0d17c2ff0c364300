// Package router is the request policy of both codecs, written once: the
// way Envoy's router filter sits above its HTTP/1 and HTTP/2 codecs.
//
// A codec (the net/http handler for HTTP/1.1 clients, the frame engine for
// HTTP/2 ones) translates its wire format into a Request and drives the
// router from its own events:
//
//   - Decide routes the request and returns its Plan: route, cluster,
//     deadline, hash key, retry policy with the trusted override headers
//     applied, and whether it is mirrored; or the local reply for no route.
//   - The Reply values and ReplyFor are the one table of the proxy's own
//     answers: HTTP status, gRPC status, message and response flag. What a
//     reply charges to the cluster follows from how the call ended
//     (Finish).
//   - Call counts one downstream call on its cluster: the max_requests
//     breaker, each attempt (Pick, Begin), the retry decision
//     (ShouldRetry, Retried, BackoffWait), and the one finish step
//     (Finish) that charges the outcome exactly once per call, as Envoy
//     documents it. Run is the attempt loop of the codecs that block on
//     net/http; the HTTP/2 engine drives the same steps from frame events.
//   - DropRequestHeader, HopByHop and ForwardedFor are the header policy
//     (hop-by-hop, overrides, X-Forwarded-*) for hpack fields and
//     http.Header alike.
//   - Mirror is the one mirror sender: a call on the mirror cluster,
//     bounded by its breakers.
//
// Nothing here blocks or takes a lock on the request path, and Call's
// methods allocate nothing, so that the frame engine stays allocation-free
// per call.
package router
