package h2

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/sightline-proxy/sightline/internal/testnet"
	"github.com/sightline-proxy/sightline/proxy/config"
)

// countingBackend answers with fn and counts the requests it got.
type countingBackend struct {
	n    atomic.Int64
	addr string
}

func startCounting(t *testing.T, fn http.HandlerFunc) *countingBackend {
	b := &countingBackend{}
	b.addr = testnet.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.n.Add(1)
		fn(w, r)
	}), testnet.HTTP1|testnet.H2C)
	return b
}

// echoLen answers 200 with the length of the request body it read.
func echoLen(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	fmt.Fprintf(w, "%d", len(b))
}

func failWith(status int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(status)
	}
}

func post(t *testing.T, c *http.Client, addr, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+addr+"/", strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestRetries runs each retry_on condition against backends that fail in
// its way: every request ends at the good backend, with its body intact,
// and the failing one sees each request once.
func TestRetries(t *testing.T) {
	tests := []struct {
		name    string
		retryOn string
		bad     http.HandlerFunc
		closed  bool // the bad host refuses connections instead
	}{
		{"5xx", "5xx", failWith(503), false},
		{"gateway-error", "gateway-error", failWith(502), false},
		{"retriable-4xx", "retriable-4xx", failWith(409), false},
		{"connect-failure", "connect-failure", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good := startCounting(t, echoLen)
			var bad *countingBackend
			badAddr := ""
			if tt.closed {
				badAddr = testnet.ClosedPort(t)
			} else {
				bad = startCounting(t, tt.bad)
				badAddr = bad.addr
			}
			p := startProxy(t, []testCluster{{name: "c", addrs: []string{badAddr, good.addr}, connect: time.Second}},
				[]testRoute{{prefix: "/", cluster: "c", retry: &config.RetryPolicy{RetryOn: tt.retryOn, NumRetries: 1,
					BackoffBase: config.Duration(time.Millisecond), BackoffMax: config.Duration(5 * time.Millisecond)}}}, proxyOpts{})
			c := h2cClient()
			body := strings.Repeat("x", 20000) // more than one DATA frame
			const n = 10
			for i := range n {
				resp, got := post(t, c, p.addr, body)
				if resp.StatusCode != 200 || got != "20000" {
					t.Fatalf("request %d: %d %q, want 200 \"20000\"", i, resp.StatusCode, got)
				}
			}
			if good.n.Load() != n {
				t.Errorf("good backend served %d, want %d", good.n.Load(), n)
			}
			if bad != nil && (bad.n.Load() == 0 || bad.n.Load() > n) {
				t.Errorf("failing backend saw %d requests, want 1..%d", bad.n.Load(), n)
			}
		})
	}
}

// TestRetriesRunOut: with every host failing, the client gets the last
// failure after 1 + num_retries attempts.
func TestRetriesRunOut(t *testing.T) {
	a, b := startCounting(t, failWith(503)), startCounting(t, failWith(503))
	p := startProxy(t, []testCluster{{name: "c", addrs: []string{a.addr, b.addr}}},
		[]testRoute{{prefix: "/", cluster: "c", retry: &config.RetryPolicy{RetryOn: "5xx", NumRetries: 2,
			BackoffBase: config.Duration(time.Millisecond), BackoffMax: config.Duration(2 * time.Millisecond)}}}, proxyOpts{})
	resp, _ := post(t, h2cClient(), p.addr, "hello")
	if resp.StatusCode != 503 {
		t.Fatalf("status %d, want the upstream's 503", resp.StatusCode)
	}
	if got := a.n.Load() + b.n.Load(); got != 3 {
		t.Fatalf("%d attempts, want 3", got)
	}
}

// TestNoRetryWithoutCondition: a 503 is not retried when retry_on does
// not name it, and never without a policy.
func TestNoRetryWithoutCondition(t *testing.T) {
	a, b := startCounting(t, failWith(503)), startCounting(t, failWith(503))
	p := startProxy(t, []testCluster{{name: "c", addrs: []string{a.addr, b.addr}}},
		[]testRoute{{prefix: "/", cluster: "c", retry: &config.RetryPolicy{RetryOn: "connect-failure", NumRetries: 3}}}, proxyOpts{})
	resp, _ := post(t, h2cClient(), p.addr, "hello")
	if resp.StatusCode != 503 || a.n.Load()+b.n.Load() != 1 {
		t.Fatalf("status %d after %d attempts, want 503 after 1", resp.StatusCode, a.n.Load()+b.n.Load())
	}
}

