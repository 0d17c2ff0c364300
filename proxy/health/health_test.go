package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sightline-proxy/sightline/accesslog"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/stats"
)

// eventTime is the clock of every test Checker, so that event lines compare
// whole.
var eventTime = time.Date(2026, 11, 23, 21, 0, 0, 5e6, time.UTC)

func newStats() *stats.HealthCheck {
	return &stats.HealthCheck{Attempt: &stats.Counter{}, Success: &stats.Counter{}, Failure: &stats.Counter{},
		NetworkFailure: &stats.Counter{}, Healthy: &stats.Gauge{}}
}

// newChecker builds a Checker for tests: a fixed event clock, closed when
// the test ends.
func newChecker(t *testing.T, o Options) *Checker {
	t.Helper()
	if o.Cluster == "" {
		o.Cluster = testCluster
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	c.now = func() time.Time { return eventTime }
	t.Cleanup(func() { closeChecker(t, c) })
	return c
}

// closeChecker closes c, failing t if that takes more than a moment: Close
// abandons checks in flight rather than waiting them out.
func closeChecker(t *testing.T, c *Checker) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		c.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Error("Close did not return within 1s")
	}
}

// eventLog is a real health event log in a temporary file.
type eventLog struct {
	path string
	log  *accesslog.HealthLog
}

