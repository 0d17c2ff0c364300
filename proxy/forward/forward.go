// Package forward is the request path of the net/http listeners: it routes a
// request, picks a cluster and a host, sends the request upstream and streams
// the response back, headers, body and trailers, as they arrive.
//
// Everything a request needs (routes, clusters, balancers) was built when the
// config was loaded; ServeHTTP only reads it.
package forward

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/accesslog"
	"github.com/sightline-proxy/sightline/proxy/balancer"
	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/flags"
	"github.com/sightline-proxy/sightline/proxy/grpcproto"
	"github.com/sightline-proxy/sightline/proxy/h2"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/observe"
	"github.com/sightline-proxy/sightline/proxy/retry"
	"github.com/sightline-proxy/sightline/proxy/route"
	"github.com/sightline-proxy/sightline/proxy/upstream"
	"github.com/sightline-proxy/sightline/stats"
	"github.com/sightline-proxy/sightline/tracing"
)

const msgOverflow = "upstream connect error or disconnect/reset before headers. reset reason: overflow"

const (
	headerResponseFlags       = "X-Sightline-Response-Flags"
	headerUpstreamServiceTime = "X-Sightline-Upstream-Service-Time"
	headerOverridePrefix      = "X-Sightline-"
	headerRqTimeoutMs         = "X-Sightline-Upstream-Rq-Timeout-Ms"
)

// Handler forwards the requests of one listener. It is immutable once built
// and safe for concurrent use.
type Handler struct {
	// Routes is the route table the handler starts with; SetRoutes
	// replaces it.
	Routes *route.Table
	// TrustRequestHeaders honours x-sightline-* override headers from
	// clients; when false they are stripped before the request goes upstream.
	TrustRequestHeaders bool
	// TLS says whether the listener terminates TLS (for x-forwarded-proto).
	TLS bool
	// Stats are the listener's stats (http.<stat_prefix>.*).
	Stats *stats.HTTP
	// Observer decides request IDs and makes spans and access-log entries;
	// nil: none, and x-request-id passes through untouched.
	Observer *observe.Observer
	Log      zerolog.Logger

	live atomic.Pointer[route.Table] // set by SetRoutes
}

// SetRoutes replaces the route table (a config reload); requests already
// routed keep theirs.
func (h *Handler) SetRoutes(t *route.Table) { h.live.Store(t) }

func (h *Handler) routes() *route.Table {
	if t := h.live.Load(); t != nil {
		return t
	}
	return h.Routes
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// record is what one request's stats, span and access-log entry are told,
// filled in as the request goes.
type record struct {
	requestID  string
	traceID    string
	xff        string
	ctx        context.Context // the server span's, when tracing
	rt         *route.Route
	cl         *cluster.Cluster
	hst        *host.Host
	flags      flags.Flags
	grpcStatus int
	upStatus   int           // the upstream's status; 0: none
	upErr      error         // why the attempt got no response
	upTime     time.Duration // sending to response headers; -1: none
	rx         int64         // request body bytes read
	tx         int64         // response body bytes written
	cliSpan    tracing.Span
}

// ServeHTTP forwards one request and counts it in the listener's stats.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := h.Stats
	st.DownstreamRqTotal.Inc(1)
	st.DownstreamRqActive.Inc()
	rec := record{grpcStatus: -1, upTime: -1}
	status := 0
	var srvSpan tracing.Span
	if obs := h.Observer; obs != nil {
		rec.requestID = obs.RequestID(r.Header.Get("X-Request-Id"))
		if rec.requestID != "" && obs.SetInResponse() {
			w.Header()["X-Request-Id"] = []string{rec.requestID}
		}
		if obs.Tracing() {
			rec.ctx, srvSpan = obs.Tracer().StartServer(r.Context(), tracing.HTTPHeader(r.Header), h.traceRequest(r, &rec))
			rec.traceID = srvSpan.TraceID()
		} else {
			rec.traceID = observe.TraceIDFromTraceparent(r.Header.Get("Traceparent"))
		}
		if obs.Logging() && r.Body != nil && r.Body != http.NoBody {
			r.Body = &countingBody{ReadCloser: r.Body, n: &rec.rx}
		}
	}
	defer func() {
		elapsed := time.Since(start)
		if status == 0 && rec.upStatus != 0 {
			status = rec.upStatus // the response began, then was reset
		}
		logged := status
		if status == 0 {
			status = 499 // the client went away (DC)
		}
		st.DownstreamRqActive.Dec()
		st.RqCompleted(status)
		st.DownstreamRqTime.RecordDuration(elapsed)
		if h.Observer != nil {
			h.observeEnd(r, &rec, srvSpan, start, logged, elapsed)
		}
	}()
	status = h.serve(w, r, &rec)
}

