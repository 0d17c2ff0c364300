// Package forward is the request path of the net/http listeners: it routes a
// request, picks a cluster and a host, sends the request upstream and streams
// the response back, headers, body and trailers, as they arrive.
//
// Everything a request needs (routes, clusters, balancers) was built when the
// config was loaded; ServeHTTP only reads it.
package forward

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/grpcproto"
	"github.com/sightline-proxy/sightline/proxy/h2"
	"github.com/sightline-proxy/sightline/proxy/route"
	"github.com/sightline-proxy/sightline/proxy/upstream"
	"github.com/sightline-proxy/sightline/stats"
)

const (
	headerResponseFlags       = "X-Sightline-Response-Flags"
	headerUpstreamServiceTime = "X-Sightline-Upstream-Service-Time"
	headerOverridePrefix      = "X-Sightline-"
	headerRqTimeoutMs         = "X-Sightline-Upstream-Rq-Timeout-Ms"
)

// Handler forwards the requests of one listener. It is immutable once built
// and safe for concurrent use.
type Handler struct {
	Routes *route.Table
	// TrustRequestHeaders honours x-sightline-* override headers from
	// clients; when false they are stripped before the request goes upstream.
	TrustRequestHeaders bool
	// TLS says whether the listener terminates TLS (for x-forwarded-proto).
	TLS bool
	// Stats are the listener's stats (http.<stat_prefix>.*).
	Stats *stats.HTTP
	Log   zerolog.Logger
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// ServeHTTP forwards one request and counts it in the listener's stats.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := h.Stats
	st.DownstreamRqTotal.Inc(1)
	st.DownstreamRqActive.Inc()
	status := http.StatusOK
	defer func() {
		st.DownstreamRqActive.Dec()
		st.RqCompleted(status)
		st.DownstreamRqTime.RecordDuration(time.Since(start))
	}()
	status = h.serve(w, r)
}

// serve forwards one request and returns the HTTP status the client got.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request) int {
	grpc := grpcproto.IsGRPC(r.Header.Get("Content-Type"))
	rt := h.Routes.Match(r.Host, r.URL.Path, r.Header)
	if rt == nil {
		h.Stats.NoRoute.Inc(1)
		if grpc {
			return writeGRPCError(w, grpcproto.Unimplemented, "no route for "+r.URL.Path, FlagNoRoute.String())
		}
		return localReply(w, http.StatusNotFound, "no route\n", FlagNoRoute)
	}
	cl := rt.Cluster()

	timeout := rt.Timeout
	if h.TrustRequestHeaders {
		if v := r.Header.Get(headerRqTimeoutMs); v != "" {
			if ms, err := strconv.Atoi(v); err == nil && ms >= 0 {
				timeout = time.Duration(ms) * time.Millisecond
			}
		}
	}
	if grpc {
		if d, ok := grpcproto.ParseTimeout(r.Header.Get("Grpc-Timeout")); ok && (timeout == 0 || d < timeout) {
			timeout = d
		}
	}
	ctx := r.Context()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}

	var br balancer.Request
	if rt.HashHeader != "" {
		if v := r.Header[rt.HashHeader]; len(v) > 0 {
			br.Hash, br.HasHash = xxhash.Sum64String(v[0]), true
		}
	}
	hst := cl.Pick(&br)
	if hst == nil {
		return h.fail(w, grpc, http.StatusServiceUnavailable, grpcproto.Unavailable, "no healthy upstream", FlagNoHealthyUpstream)
	}
	pool := hst.Upstream.(*h2.Upstream).HTTP

	out := h.outbound(ctx, r, hst.Address)
	sent := time.Now()
	o := cluster.Outcome{GRPC: grpc, GRPCStatus: -1, Path: r.URL.Path}
	cl.Begin(hst)
	defer func() {
		o.Elapsed = time.Since(sent)
		cl.End(hst, &o)
	}()

	var resp *http.Response
	var err error
	if cl.Protocol == cluster.HTTP2 || (cl.Protocol == cluster.Auto && r.ProtoMajor == 2) {
		resp, err = pool.RoundTripH2(out)
	} else {
		resp, err = pool.RoundTripH1(out)
	}
	if err != nil {
		return h.upstreamFailed(w, r, ctx, grpc, err, &o)
	}
	defer resp.Body.Close()
	// The deadline must also end a response that is streaming: net/http's
	// client watches the request's context only until the request body is
	// sent, and a bidi call's client may never half-close.
	stop := context.AfterFunc(ctx, func() { resp.Body.Close() })
	defer stop()

	dst := w.Header()
	copyHeader(dst, resp.Header)
	dst[headerUpstreamServiceTime] = []string{strconv.FormatInt(time.Since(sent).Milliseconds(), 10)}
	w.WriteHeader(resp.StatusCode)
	o.Status = resp.StatusCode
	if grpc {
		o.GRPCStatus = grpcStatus(resp.Header)
	}

	if err := streamBody(w, resp.Body); err != nil {
		switch {
		case r.Context().Err() != nil:
			// The client went away; its stream is gone.
		case ctx.Err() != nil && grpc:
			o.Timeout, o.GRPCStatus = true, grpcproto.DeadlineExceeded
			setGRPCTrailerStatus(w, grpcproto.DeadlineExceeded, "upstream request timeout", FlagUpstreamRequestTimeout.String())
		default:
			// The upstream reset mid-response: reset the client's stream
			// too rather than pretend the response ended well.
			o.Reset, o.Status = true, http.StatusServiceUnavailable
			panic(http.ErrAbortHandler)
		}
		return o.Status
	}
	for k, vs := range resp.Trailer {
		dst[http.TrailerPrefix+k] = vs
	}
	if grpc && o.GRPCStatus < 0 {
		o.GRPCStatus = grpcStatus(resp.Trailer)
	}
	return o.Status
}

