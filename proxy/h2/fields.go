package h2

import (
	"fmt"
	"strings"

	"golang.org/x/net/http2/hpack"

	"github.com/sightline-proxy/sightline/tracing"
)

// Pseudo-header bits of headerBlock.pseudo.
const (
	pseudoMethod uint8 = 1 << iota
	pseudoScheme
	pseudoAuthority
	pseudoPath
	pseudoStatus
)

// headerBlock is the state of the header block being read on a
// connection: HEADERS plus any CONTINUATIONs, decoded field by field as the
// fragments arrive (RFC 9113 §4.3, §6.10). It is owned by the connection's
// reader and reset at each HEADERS frame.
type headerBlock struct {
	streamID  uint32
	endStream bool
	trailers  bool // a second block on the stream: no pseudo-headers allowed
	frames    int  // HEADERS and CONTINUATION frames so far
	encoded   int  // encoded bytes so far
	size      uint32
	truncated bool   // the list passed the advertised SETTINGS_MAX_HEADER_LIST_SIZE
	invalid   string // the first rule the block broke; "" when none
	selfDep   bool   // HEADERS priority depends on its own stream (RFC 9113 §5.3.1)

	sawRegular bool
	pseudo     uint8
	method     string
	scheme     string
	authority  string
	path       string
	status     string
	host       string
	ctype      string
	clen       int64 // content-length, -1 when absent
}

func (hb *headerBlock) reset(id uint32, endStream, trailers bool) {
	*hb = headerBlock{streamID: id, endStream: endStream, trailers: trailers, clen: -1}
}

// validNameByte marks the bytes allowed in an HTTP/2 field name: the RFC
// 9110 token characters without upper-case letters (RFC 9113 §8.2.1).
var validNameByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !validNameByte[s[i]] {
			return false
		}
	}
	return true
}

// validValue checks a field value against RFC 9113 §8.2.1: no NUL, CR or LF
// anywhere and, when strict, no leading or trailing SP or HTAB. Responses
// from upstreams are checked leniently: a grpc-message ending in a space is
// sent as is by grpc-go, and refusing it would turn a proxied error into a
// confusing reset.
func validValue(s string, strict bool) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == 0 || c == '\r' || c == '\n' {
			return false
		}
	}
	if strict && s != "" {
		if c := s[0]; c == ' ' || c == '\t' {
			return false
		}
		if c := s[len(s)-1]; c == ' ' || c == '\t' {
			return false
		}
	}
	return true
}

// connectionSpecific reports the fields RFC 9113 §8.2.2 forbids in HTTP/2.
func connectionSpecific(name string) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// sensitive reports fields that must be encoded as never-indexed literals
// (RFC 7541 §7.1.3): credentials and cookies, which a shared compression
// context would otherwise expose to CRIME-style probing.
func sensitive(name string) bool {
	switch name {
	case "authorization", "proxy-authorization", "cookie", "set-cookie":
		return true
	}
	return false
}

// freshNames is a set of the fields whose value is, as a rule, new on
// every request (fresh): one bit each.
type freshNames uint8

// fresh returns the bit of a field whose value is new on every request: a
// request ID, a trace's span, a deadline counted down. 0 for any other.
func fresh(name string) freshNames {
	switch name {
	case tracing.RequestIDHeader:
		return 1 << 0
	case "grpc-timeout":
		return 1 << 1
	case "traceparent":
		return 1 << 2
	case "b3":
		return 1 << 3
	case "x-b3-traceid":
		return 1 << 4
	case "x-b3-spanid":
		return 1 << 5
	case "x-b3-parentspanid":
		return 1 << 6
	}
	return 0
}

// encode HPACK-encodes fields into the connection's encoding buffer and
// returns the block. A fresh field (see fresh) is added to the dynamic
// table the first time its name is sent, and never after: each value
// would be used once, and pushing the next out of the 4 KiB table every
// few calls would push out the fields that repeat on every call too
// (content-type, user-agent, :authority), which would then go out as
// literals and be added again, churning the table on every call. From
// then on the field is sent as a literal that is never indexed (the one
// form of literal x/net's encoder offers that is not added), naming the
// table's entry while it is there: two bytes of name and the value.
//
// A field sent as an index in the last block of its kind, at the same
// place, is copied from the memo (encMemo) without asking the encoder.
func (c *conn) encode(fields []hpack.HeaderField) ([]byte, error) {
	c.encBuf.Reset()
	enc := c.encoder()
	memo := c.memo.kind(fields)
	for i, f := range fields {
		if bit := fresh(f.Name); bit != 0 && !f.Sensitive {
			if c.freshSeen&bit != 0 {
				f.Sensitive = true
			} else {
				c.freshSeen |= bit
			}
		}
		if i < len(*memo) {
			if m := &(*memo)[i]; m.n > 0 && m.name == f.Name {
				switch {
				case m.literal && f.Sensitive:
					b := append(c.encBuf.AvailableBuffer(), m.code[:m.n]...)
					c.encBuf.Write(appendString(b, f.Value))
					continue
				case !m.literal && !f.Sensitive && m.value == f.Value:
					c.encBuf.Write(m.code[:m.n])
					continue
				}
			}
		}
		start := c.encBuf.Len()
		if err := enc.WriteField(f); err != nil {
			return nil, fmt.Errorf("encoding headers: %w", err)
		}
		c.memo.note(memo, i, f, c.encBuf.Bytes()[start:])
	}
	return c.encBuf.Bytes(), nil
}