// traceRequest describes r for a span.
func (h *Handler) traceRequest(r *http.Request, rec *record) tracing.Request {
	return tracing.Request{
		Method: r.Method, Path: r.URL.RequestURI(), Authority: r.Host,
		GRPC: grpcproto.IsGRPC(r.Header.Get("Content-Type")), RequestID: rec.requestID,
	}
}

// observeEnd ends the request's spans and writes its access-log entry.
// status is what the client got (0: nothing).
func (h *Handler) observeEnd(r *http.Request, rec *record, srvSpan tracing.Span, start time.Time, status int, elapsed time.Duration) {
	obs := h.Observer
	if status == 0 && r.Context().Err() != nil {
		rec.flags |= flags.DownstreamConnectionTerm
	}
	upstreamCluster, upstreamHost, upstreamZone := "", "", ""
	if rec.hst != nil {
		upstreamCluster, upstreamHost, upstreamZone = rec.cl.Name, rec.hst.Address, rec.hst.Zone
	}
	if obs.Tracing() {
		res := tracing.Result{
			HTTPStatus: rec.upStatus, GRPCStatus: rec.grpcStatus, HasGRPCStatus: rec.grpcStatus >= 0,
			ResponseFlags: rec.flags.String(), Err: rec.upErr,
		}
		if rec.hst != nil {
			rec.cliSpan.End(res)
		}
		res.HTTPStatus, res.Err = status, nil
		res.Cluster, res.Host, res.Zone = upstreamCluster, upstreamHost, upstreamZone
		srvSpan.End(res)
	}
	if !obs.Logging() {
		return
	}
	var e accesslog.Entry
	e.Reset()
	e.StartTime = start
	e.Method = r.Method
	e.Authority = r.Host
	e.Path = r.URL.Path
	e.Protocol = r.Proto
	e.ResponseCode = status
	e.GRPCStatus = rec.grpcStatus
	e.ResponseFlags = rec.flags.String()
	e.BytesReceived = rec.rx
	e.BytesSent = rec.tx
	e.Duration = elapsed
	e.UpstreamServiceTime = rec.upTime
	e.UpstreamHost, e.UpstreamCluster, e.UpstreamZone = upstreamHost, upstreamCluster, upstreamZone
	if rec.rt != nil {
		e.RouteName = rec.rt.Name
	}
	if rec.hst != nil {
		e.Attempts = 1
	}
	e.RequestID = rec.requestID
	e.TraceID = rec.traceID
	e.DownstreamRemoteAddress = r.RemoteAddr
	e.XForwardedFor = rec.xff
	e.UserAgent = r.UserAgent()
	e.HealthCheck = observe.IsHealthCheck(r.URL.Path, e.UserAgent)
	obs.Log(&e)
}

// countingBody counts the request body bytes the upstream read.
type countingBody struct {
	io.ReadCloser
	n *int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	*b.n += int64(n)
	return n, err
}

