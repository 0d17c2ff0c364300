package h2

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/grpcproto"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/route"
)

// mirrorTimeout bounds a mirrored request that has no route timeout, so
// that a shadow cluster that never answers cannot pile requests up.
const mirrorTimeout = 30 * time.Second

// mirrorRequest is a copy of a request for the route's mirror cluster,
// made when the request has been read whole.
type mirrorRequest struct {
	cls     *cluster.Cluster
	fields  []hpack.HeaderField
	body    []byte
	grpc    bool
	path    string
	timeout time.Duration
}

// newMirrorRequest copies what the mirror needs; cl.rmu is held.
func (cl *call) newMirrorRequest() *mirrorRequest {
	return &mirrorRequest{
		cls:     cl.mirror,
		fields:  append([]hpack.HeaderField(nil), cl.reqFields...),
		body:    bytes.Clone(cl.body),
		grpc:    cl.grpc,
		path:    cl.path,
		timeout: cl.rt.Timeout,
	}
}

// send copies the request to a host of the mirror cluster, fire and
// forget: the response is read and discarded, and only the mirror
// cluster's stats see how it went. :authority gets Envoy's "-shadow"
// suffix, so the shadow service can tell copies from real traffic.
func (m *mirrorRequest) send(breq balancer.Request) {
	hst := m.cls.Pick(&breq)
	if hst == nil {
		return
	}
	u, _ := hst.Upstream.(*Upstream)
	if u == nil || u.HTTP == nil {
		return
	}
	req, err := m.httpRequest(hst)
	if err != nil {
		return
	}
	timeout := m.timeout
	if timeout <= 0 {
		timeout = mirrorTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req = req.WithContext(ctx)
	m.cls.Begin(hst)
	o := cluster.Outcome{GRPC: m.grpc, GRPCStatus: -1, Path: m.path}
	start := time.Now()
	var resp *http.Response
	if m.cls.Protocol == cluster.HTTP1 {
		resp, err = u.HTTP.RoundTripH1(req)
	} else {
		resp, err = u.HTTP.RoundTripH2(req)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		o.Status, o.Timeout = 504, true
	case err != nil:
		o.Status, o.Reset = 503, true
	default:
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		o.Status = resp.StatusCode
		if m.grpc {
			o.GRPCStatus = grpcproto.StatusOf(resp.Header, resp.Trailer)
		}
	}
	o.Elapsed = time.Since(start)
	m.cls.End(hst, &o)
}

// httpRequest turns the kept fields into an http.Request for hst.
func (m *mirrorRequest) httpRequest(hst *host.Host) (*http.Request, error) {
	var method, scheme, authority, path string
	hdr := make(http.Header, len(m.fields))
	for _, f := range m.fields {
		switch f.Name {
		case ":method":
			method = f.Value
		case ":scheme":
			scheme = f.Value
		case ":authority":
			authority = f.Value
		case ":path":
			path = f.Value
		default:
			if !strings.HasPrefix(f.Name, ":") {
				hdr.Add(f.Name, f.Value)
			}
		}
	}
	u, err := url.ParseRequestURI(path)
	if err != nil {
		return nil, err
	}
	u.Scheme, u.Host = scheme, hst.Address
	return &http.Request{
		Method:        method,
		URL:           u,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        hdr,
		Body:          io.NopCloser(bytes.NewReader(m.body)),
		ContentLength: int64(len(m.body)),
		Host:          route.ShadowAuthority(authority),
	}, nil
}
