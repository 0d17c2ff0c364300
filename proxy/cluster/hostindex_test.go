package cluster

import (
	"fmt"
	"slices"
	"testing"

	"github.com/sightline-proxy/sightline/proxy/host"
)

// TestHostIndex drives the index across its switch from a slice to a map:
// every host is found by address, replaced in place, deleted, and deleted
// while iterating.
func TestHostIndex(t *testing.T) {
	for _, n := range []int{0, 1, smallHosts, smallHosts + 1, 3 * smallHosts} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var x hostIndex
			addr := func(i int) string { return fmt.Sprintf("10.0.0.%d:80", i) }
			for i := range n {
				x.set(&host.Host{Address: addr(i), Weight: 1})
			}
			if x.len() != n {
				t.Fatalf("len = %d, want %d", x.len(), n)
			}
			if got := x.m != nil; got != (n > smallHosts) {
				t.Errorf("%d hosts in a map: %v", n, got)
			}
			for i := range n {
				if h, ok := x.get(addr(i)); !ok || h.Address != addr(i) {
					t.Fatalf("get(%s) = %v, %v", addr(i), h, ok)
				}
			}
			if _, ok := x.get("10.0.1.1:80"); ok {
				t.Error("found an address never set")
			}
			if n > 0 {
				repl := &host.Host{Address: addr(0), Weight: 7}
				x.set(repl)
				if h, _ := x.get(addr(0)); h != repl || x.len() != n {
					t.Errorf("after replacing: %v, len %d; want the new host, len %d", h, x.len(), n)
				}
			}
			var seen []string
			for h := range x.all() {
				seen = append(seen, h.Address)
				if len(seen)%2 == 0 {
					x.del(h.Address)
				}
			}
			if len(seen) != n || x.len() != n-n/2 {
				t.Errorf("iterating while deleting: %d seen, %d left; want %d and %d", len(seen), x.len(), n, n-n/2)
			}
			for h := range x.all() {
				if !slices.Contains(seen, h.Address) {
					t.Errorf("%s left that was never seen", h.Address)
				}
			}
		})
	}
}
