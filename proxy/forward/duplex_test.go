package forward

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/testnet"
)

// earlyEcho is a backend that answers before the upload ends: it sends its
// response headers and a first line at once, then echoes the request body
// as it reads it, flushing each read. It keeps what it received.
type earlyEcho struct {
	mu   sync.Mutex
	got  []byte
	seen chan struct{} // closed when a request ended
}

func (e *earlyEcho) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer close(e.seen)
	rc := http.NewResponseController(w)
	if err := rc.EnableFullDuplex(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "echo:\n")
	rc.Flush()
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Body.Read(buf)
		if n > 0 {
			e.mu.Lock()
			e.got = append(e.got, buf[:n]...)
			e.mu.Unlock()
			w.Write(buf[:n])
			rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

// TestUploadWhileTheResponseStreams sends a body in ten chunks, one every
// 20ms, to a backend that starts its response before reading it. net/http
// discards what is left of a request body when the response starts,
// unless full duplex is on: chunks went missing and the backend saw a
// clean end.
func TestUploadWhileTheResponseStreams(t *testing.T) {
	const chunks, size = 10, 8 << 10 // above the transport's 4 KiB write buffer, so each chunk goes at once
	for _, chunked := range []bool{true, false} {
		name := "content-length"
		if chunked {
			name = "chunked"
		}
		t.Run(name, func(t *testing.T) {
			be := &earlyEcho{seen: make(chan struct{})}
			p := startProxy(t, []testCluster{{name: "c", protocol: "http1", addrs: []string{testnet.Serve(t, be, testnet.HTTP1)}}},
				[]testRoute{{prefix: "/", cluster: "c"}})

			var want bytes.Buffer
			for i := range chunks {
				want.Write(bytes.Repeat([]byte{byte('a' + i)}, size))
			}
			pr, pw := io.Pipe()
			go func() {
				// The pacing only spreads the upload over time; the
				// assertions below do not depend on it.
				for i := range chunks {
					if _, err := pw.Write(want.Bytes()[i*size : (i+1)*size]); err != nil {
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
				pw.Close()
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+p.addr+"/upload", pr)
			if !chunked {
				req.ContentLength = int64(want.Len())
			}
			resp, err := h1Client(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("reading the response: %v", err)
			}
			<-be.seen
			be.mu.Lock()
			got := be.got
			be.mu.Unlock()
			if !bytes.Equal(got, want.Bytes()) {
				t.Errorf("the backend got %d bytes (%s), want %d: chunks were lost on the way", len(got), chunkSummary(got, size), want.Len())
			}
			if wantBody := append([]byte("echo:\n"), want.Bytes()...); !bytes.Equal(body, wantBody) {
				t.Errorf("the client got %d bytes back, want %d", len(body), len(wantBody))
			}
			logs := p.accessLog(t)
			if len(logs) != 1 {
				t.Fatalf("%d access-log entries, want 1", len(logs))
			}
			if got := logs[0]["bytes_received"]; got != float64(want.Len()) {
				t.Errorf("access log bytes_received = %v, want %d", got, want.Len())
			}
		})
	}
}

// chunkSummary names the chunks (by their letter) that data holds.
func chunkSummary(data []byte, size int) string {
	var b bytes.Buffer
	for i := 0; i < len(data); i += size {
		fmt.Fprintf(&b, "%c", data[i])
	}
	return "chunks " + strconv.Quote(b.String())
}
