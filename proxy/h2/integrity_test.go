package h2

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/accesslog"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/observe"
)

// slowReader is a raw client that advertises a small stream window, so
// that the proxy has to queue a response for it, and reads only when told.
func slowReader(t *testing.T, addr string, window uint32) *rawPeer {
	t.Helper()
	c := dialRaw(t, addr, false)
	c.write([]byte(http2.ClientPreface))
	if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: window}); err != nil {
		t.Fatal(err)
	}
	return c
}

// readAll reads the response on id, returning every byte of credit it
// consumes, until END_STREAM (ended) or RST_STREAM (rst set).
func (p *rawPeer) readAll(id uint32) (fields []hpack.HeaderField, body []byte, ended bool, rst *http2.RSTStreamFrame) {
	p.t.Helper()
	for {
		f := p.next()
		switch f := f.(type) {
		case nil:
			return fields, body, false, nil
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				fields = append(fields, f.Fields...)
				if f.StreamEnded() {
					return fields, body, true, nil
				}
			}
		case *http2.DataFrame:
			if f.StreamID != id {
				continue
			}
			body = append(body, f.Data()...)
			if n := uint32(len(f.Data())); n > 0 {
				p.fr.WriteWindowUpdate(0, n)
				p.fr.WriteWindowUpdate(id, n)
			}
			if f.StreamEnded() {
				return fields, body, true, nil
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return fields, body, false, f
			}
		case *http2.GoAwayFrame:
			p.t.Fatalf("GOAWAY %v while reading stream %d", f.ErrCode, id)
		}
	}
}

// respondThenReset is an upstream that answers every request with the
// given response fields and body in 16 KiB DATA frames, never setting
// END_STREAM, then resets the stream with code; sent is closed when it
// has.
func respondThenReset(body []byte, code http2.ErrCode, sent chan<- struct{}, fields ...string) *fakeUpstream {
	return &fakeUpstream{onRequest: func(fc *fakeConn, id uint32) {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		fc.encBuf.Reset()
		fc.enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		for i := 0; i+1 < len(fields); i += 2 {
			fc.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		fc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: fc.encBuf.Bytes(), EndHeaders: true})
		for b := body; len(b) > 0; {
			n := min(len(b), 16<<10)
			fc.fr.WriteData(id, false, b[:n])
			b = b[n:]
		}
		fc.fr.WriteRSTStream(id, code)
		close(sent)
	}}
}

// TestUpstreamNoErrorResetEndsBody: a backend that sends all of a
// response and then RST_STREAM(NO_ERROR) instead of END_STREAM (as Node's
// http2 server does) has its whole body delivered to a slow client, then
// END_STREAM; never a reset after dropped bytes.
func TestUpstreamNoErrorResetEndsBody(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), upstreamStreamWindow/16) // the whole stream window
	tests := []struct {
		name   string
		fields []string
	}{
		{"no content-length", nil},
		{"content-length matches", []string{"content-length", strconv.Itoa(len(body))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sent := make(chan struct{})
			p := fakeProxy(t, respondThenReset(body, http2.ErrCodeNo, sent, tt.fields...))
			c := slowReader(t, p.addr, 1024)
			c.request(1, true)
			<-sent // the proxy now holds most of the body for the client
			fields, got, ended, rst := c.readAll(1)
			if rst != nil {
				t.Fatalf("RST_STREAM %v after %d of %d bytes, want the whole body", rst.ErrCode, len(got), len(body))
			}
			if !ended || !bytes.Equal(got, body) {
				t.Fatalf("got %d bytes (ended %v), want %d and END_STREAM", len(got), ended, len(body))
			}
			if s := field(fields, ":status"); s != "200" {
				t.Errorf(":status %q", s)
			}
		})
	}
}

