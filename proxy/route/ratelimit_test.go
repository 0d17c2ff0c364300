package route

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/ratelimit"
)

func TestRateLimitDescriptors(t *testing.T) {
	reqHeader := func(name, key string, skip bool) config.RateLimitAction {
		return config.RateLimitAction{RequestHeaders: &config.RequestHeadersAction{HeaderName: name, DescriptorKey: key, SkipIfAbsent: skip}}
	}
	remote := config.RateLimitAction{RemoteAddress: &config.RemoteAddressAction{}}
	generic := config.RateLimitAction{GenericKey: &config.GenericKeyAction{DescriptorValue: "api"}}
	match := func(expect bool) config.RateLimitAction {
		return config.RateLimitAction{HeaderValueMatch: &config.HeaderValueMatchAction{DescriptorValue: "free", ExpectMatch: &expect,
			Headers: []config.HeaderMatcher{{Name: "x-plan", Exact: "free"}}}}
	}
	info := RequestInfo{Method: "POST", Authority: "api.example.com", Path: "/pkg.Svc/Call", RemoteAddr: "10.1.2.3:5555"}
	tests := []struct {
		name    string
		give    []config.RateLimitPolicy
		headers http.Header
		remote  string
		want    string // descriptors as [k=v,k=v] [k=v]
	}{
		{
			name:    "each entry makes one descriptor, actions in order",
			give:    []config.RateLimitPolicy{{Actions: []config.RateLimitAction{generic, remote}}, {Actions: []config.RateLimitAction{reqHeader("x-user", "user", false)}}},
			headers: http.Header{"X-User": {"ann"}},
			want:    "[generic_key=api,remote_address=10.1.2.3] [user=ann]",
		},
		{
			name: "an absent header drops its descriptor, unless skip_if_absent drops only the entry",
			give: []config.RateLimitPolicy{
				{Actions: []config.RateLimitAction{generic, reqHeader("x-user", "user", false)}},
				{Actions: []config.RateLimitAction{generic, reqHeader("x-user", "user", true)}},
			},
			want: "[generic_key=api]",
		},
		{
			name: "pseudo-headers",
			give: []config.RateLimitPolicy{{Actions: []config.RateLimitAction{reqHeader(":path", "method", false), reqHeader(":authority", "host", false), reqHeader(":method", "verb", false)}}},
			want: "[method=/pkg.Svc/Call,host=api.example.com,verb=POST]",
		},
		{
			name:   "an IPv6 client",
			give:   []config.RateLimitPolicy{{Actions: []config.RateLimitAction{remote}}},
			remote: "[2001:db8::1]:443",
			want:   "[remote_address=2001:db8::1]",
		},
		{
			name:    "header_value_match: made on a match, or on none with expect_match false",
			give:    []config.RateLimitPolicy{{Actions: []config.RateLimitAction{match(true)}}, {Actions: []config.RateLimitAction{match(false)}}},
			headers: http.Header{"X-Plan": {"free"}},
			want:    "[header_match=free]",
		},
		{
			name:    "header_value_match with expect_match false, headers not matching",
			give:    []config.RateLimitPolicy{{Actions: []config.RateLimitAction{match(true)}}, {Actions: []config.RateLimitAction{match(false)}}},
			headers: http.Header{"X-Plan": {"paid"}},
			want:    "[header_match=free]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rl, err := newRateLimits(tt.give)
			if err != nil {
				t.Fatal(err)
			}
			in := info
			if tt.remote != "" {
				in.RemoteAddr = tt.remote
			}
			var ds ratelimit.Descriptors
			rl.Descriptors(HTTPHeaders(tt.headers), &in, &ds)
			var parts []string
			for _, d := range ds.All() {
				var kv []string
				for _, e := range d.List() {
					kv = append(kv, e.Key+"="+e.Value)
				}
				parts = append(parts, "["+strings.Join(kv, ",")+"]")
			}
			if got := strings.Join(parts, " "); got != tt.want {
				t.Errorf("descriptors %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRemoteIP(t *testing.T) {
	for _, tt := range []struct{ give, want string }{
		{"10.0.0.1:80", "10.0.0.1"}, {"[::1]:80", "::1"}, {"10.0.0.1", "10.0.0.1"}, {"::1", "::1"}, {"", ""},
	} {
		if got := remoteIP(tt.give); got != tt.want {
			t.Errorf("remoteIP(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestDescriptorsAllocateNothing(t *testing.T) {
	rl, err := newRateLimits([]config.RateLimitPolicy{{Actions: []config.RateLimitAction{
		{RemoteAddress: &config.RemoteAddressAction{}},
		{RequestHeaders: &config.RequestHeadersAction{HeaderName: "x-user", DescriptorKey: "user"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	h := HTTPHeaders(http.Header{"X-User": {"ann"}})
	info := RequestInfo{RemoteAddr: "10.1.2.3:5555"}
	if n := testing.AllocsPerRun(100, func() {
		var ds ratelimit.Descriptors
		rl.Descriptors(h, &info, &ds)
		if ds.N != 1 {
			panic(fmt.Sprint(ds.N))
		}
	}); n != 0 {
		t.Errorf("Descriptors allocates %v times", n)
	}
}
