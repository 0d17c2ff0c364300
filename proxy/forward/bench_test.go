package forward

import (
	"io"
	"net/http"
	"testing"

	"github.com/sightline-proxy/sightline/internal/testnet"
)

// BenchmarkHTTP1Unary is one small GET through the HTTP/1.1 handler to
// an HTTP/1.1 backend, client and backend in the same process: compare
// allocs/op before and after a change to the request path.
func BenchmarkHTTP1Unary(b *testing.B) {
	be := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
	})
	p := startProxy(b, []testCluster{{name: "c", protocol: "http1", addrs: []string{testnet.Serve(b, be, testnet.HTTP1)}}},
		[]testRoute{{prefix: "/", cluster: "c"}})
	c := h1Client(b)
	url := "http://" + p.addr + "/bench"
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