// TestUpstreamNoErrorResetShortBody: a body cut short of its
// content-length is not complete, whatever the code of the reset: the
// client's stream is reset, and never with NO_ERROR; the access log's
// bytes_sent is what the client got, not what the upstream sent.
func TestUpstreamNoErrorResetShortBody(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 48<<10)
	sent := make(chan struct{})
	fu := startFakeUpstream(t, respondThenReset(body, http2.ErrCodeNo, sent, "content-length", "100000"))
	logPath := filepath.Join(t.TempDir(), "access.log")
	all := 100.0
	al, err := accesslog.New(config.AccessLog{Path: logPath, FlushInterval: config.Duration(time.Hour), BufferBytes: 64 << 10,
		Filter: config.AccessLogFilter{SamplePercent: &all}}, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, []testCluster{{name: "fake", addrs: []string{fu.addr}, connect: time.Second}},
		[]testRoute{{prefix: "/", cluster: "fake"}}, proxyOpts{obs: observe.New(config.RequestID{}, nil, []*accesslog.Logger{al})})
	c := slowReader(t, p.addr, 1024)
	c.request(1, true)
	<-sent
	_, got, ended, rst := c.readAll(1)
	if ended || rst == nil {
		t.Fatalf("stream ended normally after %d bytes, want a reset", len(got))
	}
	if rst.ErrCode != http2.ErrCodeInternal {
		t.Errorf("RST_STREAM %v, want INTERNAL_ERROR", rst.ErrCode)
	}
	waitIdle(t, p)
	if err := al.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var line struct {
		BytesSent int `json:"bytes_sent"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(b), &line); err != nil {
		t.Fatalf("access log %q: %v", b, err)
	}
	if line.BytesSent != len(got) {
		t.Errorf("bytes_sent %d, want %d: what the client got", line.BytesSent, len(got))
	}
}

// TestGRPCUpstreamLostAfterHeaders: a gRPC backend lost once its response
// has begun (connection closed, or stream reset) gives the client
// UNAVAILABLE in trailers, as a direct call whose server went away does,
// never a stream reset (which gRPC clients surface as INTERNAL).
func TestGRPCUpstreamLostAfterHeaders(t *testing.T) {
	msg := []byte{0, 0, 0, 0, 3, 'a', 'b', 'c'} // one gRPC message
	tests := []struct {
		name string
		end  func(fc *fakeConn, id uint32)
	}{
		{"connection closed", func(fc *fakeConn, _ uint32) { fc.c.Close() }},
		{"stream reset", func(fc *fakeConn, id uint32) { fc.fr.WriteRSTStream(id, http2.ErrCodeInternal) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := fakeProxy(t, &fakeUpstream{onRequest: func(fc *fakeConn, id uint32) {
				fc.mu.Lock()
				defer fc.mu.Unlock()
				fc.encBuf.Reset()
				fc.enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
				fc.enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
				fc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: fc.encBuf.Bytes(), EndHeaders: true})
				fc.fr.WriteData(id, false, msg)
				tt.end(fc, id)
			}})
			c := dialRaw(t, p.addr, true)
			if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: c.block(
				":method", "POST", ":scheme", "http", ":authority", "example.com", ":path", "/test.Svc/Call",
				"content-type", "application/grpc", "te", "trailers")}); err != nil {
				t.Fatal(err)
			}
			c.fr.WriteData(1, true, msg)
			fields, got, ended, rst := c.readAll(1)
			if rst != nil {
				t.Fatalf("RST_STREAM %v, want trailers with grpc-status 14", rst.ErrCode)
			}
			if !ended || !bytes.Equal(got, msg) {
				t.Fatalf("got %q (ended %v), want the message and an end", got, ended)
			}
			if s := field(fields, "grpc-status"); s != "14" {
				t.Errorf("grpc-status %q, want 14 (fields %v)", s, fields)
			}
		})
	}
}

// TestOversizedHeaderKeepsConnection: one request with a header far over
// the list limit (200 KB, sent as HEADERS and CONTINUATIONs as clients
// do) is refused with 431 on its own stream; HPACK stays in sync, so the
// connection's other streams, before and after it, are served.
func TestOversizedHeaderKeepsConnection(t *testing.T) {
	p := okProxy(t, okHandler, proxyOpts{limits: config.Limits{MaxHeaderBytes: 64 << 10}})
	c := dialRaw(t, p.addr, true)
	c.request(1, false) // open across the big one
	// Indexed into the dynamic table before and used after: a decoder
	// out of sync would fail stream 5.
	block := c.block(":method", "GET", ":scheme", "http", ":authority", "example.com", ":path", "/",
		"x-big", strings.Repeat("b", 200<<10))
	frag := block[:16<<10]
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: frag, EndStream: true})
	for rest := block[len(frag):]; len(rest) > 0; {
		n := min(len(rest), 16<<10)
		c.fr.WriteContinuation(3, n == len(rest), rest[:n])
		rest = rest[n:]
	}
	c.request(5, true, "x-after", "1")
	c.fr.WriteData(1, true, nil)
	for _, tt := range []struct {
		id   uint32
		want string
	}{{3, "431"}, {1, "200"}, {5, "200"}} {
		if status, _, _ := c.response(tt.id); status != tt.want {
			t.Errorf("stream %d: status %s, want %s", tt.id, status, tt.want)
		}
	}
}

// TestOversizedHeaderSkipped: a header block longer on the wire than the
// header list limit is refused without decoding its long strings: 20
// requests each with a 200 KB header (Huffman-coded, as clients send it)
// cost the process a few KB each, not the 200 KB string and the 2 ms of
// Huffman decoding each one took.
func TestOversizedHeaderSkipped(t *testing.T) {
	p := okProxy(t, okHandler, proxyOpts{limits: config.Limits{MaxHeaderBytes: 64 << 10}})
	c := dialRaw(t, p.addr, true)
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	big := make([]byte, 200_000)
	for i := range big {
		big[i] = alphabet[(i*7919+i/62)%len(alphabet)]
	}
	block := c.block(":method", "GET", ":scheme", "http", ":authority", "example.com", ":path", "/", "x-big", string(big))
	send := func(id uint32) {
		t.Helper()
		frag := block[:16<<10]
		c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: true})
		for rest := block[len(frag):]; len(rest) > 0; {
			n := min(len(rest), 16<<10)
			c.fr.WriteContinuation(id, n == len(rest), rest[:n])
			rest = rest[n:]
		}
		if status, _, _ := c.response(id); status != "431" {
			t.Fatalf("stream %d: status %s, want 431", id, status)
		}
	}
	send(1) // the decoder's buffers grow once
	const requests = 20
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range requests {
		send(uint32(2*i + 3))
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / requests; per > 64<<10 {
		t.Errorf("%d bytes allocated per oversized request, want under 64 KiB: its header was decoded", per)
	}
	c.request(2*requests+3, true)
	if status, _, _ := c.response(2*requests + 3); status != "200" {
		t.Errorf("the request after them: status %s, want 200", status)
	}
}

// TestInterimResponsesForwarded: a 103 Early Hints from an HTTP/2 upstream
// reaches an HTTP/2 client as its own HEADERS frame, before the response;
// 100 Continue, the upstream's answer to its own expectation, does not.
func TestInterimResponsesForwarded(t *testing.T) {
	p := fakeProxy(t, &fakeUpstream{onRequest: func(fc *fakeConn, id uint32) {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		for _, status := range []string{"100", "103"} {
			fc.encBuf.Reset()
			fc.enc.WriteField(hpack.HeaderField{Name: ":status", Value: status})
			fc.enc.WriteField(hpack.HeaderField{Name: "link", Value: "</style.css>; rel=preload"})
			fc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: fc.encBuf.Bytes(), EndHeaders: true})
		}
		fc.encBuf.Reset()
		fc.enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		fc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: fc.encBuf.Bytes(), EndHeaders: true})
		fc.fr.WriteData(id, true, []byte("page"))
	}})
	c := dialRaw(t, p.addr, true)
	c.request(1, true)
	var statuses []string
	for {
		f := c.next()
		if f == nil {
			t.Fatal("connection closed")
		}
		if mh, ok := f.(*http2.MetaHeadersFrame); ok {
			statuses = append(statuses, mh.PseudoValue("status"))
			if mh.PseudoValue("status") == "103" && field(mh.Fields, "link") != "</style.css>; rel=preload" {
				t.Errorf("103 fields %v", mh.Fields)
			}
		}
		if f.Header().Flags.Has(http2.FlagDataEndStream) && f.Header().Type == http2.FrameData {
			break
		}
	}
	if strings.Join(statuses, ",") != "103,200" {
		t.Errorf("HEADERS with statuses %v, want 103 then 200", statuses)
	}
}

// TestUpstreamSmallDataFrames: a backend that writes many small DATA
// frames in one go, for two streams at once, with empty and padded frames
// and a PING among them, has every byte of each stream delivered in
// order, each response ended once.
func TestUpstreamSmallDataFrames(t *testing.T) {
	const msgs = 1000
	body := func(id uint32) []byte {
		var b []byte
		for j := range msgs {
			b = fmt.Appendf(b, "%d:%04d|", id, j)
		}
		return b
	}
	var mu sync.Mutex
	var ids []uint32
	p := fakeProxy(t, &fakeUpstream{onRequest: func(fc *fakeConn, id uint32) {
		mu.Lock()
		ids = append(ids, id)
		both := len(ids) == 2
		mu.Unlock()
		if !both {
			return
		}
		fc.mu.Lock()
		defer fc.mu.Unlock()
		var wire bytes.Buffer
		fr := http2.NewFramer(&wire, nil)
		for _, id := range ids {
			fc.encBuf.Reset()
			fc.enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: fc.encBuf.Bytes(), EndHeaders: true})
		}
		rng := rand.New(rand.NewPCG(3, 4))
		next := map[uint32]int{}
		for next[ids[0]] < msgs || next[ids[1]] < msgs {
			id := ids[rng.IntN(2)]
			for range 1 + rng.IntN(40) {
				j := next[id]
				if j == msgs {
					break
				}
				next[id]++
				msg := fmt.Appendf(nil, "%d:%04d|", id, j)
				switch {
				case j == 300:
					fr.WriteData(id, false, nil)
					fr.WriteData(id, false, msg)
				case j == 500:
					fr.WriteDataPadded(id, false, msg, []byte{0, 0, 0})
				case j == 700:
					fr.WritePing(false, [8]byte{7})
					fr.WriteData(id, false, msg)
				default:
					fr.WriteData(id, j == msgs-1, msg)
				}
			}
		}
		fc.c.Write(wire.Bytes())
	}})
	c := dialRaw(t, p.addr, true)
	c.request(1, true)
	c.request(3, true)
	got := map[uint32][]byte{}
	ended := map[uint32]int{}
	for ended[1] == 0 || ended[3] == 0 {
		switch f := c.next().(type) {
		case nil:
			t.Fatalf("connection ended; got %d and %d bytes", len(got[1]), len(got[3]))
		case *http2.DataFrame:
			got[f.StreamID] = append(got[f.StreamID], f.Data()...)
			if n := uint32(len(f.Data())); n > 0 {
				c.fr.WriteWindowUpdate(0, n)
				c.fr.WriteWindowUpdate(f.StreamID, n)
			}
			if f.StreamEnded() {
				ended[f.StreamID]++
			}
		case *http2.MetaHeadersFrame:
			if f.StreamEnded() {
				ended[f.StreamID]++
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("stream %d reset: %v", f.StreamID, f.ErrCode)
		}
	}
	a, b := body(ids[0]), body(ids[1])
	if !(bytes.Equal(got[1], a) && bytes.Equal(got[3], b) || bytes.Equal(got[1], b) && bytes.Equal(got[3], a)) {
		t.Fatalf("bodies of %d and %d bytes, want %d and %d, each one upstream stream's in order:\n%.80q\n%.80q", len(got[1]), len(got[3]), len(a), len(b), got[1], got[3])
	}
	if ended[1] != 1 || ended[3] != 1 {
		t.Errorf("END_STREAM seen %d and %d times, want once each", ended[1], ended[3])
	}
}
