package h2

import (
	"fmt"
	"net/http"

	"github.com/sightline-proxy/sightline/proxy/upstream"
)

// RoundTrip sends one request built on net/http's types to the host:
// HTTP/1.1 when http1 is set, HTTP/2 otherwise. The HTTP/1.1 handler and
// the mirror use it; it implements router.RoundTripper.
func (u *Upstream) RoundTrip(req *http.Request, http1 bool) (*http.Response, error) {
	if u.HTTP == nil {
		return nil, fmt.Errorf("%w: %s has no pool for net/http requests", upstream.ErrConnect, req.URL.Host)
	}
	if http1 {
		return u.HTTP.RoundTripH1(req)
	}
	return u.HTTP.RoundTripH2(req)
}
