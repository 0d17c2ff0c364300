package health

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sightline-proxy/sightline/accesslog"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/host"
)

// switchable is an upstream that passes its checks until failing is set,
// and then answers with its failure, counting those answers.
type switchable struct {
	failing atomic.Bool
	failed  atomic.Int64 // failing answers given
}

// switchHTTP serves /healthz: 200, then status once failing.
func switchHTTP(t *testing.T, sw *switchable, status int) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if sw.failing.Load() {
			sw.failed.Add(1)
			w.WriteHeader(status)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// switchGRPCHealth answers SERVING, then NOT_SERVING once failing.
type switchGRPCHealth struct {
	healthpb.UnimplementedHealthServer
	sw *switchable
}

func (h switchGRPCHealth) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if h.sw.failing.Load() {
		h.sw.failed.Add(1)
		return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING}, nil
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// TestAnsweredUnhealthyEjectsAtOnce: a host that answers that it is down
// (HTTP 503 or any status neither expected nor retriable, gRPC
// NOT_SERVING) is ejected on that one answer, whatever unhealthy_threshold
// says, as Envoy ejects on a non-retriable ACTIVE failure; a status listed
// in retriable_statuses still waits for unhealthy_threshold answers. The
// ejection is an eject_unhealthy_event with failure_type ACTIVE.
func TestAnsweredUnhealthyEjectsAtOnce(t *testing.T) {
	tests := []struct {
		name      string
		kind      string // grpc or http
		status    int    // the HTTP answer once failing
		retriable []int
		want      int64 // failing answers seen when the host is ejected
	}{
		{name: "http 503", kind: "http", status: 503, want: 1},
		{name: "http 500", kind: "http", status: 500, want: 1},
		{name: "http 404", kind: "http", status: 404, want: 1},
		{name: "grpc NOT_SERVING", kind: "grpc", want: 1},
		{name: "http 500 retriable", kind: "http", status: 500, retriable: []int{500}, want: 3},
		{name: "http 503 retriable", kind: "http", status: 503, retriable: []int{429, 503}, want: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkGoroutines(t)
			sw := &switchable{}
			var addr, checker string
			hc := hcConfig(tt.kind)
			hc.UnhealthyThreshold = 3
			if tt.kind == "grpc" {
				addr, checker = startGRPC(t, "127.0.0.1:0", switchGRPCHealth{sw: sw}).addr, accesslog.CheckerGRPC
			} else {
				addr, checker = switchHTTP(t, sw, tt.status), accesslog.CheckerHTTP
				hc.HTTP.RetriableStatuses = tt.retriable
			}
			h := newHost(addr)
			events := newEventLog(t, "")
			// The next check waits for OnChange, so the count read here
			// is the number of failing answers that made the ejection.
			seen := make(chan int64, 4)
			onChange := func(_ *host.Host, healthy bool) {
				if !healthy {
					seen <- sw.failed.Load()
				}
			}
			c := newChecker(t, Options{Config: hc, Events: events.log, OnChange: onChange})
			c.Set([]*host.Host{h})
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := c.WaitFirst(ctx); err != nil {
				t.Fatal(err)
			}
			if !h.Healthy() {
				t.Fatal("host unhealthy after a passing first check")
			}
			sw.failing.Store(true)
			select {
			case n := <-seen:
				if n != tt.want {
					t.Errorf("ejected after %d failing answers, want %d (unhealthy_threshold 3)", n, tt.want)
				}
			case <-time.After(wait):
				t.Fatal("host never ejected")
			}
			closeChecker(t, c)
			compareLines(t, events.lines(t), []map[string]any{
				addHealthy(checker, addr, true),
				ejected(checker, addr, accesslog.FailureActive),
			})
		})
	}
}

// timerCall is one wait a Checker asked its timer for.
type timerCall struct {
	d    time.Duration
	fire chan time.Time
}

// fakeTimers replaces c's timer: every wait is sent on the returned
// channel, and lasts until the test fires it.
func fakeTimers(c *Checker) chan timerCall {
	calls := make(chan timerCall, 16)
	c.after = func(d time.Duration) <-chan time.Time {
		tc := timerCall{d: d, fire: make(chan time.Time, 1)}
		calls <- tc
		return tc.fire
	}
	return calls
}

