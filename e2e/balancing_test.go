package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/sightline-proxy/sightline/internal/backend"
)

// TestBalancingPerRequest checks that the proxy balances every call on its
// own, not every connection: all calls go over ONE client connection, and
// they must still spread over the four backends as each policy promises.
func TestBalancingPerRequest(t *testing.T) {
	backends := startBackends(t, 4)
	tests := []struct {
		policy string
		// tolerance is how far from an even share (1,000 of 4,000 calls)
		// each backend may be; 0 means the policy hashes x-user-id instead.
		tolerance float64
	}{
		{policy: "round_robin", tolerance: 0.05},
		{policy: "least_request", tolerance: 0.30},
		{policy: "random", tolerance: 0.30},
		{policy: "ring_hash"},
		{policy: "maglev"},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			p := startProxy(t, hashConfig(tt.policy, addrsOf(backends)))
			conn, dials := dialGRPC(t, p.listener("ingress"))
			client := testgrpc.NewTestServiceClient(conn)
			if tt.tolerance > 0 {
				checkEvenSpread(t, client, backends, tt.tolerance)
			} else {
				checkHashAffinity(t, client, backends)
				checkHashSpread(t, client, backends)
			}
			if n := dials.n.Load(); n != 1 {
				t.Errorf("the client opened %d connections to the proxy, want 1 (the test is about per-request balancing over one connection)", n)
			}
		})
	}
}

// hashConfig is simpleConfig with a hash policy on x-user-id.
func hashConfig(policy string, addrs []string) string {
	return fmt.Sprintf(`node: {id: e2e, zone: zone-a}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - match: {prefix: /}
            cluster: upstream
            hash_policy: [{header: x-user-id}]
clusters:
  - name: upstream
    lb_policy: %s
    endpoints: %s
`, policy, endpoints(addrs...))
}

func checkEvenSpread(t *testing.T, client testgrpc.TestServiceClient, backends []*backend.Backend, tolerance float64) {
	t.Helper()
	const calls, workers = 4000, 16
	before := callCounts(backends)
	errs, failed := runParallel(calls, workers, func(int) error {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 16})
		return err
	})
	if failed > 0 {
		t.Fatalf("%d of %d calls failed; first errors: %v", failed, calls, errs)
	}
	got := deltas(before, callCounts(backends))
	want := float64(calls) / float64(len(backends))
	lo, hi := int64(want*(1-tolerance)), int64(want*(1+tolerance))
	t.Logf("calls per backend: %v (each must be in [%d, %d])", got, lo, hi)
	var sum int64
	for i, n := range got {
		sum += n
		if n < lo || n > hi {
			t.Errorf("backend %d (%s) served %d calls, want %d..%d", i+1, backends[i].Addr, n, lo, hi)
		}
	}
	if sum != calls {
		t.Errorf("the backends served %d calls in all, want %d", sum, calls)
	}
}

// checkHashAffinity sends 10 calls for each of 20 user ids: every call of an
// id must reach the same backend.
func checkHashAffinity(t *testing.T, client testgrpc.TestServiceClient, backends []*backend.Backend) {
	t.Helper()
	const ids, callsPerID = 20, 10
	for id := 0; id < ids; id++ {
		user := fmt.Sprintf("user-%d", id)
		before := callCounts(backends)
		for c := 0; c < callsPerID; c++ {
			ctx := metadata.AppendToOutgoingContext(callCtx(t), "x-user-id", user)
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
				t.Fatalf("x-user-id %s, call %d: %v", user, c, err)
			}
		}
		got := deltas(before, callCounts(backends))
		if !slices.Contains(got, callsPerID) {
			t.Errorf("x-user-id %s: %d calls spread as %v over the backends, want all on one", user, callsPerID, got)
		}
	}
}

// checkHashSpread sends one call for each of 200 user ids: every backend must
// get a fair part of them.
func checkHashSpread(t *testing.T, client testgrpc.TestServiceClient, backends []*backend.Backend) {
	t.Helper()
	const ids = 200
	before := callCounts(backends)
	errs, failed := runParallel(ids, 8, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "x-user-id", fmt.Sprintf("spread-user-%d", i))
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		return err
	})
	if failed > 0 {
		t.Fatalf("%d of %d calls failed; first errors: %v", failed, ids, errs)
	}
	got := deltas(before, callCounts(backends))
	t.Logf("%d distinct x-user-id values per backend: %v", ids, got)
	// Four hosts on a ring or a Maglev table each own roughly a quarter of
	// the hash space; 10 of 200 (a fifth of a fair share) only fails when
	// the hash ignores the header or a host is left out.
	const min = 10
	for i, n := range got {
		if n < min {
			t.Errorf("backend %d (%s) served %d of %d distinct ids, want at least %d", i+1, backends[i].Addr, n, ids, min)
		}
	}
}
