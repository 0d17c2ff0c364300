package forward

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestParseGRPCTimeout(t *testing.T) {
	tests := []struct {
		give   string
		want   time.Duration
		wantOK bool
	}{
		{give: "1S", want: time.Second, wantOK: true},
		{give: "100m", want: 100 * time.Millisecond, wantOK: true},
		{give: "5u", want: 5 * time.Microsecond, wantOK: true},
		{give: "7n", want: 7, wantOK: true},
		{give: "2M", want: 2 * time.Minute, wantOK: true},
		{give: "1H", want: time.Hour, wantOK: true},
		{give: "99999999H", want: time.Duration(1<<63 - 1), wantOK: true}, // clamped, not overflowed
		{give: "", wantOK: false},
		{give: "S", wantOK: false},
		{give: "10", wantOK: false},
		{give: "10x", wantOK: false},
		{give: "-1S", wantOK: false},
		{give: "123456789S", wantOK: false}, // more than 8 digits
	}
	for _, tt := range tests {
		got, ok := parseGRPCTimeout(tt.give)
		if ok != tt.wantOK || (ok && got != tt.want) {
			t.Errorf("parseGRPCTimeout(%q) = %v, %v; want %v, %v", tt.give, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestIsGRPC(t *testing.T) {
	tests := []struct {
		give string
		want bool
	}{
		{"application/grpc", true},
		{"application/grpc+proto", true},
		{"Application/GRPC", true},
		{"application/grpc;charset=utf-8", true},
		{"application/grpc-web", false},
		{"application/json", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := isGRPC(tt.give); got != tt.want {
			t.Errorf("isGRPC(%q) = %v, want %v", tt.give, got, tt.want)
		}
	}
}

func TestEncodeGRPCMessage(t *testing.T) {
	tests := []struct{ give, want string }{
		{"plain message", "plain message"},
		{"100%", "100%25"},
		{"line\nbreak", "line%0Abreak"},
		{"héllo", "h%C3%A9llo"},
	}
	for _, tt := range tests {
		if got := encodeGRPCMessage(tt.give); got != tt.want {
			t.Errorf("encodeGRPCMessage(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestWriteGRPCErrorIsTrailersOnly(t *testing.T) {
	rec := httptest.NewRecorder()
	writeGRPCError(rec, grpcUnavailable, "no healthy upstream", "UH")
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

func TestFlagsString(t *testing.T) {
	tests := []struct {
		give Flags
		want string
	}{
		{0, "-"},
		{FlagNoRoute, "NR"},
		{FlagUpstreamConnectFailure | FlagUpstreamRetryLimit, "UF,URX"},
		{FlagRateLimited, "RL"},
	}
	for _, tt := range tests {
		if got := tt.give.String(); got != tt.want {
			t.Errorf("Flags(%d).String() = %q, want %q", tt.give, got, tt.want)
		}
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
