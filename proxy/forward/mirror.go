package forward

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/h2"
	"github.com/sightline-proxy/sightline/proxy/route"
)

// mirrorTimeout bounds a mirrored request when the route has no timeout.
const mirrorTimeout = 30 * time.Second

// sendMirror copies the request to the mirror cluster, fire and forget:
// the response is discarded and only the mirror cluster's stats see it.
// The authority gets Envoy's "-shadow" suffix.
func (h *Handler) sendMirror(mc *cluster.Cluster, br balancer.Request, r *http.Request, body []byte, timeout time.Duration) {
	hst := mc.Pick(&br)
	if hst == nil {
		return
	}
	u, _ := hst.Upstream.(*h2.Upstream)
	if u == nil || u.HTTP == nil {
		return
	}
	if timeout <= 0 {
		timeout = mirrorTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	hdr := make(http.Header, len(r.Header))
	copyHeader(hdr, r.Header)
	out := (&http.Request{
		Method:        r.Method,
		URL:           &url.URL{Scheme: "http", Host: hst.Address, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery},
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        hdr,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Host:          route.ShadowAuthority(r.Host),
	}).WithContext(ctx)
	if len(body) == 0 {
		out.Body = http.NoBody
	}
	o := cluster.Outcome{GRPC: false, GRPCStatus: -1, Path: r.URL.Path}
	start := time.Now()
	mc.Begin(hst)
	var resp *http.Response
	var err error
	if mc.Protocol == cluster.HTTP1 {
		resp, err = u.HTTP.RoundTripH1(out)
	} else {
		resp, err = u.HTTP.RoundTripH2(out)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		o.Status, o.Timeout = http.StatusGatewayTimeout, true
	case err != nil:
		o.Status, o.Reset = http.StatusServiceUnavailable, true
	default:
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		o.Status = resp.StatusCode
	}
	o.Elapsed = time.Since(start)
	mc.End(hst, &o)
}
