package e2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/sightline-proxy/sightline/internal/testnet"
)

// echoed is what the echo backend answers: the request as it arrived.
type echoed struct {
	Proto  string      `json:"proto"`
	Method string      `json:"method"`
	URI    string      `json:"uri"`
	Host   string      `json:"host"`
	Header http.Header `json:"header"`
	Body   string      `json:"body"`
}

// startEchoBackend starts a plain net/http server, HTTP/1.1 and h2c on one
// port, that answers every request with its echo as JSON.
func startEchoBackend(t *testing.T) string {
	t.Helper()
	return testnet.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Backend", "echo")
		// Hop-by-hop response headers: over HTTP/1.1 the proxy must drop
		// them (HTTP/2 servers drop Connection themselves).
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "must not be forwarded")
		w.Header().Set("Keep-Alive", "timeout=7")
		json.NewEncoder(w).Encode(echoed{Proto: r.Proto, Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header, Body: string(body)})
	}), testnet.HTTP1|testnet.H2C)
}

func h1Client() *http.Client {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	return &http.Client{Timeout: callTimeout, Transport: &http.Transport{Protocols: p}}
}

func h2cClient() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: callTimeout, Transport: &http.Transport{Protocols: p}}
}

// doEcho sends req and decodes the backend's echo; it fails the test unless
// the answer is 200 from the echo backend.
func doEcho(t *testing.T, c *http.Client, req *http.Request) (*http.Response, echoed) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Backend") != "echo" {
		t.Fatalf("%s %s: status %d, X-Backend %q, body %q; want 200 from the echo backend", req.Method, req.URL, resp.StatusCode, resp.Header.Get("X-Backend"), body)
	}
	var e echoed
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("%s %s: the echo is not JSON: %v: %q", req.Method, req.URL, err, body)
	}
	return resp, e
}

// TestHTTP1AndH2C sends HTTP/1.1 and prior-knowledge HTTP/2 requests to the
// same plaintext port, through clusters that speak HTTP/1.1 upstream and
// clusters that follow the client's protocol.
func TestHTTP1AndH2C(t *testing.T) {
	echo := startEchoBackend(t)
	p := startProxy(t, fmt.Sprintf(`node: {id: e2e, zone: zone-a}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    protocols: [h2c, http1]
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - match: {prefix: /h1/}
            cluster: web-http1
          - match: {prefix: /auto/}
            cluster: web-auto
clusters:
  - {name: web-http1, protocol: http1, endpoints: %[1]s}
  - {name: web-auto, protocol: auto, endpoints: %[1]s}
`, endpoints(echo)))
	addr := p.listener("ingress")

	// The backend must send the hop-by-hop response headers, or checking
	// that the proxy drops them proves nothing.
	direct, err := h1Client().Get("http://" + echo + "/")
	if err != nil {
		t.Fatal(err)
	}
	direct.Body.Close()
	if direct.Header.Get("X-Resp-Hop") == "" || direct.Header.Get("Keep-Alive") == "" {
		t.Fatalf("the echo backend does not send its hop-by-hop headers over HTTP/1.1: %v", direct.Header)
	}

	tests := []struct {
		name          string
		client        *http.Client
		path          string
		wantClient    int    // the HTTP major version between client and proxy
		wantUpstream  string // the protocol the backend saw
		checkHopByHop bool
	}{
		{name: "http1 to http1 cluster", client: h1Client(), path: "/h1/echo", wantClient: 1, wantUpstream: "HTTP/1.1", checkHopByHop: true},
		{name: "http1 to auto cluster", client: h1Client(), path: "/auto/echo", wantClient: 1, wantUpstream: "HTTP/1.1", checkHopByHop: true},
		{name: "h2c to http1 cluster", client: h2cClient(), path: "/h1/echo", wantClient: 2, wantUpstream: "HTTP/1.1"},
		{name: "h2c to auto cluster", client: h2cClient(), path: "/auto/echo", wantClient: 2, wantUpstream: "HTTP/2.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := "hello from " + tt.name
			req, err := http.NewRequest(http.MethodPost, "http://"+addr+tt.path+"?q=1&r=two", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Forwarded-For", "203.0.113.7")
			req.Header.Set("X-Custom", "kept")
			if tt.checkHopByHop {
				// Only HTTP/1.1 can carry these; in HTTP/2 they are malformed.
				req.Header.Set("Connection", "keep-alive, X-Hop-Named")
				req.Header.Set("Keep-Alive", "timeout=5")
				req.Header.Set("Upgrade", "example/1")
				req.Header.Set("X-Hop-Named", "must not be forwarded")
				req.Header.Set("Proxy-Connection", "keep-alive")
			}
			resp, e := doEcho(t, tt.client, req)

			if resp.ProtoMajor != tt.wantClient {
				t.Errorf("the client spoke %s to the proxy, want HTTP/%d", resp.Proto, tt.wantClient)
			}
			if e.Proto != tt.wantUpstream {
				t.Errorf("the backend saw %s, want %s", e.Proto, tt.wantUpstream)
			}
			if e.Method != http.MethodPost || e.URI != tt.path+"?q=1&r=two" || e.Body != body {
				t.Errorf("the backend got %s %s with body %q, want POST %s?q=1&r=two with %q", e.Method, e.URI, e.Body, tt.path, body)
			}
			if e.Host != addr {
				t.Errorf("the backend got Host %q, want the client's %q", e.Host, addr)
			}
			if got := e.Header.Get("X-Forwarded-For"); got != "203.0.113.7, 127.0.0.1" {
				t.Errorf("X-Forwarded-For = %q, want %q", got, "203.0.113.7, 127.0.0.1")
			}
			if got := e.Header.Get("X-Forwarded-Proto"); got != "http" {
				t.Errorf("X-Forwarded-Proto = %q, want http", got)
			}
			if got := e.Header.Get("X-Custom"); got != "kept" {
				t.Errorf("X-Custom = %q, want kept", got)
			}
			for _, h := range []string{"Keep-Alive", "Upgrade", "X-Hop-Named", "Proxy-Connection"} {
				if v, ok := e.Header[h]; ok {
					t.Errorf("the backend got hop-by-hop header %s: %q", h, v)
				}
			}
			if v := e.Header.Get("Connection"); v != "" && !strings.EqualFold(v, "close") {
				t.Errorf("the backend got Connection: %q, want the client's value dropped", v)
			}
			if tt.wantUpstream == "HTTP/1.1" {
				for _, h := range []string{"X-Resp-Hop", "Keep-Alive"} {
					if v, ok := resp.Header[h]; ok {
						t.Errorf("the client got the backend's hop-by-hop header %s: %q", h, v)
					}
				}
			}
			st := resp.Header.Get(headerServiceTime)
			if ms, err := strconv.Atoi(st); err != nil || ms < 0 {
				t.Errorf("%s = %q, want milliseconds", headerServiceTime, st)
			}
		})
	}
}

