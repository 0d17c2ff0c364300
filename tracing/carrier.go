package tracing

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	"golang.org/x/net/http2/hpack"
)

// Carrier is where trace context is read from and written to. It is otel's
// TextMapCarrier, so any otel propagator works on it directly, and the two
// adapters below let the HTTP/2 engine and the HTTP/1.1 path use their own
// header representation without copying headers into a map per request.
type Carrier = propagation.TextMapCarrier

// HTTPHeader adapts an http.Header. The conversion does not allocate (a map
// is pointer-shaped).
func HTTPHeader(h http.Header) Carrier { return HeaderCarrier(h) }

// HeaderCarrier is otel's propagation.HeaderCarrier without its per-call
// allocation: propagators ask for lower-case keys ("traceparent"), and
// http.Header canonicalizes each into a new string on every Get. The keys the
// configured propagators use map to constant canonical forms instead.
type HeaderCarrier http.Header

// Get returns the first value of key.
func (c HeaderCarrier) Get(key string) string {
	v := c[canonicalKey(key)]
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// Set replaces the values of key with value.
func (c HeaderCarrier) Set(key, value string) { c[canonicalKey(key)] = []string{value} }

// Del removes key.
func (c HeaderCarrier) Del(key string) { delete(c, canonicalKey(key)) }

// deleter is a carrier that can remove a header: both of Sightline's.
type deleter interface{ Del(key string) }

// Keys lists the header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

func canonicalKey(key string) string {
	switch key {
	case "traceparent":
		return "Traceparent"
	case "tracestate":
		return "Tracestate"
	case "baggage":
		return "Baggage"
	case "b3":
		return "B3"
	case "x-b3-traceid":
		return "X-B3-Traceid"
	case "x-b3-spanid":
		return "X-B3-Spanid"
	case "x-b3-sampled":
		return "X-B3-Sampled"
	case "x-b3-flags":
		return "X-B3-Flags"
	case "x-b3-parentspanid":
		return "X-B3-Parentspanid"
	}
	return http.CanonicalHeaderKey(key)
}

// HPACKCarrier adapts decoded HPACK fields (lower-case names, as the HTTP/2
// engine holds them). Get scans the slice, which for the handful of headers a
// request carries is cheaper than building an index; Set replaces a field of
// the same name in place, or appends one, so a downstream traceparent is
// overwritten rather than forwarded next to the proxy's own.
//
// Use a pointer (&HPACKCarrier{Fields: fields}) so that appended fields are
// seen by the caller in c.Fields.
type HPACKCarrier struct {
	Fields []hpack.HeaderField
}

// Get returns the value of the first field named key, ignoring case because
// propagators do not all spell their keys in lower case.
func (c *HPACKCarrier) Get(key string) string {
	for i := range c.Fields {
		if strings.EqualFold(c.Fields[i].Name, key) {
			return c.Fields[i].Value
		}
	}
	return ""
}

// Set stores key (lower-cased, as HTTP/2 requires) with value. Fields of the
// same name after the first are removed so the upstream sees one value.
func (c *HPACKCarrier) Set(key, value string) {
	name := lowerASCII(key)
	found := false
	out := c.Fields[:0]
	for _, f := range c.Fields {
		if f.Name == name {
			if found {
				continue
			}
			found = true
			f.Value = value
			f.Sensitive = false
		}
		out = append(out, f)
	}
	if !found {
		out = append(out, hpack.HeaderField{Name: name, Value: value})
	}
	c.Fields = out
}

// Del removes every field named key (lower case).
func (c *HPACKCarrier) Del(key string) {
	out := c.Fields[:0]
	for _, f := range c.Fields {
		if f.Name != key {
			out = append(out, f)
		}
	}
	clear(c.Fields[len(out):])
	c.Fields = out
}

// Keys lists the field names, pseudo-headers excluded. Only propagators that
// scan every header (none of the ones Sightline configures) call it.
func (c *HPACKCarrier) Keys() []string {
	keys := make([]string, 0, len(c.Fields))
	for _, f := range c.Fields {
		if !strings.HasPrefix(f.Name, ":") {
			keys = append(keys, f.Name)
		}
	}
	return keys
}

// lowerASCII lower-cases key without allocating when it is already lower
// case, which every propagator key Sightline uses is.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
