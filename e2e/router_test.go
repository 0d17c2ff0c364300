package e2e

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// The router table: one set of cases (retries before a response, per-try
// and route timeouts, each local reply, a client that goes away, the
// mirror's headers) run through the real binary for HTTP/1.1 and h2c
// clients against http1 and http2 clusters. Each case checks what the
// client got, the cluster and listener stats it moved (as Envoy counts
// them: once per call, retried responses apart) and its access-log line.

// routerBackend answers by path, HTTP/1.1 and h2c on one port:
//
//	/ok            200
//	/flaky         503 to the first attempt of a request (by x-case), 200 after
//	/fail          503
//	/slow-first    the first attempt of a request waits 2s, then 200; 200 after
//	/slow          waits 2s (or until the request ends), then 200
//	/hang          waits until the request ends
//
// It records the headers of every request to /mirror* it sees.
type routerBackend struct {
	mu   sync.Mutex
	seen map[string]int // x-case → attempts
	// mirrored holds the requests the mirror cluster received.
	mirrored []http.Header
	hosts    []string
}

func startRouterBackend(t *testing.T, shared *routerBackend) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		id := r.Header.Get("X-Case")
		shared.mu.Lock()
		shared.seen[id]++
		n := shared.seen[id]
		if strings.HasPrefix(r.URL.Path, "/mirror") && strings.HasSuffix(r.Host, "-shadow") || strings.Contains(r.Host, "-shadow:") {
			shared.mirrored = append(shared.mirrored, r.Header.Clone())
			shared.hosts = append(shared.hosts, r.Host)
		}
		shared.mu.Unlock()
		switch r.URL.Path {
		case "/reset-mid-body":
			w.WriteHeader(200)
			_, _ = io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case "/backoff/fail":
			w.WriteHeader(503)
			return
		case "/flaky":
			if n == 1 {
				w.WriteHeader(503)
				return
			}
		case "/fail":
			w.WriteHeader(503)
			return
		case "/slow-first":
			if n == 1 {
				select {
				case <-time.After(2 * time.Second):
				case <-r.Context().Done():
					return
				}
			}
		case "/one/hold", "/hang":
			<-r.Context().Done()
			return
		case "/slow":
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// routerCase is one row of the table. path names the backend's behaviour
// and the route it takes (each route has its own policy, see the config).
type routerCase struct {
	name   string
	path   string
	header map[string]string
	cancel time.Duration // the client gives up after this long; 0: never
	// hold sends a slow request first and keeps it in flight (the
	// max_requests 1 cluster's slot).
	hold bool

	wantStatus int // 0: the client gets no response (it went away)
	// wantBodyErr: the response starts, then breaks off.
	wantBodyErr bool
	wantFlags   string
	attempts    int
	// stats that must move by exactly this much, under the case's
	// cluster ("cluster.<c>." is prefixed) or listener ("http.<p>.").
	cluster  map[string]int
	listener map[string]int
}

var routerCases = []routerCase{
	{name: "ok", path: "/ok", wantStatus: 200, attempts: 1,
		cluster:  map[string]int{"upstream_rq_total": 1, "upstream_rq_200": 1, "upstream_rq_2xx": 1, "upstream_rq_completed": 1, "upstream_rq_retry": 0},
		listener: map[string]int{"downstream_rq_total": 1, "downstream_rq_2xx": 1, "downstream_rq_completed": 1}},
	{name: "retry then ok", path: "/flaky", wantStatus: 200, attempts: 2,
		cluster: map[string]int{"upstream_rq_total": 2, "upstream_rq_200": 1, "upstream_rq_503": 0, "retry.upstream_rq_503": 1,
			"upstream_rq_retry": 1, "upstream_rq_retry_success": 1, "upstream_rq_completed": 1}},
	{name: "retries run out", path: "/fail", wantStatus: 503, wantFlags: "URX", attempts: 2,
		cluster: map[string]int{"upstream_rq_total": 2, "upstream_rq_503": 1, "retry.upstream_rq_503": 1, "upstream_rq_retry": 1,
			"upstream_rq_retry_success": 0, "upstream_rq_retry_limit_exceeded": 1, "upstream_rq_completed": 1}},
	{name: "per-try timeout then ok", path: "/slow-first", wantStatus: 200, attempts: 2,
		cluster: map[string]int{"upstream_rq_total": 2, "upstream_rq_200": 1, "upstream_rq_per_try_timeout": 1, "upstream_rq_timeout": 0, "upstream_rq_retry": 1}},
	{name: "no retry after response bytes", path: "/reset-mid-body", wantStatus: 200, wantBodyErr: true, wantFlags: "UR", attempts: 1,
		cluster:  map[string]int{"upstream_rq_total": 1, "upstream_rq_200": 1, "upstream_rq_retry": 0, "upstream_rq_rx_reset": 1, "upstream_rq_completed": 1},
		listener: map[string]int{"downstream_rq_tx_reset": 1}},
	// The back-off is drawn from [0, 1000h): the 1s deadline passes first,
	// but for a draw below 1s, one in 3.6 million.
	{name: "deadline passes during the back-off", path: "/backoff/fail", wantStatus: 504, wantFlags: "UT", attempts: 1,
		cluster: map[string]int{"upstream_rq_total": 1, "retry.upstream_rq_503": 1, "upstream_rq_503": 0, "upstream_rq_504": 1, "upstream_rq_timeout": 1, "upstream_rq_completed": 1}},
	{name: "route timeout", path: "/slow", wantStatus: 504, wantFlags: "UT", attempts: 1,
		cluster: map[string]int{"upstream_rq_total": 1, "upstream_rq_504": 1, "upstream_rq_timeout": 1, "upstream_rq_per_try_timeout": 0, "upstream_rq_completed": 1}},
	{name: "no route", path: "/nowhere", wantStatus: 404, wantFlags: "NR", attempts: 0,
		listener: map[string]int{"no_route": 1, "downstream_rq_4xx": 1}},
	{name: "cluster named by a header", path: "/by-header", header: map[string]string{"X-Target": "$cluster"}, wantStatus: 200, attempts: 1,
		cluster: map[string]int{"upstream_rq_200": 1, "upstream_rq_total": 1}},
	{name: "header naming no cluster", path: "/by-header", header: map[string]string{"X-Target": "nope"}, wantStatus: 503, wantFlags: "NC", attempts: 0,
		listener: map[string]int{"no_cluster": 1, "downstream_rq_5xx": 1}},
	{name: "direct response", path: "/direct", wantStatus: 418, attempts: 0,
		listener: map[string]int{"rq_direct_response": 1, "downstream_rq_4xx": 1, "downstream_rq_completed": 1}},
	{name: "no healthy upstream", path: "/down", wantStatus: 503, wantFlags: "UH", attempts: 0,
		cluster: map[string]int{"upstream_rq_503": 1, "upstream_rq_5xx": 1, "upstream_cx_none_healthy": 1, "upstream_rq_total": 0}},
	{name: "overflow", path: "/one/ok", hold: true, wantStatus: 503, wantFlags: "UO", attempts: 0,
		cluster: map[string]int{"upstream_rq_503": 1, "upstream_rq_pending_overflow": 1}},
	{name: "client cancels", path: "/hang", cancel: 300 * time.Millisecond,
		wantStatus: 0, wantFlags: "DC", attempts: 1,
		cluster:  map[string]int{"upstream_rq_total": 1, "upstream_rq_cancelled": 1, "upstream_rq_completed": 0, "upstream_rq_5xx": 0, "upstream_rq_4xx": 0},
		listener: map[string]int{"downstream_rq_rx_reset": 1, "downstream_rq_4xx": 0, "downstream_rq_completed": 0}},
}

func TestRouterTable(t *testing.T) {
	shared := &routerBackend{seen: map[string]int{}}
	a, b := startRouterBackend(t, shared), startRouterBackend(t, shared)
	mirror := startRouterBackend(t, shared)
	closed := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	logPath := filepath.Join(t.TempDir(), "access.log")
	spans := startTraceReceiver(t)

	var cfg strings.Builder
	fmt.Fprintf(&cfg, "tracing: {sampling: 100, otlp: {endpoint: %q, protocol: grpc, insecure: true}}\n", spans.addr)
	cfg.WriteString("listeners:\n")
	for _, proto := range []string{"http1", "http2"} {
		fmt.Fprintf(&cfg, `  - name: %[1]s
    address: 127.0.0.1:0
    stat_prefix: %[1]s
    access_log: [{path: %[2]q, flush_interval: 100ms}]
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - {match: {path: /flaky}, cluster: %[1]s, retry_policy: {retry_on: 5xx, num_retries: 1, backoff_base: 1ms}}
          - {match: {path: /fail}, cluster: %[1]s, retry_policy: {retry_on: 5xx, num_retries: 1, backoff_base: 1ms}}
          - {match: {path: /slow-first}, cluster: %[1]s, timeout: 5s, retry_policy: {retry_on: 5xx, num_retries: 1, per_try_timeout: 300ms, backoff_base: 1ms}}
          - {match: {path: /slow}, cluster: %[1]s, timeout: 400ms}
          - {match: {path: /hang}, cluster: %[1]s, timeout: 30s}
          - {match: {path: /reset-mid-body}, cluster: %[1]s, retry_policy: {retry_on: '5xx,reset', num_retries: 2, backoff_base: 1ms}}
          - {match: {path: /backoff/fail}, cluster: %[1]s, timeout: 1s, retry_policy: {retry_on: 5xx, num_retries: 3, backoff_base: 1000h, backoff_max: 2000h}}
          - {match: {path: /down}, cluster: %[1]s_down}
          - {match: {prefix: /one/}, cluster: %[1]s_one}
          - {match: {prefix: /mirror}, cluster: %[1]s, mirror: {cluster: %[1]s_mirror, percent: 100}}
          - {match: {path: /ok}, cluster: %[1]s}
          - {match: {path: /by-header}, cluster_header: x-target}
          - {match: {path: /direct}, direct_response: {status: 418, body: "short and stout"}}
`, proto, logPath)
	}
	cfg.WriteString("clusters:\n")
	for _, proto := range []string{"http1", "http2"} {
		fmt.Fprintf(&cfg, `  - {name: %[1]s, protocol: %[1]s, lb_policy: round_robin, endpoints: [{address: %[2]s}, {address: %[3]s}]}
  - {name: %[1]s_one, protocol: %[1]s, circuit_breakers: {max_requests: 1}, endpoints: [{address: %[2]s}]}
  - {name: %[1]s_mirror, protocol: %[1]s, endpoints: [{address: %[5]s}]}
  - name: %[1]s_down
    protocol: %[1]s
    panic_threshold: 0
    endpoints: [{address: %[4]s}]
    health_check: {tcp: {}, interval: 1s, timeout: 200ms, unhealthy_threshold: 1, healthy_threshold: 1}
`, proto, a, b, closed, mirror)
	}
	p := startProxy(t, cfg.String())

	clients := map[string]*http.Client{"http1.1 client": h1Client(), "h2c client": h2cClient()}
	n := 0
	for _, clientName := range []string{"http1.1 client", "h2c client"} {
		client := clients[clientName]
		for _, proto := range []string{"http1", "http2"} {
			base := "http://" + p.listener(proto)
			for _, tc := range routerCases {
				n++
				id := fmt.Sprintf("case-%d", n)
				t.Run(clientName+"/"+proto+" cluster/"+tc.name, func(t *testing.T) {
					cl := proto
					switch tc.path {
					case "/down":
						cl = proto + "_down"
					case "/one/ok":
						cl = proto + "_one"
					}
					before := flatStats(t, p)
					var release func()
					if tc.hold {
						release = holdRequest(t, p, client, base+"/one/hold", id+"-hold", cl)
					}
					header := map[string]string{}
					for k, v := range tc.header {
						header[k] = strings.ReplaceAll(v, "$cluster", proto)
					}
					status, err := routerDo(client, base+tc.path, id, header, tc.cancel)
					if release != nil {
						release()
					}
					switch {
					case tc.wantStatus == 0 && err == nil:
						t.Fatalf("the client got %d, want it to give up", status)
					case tc.wantBodyErr && err == nil:
						t.Fatalf("the client read a whole body, want it broken off")
					case tc.wantBodyErr && status == 0:
						// The reset overtook the response headers on
						// their way to the client: no response either.
					case tc.wantStatus != 0 && !tc.wantBodyErr && err != nil:
						t.Fatalf("request: %v", err)
					case status != tc.wantStatus:
						t.Fatalf("status %d, want %d", status, tc.wantStatus)
					}
					line := waitAccessLine(t, logPath, id)
					if got := fmt.Sprint(line["response_flags"]); !strings.Contains(got, tc.wantFlags) || tc.wantFlags == "" && got != "" && got != "<nil>" && got != "-" {
						t.Errorf("access log response_flags %q, want %q", got, tc.wantFlags)
					}
					if got, _ := line["attempts"].(float64); int(got) != tc.attempts {
						t.Errorf("access log attempts %v, want %d", line["attempts"], tc.attempts)
					}
					if tc.wantStatus == 0 {
						if got, _ := line["response_code"].(float64); got != 0 {
							t.Errorf("access log response_code %v for a client that went away, want 0", line["response_code"])
						}
					}
					wantSpans(t, spans, line, tc.wantStatus, tc.wantFlags, tc.attempts)
					wantDeltas(t, p, before, "cluster."+cl+".", tc.cluster)
					wantDeltas(t, p, before, "http."+proto+".", tc.listener)
				})
			}
			t.Run(clientName+"/"+proto+" cluster/mirror gets the processed headers", func(t *testing.T) {
				n++
				shared.mu.Lock()
				shared.mirrored, shared.hosts = nil, nil
				shared.mu.Unlock()
				status, err := routerDo(client, base+"/mirror", fmt.Sprintf("case-%d", n),
					map[string]string{"X-Sightline-Max-Retries": "5", "X-Forwarded-For": "192.0.2.7"}, 0)
				if err != nil || status != 200 {
					t.Fatalf("mirrored request: %d %v", status, err)
				}
				deadline := time.Now().Add(10 * time.Second)
				for {
					shared.mu.Lock()
					got, hosts := shared.mirrored, shared.hosts
					shared.mu.Unlock()
					if len(got) > 0 {
						h := got[0]
						if v := h.Get("X-Sightline-Max-Retries"); v != "" {
							t.Errorf("the mirror got the untrusted override x-sightline-max-retries: %q", v)
						}
						if v := h.Get("X-Forwarded-For"); v != "192.0.2.7, 127.0.0.1" {
							t.Errorf("the mirror got X-Forwarded-For %q, want the client's with the proxy's peer appended", v)
						}
						if !strings.Contains(hosts[0], "-shadow") {
							t.Errorf("the mirror got authority %q, want the -shadow form", hosts[0])
						}
						return
					}
					if time.Now().After(deadline) {
						t.Fatal("the mirror cluster never got the copy")
					}
					time.Sleep(20 * time.Millisecond)
				}
			})
		}
	}
}

// wantSpans checks the call's trace: one SERVER span with the status the
// client got and the response flags, and one CLIENT span per attempt.
func wantSpans(t *testing.T, recv *traceReceiver, line map[string]any, status int, flags string, attempts int) {
	t.Helper()
	tid, _ := line["trace_id"].(string)
	if tid == "" {
		t.Errorf("access-log line without a trace id: %v", line)
		return
	}
	var server *tracepb.Span
	clients := 0
	deadline := time.Now().Add(10 * time.Second)
	for {
		server, clients = nil, 0
		for _, sp := range recv.all() {
			if hex.EncodeToString(sp.TraceId) != tid {
				continue
			}
			switch sp.Kind {
			case tracepb.Span_SPAN_KIND_SERVER:
				server = sp
			case tracepb.Span_SPAN_KIND_CLIENT:
				clients++
			}
		}
		if server != nil && clients >= attempts || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if server == nil {
		t.Errorf("no SERVER span for trace %s", tid)
		return
	}
	if clients != attempts {
		t.Errorf("%d CLIENT spans, want one per attempt (%d)", clients, attempts)
	}
	var gotStatus int64
	gotFlags := ""
	for _, kv := range server.Attributes {
		switch kv.Key {
		case "http.response.status_code":
			gotStatus = kv.Value.GetIntValue()
		case "response_flags":
			gotFlags = kv.Value.GetStringValue()
		}
	}
	if gotStatus != int64(status) {
		t.Errorf("SERVER span http.response.status_code %d, want %d", gotStatus, status)
	}
	if !strings.Contains(gotFlags, flags) {
		t.Errorf("SERVER span response_flags %q, want %q", gotFlags, flags)
	}
}

// routerDo sends one GET with x-case and x-request-id set to id.
func routerDo(c *http.Client, url, id string, header map[string]string, cancel time.Duration) (int, error) {
	ctx := context.Background()
	if cancel > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, cancel)
		defer stop()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-Case", id)
	req.Header.Set("X-Request-Id", id)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil {
		return resp.StatusCode, err
	}
	return resp.StatusCode, nil
}

// holdRequest starts a request that stays in flight until the returned
// function is called (which waits for it to end), and returns once the
// proxy counts it on the cluster.
func holdRequest(t *testing.T, p *proxy, c *http.Client, url, id, cluster string) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("X-Case", id)
		if resp, err := c.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for flatStats(t, p)["cluster."+cluster+".upstream_rq_active"] < 1 {
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("the held request never became active")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return func() { cancel(); <-done }
}

var errNoLine = errors.New("no access-log line")

// waitAccessLine returns the access-log line whose request_id is id.
func waitAccessLine(t *testing.T, path, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, l := range readAccessLog(t, path) {
			if l["request_id"] == id {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v for request %s", errNoLine, id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// flatStats reads /stats into a map of counters and gauges.
func flatStats(t *testing.T, p *proxy) map[string]int {
	t.Helper()
	code, body := p.adminGet("/stats")
	if code != 200 {
		t.Fatalf("/stats: %d", code)
	}
	out := map[string]int{}
	for _, l := range strings.Split(body, "\n") {
		k, v, ok := strings.Cut(l, ": ")
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
			out[k] = n
		}
	}
	return out
}

// wantDeltas checks that each stat under prefix moved by exactly its
// want since before. Stats settle after the client's response (the
// finish step runs once both halves are done), so they are polled a
// while.
func wantDeltas(t *testing.T, p *proxy, before map[string]int, prefix string, want map[string]int) {
	t.Helper()
	if len(want) == 0 {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		after := flatStats(t, p)
		var bad []string
		for k, w := range want {
			if got := after[prefix+k] - before[prefix+k]; got != w {
				bad = append(bad, fmt.Sprintf("%s%s moved by %d, want %d", prefix, k, got, w))
			}
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("stats:\n  %s", strings.Join(bad, "\n  "))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
