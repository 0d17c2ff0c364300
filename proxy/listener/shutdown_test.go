package listener

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestShutdownServesWhatItAccepted: a connection the listener accepted
// before Shutdown closed the socket, whose request had not arrived yet,
// gets its request answered rather than a close before any byte: an
// HTTP/1.1 one with Connection: close, an HTTP/2 one after the server
// preface and a GOAWAY that still covers its stream. In an upgrade the
// client's connect succeeded on a socket the new process keeps, so
// nothing tells it to try again.
func TestShutdownServesWhatItAccepted(t *testing.T) {
	tests := []struct {
		name string
		// exchange sends one request on c and checks its answer.
		exchange func(t *testing.T, c net.Conn)
	}{
		{name: "HTTP/1.1", exchange: func(t *testing.T, c net.Conn) {
			if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Errorf("the request sent on a connection accepted before Shutdown: %v, want an answer", err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != h1Body || !resp.Close {
				t.Errorf("got %d %q (Connection: close %v), want 200 %q with Connection: close", resp.StatusCode, body, resp.Close, h1Body)
			}
		}},
		{name: "HTTP/2", exchange: func(t *testing.T, c net.Conn) {
			hc := newH2Client(t, c)
			for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "example.com"}, {":path", "/x"}} {
				hc.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
			}
			if err := hc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hc.encBuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
				t.Fatal(err)
			}
			// Read until the engine closes the drained connection.
			var settings, goAway bool
			status := ""
			for {
				f, err := hc.fr.ReadFrame()
				if err != nil {
					break
				}
				switch f := f.(type) {
				case *http2.SettingsFrame:
					settings = true
					if !f.IsAck() {
						hc.fr.WriteSettingsAck()
					}
				case *http2.PingFrame:
					if !f.IsAck() {
						hc.fr.WritePing(true, f.Data)
					}
				case *http2.GoAwayFrame:
					goAway = true
					if f.LastStreamID < 1 {
						t.Errorf("GOAWAY with last stream %d: the request was refused", f.LastStreamID)
					}
				case *http2.MetaHeadersFrame:
					if f.StreamID == 1 {
						status = f.PseudoValue("status")
					}
				case *http2.RSTStreamFrame:
					t.Errorf("stream %d reset: %v", f.StreamID, f.ErrCode)
				}
			}
			if !settings || !goAway || status != "404" {
				t.Errorf("server preface %v, GOAWAY %v, status %q; want the preface, a GOAWAY and the engine's 404", settings, goAway, status)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim := NewConnLimit(10)
			tl := startListenerWith(t, false, Options{Conns: lim}, "http1", "h2c")
			c, err := net.Dial("tcp", tl.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			waitOpen(t, lim, 1) // accepted, sniffing: no byte sent yet

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- tl.l.Shutdown(ctx) }()
			// The socket is closed once a connect is refused.
			waitFor(t, "the socket to close", func() bool {
				d, err := net.DialTimeout("tcp", tl.addr, time.Second)
				if err != nil {
					return true
				}
				d.Close()
				return false
			})
			// Errors, not Fatal, from here: Shutdown must end before the
			// cleanup's.
			tt.exchange(t, c)
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Shutdown: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Shutdown did not return once the connection was served")
			}
		})
	}
}