// serve forwards one request and returns the HTTP status the client got.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, rec *record) int {
	grpc := grpcproto.IsGRPC(r.Header.Get("Content-Type"))
	rt := h.routes().Match(r.Host, r.URL.Path, r.Header)
	if rt == nil {
		h.Stats.NoRoute.Inc(1)
		if grpc {
			rec.grpcStatus = grpcproto.Unimplemented
			return h.fail(w, rec, true, 0, grpcproto.Unimplemented, "no route for "+r.URL.Path, flags.NoRoute)
		}
		return h.fail(w, rec, false, http.StatusNotFound, 0, "no route", flags.NoRoute)
	}
	rec.rt = rt
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
	if !cl.Breakers.TryRequest() {
		if grpc {
			rec.grpcStatus = grpcproto.Unavailable
		}
		return h.fail(w, rec, grpc, http.StatusServiceUnavailable, grpcproto.Unavailable, msgOverflow, flags.UpstreamOverflow)
	}
	defer cl.Breakers.DoneRequest()
	hst := cl.Pick(&br)
	if hst == nil {
		if grpc {
			rec.grpcStatus = grpcproto.Unavailable
		}
		return h.fail(w, rec, grpc, http.StatusServiceUnavailable, grpcproto.Unavailable, "no healthy upstream", flags.NoHealthyUpstream)
	}

	pol := h.retryPolicy(rt, r)
	mirror := rt.MirrorChosen()
	var body []byte // the whole request body, when kept for retries or the mirror
	if pol.On != 0 || mirror {
		body = keepBody(r)
	}
	if mirror && body != nil {
		go h.sendMirror(rt.Mirror, br, r, body, rt.Timeout)
	}

	// Attempts: the first, then a retry for each retriable outcome while
	// the policy, the deadline and the max_retries breaker allow.
	var (
		resp  *http.Response
		err   error
		o     cluster.Outcome
		sent  time.Time
		tried []*host.Host // hosts that failed an attempt, avoided by retries
	)
	for tries := 1; ; tries++ {
		rec.cl, rec.hst = cl, hst
		o = cluster.Outcome{GRPC: grpc, GRPCStatus: -1, Path: r.URL.Path}
		var perTryFired bool
		sent, resp, err, perTryFired = h.attempt(ctx, r, rec, cl, hst, grpc, body, pol.PerTryTimeout)
		ro := retry.Outcome{GRPCStatus: -1, PerTryTimeout: perTryFired}
		switch {
		case err == nil:
			ro.HTTPStatus = resp.StatusCode
			if grpc {
				ro.GRPCStatus = grpcproto.StatusOf(resp.Header) // trailers-only
			}
		case errors.Is(err, upstream.ErrConnect):
			ro.ConnectFailure = true
		case ctx.Err() == nil && !perTryFired:
			ro.Reset = true
		}
		retriable := body != nil && r.Context().Err() == nil && ctx.Err() == nil && pol.Retriable(ro)
		if retriable && tries > pol.NumRetries {
			rec.flags |= flags.UpstreamRetryLimit
			retriable = false
		}
		if !retriable || !cl.Breakers.TryRetry() {
			if tries > 1 {
				defer cl.Breakers.DoneRetry()
			}
			if perTryFired {
				cl.Stats.Upstream().RqPerTryTimeout.Inc(1)
				o.Status, o.Timeout = http.StatusGatewayTimeout, true
				o.Elapsed = time.Since(sent)
				cl.End(hst, &o)
				rec.endClientSpan(o.Status, o.GRPCStatus, err)
				if grpc {
					rec.grpcStatus = grpcproto.DeadlineExceeded
				}
				return h.fail(w, rec, grpc, http.StatusGatewayTimeout, grpcproto.DeadlineExceeded, "upstream request timeout", flags.UpstreamRequestTimeout)
			}
			if tries > 1 && err == nil && resp.StatusCode < 500 {
				cl.Stats.Upstream().RqRetrySuccess.Inc(1)
			}
			break
		}
		// Settle the failed attempt, wait, and go again elsewhere.
		if err == nil {
			resp.Body.Close()
			o.Status, o.GRPCStatus = resp.StatusCode, ro.GRPCStatus
		} else {
			o.Status, o.ConnectFailure, o.Reset, o.Timeout = http.StatusServiceUnavailable, ro.ConnectFailure, ro.Reset, perTryFired
		}
		if perTryFired {
			cl.Stats.Upstream().RqPerTryTimeout.Inc(1)
		}
		o.Elapsed = time.Since(sent)
		cl.End(hst, &o)
		rec.endClientSpan(o.Status, o.GRPCStatus, err)
		if tries > 1 {
			cl.Breakers.DoneRetry()
		}
		cl.Stats.Upstream().RqRetry.Inc(1)
		t := time.NewTimer(pol.Backoff(tries, nil))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		tried = append(tried, hst)
		hst = cl.PickRetry(&br, tried)
		if hst == nil {
			cl.Breakers.DoneRetry()
			return h.fail(w, rec, grpc, http.StatusServiceUnavailable, grpcproto.Unavailable, "no healthy upstream", flags.NoHealthyUpstream)
		}
	}
	defer func() {
		o.Elapsed = time.Since(sent)
		cl.End(hst, &o)
	}()
	if err != nil {
		return h.upstreamFailed(w, r, ctx, grpc, err, &o, rec)
	}
	defer resp.Body.Close()
	// The deadline must also end a response that is streaming: net/http's
	// client watches the request's context only until the request body is
	// sent, and a bidi call's client may never half-close.
	stop := context.AfterFunc(ctx, func() { resp.Body.Close() })
	defer stop()

	rec.upTime = time.Since(sent)
	dst := w.Header()
	copyHeader(dst, resp.Header)
	dst[headerUpstreamServiceTime] = []string{strconv.FormatInt(rec.upTime.Milliseconds(), 10)}
	if rec.requestID != "" && h.Observer.SetInResponse() {
		dst["X-Request-Id"] = []string{rec.requestID}
	}
	w.WriteHeader(resp.StatusCode)
	o.Status, rec.upStatus = resp.StatusCode, resp.StatusCode
	if grpc {
		o.GRPCStatus = grpcproto.StatusOf(resp.Header)
		rec.grpcStatus = o.GRPCStatus
	}

	n, err := streamBody(w, resp.Body)
	rec.tx = n
	if err != nil {
		switch {
		case r.Context().Err() != nil:
			// The client went away; its stream is gone.
			rec.flags |= flags.DownstreamConnectionTerm
		case ctx.Err() != nil && grpc:
			o.Timeout, o.GRPCStatus = true, grpcproto.DeadlineExceeded
			rec.grpcStatus, rec.flags = o.GRPCStatus, rec.flags|flags.UpstreamRequestTimeout
			setGRPCTrailerStatus(w, grpcproto.DeadlineExceeded, "upstream request timeout", flags.UpstreamRequestTimeout.String())
		default:
			// The upstream reset mid-response: reset the client's stream
			// too rather than pretend the response ended well.
			o.Reset, o.Status = true, http.StatusServiceUnavailable
			rec.flags |= flags.UpstreamRemoteReset
			panic(http.ErrAbortHandler)
		}
		return o.Status
	}
	for k, vs := range resp.Trailer {
		dst[http.TrailerPrefix+k] = vs
	}
	if grpc && o.GRPCStatus < 0 {
		o.GRPCStatus = grpcproto.StatusOf(resp.Trailer)
		rec.grpcStatus = o.GRPCStatus
	}
	return o.Status
}