// nextWait returns the next wait the Checker asked for.
func nextWait(t *testing.T, calls chan timerCall) timerCall {
	t.Helper()
	select {
	case tc := <-calls:
		return tc
	case <-time.After(wait):
		t.Fatal("the checker asked for no wait")
	}
	return timerCall{}
}

// TestNoTrafficInterval: until the cluster has had traffic, hosts are
// checked every no_traffic_interval, or no_traffic_healthy_interval after
// a pass that found the host healthy; the first request makes interval
// apply, counted from the last check, without waiting out the long wait.
func TestNoTrafficInterval(t *testing.T) {
	checkGoroutines(t)
	const (
		interval         = 2 * time.Second
		noTraffic        = time.Minute
		noTrafficHealthy = 5 * time.Minute
	)
	hc := hcConfig("tcp")
	hc.Interval, hc.IntervalJitter = config.Duration(interval), 0
	hc.NoTrafficInterval, hc.NoTrafficHealthyInterval = config.Duration(noTraffic), config.Duration(noTrafficHealthy)
	hc.Timeout = config.Duration(time.Second)
	up := startTCP(t)
	traffic := make(chan struct{})
	c := newChecker(t, Options{Config: hc, Traffic: traffic})
	calls := fakeTimers(c)

	healthy := newHost(up.addr)
	c.Set([]*host.Host{healthy})
	if w := nextWait(t, calls); w.d != noTrafficHealthy {
		t.Fatalf("no traffic, host healthy: next check in %s, want no_traffic_healthy_interval %s", w.d, noTrafficHealthy)
	} else {
		w.fire <- time.Time{}
	}
	w := nextWait(t, calls)
	if w.d != noTrafficHealthy {
		t.Fatalf("no traffic, host still healthy: next check in %s, want %s", w.d, noTrafficHealthy)
	}

	// A host failing its checks is checked every no_traffic_interval.
	dead := newHost(deadAddr(t))
	c.Set([]*host.Host{healthy, dead})
	if d := nextWait(t, calls); d.d != noTraffic {
		t.Fatalf("no traffic, host failing: next check in %s, want no_traffic_interval %s", d.d, noTraffic)
	}

	// The first request: both hosts' long waits are cut to an interval
	// from their last check (the test clock stands still, so a whole
	// interval).
	close(traffic)
	for range 2 {
		if got := nextWait(t, calls); got.d != interval {
			t.Fatalf("after the first request: next check in %s, want interval %s", got.d, interval)
		} else {
			got.fire <- time.Time{}
		}
	}
	for range 2 {
		if got := nextWait(t, calls); got.d != interval {
			t.Fatalf("with traffic: next check in %s, want interval %s", got.d, interval)
		}
	}
}

// TestNoTrafficDefaults: a Checker given no Traffic channel (or a config
// built by hand, with no no_traffic_interval) checks every interval.
func TestNoTrafficDefaults(t *testing.T) {
	checkGoroutines(t)
	hc := hcConfig("tcp")
	hc.Interval, hc.IntervalJitter = config.Duration(3*time.Second), 0
	up := startTCP(t)
	c := newChecker(t, Options{Config: hc, Traffic: make(chan struct{})})
	calls := fakeTimers(c)
	c.Set([]*host.Host{newHost(up.addr)})
	if w := nextWait(t, calls); w.d != 3*time.Second {
		t.Fatalf("no no_traffic_interval configured: next check in %s, want interval 3s", w.d)
	}
}

// TestOnPass: OnPass is called after every passing check, not only after
// changes of health, so that an outlier ejection can end on the next one.
func TestOnPass(t *testing.T) {
	checkGoroutines(t)
	up := startTCP(t)
	h := newHost(up.addr)
	passes := make(chan *host.Host, 16)
	c := newChecker(t, Options{Config: hcConfig("tcp"), OnPass: func(p *host.Host) { passes <- p }})
	c.Set([]*host.Host{h})
	for i := range 3 {
		select {
		case p := <-passes:
			if p != h {
				t.Fatalf("OnPass(%s), want %s", p.Address, h.Address)
			}
		case <-time.After(wait):
			t.Fatalf("OnPass called %d times, want at least 3", i)
		}
	}
}