// encMemo remembers, by its place in the block, each field of the last
// header blocks that the encoder sent as an index into its tables (one or
// two bytes), and each never-indexed field whose name it sent as an index.
// A call's request, or its response and trailers, carries the fields of
// the call before in the same order, and the encoder looks each one up in
// four maps, hashing its name and value, in memory that a connection at
// light load finds cold on every call; the memo compares two strings,
// most often the same ones (a decoder hands out its table's strings). A
// field whose value is new on every call (a request ID, a deadline) is
// sent never-indexed after its first time (fresh): the memo keeps its
// name's index and the value is written after it. An index into the
// dynamic table holds until the encoder adds a field to it or its size
// changes, which shifts or drops entries: both clear the memo.
// Writer-owned, as the encoder is.
type encMemo struct {
	// blocks holds header blocks, which start with a pseudo-header, and
	// trailers apart: a connection that sends both alternates them.
	blocks [2][]memoField
}

// memoField is a field and the index the encoder wrote for it, or for a
// never-indexed field (literal) the representation's first bytes, with
// its name's index (RFC 7541 §6.2.3); n == 0 for any other field.
type memoField struct {
	name, value string
	code        [3]byte
	n           uint8
	literal     bool
}

// kind returns the memo of blocks like fields.
func (m *encMemo) kind(fields []hpack.HeaderField) *[]memoField {
	if len(fields) > 0 && strings.HasPrefix(fields[0].Name, ":") {
		return &m.blocks[0]
	}
	return &m.blocks[1]
}

// note records what the encoder wrote for f, the i-th field of a block
// of memo's kind: its index, or nothing. A field the encoder added to its
// dynamic table, or a table size update ahead of it, clears the memo.
func (m *encMemo) note(memo *[]memoField, i int, f hpack.HeaderField, out []byte) {
	switch {
	case len(out) == 0:
		return
	case out[0]&0xc0 == 0x40 || out[0]&0xe0 == 0x20:
		// RFC 7541 §6.2.1 (literal with incremental indexing), §6.3.
		m.clear()
	}
	for len(*memo) <= i {
		*memo = append(*memo, memoField{})
	}
	e := memoField{}
	switch {
	case out[0]&0x80 != 0 && len(out) <= len(e.code): // §6.1, indexed
		e.name, e.value, e.n = f.Name, f.Value, uint8(copy(e.code[:], out))
	case out[0]&0xf0 == 0x10 && out[0]&0x0f != 0: // §6.2.3, an indexed name
		if n := intLen(out, 4); n > 0 && n <= len(e.code) {
			e.name, e.literal, e.n = f.Name, true, uint8(copy(e.code[:], out[:n]))
		}
	}
	(*memo)[i] = e
}

// intLen is the length of the integer with an n-bit prefix at the start
// of p (RFC 7541 §5.1), or 0 if p ends within it.
func intLen(p []byte, n uint) int {
	if p[0]&(1<<n-1) != 1<<n-1 {
		return 1
	}
	for i := 1; i < len(p); i++ {
		if p[i]&0x80 == 0 {
			return i + 1
		}
	}
	return 0
}

// appendString appends s as an HPACK string literal (RFC 7541 §5.2),
// Huffman-coded when that is shorter, as x/net's encoder writes it.
func appendString(dst []byte, s string) []byte {
	n := hpack.HuffmanEncodeLength(s)
	if n >= uint64(len(s)) {
		return append(appendInt(dst, 7, uint64(len(s))), s...)
	}
	first := len(dst)
	dst = appendInt(dst, 7, n)
	dst[first] |= 0x80
	return hpack.AppendHuffmanString(dst, s)
}

// appendInt appends v as an integer with an n-bit prefix (RFC 7541 §5.1),
// the prefix's other bits zero.
func appendInt(dst []byte, n uint, v uint64) []byte {
	k := uint64(1<<n - 1)
	if v < k {
		return append(dst, byte(v))
	}
	dst = append(dst, byte(k))
	for v -= k; v >= 128; v >>= 7 {
		dst = append(dst, byte(0x80|v&0x7f))
	}
	return append(dst, byte(v))
}

// clear forgets every index: the encoder's dynamic table changed.
func (m *encMemo) clear() {
	for k := range m.blocks {
		clear(m.blocks[k])
		m.blocks[k] = m.blocks[k][:0]
	}
}

