package router

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/grpcproto"
	"github.com/sightline-proxy/sightline/proxy/route"
	"github.com/sightline-proxy/sightline/proxy/upstream"
)

// RoundTripper is what the mirror needs of a host's connection pool:
// one request, HTTP/1.1 when http1 is set, HTTP/2 otherwise.
type RoundTripper interface {
	RoundTrip(req *http.Request, http1 bool) (*http.Response, error)
}

// mirrorTimeout bounds a mirrored request when the route has no timeout,
// so that a shadow cluster that never answers cannot pile requests up.
const mirrorTimeout = 30 * time.Second

// Mirror is a copy of a request for a route's mirror cluster, taken once
// the request has been read whole, with the headers the primary request
// was sent with (hop-by-hop headers and untrusted overrides stripped,
// X-Forwarded-For appended).
type Mirror struct {
	Cluster *cluster.Cluster
	Balance balancer.Request
	Method  string
	// Authority is the primary request's; the copy goes to its -shadow
	// form.
	Authority string
	// PathQuery is the :path, query included; Path the path alone.
	PathQuery, Path string
	Header          http.Header
	Body            []byte
	GRPC            bool
	Timeout         time.Duration
	// HTTP1: the downstream request was HTTP/1.1 (for auto clusters).
	HTTP1 bool
}

// Send copies the request to a host of the mirror cluster, fire and
// forget: the response is read and discarded, and only the mirror
// cluster's stats see how it went. The copy is one call on that cluster,
// counted and bounded by its circuit breakers like any other, so a slow
// shadow service cannot take more than max_requests copies at once.
// Run it on its own goroutine.
func (m *Mirror) Send() {
	var c Call
	c.Cluster, c.Balance, c.GRPC, c.Path = m.Cluster, m.Balance, m.GRPC, m.Path
	o := Outcome{GRPCStatus: -1}
	if !c.TryRequest() {
		o.End = EndOverflow
		c.Finish(&o)
		return
	}
	hst := c.Pick()
	if hst == nil {
		o.End = EndNoHealthy
		c.Finish(&o)
		return
	}
	rt, _ := hst.Upstream.(RoundTripper)
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = mirrorTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	u := "http://" + hst.Address + m.PathQuery
	req, err := http.NewRequestWithContext(ctx, m.Method, u, bytes.NewReader(m.Body))
	if err != nil || rt == nil {
		o.End = EndConnectFailure
		c.Begin(hst)
		c.Finish(&o)
		return
	}
	req.Header = m.Header
	req.Host = route.ShadowAuthority(m.Authority)
	req.ContentLength = int64(len(m.Body))
	if len(m.Body) == 0 {
		req.Body = http.NoBody
	}
	http1 := m.Cluster.Protocol == cluster.HTTP1 || m.Cluster.Protocol == cluster.Auto && m.HTTP1
	start := time.Now()
	c.Begin(hst)
	resp, err := rt.RoundTrip(req, http1)
	switch {
	case err != nil && ctx.Err() != nil:
		o.End = EndTimeout
	case err != nil:
		o.End = EndReset
		if isConnect(err) {
			o.End = EndConnectFailure
		}
	default:
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		o.Status = resp.StatusCode
		if m.GRPC {
			o.GRPCStatus = grpcproto.StatusOf(resp.Header, resp.Trailer)
		}
	}
	o.Elapsed = time.Since(start)
	c.Finish(&o)
}

// isConnect reports whether err says no connection could be made.
func isConnect(err error) bool { return errors.Is(err, upstream.ErrConnect) }