// TestPerTryTimeout: an attempt that gets no response within
// per_try_timeout goes to another host, long before the route timeout.
func TestPerTryTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	slow := startCounting(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	good := startCounting(t, echoLen)
	p := startProxy(t, []testCluster{{name: "c", addrs: []string{slow.addr, good.addr}}},
		[]testRoute{{prefix: "/", cluster: "c", timeout: 10 * time.Second, retry: &config.RetryPolicy{RetryOn: "5xx", NumRetries: 1,
			PerTryTimeout: config.Duration(100 * time.Millisecond), BackoffBase: config.Duration(time.Millisecond), BackoffMax: config.Duration(2 * time.Millisecond)}}}, proxyOpts{})
	c := h2cClient()
	start := time.Now()
	for i := range 4 {
		if resp, got := post(t, c, p.addr, "abc"); resp.StatusCode != 200 || got != "3" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, got)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("4 requests took %v: the per-try timeout did not cut the slow attempts", d)
	}
	if slow.n.Load() == 0 {
		t.Fatal("the slow host got no request; the test proves nothing")
	}
}

// TestRetryOverrideHeader: on a trusting listener x-sightline-max-retries
// replaces num_retries.
func TestRetryOverrideHeader(t *testing.T) {
	a, b := startCounting(t, failWith(503)), startCounting(t, failWith(503))
	p := startProxy(t, []testCluster{{name: "c", addrs: []string{a.addr, b.addr}}},
		[]testRoute{{prefix: "/", cluster: "c", retry: &config.RetryPolicy{RetryOn: "5xx", NumRetries: 1,
			BackoffBase: config.Duration(time.Millisecond), BackoffMax: config.Duration(2 * time.Millisecond)}}}, proxyOpts{trust: true})
	post(t, h2cClient(), p.addr, "x", "x-sightline-max-retries", "3")
	if got := a.n.Load() + b.n.Load(); got != 4 {
		t.Fatalf("%d attempts, want 4 (1 + the header's 3)", got)
	}
}

// TestCircuitBreakerMaxRequests: beyond max_requests in flight, requests
// are refused at once with 503 and UO; the ones in flight finish.
func TestCircuitBreakerMaxRequests(t *testing.T) {
	release := make(chan struct{})
	addr := testnet.Serve(t, blockingHandler(release), testnet.HTTP1|testnet.H2C)
	p := startProxy(t, []testCluster{{name: "c", addrs: []string{addr}, breakers: config.CircuitBreakers{MaxRequests: 3}}},
		[]testRoute{{prefix: "/", cluster: "c"}}, proxyOpts{})
	c := h2cClient()
	var wg sync.WaitGroup
	codes := make(chan int, 3)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, _ := get(t, c, p.addr, "/")
			codes <- st
		}()
	}
	// Wait until the three are in flight upstream.
	deadline := time.Now().Add(5 * time.Second)
	for p.clusters["c"].Breakers.Snapshot().Requests.Active < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the first requests never reached the upstream")
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp, err := c.Get("http://" + p.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("X-Sightline-Response-Flags") != "UO" {
		t.Fatalf("over the limit: %d flags %q, want 503 UO", resp.StatusCode, resp.Header.Get("X-Sightline-Response-Flags"))
	}
	close(release)
	wg.Wait()
	close(codes)
	for st := range codes {
		if st != 200 {
			t.Fatalf("a request under the limit got %d", st)
		}
	}
	// A call's slot is given back as its last frame is written, which the
	// client may read first.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		got := p.clusters["c"].Breakers.Snapshot().Requests.Active
		if got == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests still counted after all finished", got)
		}
	}
}

