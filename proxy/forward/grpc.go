package forward

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/sightline-proxy/sightline/proxy/grpcproto"
)

// writeGRPCError answers a gRPC client with a trailers-only response: HTTP
// 200 and grpc-status in the only HEADERS frame, which is what gRPC clients
// expect of a proxy's own errors (a bare HTTP 503 surfaces as a confusing
// "Unavailable: unexpected HTTP status" instead of the real cause).
func writeGRPCError(w http.ResponseWriter, code int, msg, flags string) int {
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(code))
	if msg != "" {
		h.Set("Grpc-Message", grpcproto.EncodeMessage(msg))
	}
	if flags != "" {
		h.Set(headerResponseFlags, flags)
	}
	w.WriteHeader(http.StatusOK)
	return http.StatusOK
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
		h.Set(http.TrailerPrefix+"Grpc-Message", grpcproto.EncodeMessage(msg))
	}
	if flags != "" {
		h.Set(http.TrailerPrefix+headerResponseFlags, flags)
	}
}
