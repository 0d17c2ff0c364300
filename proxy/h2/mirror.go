package h2

import (
	"bytes"
	"net/http"
	"strings"

	"github.com/sightline-proxy/sightline/proxy/router"
)

// newMirrorRequest copies what the router's mirror needs, once the
// request is read whole and router.TryMirror has claimed the mirror
// cluster's slot: the fields as sent upstream (hop-by-hop headers and
// untrusted overrides already stripped, X-Forwarded-For appended), the
// kept body, and the call's timeout (the route's, or as the request set
// it), which bounds the copy's. cl.rmu is held.
func (cl *call) newMirrorRequest() *router.Mirror {
	m := &router.Mirror{
		Cluster: cl.rc.Mirror, Balance: cl.rc.Balance, Path: cl.path,
		Header: make(http.Header, len(cl.reqFields)), Body: bytes.Clone(cl.body),
		GRPC: cl.grpc, Timeout: cl.rc.Timeout,
	}
	for _, f := range cl.reqFields {
		switch f.Name {
		case ":method":
			m.Method = f.Value
		case ":authority":
			m.Authority = f.Value
		case ":path":
			m.PathQuery = f.Value
		default:
			if !strings.HasPrefix(f.Name, ":") {
				k := http.CanonicalHeaderKey(f.Name)
				m.Header[k] = append(m.Header[k], f.Value)
			}
		}
	}
	return m
}