// TestMirror: every request is copied to the mirror cluster with the
// "-shadow" authority, and the client's answer comes from the primary.
func TestMirror(t *testing.T) {
	primary := startCounting(t, echoLen)
	var shadowHosts sync.Map
	shadow := startCounting(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		shadowHosts.Store(r.Host+" "+fmt.Sprint(len(b)), true)
		w.WriteHeader(500) // discarded
	})
	p := startProxy(t, []testCluster{{name: "primary", addrs: []string{primary.addr}}, {name: "shadow", addrs: []string{shadow.addr}}},
		[]testRoute{{prefix: "/", cluster: "primary", mirror: "shadow"}}, proxyOpts{})
	c := h2cClient()
	for range 5 {
		req, _ := http.NewRequest("POST", "http://"+p.addr+"/", strings.NewReader("hello"))
		req.Host = "svc.example:8080"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "5" {
			t.Fatalf("primary answer %d %q", resp.StatusCode, b)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for shadow.n.Load() < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if shadow.n.Load() != 5 || primary.n.Load() != 5 {
		t.Fatalf("primary %d, shadow %d requests; want 5 each", primary.n.Load(), shadow.n.Load())
	}
	if _, ok := shadowHosts.Load("svc.example-shadow:8080 5"); !ok {
		var seen []string
		shadowHosts.Range(func(k, _ any) bool { seen = append(seen, k.(string)); return true })
		t.Fatalf("shadow saw %v, want authority svc.example-shadow:8080 and the 5-byte body", seen)
	}
}

// TestRetryGRPCUnavailable: a gRPC server that answers UNAVAILABLE
// (trailers-only, as grpc-go does for an error before any message) is
// retried on "unavailable", and the client never sees it.
func TestRetryGRPCUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int64
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		refused.Add(1)
		return status.Error(codes.Unavailable, "draining")
	}))
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	good := startBackends(t, 1)
	p := startProxy(t, []testCluster{{name: "c", addrs: []string{ln.Addr().String(), good[0].Addr}}},
		[]testRoute{{prefix: "/", cluster: "c", retry: &config.RetryPolicy{RetryOn: "unavailable", NumRetries: 1,
			BackoffBase: config.Duration(time.Millisecond), BackoffMax: config.Duration(2 * time.Millisecond)}}}, proxyOpts{})
	client := dialProxy(t, p.addr)
	for i := range 10 {
		if _, err := client.UnaryCall(ctxT(t), &testgrpc.SimpleRequest{ResponseSize: 10}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if refused.Load() == 0 || good[0].Calls() != 10 {
		t.Fatalf("refusing server saw %d calls, good one %d; want some and 10", refused.Load(), good[0].Calls())
	}
}

// TestCircuitBreakerPendingAndConnections: with max_connections 1 and a
// backend taking one stream at a time, a second call waits for the slot
// (pending) and a third, past max_pending_requests 1, is refused with UO.
func TestCircuitBreakerPendingAndConnections(t *testing.T) {
	release := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	arrived := make(chan struct{}, 2)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		blockingHandler(release).ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: handler, Protocols: protos, HTTP2: &http.HTTP2Config{MaxConcurrentStreams: 1}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	p := startProxy(t, []testCluster{{name: "c", addrs: []string{ln.Addr().String()},
		breakers: config.CircuitBreakers{MaxConnections: 1, MaxPendingRequests: 1}}},
		[]testRoute{{prefix: "/", cluster: "c"}}, proxyOpts{})
	c := h2cClient()
	br := p.clusters["c"].Breakers
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	for call := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, _ := get(t, c, p.addr, "/")
			codes <- st
		}()
		if call == 0 {
			// The first call holds the connection's one stream once the
			// backend has it; until then it may itself be pending (the
			// connection still opening), and the next call must not
			// count on it.
			waitSignal(t, arrived, "the first call at the backend")
			continue
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			snap := br.Snapshot()
			if snap.PendingRequests.Active == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the second call never waited for the slot (%+v)", snap)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	resp, err := c.Get("http://" + p.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("X-Sightline-Response-Flags") != "UO" {
		t.Fatalf("past max_pending_requests: %d %q, want 503 UO", resp.StatusCode, resp.Header.Get("X-Sightline-Response-Flags"))
	}
	close(release)
	wg.Wait()
	close(codes)
	for st := range codes {
		if st != 200 {
			t.Fatalf("a call within the limits got %d", st)
		}
	}
	// A call's slot is given back as its last frame is written, which the
	// client may read first.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		snap := br.Snapshot()
		if snap.PendingRequests.Active == 0 && snap.Requests.Active == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("breaker counts left after every call ended: %+v", snap)
		}
	}
}