// TestTLSListener checks a TLS listener: ALPN h2 for gRPC and HTTP/2
// clients, HTTP/1.1 for clients that only speak it.
func TestTLSListener(t *testing.T) {
	certFile, keyFile, pool := testnet.WriteCert(t, t.TempDir())
	b := startBackends(t, 1)[0]
	echo := startEchoBackend(t)
	p := startProxy(t, fmt.Sprintf(`node: {id: e2e, zone: zone-a}
listeners:
  - name: secure
    address: 127.0.0.1:0
    protocols: [h2, http1]
    tls: {cert_file: %q, key_file: %q}
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - match: {prefix: /web/}
            cluster: web
          - match: {prefix: /}
            cluster: grpc
clusters:
  - {name: grpc, endpoints: %s}
  - {name: web, protocol: http1, endpoints: %s}
`, certFile, keyFile, endpoints(b.Addr), endpoints(echo)))
	addr := p.listener("secure")

	t.Run("grpc over h2", func(t *testing.T) {
		creds := credentials.NewTLS(&tls.Config{RootCAs: pool})
		conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		before := b.Calls()
		resp, err := testgrpc.NewTestServiceClient(conn).UnaryCall(callCtx(t), &testgrpc.SimpleRequest{ResponseSize: 1000})
		if err != nil {
			t.Fatalf("UnaryCall over TLS: %v", err)
		}
		checkPayload(t, resp.GetPayload(), 1000)
		if got := b.Calls() - before; got != 1 {
			t.Errorf("the backend served %d calls, want 1", got)
		}
	})

	tests := []struct {
		name      string
		transport *http.Transport
		wantProto string // the protocol the client spoke
		wantALPN  string
	}{
		{
			name:      "http2 by ALPN",
			transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true},
			wantProto: "HTTP/2.0", wantALPN: "h2",
		},
		{
			name: "http1.1 by ALPN",
			transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}},
				TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
			},
			wantProto: "HTTP/1.1", wantALPN: "http/1.1",
		},
		{
			name: "http1.1 without ALPN",
			transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool},
				TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
			},
			wantProto: "HTTP/1.1", wantALPN: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &http.Client{Timeout: callTimeout, Transport: tt.transport}
			defer tt.transport.CloseIdleConnections()
			req, err := http.NewRequest(http.MethodGet, "https://"+addr+"/web/page", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, e := doEcho(t, c, req)
			if resp.Proto != tt.wantProto {
				t.Errorf("the client spoke %s, want %s", resp.Proto, tt.wantProto)
			}
			if resp.TLS == nil {
				t.Errorf("the response came without TLS")
			} else if resp.TLS.NegotiatedProtocol != tt.wantALPN {
				t.Errorf("negotiated ALPN protocol %q, want %q", resp.TLS.NegotiatedProtocol, tt.wantALPN)
			}
			if got := e.Header.Get("X-Forwarded-Proto"); got != "https" {
				t.Errorf("X-Forwarded-Proto = %q, want https", got)
			}
			if e.URI != "/web/page" {
				t.Errorf("the backend got %q, want /web/page", e.URI)
			}
		})
	}
}
