package h2

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawPeer is a hand-driven HTTP/2 endpoint for testing the engine: a
// Framer that may write illegal frames, and an HPACK codec.
type rawPeer struct {
	t      testing.TB
	c      net.Conn
	fr     *http2.Framer
	enc    *hpack.Encoder
	encBuf bytes.Buffer
	// partial holds responses read while waiting for another stream's.
	partial map[uint32]*rawResponse
}

type rawResponse struct {
	status string
	fields []hpack.HeaderField
	body   []byte
	done   bool
}

func newRawPeer(t testing.TB, c net.Conn) *rawPeer {
	p := &rawPeer{t: t, c: c, partial: map[uint32]*rawResponse{}}
	p.fr = http2.NewFramer(c, c)
	p.fr.AllowIllegalWrites = true
	p.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	p.fr.MaxHeaderListSize = 1 << 20
	p.enc = hpack.NewEncoder(&p.encBuf)
	t.Cleanup(func() { c.Close() })
	return p
}

// dialRaw connects a raw client to the proxy and, with handshake, sends
// the preface and an empty SETTINGS frame.
func dialRaw(t testing.TB, addr string, handshake bool) *rawPeer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := newRawPeer(t, c)
	if handshake {
		p.handshake()
	}
	return p
}

// handshake sends the client preface and an empty SETTINGS frame.
func (p *rawPeer) handshake() {
	p.t.Helper()
	p.write([]byte(http2.ClientPreface))
	if err := p.fr.WriteSettings(); err != nil {
		p.t.Fatal(err)
	}
}

// postWhole writes a POST of body on stream id, its HEADERS (with
// content-length) and one DATA frame that ends the stream, in one write;
// it returns the bytes written.
func (p *rawPeer) postWhole(id uint32, body []byte) int {
	p.t.Helper()
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	block := p.block(":method", "POST", ":scheme", "http", ":authority", "example.com", ":path", "/", "content-length", strconv.Itoa(len(body)))
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true}); err != nil {
		p.t.Fatal(err)
	}
	if err := fr.WriteData(id, true, body); err != nil {
		p.t.Fatal(err)
	}
	p.write(buf.Bytes())
	return buf.Len()
}

// awaitStatus reads frames until the response HEADERS of stream id, and
// returns its :status; what names what the stream was, for the failure.
func (p *rawPeer) awaitStatus(id uint32, what string) string {
	p.t.Helper()
	for {
		f, err := p.fr.ReadFrame()
		if err != nil {
			p.t.Fatalf("no response to %s: %v", what, err)
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == id {
			return h.PseudoValue("status")
		}
	}
}

func (p *rawPeer) write(b []byte) {
	p.t.Helper()
	if _, err := p.c.Write(b); err != nil {
		p.t.Fatal(err)
	}
}

// headers encodes fields into a header block.
func (p *rawPeer) block(fields ...string) []byte {
	p.encBuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		p.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return append([]byte(nil), p.encBuf.Bytes()...)
}

// request writes a HEADERS frame with a GET (or the given fields).
func (p *rawPeer) request(id uint32, end bool, extra ...string) {
	p.t.Helper()
	fields := append([]string{":method", "GET", ":scheme", "http", ":authority", "example.com", ":path", "/"}, extra...)
	if err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.block(fields...), EndStream: end, EndHeaders: true}); err != nil {
		p.t.Fatal(err)
	}
}

// post writes a POST's HEADERS frame with extra fields.
func (p *rawPeer) post(id uint32, extra ...string) {
	p.t.Helper()
	fields := append([]string{":method", "POST", ":scheme", "http", ":authority", "example.com", ":path", "/"}, extra...)
	if err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.block(fields...), EndHeaders: true}); err != nil {
		p.t.Fatal(err)
	}
}

// next reads the next frame, skipping SETTINGS, SETTINGS ACKs,
// WINDOW_UPDATEs and PINGs unless keep says otherwise. It returns nil when
// the connection closes.
func (p *rawPeer) next(keep ...http2.FrameType) http2.Frame {
	p.t.Helper()
	for {
		p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := p.fr.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) || isReset(err) {
				return nil
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				p.t.Fatal("timed out waiting for a frame")
			}
			p.t.Fatalf("reading a frame: %v", err)
		}
		switch f.Header().Type {
		case http2.FrameSettings, http2.FrameWindowUpdate, http2.FramePing:
			kept := false
			for _, k := range keep {
				kept = kept || k == f.Header().Type
			}
			if !kept {
				if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
					p.fr.WriteSettingsAck()
				}
				continue
			}
		}
		return f
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && (op.Err.Error() == "read: connection reset by peer" || bytes.Contains([]byte(op.Err.Error()), []byte("reset")))
}

// wantGoAway reads until a GOAWAY and checks its code; the connection
// must then close.
func (p *rawPeer) wantGoAway(code http2.ErrCode) {
	p.t.Helper()
	for {
		f := p.next()
		if f == nil {
			p.t.Fatalf("connection closed without GOAWAY(%v)", code)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != code {
				p.t.Fatalf("GOAWAY %v, want %v", ga.ErrCode, code)
			}
			if f := p.next(); f != nil {
				p.t.Fatalf("after GOAWAY got %v, want the connection closed", f.Header())
			}
			return
		}
	}
}

// wantRST reads until a RST_STREAM on id and checks its code.
func (p *rawPeer) wantRST(id uint32, code http2.ErrCode) {
	p.t.Helper()
	for {
		f := p.next()
		if f == nil {
			p.t.Fatalf("connection closed, want RST_STREAM(%v) on %d", code, id)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			p.t.Fatalf("GOAWAY %v, want RST_STREAM(%v) on %d", ga.ErrCode, code, id)
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok && rst.StreamID == id {
			if rst.ErrCode != code {
				p.t.Fatalf("RST_STREAM %v on %d, want %v", rst.ErrCode, id, code)
			}
			return
		}
	}
}

// response reads a whole response on id: its header fields and body.
// Frames of other streams are kept for their own response call.
func (p *rawPeer) response(id uint32) (status string, fields []hpack.HeaderField, body []byte) {
	p.t.Helper()
	get := func(id uint32) *rawResponse {
		r := p.partial[id]
		if r == nil {
			r = &rawResponse{}
			p.partial[id] = r
		}
		return r
	}
	for {
		if r := p.partial[id]; r != nil && r.done {
			delete(p.partial, id)
			return r.status, r.fields, r.body
		}
		f := p.next()
		switch f := f.(type) {
		case nil:
			p.t.Fatalf("connection closed before the response on %d ended", id)
		case *http2.MetaHeadersFrame:
			r := get(f.StreamID)
			if r.status == "" {
				r.status = f.PseudoValue("status")
			}
			r.fields = append(r.fields, f.Fields...)
			r.done = f.StreamEnded()
		case *http2.DataFrame:
			r := get(f.StreamID)
			r.body = append(r.body, f.Data()...)
			r.done = f.StreamEnded()
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				p.t.Fatalf("RST_STREAM %v on %d before the response ended", f.ErrCode, id)
			}
		case *http2.GoAwayFrame:
			p.t.Fatalf("GOAWAY %v before the response on %d ended", f.ErrCode, id)
		}
	}
}

func field(fields []hpack.HeaderField, name string) string {
	for _, f := range fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}
