package cluster

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/outlier"
)

// listenTCP accepts and closes connections on 127.0.0.1 until the test
// ends, counting them: a host that passes TCP health checks.
func listenTCP(t *testing.T) (addr string, accepts *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepts = new(atomic.Int64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
	})
	return l.Addr().String(), accepts
}

// waitFor polls cond every few milliseconds until it holds, failing t
// after five seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPassingHealthCheckEndsOutlierEjection: an outlier ejection of an
// hour ends at the host's next passing active health check
// (successful_active_health_check_uneject_host, Envoy's default), and the
// checks of an idle cluster start running at interval once it is picked
// from.
func TestPassingHealthCheckEndsOutlierEjection(t *testing.T) {
	addr, accepts := listenTCP(t)
	cfg := config.Cluster{
		Name: "c", LBPolicy: "round_robin",
		Endpoints: []config.Endpoint{{Address: addr}},
		HealthCheck: &config.HealthCheck{
			TCP:      &config.TCPHealthCheck{},
			Interval: config.Duration(10 * time.Millisecond), Timeout: config.Duration(time.Second),
			HealthyThreshold: 1, UnhealthyThreshold: 1,
			NoTrafficInterval: config.Duration(time.Hour),
		},
		OutlierDetection: &config.OutlierDetection{
			Consecutive5xx: 2, Interval: config.Duration(time.Hour), BaseEjectionTime: config.Duration(time.Hour),
			MaxEjectionPercent: 100,
		},
	}
	c, err := New(cfg, Options{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	c.Start(context.Background())
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitHealthChecked(ctx); err != nil {
		t.Fatal(err)
	}
	h := c.Hosts()[0]
	if !h.Healthy() {
		t.Fatalf("host %s after its first check, want healthy", host.FlagString(h.Flags()))
	}
	c.od.Report(h, outlier.Error)
	c.od.Report(h, outlier.Error)
	if h.Flags()&host.FailedOutlierCheck == 0 {
		t.Fatal("host not ejected after consecutive_5xx failures")
	}
	checked := accepts.Load()
	// The first request: checks now run every 10ms, and the next pass
	// returns the host long before its hour is up.
	c.Pick(&balancer.Request{})
	// With an ejection and a sweep interval of an hour, only a passing
	// check can bring the host back.
	waitFor(t, "the ejection to end on a passing check", func() bool { return h.Healthy() })
	// The checker's connect succeeds in the kernel before the test's
	// accept loop counts it: wait for the count, which stays put unless
	// the checks run at interval now (the no-traffic interval is an hour).
	waitFor(t, "a check counted since the ejection", func() bool { return accepts.Load() > checked })
	if got := c.Pick(&balancer.Request{}); got != h {
		t.Errorf("picked %v after the return, want %s", got, h.Address)
	}
}

// TestFirstPickMarksTraffic: the health checker's traffic signal is
// closed by the first Pick, and only then; a cluster without health
// checking has none.
func TestFirstPickMarksTraffic(t *testing.T) {
	unchecked, err := New(config.Cluster{Name: "u", LBPolicy: "random", Endpoints: []config.Endpoint{{Address: "127.0.0.1:1"}}},
		Options{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	unchecked.Pick(&balancer.Request{})
	if unchecked.traffic != nil {
		t.Error("a cluster without health checking made a traffic signal")
	}
	c, err := New(config.Cluster{Name: "c", LBPolicy: "random", Endpoints: []config.Endpoint{{Address: "127.0.0.1:1"}},
		HealthCheck: &config.HealthCheck{TCP: &config.TCPHealthCheck{}, Interval: config.Duration(time.Hour), Timeout: config.Duration(time.Second),
			HealthyThreshold: 1, UnhealthyThreshold: 1}},
		Options{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	select {
	case <-c.traffic:
		t.Fatal("traffic signalled before any request")
	default:
	}
	c.Pick(&balancer.Request{})
	c.Pick(&balancer.Request{}) // a second Pick must not close it again
	select {
	case <-c.traffic:
	default:
		t.Fatal("traffic not signalled after the first Pick")
	}
}