// newEventLog opens one in format (event_log_format; "" is the default).
func newEventLog(t *testing.T, format string) *eventLog {
	t.Helper()
	path := filepath.Join(t.TempDir(), "healthcheck.log")
	l, err := accesslog.NewHealthLog(path, format, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	e := &eventLog{path: path, log: l}
	t.Cleanup(func() { _ = l.Close(context.Background()) }) // a second Close is harmless
	return e
}

// lines closes the log and returns its lines, each decoded.
func (e *eventLog) lines(t *testing.T) []map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := e.log.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(e.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q is not a JSON object: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// event is an expected event log line.
func event(checker, addr, key string, body map[string]any) map[string]any {
	h, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	return map[string]any{
		"health_checker_type": checker,
		"host":                map[string]any{"address": h, "port": float64(port)},
		"cluster_name":        testCluster,
		"timestamp":           eventTime.Format("2006-01-02T15:04:05.000Z"),
		key:                   body,
	}
}

func addHealthy(checker, addr string, first bool) map[string]any {
	return event(checker, addr, "add_healthy_event", map[string]any{"first_check": first})
}

func ejected(checker, addr, failure string) map[string]any {
	return event(checker, addr, "eject_unhealthy_event", map[string]any{"failure_type": failure})
}

func firstFailed(checker, addr, failure string) map[string]any {
	return event(checker, addr, "health_check_failure_event", map[string]any{"failure_type": failure, "first_check": true})
}

func compareLines(t *testing.T, got, want []map[string]any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("event log:\n%s\nwant:\n%s", g, w)
	}
}

// TestGRPCEjectAndReturn drives one host through its whole life against a
// real grpc-go health server: healthy on the first check, ejected when the
// server says NOT_SERVING, still down (and silent) while the server is
// gone, and back once a server on the same port says SERVING again.
func TestGRPCEjectAndReturn(t *testing.T) {
	checkGoroutines(t)
	hs := health.NewServer()
	up := startGRPC(t, "127.0.0.1:0", hs)
	events, st, ch := newEventLog(t, ""), newStats(), newChanges()
	h := newHost(up.addr)
	var c *Checker
	// OnChange re-sets the same hosts, as a cluster rebuilding on a change
	// may: it must be called with no lock of the Checker held.
	onChange := func(changed *host.Host, healthy bool) {
		c.Set([]*host.Host{h})
		ch.onChange(changed, healthy)
	}
	c = newChecker(t, Options{Config: hcConfig("grpc"), Stats: st, Events: events.log, OnChange: onChange})

	c.Set([]*host.Host{h})
	if h.Flags() != host.FailedActiveHC|host.PendingActiveHC {
		t.Fatalf("flags after Set = %s, want /failed_active_hc/pending_active_hc", host.FlagString(h.Flags()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.WaitFirst(ctx); err != nil {
		t.Fatal(err)
	}
	if !h.Healthy() {
		t.Fatal("host unhealthy after a passing first check")
	}
	ch.expect(t, h, true)
	if st.Healthy.Value() != 1 {
		t.Errorf("healthy gauge = %d, want 1", st.Healthy.Value())
	}

	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	ch.expect(t, h, false)
	if st.Healthy.Value() != 0 {
		t.Errorf("healthy gauge = %d after ejection, want 0", st.Healthy.Value())
	}

	up.srv.Stop()
	failed := st.Failure.Value()
	eventually(t, "failed checks while the server is down", func() bool { return st.Failure.Value() >= failed+3 })

	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	startGRPC(t, up.addr, hs)
	ch.expect(t, h, true)
	ch.none(t, 200*time.Millisecond)

	closeChecker(t, c)
	if st.Healthy.Value() != 0 {
		t.Errorf("healthy gauge = %d after Close, want 0", st.Healthy.Value())
	}
	// One NOT_SERVING (which ejects at once) and at least three checks
	// while the server was gone.
	if a, s, f := st.Attempt.Value(), st.Success.Value(), st.Failure.Value(); s < 3 || f < 4 || a < s+f {
		t.Errorf("attempt %d success %d failure %d; want at least 3 successes, 4 failures, and attempts ≥ both", a, s, f)
	}
	compareLines(t, events.lines(t), []map[string]any{
		addHealthy(accesslog.CheckerGRPC, up.addr, true),
		ejected(accesslog.CheckerGRPC, up.addr, accesslog.FailureActive),
		addHealthy(accesslog.CheckerGRPC, up.addr, false),
	})
}

// TestFirstCheckFailures checks the events of hosts whose first check
// fails, one of each failure type, beside one that passes: one line each,
// however many checks follow.
func TestFirstCheckFailures(t *testing.T) {
	checkGoroutines(t)
	ok := startHTTP(t, httpOpts{code: 200, major: 2})
	bad := startHTTP(t, httpOpts{code: 503, major: 2})
	hang := startHTTP(t, httpOpts{hang: true})
	dead := deadAddr(t)
	hc := hcConfig("http")
	hc.Timeout = config.Duration(100 * time.Millisecond)
	events, st, ch := newEventLog(t, ""), newStats(), newChanges()
	c := newChecker(t, Options{Config: hc, Stats: st, Events: events.log, OnChange: ch.onChange})
	hosts := []*host.Host{newHost(ok.addr), newHost(bad.addr), newHost(hang.addr), newHost(dead)}

	c.Set(hosts)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.WaitFirst(ctx); err != nil {
		t.Fatal(err)
	}
	// Every first check calls OnChange: the host is no longer pending,
	// healthy or not.
	ch.expectFirst(t, map[*host.Host]bool{hosts[0]: true, hosts[1]: false, hosts[2]: false, hosts[3]: false})
	// Each failing host gets a few more checks, which must add no lines
	// and no OnChange.
	eventually(t, "more checks", func() bool { return bad.hits.Load() >= 4 && hang.hits.Load() >= 3 })
	for _, h := range hosts[1:] {
		if h.Healthy() {
			t.Errorf("host %s healthy", h.Address)
		}
	}
	if st.Healthy.Value() != 1 {
		t.Errorf("healthy gauge = %d, want 1", st.Healthy.Value())
	}
	closeChecker(t, c)
	ch.none(t, 0)

	got := events.lines(t)
	port := func(m map[string]any) float64 { return m["host"].(map[string]any)["port"].(float64) }
	sort.Slice(got, func(i, j int) bool { return port(got[i]) < port(got[j]) })
	want := []map[string]any{
		addHealthy(accesslog.CheckerHTTP, ok.addr, true),
		firstFailed(accesslog.CheckerHTTP, bad.addr, accesslog.FailureActive),
		firstFailed(accesslog.CheckerHTTP, hang.addr, accesslog.FailureNetworkTimeout),
		firstFailed(accesslog.CheckerHTTP, dead, accesslog.FailureNetwork),
	}
	sort.Slice(want, func(i, j int) bool { return port(want[i]) < port(want[j]) })
	compareLines(t, got, want)
}

// TestSlowHostDoesNotDelayOthers checks that each host is checked on its
// own: a host whose check hangs does not hold back another's, and Close
// does not wait out the hanging check's timeout.
func TestSlowHostDoesNotDelayOthers(t *testing.T) {
	checkGoroutines(t)
	slow := startHTTP(t, httpOpts{hang: true})
	fast := startHTTP(t, httpOpts{code: 200, major: 2})
	hc := hcConfig("http")
	hc.Timeout = config.Duration(time.Minute)
	c := newChecker(t, Options{Config: hc})
	hs, hf := newHost(slow.addr), newHost(fast.addr)

	c.Set([]*host.Host{hs, hf})
	eventually(t, "checks of the fast host", func() bool { return fast.hits.Load() >= 5 })
	if !hf.Healthy() || hs.Healthy() {
		t.Errorf("fast host %s, slow host %s; want healthy, failed_active_hc",
			host.FlagString(hf.Flags()), host.FlagString(hs.Flags()))
	}
	if n := slow.hits.Load(); n != 1 {
		t.Errorf("slow host got %d checks, want its first still waiting", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.WaitFirst(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitFirst = %v with a check still waiting, want a deadline error", err)
	}

	closeChecker(t, c) // with a check in flight
	if err := c.WaitFirst(context.Background()); err != nil {
		t.Errorf("WaitFirst after Close = %v", err)
	}
}

// TestHTTPReusesConnection checks that passing HTTP checks of a host share
// one connection, whatever the protocol, rather than dialing every
// interval.
func TestHTTPReusesConnection(t *testing.T) {
	checkGoroutines(t)
	tests := []struct {
		protocol string
		tls      bool
		major    int
	}{
		{"http2", false, 2},
		{"http2", true, 2},
		{"http1", false, 1},
		{"http1", true, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s tls=%v", tt.protocol, tt.tls), func(t *testing.T) {
			up := startHTTP(t, httpOpts{code: 200, major: tt.major, tls: tt.tls})
			st := newStats()
			c := newChecker(t, Options{Config: hcConfig("http"), Protocol: tt.protocol, TLS: up.tls, Stats: st})
			c.Set([]*host.Host{newHost(up.addr)})
			eventually(t, "five passing checks", func() bool { return st.Success.Value() >= 5 })
			if f := st.Failure.Value(); f != 0 {
				t.Errorf("%d checks failed", f)
			}
			if n := up.conns.Load(); n != 1 {
				t.Errorf("%d connections for %d checks, want 1", n, up.hits.Load())
			}
		})
	}
}

// TestSetRemovesHost checks that Set stops the checking of a host it no
// longer lists, and starts afresh when the host comes back.
func TestSetRemovesHost(t *testing.T) {
	checkGoroutines(t)
	a, b := startTCP(t), startTCP(t)
	st, ch := newStats(), newChanges()
	c := newChecker(t, Options{Config: hcConfig("tcp"), Stats: st, OnChange: ch.onChange})
	ha, hb := newHost(a.addr), newHost(b.addr)
	// b's checks can be held, so that the flags Set gives b when it comes
	// back are read before its first check (which a local server passes at
	// once) clears them.
	var holdB atomic.Pointer[chan struct{}]
	newProber := c.newProber
	c.newProber = func(addr string) (prober, error) {
		p, err := newProber(addr)
		if err != nil || addr != b.addr {
			return p, err
		}
		return heldProber{p, &holdB}, nil
	}

	c.Set([]*host.Host{ha, hb})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.WaitFirst(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got := ch.next(t); !got.healthy {
			t.Fatalf("OnChange(%s, false) after passing checks", got.h.Address)
		}
	}
	eventually(t, "checks of b", func() bool { return b.accepts.Load() >= 2 })
	if st.Healthy.Value() != 2 {
		t.Errorf("healthy gauge = %d, want 2", st.Healthy.Value())
	}

	c.Set([]*host.Host{ha, ha}) // a listed twice is one host
	if st.Healthy.Value() != 1 {
		t.Errorf("healthy gauge = %d after removing b, want 1", st.Healthy.Value())
	}
	// A check of b may have been under way at the removal; let it land.
	since := a.accepts.Load()
	eventually(t, "checks of a", func() bool { return a.accepts.Load() >= since+2 })
	stoppedAt := b.accepts.Load()
	since = a.accepts.Load()
	eventually(t, "more checks of a", func() bool { return a.accepts.Load() >= since+4 })
	if n := b.accepts.Load(); n != stoppedAt {
		t.Errorf("b was checked %d more times after Set removed it", n-stoppedAt)
	}
	ch.none(t, 0)

	release := make(chan struct{})
	holdB.Store(&release)
	c.Set([]*host.Host{ha, hb})
	if hb.Flags() != host.FailedActiveHC|host.PendingActiveHC {
		t.Errorf("re-added host flags = %s, want /failed_active_hc/pending_active_hc until checked", host.FlagString(hb.Flags()))
	}
	close(release)
	ch.expect(t, hb, true)
	if st.Healthy.Value() != 2 {
		t.Errorf("healthy gauge = %d after re-adding b, want 2", st.Healthy.Value())
	}

	c.Set(nil)
	if st.Healthy.Value() != 0 {
		t.Errorf("healthy gauge = %d with no hosts, want 0", st.Healthy.Value())
	}
	closeChecker(t, c)
	closeChecker(t, c)
	c.Set([]*host.Host{ha}) // after Close: nothing starts
	since = a.accepts.Load()
	time.Sleep(150 * time.Millisecond) // three intervals: a check would have come
	if n := a.accepts.Load(); n != since {
		t.Errorf("Set after Close started checks: %d", n-since)
	}
}

// heldProber is a prober whose checks wait, while *hold is set, for it to
// be closed.
type heldProber struct {
	prober
	hold *atomic.Pointer[chan struct{}]
}

func (p heldProber) probe(ctx context.Context) error {
	if ch := p.hold.Load(); ch != nil {
		select {
		case <-*ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return p.prober.probe(ctx)
}

// TestWaitFirstNoHosts checks that WaitFirst with nothing to wait for
// returns at once, even with a context already done.
func TestWaitFirstNoHosts(t *testing.T) {
	c := newChecker(t, Options{Config: hcConfig("tcp")})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.WaitFirst(ctx); err != nil {
		t.Errorf("WaitFirst = %v, want nil", err)
	}
}

func TestDelay(t *testing.T) {
	tests := []struct {
		name     string
		interval time.Duration
		jitter   time.Duration
		rand     int64 // what the random source returns
		want     time.Duration
	}{
		{"no jitter", time.Second, 0, -1, time.Second},
		{"least jitter", time.Second, 500 * time.Millisecond, 0, time.Second},
		{"most jitter", time.Second, 500 * time.Millisecond, int64(500*time.Millisecond) - 1, 1500*time.Millisecond - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc := hcConfig("tcp")
			hc.Interval, hc.IntervalJitter = config.Duration(tt.interval), config.Duration(tt.jitter)
			c := newChecker(t, Options{Config: hc})
			c.randN = func(n int64) int64 {
				if n != int64(tt.jitter) {
					t.Errorf("random source asked for [0, %d), want [0, %d)", n, tt.jitter)
				}
				if tt.rand < 0 {
					t.Error("random source used with no jitter")
				}
				return tt.rand
			}
			if got := c.delay(tt.interval); got != tt.want {
				t.Errorf("delay = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Options)
		wantErr string // "" for no error
	}{
		{name: "valid grpc", edit: func(*Options) {}},
		{name: "valid http1", edit: func(o *Options) { o.Config = hcConfig("http"); o.Protocol = "http1" }},
		{name: "no checker", edit: func(o *Options) { o.Config.GRPC = nil }, wantErr: "exactly one of grpc, http and tcp"},
		{name: "two checkers", edit: func(o *Options) { o.Config.TCP = &config.TCPHealthCheck{} },
			wantErr: "exactly one of grpc, http and tcp must be set, got 2"},
		{name: "zero interval", edit: func(o *Options) { o.Config.Interval = 0 }, wantErr: "interval must be greater than 0"},
		{name: "negative jitter", edit: func(o *Options) { o.Config.IntervalJitter = -1 }, wantErr: "interval_jitter must not be negative"},
		{name: "zero timeout", edit: func(o *Options) { o.Config.Timeout = 0 }, wantErr: "timeout must be greater than 0"},
		{name: "zero healthy_threshold", edit: func(o *Options) { o.Config.HealthyThreshold = 0 }, wantErr: "healthy_threshold must be at least 1"},
		{name: "zero unhealthy_threshold", edit: func(o *Options) { o.Config.UnhealthyThreshold = 0 }, wantErr: "unhealthy_threshold must be at least 1"},
		{name: "unknown protocol", edit: func(o *Options) { o.Protocol = "spdy" }, wantErr: `unknown protocol "spdy"`},
		{name: "relative path", edit: func(o *Options) { o.Config = hcConfig("http"); o.Config.HTTP.Path = "healthz" },
			wantErr: "http.path must start with /"},
		{name: "bad status", edit: func(o *Options) {
			o.Config = hcConfig("http")
			o.Config.HTTP.ExpectedStatuses = []int{200, 99}
		}, wantErr: "99 is not a status code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{Cluster: testCluster, Config: hcConfig("grpc")}
			tt.edit(&o)
			_, err := New(o)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("New: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("New succeeded, want an error with %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("New: %v, want an error with %q", err, tt.wantErr)
			case err != nil && !strings.HasPrefix(err.Error(), "health check of cluster primary: "):
				t.Errorf("New: %v, want the cluster named first", err)
			}
		})
	}
}
