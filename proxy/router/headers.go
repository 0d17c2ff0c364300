package router

import "strings"

// The header policy of both codecs: which request headers go upstream and
// what the proxy adds. Names are compared without regard to case, so the
// same functions serve HTTP/2 fields (lower case) and http.Header keys
// (canonical), without allocating.

// overridePrefix starts the per-request override headers
// (x-sightline-max-retries, …), honoured and forwarded only on listeners
// with trust_request_headers.
const overridePrefix = "x-sightline-"

// hopByHop are the connection-specific headers a proxy must not forward
// (RFC 9110 §7.6.1, RFC 9113 §8.2.2) and the proxy's own credentials (RFC
// 9110 §11.7). te and trailer are the codecs' own: only "te: trailers"
// goes upstream, and an HTTP/2 request keeps trailer (net/http writes it
// itself for HTTP/1.1).
var hopByHop = [...]string{
	"connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade",
	"proxy-authenticate", "proxy-authorization",
}

// HopByHop reports whether name is a hop-by-hop header.
func HopByHop(name string) bool {
	for _, h := range hopByHop {
		if len(name) == len(h) && strings.EqualFold(name, h) {
			return true
		}
	}
	return false
}

// DropRequestHeader reports whether a request header stays at the proxy:
// a hop-by-hop one, an x-sightline-* override on a listener that does not
// trust them, or x-request-id when the proxy decides the id (it adds its
// own), and x-forwarded-for, which the codec sends as ForwardedFor builds
// it.
func DropRequestHeader(name string, trust, ownRequestID bool) bool {
	switch {
	case HopByHop(name):
		return true
	case !trust && len(name) > len(overridePrefix) && strings.EqualFold(name[:len(overridePrefix)], overridePrefix):
		return true
	case ownRequestID && strings.EqualFold(name, "x-request-id"):
		return true
	}
	return strings.EqualFold(name, "x-forwarded-for")
}

// ForwardedFor is the X-Forwarded-For sent upstream: the client's (its
// values joined) with the address of the proxy's peer appended, as Envoy
// and nginx do. prior is "" when the client sent none; ip is "" when the
// peer address is unknown.
func ForwardedFor(prior, ip string) string {
	switch {
	case ip == "":
		return prior
	case prior == "":
		return ip
	}
	return prior + ", " + ip
}

// ForwardedProto is the X-Forwarded-Proto sent when the client sent none.
func ForwardedProto(tls bool) string {
	if tls {
		return "https"
	}
	return "http"
}

// UpgradeType is the protocol an HTTP/1.1 request asks to switch to: its
// Upgrade header when its Connection header names "upgrade" (both are
// needed, RFC 9110 §7.8), or "" for none. upgrade and connection are the
// header's values as received. "h2c" counts as none: HTTP/2 over
// plaintext needs no upgrade here (the listener serves h2c with prior
// knowledge), so the request is served as HTTP/1.1, its Upgrade dropped,
// as Envoy does.
//
// The hop-by-hop policy above still drops Upgrade and Connection: a codec
// that forwards an upgrade sets them again itself.
func UpgradeType(upgrade, connection []string) string {
	if len(upgrade) == 0 || !hasToken(connection, "upgrade") {
		return ""
	}
	t := strings.TrimSpace(strings.Join(upgrade, ","))
	if t == "" || strings.EqualFold(t, "h2c") {
		return ""
	}
	return t
}

// hasToken reports whether a comma-separated header names token, without
// regard to case.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for v != "" {
			var f string
			f, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}