// parseContentLength parses a content-length value: digits only, no sign,
// at most 18 of them so it fits an int64.
func parseContentLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// onField is the connection's HPACK emit function: it checks each decoded
// field as it comes and appends it to c.fields. It runs on the reader
// goroutine, inside hpack.Decoder.Write.
//
// Once the block is invalid or over the size limit, emission is switched
// off: the decoder keeps its dynamic table in sync (it must, RFC 7541 §2.2)
// but no longer builds strings for fields that will be dropped anyway.
func (c *conn) onField(f hpack.HeaderField) {
	hb := &c.hb
	size := uint32(len(f.Name)) + uint32(len(f.Value)) + 32
	if size > c.maxHeaderList || hb.size > c.maxHeaderList-size {
		hb.truncated = true
		c.dec.SetEmitEnabled(false)
		return
	}
	hb.size += size
	if msg := c.checkField(hb, &f); msg != "" {
		if hb.invalid == "" {
			hb.invalid = msg
		}
		c.dec.SetEmitEnabled(false)
		return
	}
	if f.Name[0] == ':' {
		return // kept in hb; rebuilt in order when forwarding
	}
	if !c.server && (connectionSpecific(f.Name) || f.Name == "te") {
		return // an upstream's connection-specific field: dropped, not fatal
	}
	c.fields = append(c.fields, f)
}

// checkField applies RFC 9113 §8.2 and §8.3 to one field and records the
// values the proxy needs. It returns why the field makes the message
// malformed, or "".
func (c *conn) checkField(hb *headerBlock, f *hpack.HeaderField) string {
	if !validValue(f.Value, c.server) {
		return "invalid field value"
	}
	if f.Name != "" && f.Name[0] == ':' {
		if hb.sawRegular {
			return "pseudo-header after a regular field"
		}
		if hb.trailers {
			return "pseudo-header in trailers"
		}
		var bit uint8
		var dst *string
		switch {
		case c.server && f.Name == ":method":
			bit, dst = pseudoMethod, &hb.method
		case c.server && f.Name == ":scheme":
			bit, dst = pseudoScheme, &hb.scheme
		case c.server && f.Name == ":authority":
			bit, dst = pseudoAuthority, &hb.authority
		case c.server && f.Name == ":path":
			bit, dst = pseudoPath, &hb.path
		case !c.server && f.Name == ":status":
			bit, dst = pseudoStatus, &hb.status
		default:
			return "unknown or misplaced pseudo-header " + f.Name
		}
		if hb.pseudo&bit != 0 {
			return "duplicate pseudo-header " + f.Name
		}
		hb.pseudo |= bit
		*dst = f.Value
		return ""
	}
	hb.sawRegular = true
	if !validName(f.Name) {
		return "invalid field name"
	}
	switch f.Name {
	case "content-length":
		n, ok := parseContentLength(f.Value)
		if !ok || (hb.clen >= 0 && hb.clen != n) {
			return "invalid content-length"
		}
		hb.clen = n
	case "content-type":
		if hb.ctype == "" {
			hb.ctype = f.Value
		}
	case "host":
		hb.host = f.Value
	case "te":
		if c.server && f.Value != "trailers" {
			return `te other than "trailers"`
		}
	default:
		if c.server && connectionSpecific(f.Name) {
			return "connection-specific field " + f.Name
		}
	}
	return ""
}

// checkRequest applies RFC 9113 §8.3.1 to a complete request header block.
func checkRequest(hb *headerBlock) string {
	if hb.pseudo&pseudoMethod == 0 {
		return "missing :method"
	}
	if hb.method == "CONNECT" {
		if hb.pseudo&(pseudoScheme|pseudoPath) != 0 || hb.pseudo&pseudoAuthority == 0 {
			return "malformed CONNECT"
		}
		return ""
	}
	if hb.pseudo&pseudoScheme == 0 {
		return "missing :scheme"
	}
	if hb.pseudo&pseudoPath == 0 || hb.path == "" {
		return "missing or empty :path"
	}
	return ""
}

// checkResponse applies RFC 9113 §8.3.2 to a complete response header
// block: one :status of three digits.
func checkResponse(hb *headerBlock) string {
	s := hb.status
	if len(s) != 3 || s[0] < '1' || s[0] > '5' || s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9' {
		return "missing or invalid :status"
	}
	return ""
}

// routePath returns the path a route matches: :path without its query,
// percent-decoded as net/http's r.URL.Path is. It allocates only when the
// path has a '%'.
func routePath(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if strings.IndexByte(p, '%') < 0 {
		return p
	}
	return unescapePath(p)
}

// unescapePath decodes %XX sequences, leaving malformed ones as they are
// (net/url would reject the request; routing on the raw text is the safer
// reading for a proxy that forwards :path untouched anyway).
func unescapePath(p string) string {
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
			b.WriteByte(unhex(p[i+1])<<4 | unhex(p[i+2]))
			i += 2
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// getFold returns the first value of the field whose name equals name case
// insensitively. The route's hash header is in canonical MIME form
// ("X-User-Id"); comparing without lower-casing it saves an allocation.
func getFold(fields []hpack.HeaderField, name string) (string, bool) {
	for i := range fields {
		if len(fields[i].Name) == len(name) && strings.EqualFold(fields[i].Name, name) {
			return fields[i].Value, true
		}
	}
	return "", false
}