// attempt sends the request to hst once. The per-try timeout, when set,
// bounds the wait for the response headers; perTryFired says it ended the
// attempt.
func (h *Handler) attempt(ctx context.Context, r *http.Request, rec *record, cl *cluster.Cluster, hst *host.Host, grpc bool, body []byte, perTry time.Duration) (sent time.Time, resp *http.Response, err error, perTryFired bool) {
	actx := ctx
	var timer *time.Timer
	var fired atomic.Bool
	if perTry > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithCancel(ctx)
		timer = time.AfterFunc(perTry, func() { fired.Store(true); cancel() })
		// The attempt's context must outlive this function while the
		// response streams; it ends with ctx.
		context.AfterFunc(ctx, cancel)
	}
	pool := hst.Upstream.(*h2.Upstream).HTTP
	out := h.outbound(actx, r, hst.Address, rec)
	if body != nil {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.ContentLength = int64(len(body))
		if len(body) == 0 {
			out.Body = http.NoBody
		}
	}
	if h.Observer.Tracing() {
		_, rec.cliSpan = h.Observer.Tracer().StartClient(rec.ctx, tracing.HTTPHeader(out.Header), tracing.Request{
			Method: r.Method, Path: r.URL.RequestURI(), Authority: r.Host, GRPC: grpc, RequestID: rec.requestID,
			Cluster: cl.Name, Host: hst.Address, Zone: hst.Zone,
		})
	}
	sent = time.Now()
	cl.Begin(hst)
	if cl.Protocol == cluster.HTTP2 || (cl.Protocol == cluster.Auto && r.ProtoMajor == 2) {
		resp, err = pool.RoundTripH2(out)
	} else {
		resp, err = pool.RoundTripH1(out)
	}
	if timer != nil && !timer.Stop() && fired.Load() {
		if err == nil {
			resp.Body.Close()
			resp = nil
		}
		return sent, nil, context.DeadlineExceeded, true
	}
	return sent, resp, err, false
}

// retryPolicy is the route's retry policy with the override headers of a
// trusting listener applied.
func (h *Handler) retryPolicy(rt *route.Route, r *http.Request) retry.Policy {
	var pol retry.Policy
	if rt.Retry != nil {
		pol = *rt.Retry
	}
	if h.TrustRequestHeaders {
		maxRetries, perTry := r.Header.Get(retry.HeaderMaxRetries), r.Header.Get(retry.HeaderPerTryTimeout)
		if maxRetries != "" || perTry != "" {
			if o, err := retry.ParseOverrides(maxRetries, perTry); err == nil {
				pol = rt.Retry.With(o)
			}
		}
	}
	return pol
}

// maxKeptBody bounds the request body kept for retries and the mirror, as
// Envoy's per-request buffer limit does.
const maxKeptBody = 64 << 10