// grpcStatus reads grpc-status from headers or trailers; -1 when absent.
func grpcStatus(h http.Header) int {
	v := h["Grpc-Status"]
	if len(v) == 0 {
		return -1
	}
	n, err := strconv.Atoi(v[0])
	if err != nil {
		return -1
	}
	return n
}

// outbound builds the upstream request: same method, path, query and body,
// hop-by-hop headers removed, x-forwarded-for appended.
func (h *Handler) outbound(ctx context.Context, r *http.Request, addr string) *http.Request {
	hdr := make(http.Header, len(r.Header)+2)
	copyHeader(hdr, r.Header)
	if !h.TrustRequestHeaders {
		for k := range hdr {
			if strings.HasPrefix(k, headerOverridePrefix) {
				delete(hdr, k)
			}
		}
	}
	if te := r.Header.Get("Te"); strings.EqualFold(te, "trailers") {
		hdr["Te"] = []string{"trailers"}
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := hdr["X-Forwarded-For"]; len(prior) > 0 {
			hdr["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + ip}
		} else {
			hdr["X-Forwarded-For"] = []string{ip}
		}
	}
	if _, ok := hdr["X-Forwarded-Proto"]; !ok {
		proto := "http"
		if h.TLS {
			proto = "https"
		}
		hdr["X-Forwarded-Proto"] = []string{proto}
	}
	body := r.Body
	if r.ContentLength == 0 {
		body = http.NoBody
	}
	out := &http.Request{
		Method:        r.Method,
		URL:           &url.URL{Scheme: "http", Host: addr, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery},
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        hdr,
		Body:          body,
		ContentLength: r.ContentLength,
		Host:          r.Host,
	}
	return out.WithContext(ctx)
}

// upstreamFailed answers when no response came from upstream, and records
// why in o.
func (h *Handler) upstreamFailed(w http.ResponseWriter, r *http.Request, ctx context.Context, grpc bool, err error, o *cluster.Outcome) int {
	switch {
	case r.Context().Err() != nil:
		// Downstream disconnect (DC): nobody to answer. Envoy logs 499 for it.
		o.Status = 499
		return o.Status
	case ctx.Err() == context.DeadlineExceeded:
		o.Status, o.Timeout = http.StatusGatewayTimeout, true
		if grpc {
			o.GRPCStatus = grpcproto.DeadlineExceeded
			return writeGRPCError(w, grpcproto.DeadlineExceeded, "upstream request timeout", FlagUpstreamRequestTimeout.String())
		}
		return localReply(w, http.StatusGatewayTimeout, "upstream request timeout\n", FlagUpstreamRequestTimeout)
	case errors.Is(err, upstream.ErrConnect):
		h.Log.Debug().Err(err).Msg("upstream connect failure")
		o.Status, o.ConnectFailure, o.GRPCStatus = http.StatusServiceUnavailable, true, grpcproto.Unavailable
		return h.fail(w, grpc, http.StatusServiceUnavailable, grpcproto.Unavailable,
			"upstream connect error or disconnect/reset before headers. reset reason: connection failure", FlagUpstreamConnectFailure)
	default:
		h.Log.Debug().Err(err).Msg("upstream reset before headers")
		o.Status, o.Reset, o.GRPCStatus = http.StatusServiceUnavailable, true, grpcproto.Unavailable
		return h.fail(w, grpc, http.StatusServiceUnavailable, grpcproto.Unavailable,
			"upstream connect error or disconnect/reset before headers. reset reason: remote reset", FlagUpstreamRemoteReset)
	}
}

// fail answers with an error the proxy made itself, gRPC-shaped for gRPC
// clients, and returns the HTTP status sent.
func (h *Handler) fail(w http.ResponseWriter, grpc bool, status, grpcCode int, msg string, f Flags) int {
	if grpc {
		return writeGRPCError(w, grpcCode, msg, f.String())
	}
	return localReply(w, status, msg+"\n", f)
}

func localReply(w http.ResponseWriter, status int, body string, f Flags) int {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set(headerResponseFlags, f.String())
	w.WriteHeader(status)
	io.WriteString(w, body)
	return status
}

// streamBody copies the response body, flushing after every read so that
// streamed messages reach the client at once.
func streamBody(w http.ResponseWriter, body io.Reader) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	rc := http.NewResponseController(w)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if ferr := rc.Flush(); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// hopHeaders are the connection-specific headers a proxy must not forward
// (RFC 9110 §7.6.1, RFC 9113 §8.2.2). Te is handled on its own: only
// "te: trailers" goes upstream, since gRPC servers require it.
var hopHeaders = map[string]bool{
	"Connection":          true,
	"Proxy-Connection":    true,
	"Keep-Alive":          true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

// copyHeader copies src into dst without hop-by-hop headers, including the
// ones an HTTP/1.1 peer named in its Connection header.
func copyHeader(dst, src http.Header) {
	conn := src["Connection"]
	for k, vs := range src {
		if hopHeaders[k] || namedInConnection(conn, k) {
			continue
		}
		dst[k] = vs
	}
}

func namedInConnection(conn []string, k string) bool {
	for _, v := range conn {
		for _, f := range strings.Split(v, ",") {
			if http.CanonicalHeaderKey(strings.TrimSpace(f)) == k {
				return true
			}
		}
	}
	return false
}
