package h2

import (
	"testing"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// BenchmarkProxyUnaryLocalRateLimit is BenchmarkProxyUnary with a local
// rate limit on the route that never refuses: the cost of the check per
// call, with the default bucket alone and with a bucket per client address
// made by a rate_limits action. Both must stay at 0 allocs/op.
func BenchmarkProxyUnaryLocalRateLimit(b *testing.B) {
	big := config.TokenBucket{MaxTokens: 1 << 31, TokensPerFill: 1 << 31, FillInterval: config.Duration(3600e9)}
	for _, tt := range []struct {
		name string
		edit func(*config.Route)
	}{
		{"default_bucket", func(r *config.Route) {
			r.LocalRateLimit = &config.LocalRateLimit{StatPrefix: "bench", TokenBucket: &big}
		}},
		{"per_client_descriptor", func(r *config.Route) {
			r.RateLimits = []config.RateLimitPolicy{{Actions: []config.RateLimitAction{{RemoteAddress: &config.RemoteAddressAction{}}}}}
			r.LocalRateLimit = &config.LocalRateLimit{StatPrefix: "bench", TokenBucket: &big,
				Descriptors: []config.LocalRateLimitDescriptor{{Entries: []config.RateLimitEntry{{Key: "remote_address"}}, TokenBucket: big}}}
		}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			up := startBenchUpstream(b)
			p := startProxy(b, []testCluster{{name: "bench", addrs: []string{up}}}, []testRoute{{prefix: "/", cluster: "bench", edit: tt.edit}}, proxyOpts{})
			benchPipelined(b, p)
		})
	}
}
