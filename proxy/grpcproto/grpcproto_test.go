package grpcproto

import (
	"net/http"
	"testing"
	"time"
)

func TestParseTimeout(t *testing.T) {
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
		got, ok := ParseTimeout(tt.give)
		if ok != tt.wantOK || (ok && got != tt.want) {
			t.Errorf("ParseTimeout(%q) = %v, %v; want %v, %v", tt.give, got, ok, tt.want, tt.wantOK)
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
		if got := IsGRPC(tt.give); got != tt.want {
			t.Errorf("IsGRPC(%q) = %v, want %v", tt.give, got, tt.want)
		}
	}
}

func TestEncodeMessage(t *testing.T) {
	tests := []struct{ give, want string }{
		{"plain message", "plain message"},
		{"100%", "100%25"},
		{"line\nbreak", "line%0Abreak"},
		{"héllo", "h%C3%A9llo"},
	}
	for _, tt := range tests {
		if got := EncodeMessage(tt.give); got != tt.want {
			t.Errorf("EncodeMessage(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestStatusOf(t *testing.T) {
	tests := []struct {
		name string
		hs   []http.Header
		want int
	}{
		{"trailers-only headers", []http.Header{{"Grpc-Status": {"14"}}, nil}, 14},
		{"in the trailers", []http.Header{{"Content-Type": {"application/grpc"}}, {"Grpc-Status": {"0"}}}, 0},
		{"headers win", []http.Header{{"Grpc-Status": {"5"}}, {"Grpc-Status": {"0"}}}, 5},
		{"none", []http.Header{{}, {}}, -1},
		{"garbage", []http.Header{{"Grpc-Status": {"x"}}}, -1},
		{"negative", []http.Header{{"Grpc-Status": {"-3"}}}, -1},
	}
	for _, tt := range tests {
		if got := StatusOf(tt.hs...); got != tt.want {
			t.Errorf("%s: StatusOf = %d, want %d", tt.name, got, tt.want)
		}
	}
}
