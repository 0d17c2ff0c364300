package forward

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/testnet"
)

// rawBackend answers every request on its connections with resp, byte for
// byte, after reading the request head (GETs only).
func rawBackend(t *testing.T, resp string) string {
	t.Helper()
	return testnet.ServeConns(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if _, err := io.WriteString(c, resp); err != nil {
				return
			}
		}
	})
}

// get sends a GET through p and returns the response with its body read.
func get(t *testing.T, p *testProxy, path string) (*http.Response, string) {
	t.Helper()
	resp, err := h1Client(t).Get("http://" + p.addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestResponseHeadersAreTheUpstreams checks that the HTTP/1.1 listener
// adds no header of its own making to a proxied response: net/http sniffs
// a Content-Type for a body without one (text/html on HTML, whatever
// X-Content-Type-Options says), which turns an upload served back as-is
// into stored XSS.
func TestResponseHeadersAreTheUpstreams(t *testing.T) {
	const html = "<html><body><script>alert(1)</script></body></html>"
	be := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = nil // net/http's own sniffing, off: the backend sends none
		h.Set("X-Content-Type-Options", "nosniff")
		switch r.URL.Path {
		case "/no-date":
			h["Date"] = nil
		case "/date":
			h.Set("Date", "Mon, 02 Jan 2006 15:04:05 GMT")
		}
		io.WriteString(w, html)
	})
	p := startProxy(t, []testCluster{{name: "c", protocol: "http1", addrs: []string{testnet.Serve(t, be, testnet.HTTP1)}}},
		[]testRoute{{prefix: "/", cluster: "c"}})

	resp, body := get(t, p, "/date")
	if body != html {
		t.Fatalf("body = %q, want %q", body, html)
	}
	if ct, ok := resp.Header["Content-Type"]; ok {
		t.Errorf("Content-Type = %q; the upstream sent none, so the client must get none", ct)
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
	}
	// The upstream's Date is the origin's: kept, as Envoy does.
	if got := resp.Header.Get("Date"); got != "Mon, 02 Jan 2006 15:04:05 GMT" {
		t.Errorf("Date = %q, want the upstream's", got)
	}

	// Without one, the proxy adds it as RFC 9110 §6.6.1 asks of a
	// recipient with a clock, and as Envoy does.
	resp, _ = get(t, p, "/no-date")
	if d, err := http.ParseTime(resp.Header.Get("Date")); err != nil || d.IsZero() {
		t.Errorf("Date = %q (%v), want one added", resp.Header.Get("Date"), err)
	}
}

// TestReasonPhrase documents a known difference: net/http's ResponseWriter
// writes the standard reason phrase for the status, so an upstream's own
// ("200 Fine") is not kept. Envoy does not keep it either.
func TestReasonPhrase(t *testing.T) {
	be := rawBackend(t, "HTTP/1.1 200 Fine\r\nContent-Length: 2\r\n\r\nok")
	p := startProxy(t, []testCluster{{name: "c", protocol: "http1", addrs: []string{be}}},
		[]testRoute{{prefix: "/", cluster: "c"}})
	resp, body := get(t, p, "/")
	if resp.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("got %d %q, want 200 \"ok\"", resp.StatusCode, body)
	}
	if resp.Status != "200 OK" {
		t.Errorf("status line %q: if net/http now keeps the upstream's reason phrase, update the README's Headers section", resp.Status)
	}
}

// TestTrailersAreAnnouncedAndSent checks that the Trailer header and the
// trailers themselves reach an HTTP/1.1 client, from an HTTP/1.1 chunked
// upstream and from an HTTP/2 one.
func TestTrailersAreAnnouncedAndSent(t *testing.T) {
	be := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum, X-Count")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "payload")
		w.(http.Flusher).Flush()
		w.Header().Set("X-Checksum", "abc123")
		w.Header().Set("X-Count", "7")
		w.Header().Set(http.TrailerPrefix+"X-Unannounced", "late")
	})
	tests := []struct {
		name     string
		protocol string
		addr     string
	}{
		{name: "http1 upstream", protocol: "http1", addr: testnet.Serve(t, be, testnet.HTTP1)},
		{name: "http2 upstream", protocol: "http2", addr: testnet.Serve(t, be, testnet.H2C)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, []testCluster{{name: "c", protocol: tt.protocol, addrs: []string{tt.addr}}},
				[]testRoute{{prefix: "/", cluster: "c"}})
			resp, err := h1Client(t).Get("http://" + p.addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			// Announced: net/http's client lists the names before the body.
			for _, k := range []string{"X-Checksum", "X-Count"} {
				if _, ok := resp.Trailer[k]; !ok {
					t.Errorf("trailer %s not announced: Trailer header %q, announced %v", k, resp.Header.Values("Trailer"), resp.Trailer)
				}
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil || string(b) != "payload" {
				t.Fatalf("body %q, %v", b, err)
			}
			for k, want := range map[string]string{"X-Checksum": "abc123", "X-Count": "7", "X-Unannounced": "late"} {
				if got := resp.Trailer.Get(k); got != want {
					t.Errorf("trailer %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

// TestInformationalResponsesAreForwarded checks that a 103 Early Hints
// (and a 102) from an HTTP/1.1 upstream reach the client before the final
// response, with their own headers only.
func TestInformationalResponsesAreForwarded(t *testing.T) {
	be := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.WriteHeader(http.StatusProcessing)
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Link", "</final.css>; rel=preload")
		io.WriteString(w, "done")
	})
	p := startProxy(t, []testCluster{{name: "c", protocol: "http1", addrs: []string{testnet.Serve(t, be, testnet.HTTP1)}}},
		[]testRoute{{prefix: "/", cluster: "c"}})

	type interim struct {
		code int
		hdr  textproto.MIMEHeader
	}
	var got []interim
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, hdr textproto.MIMEHeader) error {
		got = append(got, interim{code, hdr})
		return nil
	}}
	ctx, cancel := context.WithTimeout(httptrace.WithClientTrace(context.Background(), trace), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+"/", nil)
	resp, err := h1Client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "done" {
		t.Fatalf("final response %d %q, want 200 \"done\"", resp.StatusCode, b)
	}
	if len(got) != 2 || got[0].code != http.StatusEarlyHints || got[1].code != http.StatusProcessing {
		t.Fatalf("interim responses %v, want 103 then 102", got)
	}
	if link := got[0].hdr.Get("Link"); link != "</style.css>; rel=preload; as=style" {
		t.Errorf("103 Link = %q, want the upstream's", link)
	}
	for _, k := range []string{"X-Request-Id", "X-Sightline-Upstream-Service-Time", "Content-Type"} {
		if v, ok := got[0].hdr[k]; ok {
			t.Errorf("103 carries %s %q; it must carry the upstream's headers only", k, v)
		}
	}
	if link := got[1].hdr.Get("Link"); link != "" {
		t.Errorf("102 Link = %q; the 103's headers must not stay", link)
	}
	if resp.Header.Get("Link") != "</final.css>; rel=preload" {
		t.Errorf("final Link = %q", resp.Header.Values("Link"))
	}
	if strings.Contains(resp.Header.Get("Link"), "style.css") {
		t.Errorf("the 103's Link leaked into the final response")
	}
}
