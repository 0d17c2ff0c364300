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

// maxMirrorTimeout bounds the lifetime of a mirrored request: its
// connect, the request, the response headers and the response body it
// reads and discards. A copy gets the timeout of the call it copies (the
// route's, or what a trusted header or grpc-timeout made it, as Envoy's
// shadow gets the router's final timeout), cut to this; a call without a
// timeout gets this. Envoy lets a shadow of a route without a timeout run
// for ever; here a shadow cluster that holds requests open gives back its
// max_requests slots within this time, so mirroring resumes. 15 s is
// Envoy's default route timeout.
const maxMirrorTimeout = 15 * time.Second

// mirrorLifetime is how long a mirrored request may take given the
// timeout of the call it copies (0: none).
func mirrorLifetime(timeout time.Duration) time.Duration {
	if timeout <= 0 || timeout > maxMirrorTimeout {
		return maxMirrorTimeout
	}
	return timeout
}

// TryMirror claims one of the mirror cluster cl's max_requests for a copy
// of a request, before the codec copies anything or starts a goroutine,
// so that what mirroring holds is bounded by the mirror cluster's
// breaker whatever that cluster does: at most max_requests copies, each
// with its body (up to 64 KiB) and its goroutines, each for at most
// maxMirrorTimeout. grpc and path are the request's, for the per-method
// stats of a refusal.
//
// When it returns false the breaker refused: the copy is charged to cl
// like any overflow (upstream_rq_pending_overflow, a 503) and the codec
// drops it; nothing is allocated. When it returns true the codec must
// either Send a Mirror for cl, or call ReleaseMirror if it cannot build
// one after all (the body turned out too large to keep). It may be
// called on any goroutine and never blocks.
func TryMirror(cl *cluster.Cluster, grpc bool, path string) bool {
	if cl.Breakers.TryRequest() {
		return true
	}
	var c Call
	c.Cluster, c.GRPC, c.Path = cl, grpc, path
	o := Outcome{GRPCStatus: -1, End: EndOverflow}
	c.Finish(&o)
	return false
}

// ReleaseMirror gives back the slot of a TryMirror whose copy is not sent
// after all. Nothing is counted: the request was never mirrored.
func ReleaseMirror(cl *cluster.Cluster) {
	cl.Breakers.DoneRequest()
}

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
	// Timeout is the copied call's timeout (Plan.Timeout); 0 for none.
	// The copy lasts at most mirrorLifetime of it.
	Timeout time.Duration
	// HTTP1: the downstream request was HTTP/1.1 (for auto clusters).
	HTTP1 bool
}

// Send copies the request to a host of the mirror cluster, fire and
// forget: the response is read to its end and discarded, as Envoy's
// shadow does (its status, gRPC status and time are the mirror cluster's
// stats), and only the mirror cluster's stats see how it went. The copy
// is one call on that cluster, holding the max_requests slot a true
// TryMirror claimed for it (Send gives it back), and lasts at most
// mirrorLifetime(m.Timeout). Run it on its own goroutine, once per
// TryMirror.
func (m *Mirror) Send() {
	var c Call
	c.Cluster, c.Balance, c.GRPC, c.Path = m.Cluster, m.Balance, m.GRPC, m.Path
	c.rqSlot = true // TryMirror's
	o := Outcome{GRPCStatus: -1}
	hst := c.Pick()
	if hst == nil {
		o.End = EndNoHealthy
		c.Finish(&o)
		return
	}
	rt, _ := hst.Upstream().(RoundTripper)
	ctx, cancel := context.WithTimeout(context.Background(), mirrorLifetime(m.Timeout))
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
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		o.Status = resp.StatusCode
		switch {
		case err != nil && ctx.Err() != nil:
			o.End = EndTimeout // counted in upstream_rq_timeout, as Envoy does once headers came
		case err != nil:
			o.RxReset = true
		}
		if m.GRPC {
			o.GRPCStatus = grpcproto.StatusOf(resp.Header, resp.Trailer)
		}
	}
	o.Elapsed = time.Since(start)
	c.Finish(&o)
}

// isConnect reports whether err says no connection could be made.
func isConnect(err error) bool { return errors.Is(err, upstream.ErrConnect) }
