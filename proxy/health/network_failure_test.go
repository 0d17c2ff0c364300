package health

import (
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/host"
)

// TestNetworkFailureCounted checks health_check.network_failure against
// real servers: a failed check whose cause is the network (nothing
// listening, a connection closed without an answer, no answer before the
// timeout) counts in failure and network_failure, as Envoy counts NETWORK
// and NETWORK_TIMEOUT failures; a host that answers "unhealthy" counts in
// failure only.
func TestNetworkFailureCounted(t *testing.T) {
	for _, tc := range []struct {
		name    string
		kind    string
		addr    func(t *testing.T) string
		network bool
	}{
		{name: "tcp, closed port", kind: "tcp", addr: deadAddr, network: true},
		{name: "http, closed port", kind: "http", addr: deadAddr, network: true},
		{name: "grpc, closed port", kind: "grpc", addr: deadAddr, network: true},
		{name: "http, connection closed without an answer", kind: "http", network: true,
			addr: func(t *testing.T) string { return startTCP(t).addr }},
		{name: "http, no answer before the timeout", kind: "http", network: true,
			addr: func(t *testing.T) string { return startHTTP(t, httpOpts{hang: true}).addr }},
		{name: "grpc, no answer before the timeout", kind: "grpc", network: true,
			addr: func(t *testing.T) string { return startGRPC(t, "127.0.0.1:0", hangingHealth{}).addr }},
		{name: "http, 503", kind: "http",
			addr: func(t *testing.T) string {
				return startHTTP(t, httpOpts{code: http.StatusServiceUnavailable, major: 2}).addr
			}},
		{name: "grpc, not serving", kind: "grpc",
			addr: func(t *testing.T) string {
				hs := health.NewServer()
				hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
				return startGRPC(t, "127.0.0.1:0", hs).addr
			}},
		{name: "grpc, no health service", kind: "grpc",
			addr: func(t *testing.T) string { return startGRPC(t, "127.0.0.1:0", nil).addr }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkGoroutines(t)
			addr := tc.addr(t)
			hc := hcConfig(tc.kind)
			hc.Timeout = config.Duration(100 * time.Millisecond)
			st := newStats()
			c := newChecker(t, Options{Config: hc, Stats: st})
			c.Set([]*host.Host{newHost(addr)})
			eventually(t, "three failed checks", func() bool { return st.Failure.Value() >= 3 })
			closeChecker(t, c)

			failures, network := st.Failure.Value(), st.NetworkFailure.Value()
			if s := st.Success.Value(); s != 0 {
				t.Errorf("success = %d, want 0", s)
			}
			want := int64(0)
			if tc.network {
				want = failures
			}
			if network != want {
				t.Errorf("network_failure = %d with failure = %d, want %d", network, failures, want)
			}
		})
	}
}
