package forward

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sightline-proxy/sightline/proxy/grpcproto"
)

func TestWriteGRPCErrorIsTrailersOnly(t *testing.T) {
	rec := httptest.NewRecorder()
	writeGRPCError(rec, grpcproto.Unavailable, "no healthy upstream", "UH")
	if rec.Code != http.StatusOK {
		t.Errorf("status = %d, want 200 (gRPC errors ride in grpc-status)", rec.Code)
	}
	for k, want := range map[string]string{
		"Content-Type":               "application/grpc",
		"Grpc-Status":                "14",
		"Grpc-Message":               "no healthy upstream",
		"X-Sightline-Response-Flags": "UH",
	} {
		if got := rec.Header().Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if rec.Body.Len() != 0 {
		t.Errorf("body has %d bytes, want none (trailers-only)", rec.Body.Len())
	}
}

func TestCopyHeaderDropsHopByHop(t *testing.T) {
	src := http.Header{
		"Connection":        {"keep-alive, X-Private"},
		"Keep-Alive":        {"timeout=5"},
		"Upgrade":           {"websocket"},
		"Transfer-Encoding": {"chunked"},
		"Te":                {"trailers"},
		"X-Private":         {"secret"},
		"X-Kept":            {"yes"},
		"Grpc-Timeout":      {"1S"},
	}
	dst := http.Header{}
	copyHeader(dst, src)
	for _, k := range []string{"Connection", "Keep-Alive", "Upgrade", "Transfer-Encoding", "Te", "X-Private"} {
		if _, ok := dst[k]; ok {
			t.Errorf("%s was copied; it is hop-by-hop", k)
		}
	}
	for _, k := range []string{"X-Kept", "Grpc-Timeout"} {
		if dst.Get(k) != src.Get(k) {
			t.Errorf("%s = %q, want %q", k, dst.Get(k), src.Get(k))
		}
	}
}