// keepBody reads the whole request body when it is at most maxKeptBody,
// for retries and the mirror, and returns it (empty, not nil, for no
// body). A larger body is left to stream as it is, unkept: nil.
func keepBody(r *http.Request) []byte {
	if r.Body == nil || r.Body == http.NoBody {
		return []byte{}
	}
	if r.ContentLength > maxKeptBody {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxKeptBody+1))
	if err != nil || len(b) > maxKeptBody {
		// Give the upstream what was read, then the rest, as one body.
		r.Body = readCloser{io.MultiReader(bytes.NewReader(b), r.Body), r.Body}
		return nil
	}
	return b
}

type readCloser struct {
	io.Reader
	io.Closer
}

// endClientSpan ends the CLIENT span of an attempt.
func (rec *record) endClientSpan(status, grpcStatus int, err error) {
	res := tracing.Result{GRPCStatus: grpcStatus, HasGRPCStatus: grpcStatus >= 0, ResponseFlags: rec.flags.String(), Err: err}
	if err == nil {
		res.HTTPStatus = status
	}
	rec.cliSpan.End(res)
	rec.cliSpan = tracing.Span{}
}

// outbound builds the upstream request: same method, path, query and body,
// hop-by-hop headers removed, x-forwarded-for appended.
func (h *Handler) outbound(ctx context.Context, r *http.Request, addr string, rec *record) *http.Request {
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
		rec.xff = hdr["X-Forwarded-For"][0]
	}
	if h.Observer != nil {
		// The id the proxy decided replaces the client's.
		delete(hdr, "X-Request-Id")
		if rec.requestID != "" {
			hdr["X-Request-Id"] = []string{rec.requestID}
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
// why in o and rec.
func (h *Handler) upstreamFailed(w http.ResponseWriter, r *http.Request, ctx context.Context, grpc bool, err error, o *cluster.Outcome, rec *record) int {
	rec.upErr = err
	switch {
	case r.Context().Err() != nil:
		// Downstream disconnect (DC): nobody to answer. Envoy logs 499 for it.
		o.Status = 499
		rec.flags |= flags.DownstreamConnectionTerm
		return 0
	case ctx.Err() == context.DeadlineExceeded:
		o.Status, o.Timeout = http.StatusGatewayTimeout, true
		if grpc {
			o.GRPCStatus = grpcproto.DeadlineExceeded
			rec.grpcStatus = o.GRPCStatus
		}
		return h.fail(w, rec, grpc, http.StatusGatewayTimeout, grpcproto.DeadlineExceeded, "upstream request timeout", flags.UpstreamRequestTimeout)
	case errors.Is(err, upstream.ErrConnect):
		h.Log.Debug().Err(err).Msg("upstream connect failure")
		o.Status, o.ConnectFailure, o.GRPCStatus = http.StatusServiceUnavailable, true, grpcproto.Unavailable
		if grpc {
			rec.grpcStatus = grpcproto.Unavailable
		}
		return h.fail(w, rec, grpc, http.StatusServiceUnavailable, grpcproto.Unavailable,
			"upstream connect error or disconnect/reset before headers. reset reason: connection failure", flags.UpstreamConnectFailure)
	default:
		h.Log.Debug().Err(err).Msg("upstream reset before headers")
		o.Status, o.Reset, o.GRPCStatus = http.StatusServiceUnavailable, true, grpcproto.Unavailable
		if grpc {
			rec.grpcStatus = grpcproto.Unavailable
		}
		return h.fail(w, rec, grpc, http.StatusServiceUnavailable, grpcproto.Unavailable,
			"upstream connect error or disconnect/reset before headers. reset reason: remote reset", flags.UpstreamRemoteReset)
	}
}

// fail answers with an error the proxy made itself, gRPC-shaped for gRPC
// clients, records its flag and returns the HTTP status sent.
func (h *Handler) fail(w http.ResponseWriter, rec *record, grpc bool, status, grpcCode int, msg string, f flags.Flags) int {
	rec.flags |= f
	if grpc {
		return writeGRPCError(w, grpcCode, msg, f.String())
	}
	body := msg + "\n"
	rec.tx = int64(len(body))
	hdr := w.Header()
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	hdr.Set(headerResponseFlags, f.String())
	w.WriteHeader(status)
	io.WriteString(w, body)
	return status
}

// streamBody copies the response body, flushing after every read so that
// streamed messages reach the client at once. It returns the bytes written.
func streamBody(w http.ResponseWriter, body io.Reader) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	rc := http.NewResponseController(w)
	var total int64
	for {
		n, err := body.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
			if ferr := rc.Flush(); ferr != nil {
				return total, ferr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
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
