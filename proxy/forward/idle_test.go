package forward

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/testnet"
)

// TestStreamIdleTimeout: on the HTTP/1.1 listener, a request with no
// activity either way for the route's idle_timeout is ended, flag SI,
// counted in downstream_rq_idle_timeout: 504 when the upstream never
// answered, 408 when the client stopped sending its body, the connection
// cut once the response had begun. A response whose bytes keep flowing
// is not ended.
func TestStreamIdleTimeout(t *testing.T) {
	const idle = 100 * time.Millisecond
	release := make(chan struct{})
	defer close(release)
	backend := testnet.Serve(t, testnet.Stall(release), testnet.HTTP1)
	p := startProxy(t, []testCluster{{name: "b", protocol: "http1", addrs: []string{backend}}},
		[]testRoute{{prefix: "/trickle", cluster: "b", idle: 4 * idle}, {prefix: "/", cluster: "b", idle: idle}})
	c := h1Client(t)

	resp, err := c.Get("http://" + p.addr + "/silent")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 504 || resp.Header.Get(headerResponseFlags) != "SI" {
		t.Errorf("no answer: got %d %q, want 504 SI", resp.StatusCode, resp.Header.Get(headerResponseFlags))
	}

	// A client that sends part of its body and stops: on a raw
	// connection, since Go's client waits for its body before it
	// returns a response.
	raw, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(raw, "POST /silent HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(raw), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 408 || resp.Header.Get(headerResponseFlags) != "SI" {
		t.Errorf("client stopped sending: got %d %q, want 408 SI", resp.StatusCode, resp.Header.Get(headerResponseFlags))
	}

	resp, err = c.Get("http://" + p.addr + "/headers")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Error("response begun: the body ended cleanly, want it cut")
	}

	resp, err = c.Get("http://" + p.addr + "/trickle")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || strings.Count(string(b), "x") != 40 {
		t.Errorf("bytes flowing: got %d %q %d bytes, err %v, want 40", resp.StatusCode, resp.Header.Get(headerResponseFlags), len(b), err)
	}
	p.waitServed(t, "/trickle")
	if n := p.stats.DownstreamRqIdleTimeout.Value(); n != 3 {
		t.Errorf("downstream_rq_idle_timeout = %d, want 3", n)
	}
}
