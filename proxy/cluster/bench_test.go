package cluster

import (
	"fmt"
	"testing"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// BenchmarkSetEndpoints100k is a reload that changes the weight of one
// host of a static cluster of 100,000: what an endpoints-only change costs.
func BenchmarkSetEndpoints100k(b *testing.B) {
	eps := make([]config.Endpoint, 100000)
	for i := range eps {
		eps[i] = config.Endpoint{Address: fmt.Sprintf("127.0.0.%d:%d", 1+i/60000, 1024+i%60000), Weight: 1}
	}
	c, err := New(config.Cluster{Name: "big", LBPolicy: "round_robin", Endpoints: eps}, Options{Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	w := uint32(1)
	for b.Loop() {
		w++
		eps2 := append([]config.Endpoint(nil), eps...)
		eps2[0].Weight = w
		c.SetEndpoints(eps2)
	}
}
