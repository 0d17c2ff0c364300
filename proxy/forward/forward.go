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
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/accesslog"
	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/flags"
	"github.com/sightline-proxy/sightline/proxy/grpcproto"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/observe"
	"github.com/sightline-proxy/sightline/proxy/overload"
	"github.com/sightline-proxy/sightline/proxy/ratelimit"
	"github.com/sightline-proxy/sightline/proxy/route"
	"github.com/sightline-proxy/sightline/proxy/router"
	"github.com/sightline-proxy/sightline/proxy/upstream"
	"github.com/sightline-proxy/sightline/stats"
	"github.com/sightline-proxy/sightline/tracing"
)

const (
	headerResponseFlags       = "X-Sightline-Response-Flags"
	headerUpstreamServiceTime = "X-Sightline-Upstream-Service-Time"
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
	// Overload is the process's overload manager, whose
	// stop_accepting_requests action the handler honours; nil: none.
	Overload *overload.Manager
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
	call       router.Call
	requestID  string
	traceID    string
	xff        string
	ctx        context.Context // the server span's, when tracing
	flags      flags.Flags
	grpcStatus int           // what the client got; -1: none
	upStatus   int           // the upstream's status; 0: none
	upErr      error         // why the attempt got no response
	upTime     time.Duration // sending to response headers; -1: none
	rx         atomic.Int64  // request body bytes read (by the transport's goroutine)
	reqMsgs    atomic.Int64  // gRPC request messages read, likewise
	respMsgs   int64         // gRPC response messages written
	tx         int64         // response body bytes written
	cliSpan    tracing.Span
	outcome    router.Outcome
	info       informational         // 1xx responses of HTTP/1.1 upstreams
	trace      httptrace.ClientTrace // hands them to info
	upgrade    string                // the protocol an Upgrade request asks for; "": none
	idle       idleWatch             // the stream idle timeout
}

// ServeHTTP forwards one request and counts it once, on the listener and
// on its cluster.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := h.Stats
	st.DownstreamRqTotal.Inc(1)
	if r.ProtoMajor == 2 {
		st.DownstreamRqHTTP2Total.Inc(1)
	} else {
		st.DownstreamRqHTTP1Total.Inc(1)
	}
	st.DownstreamRqActive.Inc()
	rec := &record{grpcStatus: -1, upTime: -1}
	rec.outcome.GRPCStatus = -1
	var srvSpan tracing.Span
	if obs := h.Observer; obs != nil {
		rec.requestID = obs.RequestID(r.Header.Get("X-Request-Id"))
		if rec.requestID != "" && obs.SetInResponse() {
			w.Header()["X-Request-Id"] = []string{rec.requestID}
		}
		if obs.Tracing() {
			rec.ctx, srvSpan = obs.Tracer().StartServer(r.Context(), tracing.HTTPHeader(r.Header), h.traceRequest(r, rec))
			rec.traceID = srvSpan.TraceID()
		} else {
			rec.traceID = observe.TraceIDFromTraceparent(r.Header.Get("Traceparent"))
		}
	}
	rc := http.NewResponseController(w)
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &countingBody{ReadCloser: r.Body, n: &rec.rx, grpc: grpcproto.IsGRPC(r.Header.Get("Content-Type")), msgs: &rec.reqMsgs, idle: &rec.idle}
		// net/http's HTTP/1.1 server throws away what is left of the
		// request body when the response starts, unless the handler
		// reads and writes at once: an upload still going when the
		// upstream answers early (an echo, a stream) lost its middle
		// and reached the upstream as a clean, short body.
		rc.EnableFullDuplex()
	}
	status := 0
	defer func() {
		elapsed := time.Since(start)
		if status == 0 && rec.upStatus != 0 {
			status = rec.upStatus // the response began, then was reset
		}
		if r.Context().Err() != nil && (status == 0 || rec.flags.Has(flags.DownstreamConnectionTerm)) {
			// The client went away before its response was complete
			// (DC): Envoy charges no code for it.
			rec.flags |= flags.DownstreamConnectionTerm
			rec.outcome.End = router.EndCancelled
			st.DownstreamRqRxReset.Inc(1)
		} else if status != 0 {
			st.DownstreamRqCompleted.Inc(1)
		}
		rec.call.RequestMessages, rec.call.ResponseMessages = rec.reqMsgs.Load(), rec.respMsgs
		rec.call.Trace = stats.TraceID(srvSpan.Sampled())
		rec.call.Finish(&rec.outcome)
		st.DownstreamRqActive.Dec()
		if !rec.flags.Has(flags.DownstreamConnectionTerm) {
			st.RqCompleted(status)
		}
		st.DownstreamRqTime.RecordTraced(elapsed, rec.call.Trace)
		if h.Observer != nil {
			h.observeEnd(r, rec, srvSpan, start, status, elapsed)
		}
	}()
	status = h.serve(w, rc, r, rec)
}

// traceRequest describes r for a span.
func (h *Handler) traceRequest(r *http.Request, rec *record) tracing.Request {
	return tracing.Request{
		Method: r.Method, Path: r.URL.RequestURI(), Authority: r.Host,
		GRPC: grpcproto.IsGRPC(r.Header.Get("Content-Type")), RequestID: rec.requestID,
		Scheme: requestScheme(r),
	}
}

// requestScheme is the scheme the client used: https over TLS.
func requestScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// observeEnd ends the request's spans and writes its access-log entry.
// status is what the client got (0: nothing).
func (h *Handler) observeEnd(r *http.Request, rec *record, srvSpan tracing.Span, start time.Time, status int, elapsed time.Duration) {
	c := &rec.call
	if h.Observer.Tracing() && rec.cliSpan != (tracing.Span{}) {
		rec.endClientSpan(rec.upStatus, rec.grpcStatus, rec.upErr)
	}
	var e accesslog.Entry
	e.Reset()
	e.StartTime = start
	e.Method = r.Method
	e.Authority = r.Host
	e.Path = r.URL.Path
	e.PathQuery = r.RequestURI
	e.Protocol = r.Proto
	e.ResponseCode = status
	e.GRPCStatus = rec.grpcStatus
	e.ResponseFlags = rec.flags.String()
	e.BytesReceived = rec.rx.Load()
	e.BytesSent = rec.tx
	e.Duration = elapsed
	e.UpstreamServiceTime = rec.upTime
	if hst := c.Host; hst != nil {
		e.UpstreamHost, e.UpstreamCluster, e.UpstreamZone = hst.Address, c.Cluster.Name, hst.Zone
	}
	if c.Route != nil {
		e.RouteName = c.Route.Name
	}
	e.Attempts = c.Tries
	e.RequestID = rec.requestID
	e.TraceID = rec.traceID
	e.DownstreamRemoteAddress = r.RemoteAddr
	e.XForwardedFor = rec.xff
	e.UserAgent = r.UserAgent()
	h.Observer.End(&e, srvSpan)
}

// countingBody counts the request body bytes the upstream read and, for
// gRPC, its messages. The transport reads on its own goroutine, so the
// counts are atomic.
type countingBody struct {
	io.ReadCloser
	n    *atomic.Int64
	grpc bool
	mc   grpcproto.MessageCounter // fed by the reading goroutine only
	msgs *atomic.Int64
	idle *idleWatch
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	b.idle.touch()
	if err == io.EOF {
		b.idle.reqDone.Store(true)
	}
	if b.grpc && n > 0 {
		if m := b.mc.Feed(p[:n]); m > 0 {
			b.msgs.Add(int64(m))
		}
	}
	return n, err
}

// serve forwards one request and returns the HTTP status the client got.
// The policy (plan, breakers, attempts and retries, local replies) is the
// router's; serve drives it with net/http's calls.
func (h *Handler) serve(w http.ResponseWriter, rc *http.ResponseController, r *http.Request, rec *record) int {
	grpc := grpcproto.IsGRPC(r.Header.Get("Content-Type"))
	c := &rec.call
	c.GRPC, c.Path = grpc, r.URL.Path
	if shed, ok, held := router.Admit(h.Overload, h.Stats); !ok {
		return h.reply(w, r, rec, shed)
	} else if held {
		defer h.Overload.Release()
	}
	req := router.Request{Authority: r.Host, Path: r.URL.Path, Headers: route.HTTPHeaders(r.Header), GRPC: grpc, Trust: h.TrustRequestHeaders,
		Method: r.Method, RemoteAddr: r.RemoteAddr}
	if rp, ok := router.Decide(h.routes(), &req, &c.Plan); !ok {
		router.CountReply(h.Stats, rp)
		return h.reply(w, r, rec, rp)
	}
	// The global rate limit: this goroutine may wait for the service.
	if gc := router.NewGlobalCheck(&req, &c.Plan); gc != nil {
		if rp, refused := gc.Do(r.Context(), &c.Plan); refused {
			return h.reply(w, r, rec, rp)
		}
	}
	if up, ok := r.Header["Upgrade"]; ok && r.ProtoAtLeast(1, 1) {
		if rec.upgrade = router.UpgradeType(up, r.Header["Connection"]); rec.upgrade != "" {
			if status, msg := refuseUpgrade(c, r, rec.upgrade); status != 0 {
				return h.refuse(w, rec, status, msg)
			}
			// An upgrade is tried once and not mirrored: its bytes
			// cannot be replayed once the tunnel is up.
			c.Retry.On, c.Retry.NumRetries, c.Mirror = 0, 0, nil
		}
	}
	ctx := r.Context()
	if r.ProtoAtLeast(1, 1) && http1Upstream(c, r) {
		// net/http's transport hands 1xx responses to a trace hook,
		// and drops them without one. Two allocations per request
		// (the hook and the context), on HTTP/1.1 upstream calls only.
		rec.info.w = w
		rec.trace.Got1xxResponse = rec.info.got
		ctx = httptrace.WithClientTrace(ctx, &rec.trace)
	}
	deadline := c.Plan.Deadline(time.Now())
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	if d := c.Plan.IdleTimeout; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		if r.Body == nil || r.Body == http.NoBody {
			rec.idle.reqDone.Store(true)
		}
		rec.idle.start(d, cancel, rc)
		defer rec.idle.stop()
	}
	if !c.TryRequest() {
		rec.outcome.End = router.EndOverflow
		return h.reply(w, r, rec, router.ReplyOverflow)
	}
	hst := c.Pick()
	if hst == nil {
		rec.outcome.End = router.EndNoHealthy
		return h.reply(w, r, rec, router.ReplyNoHealthyUpstream)
	}
	// The mirror cluster's slot is claimed before the body is read for
	// the copy: a refused copy reads, copies and starts nothing, and the
	// body streams unless retries keep it.
	mirror := c.Mirror != nil && r.ContentLength <= maxKeptBody && router.TryMirror(c.Mirror, grpc, r.URL.Path)
	var body []byte // the whole request body, when kept for retries or the mirror
	if c.Retry.On != 0 || mirror {
		body = keepBody(r)
	}
	out := h.outbound(r, rec)
	if mirror {
		if body == nil {
			router.ReleaseMirror(c.Mirror) // too large to keep: not mirrored
		} else {
			m := &router.Mirror{
				Cluster: c.Mirror, Balance: c.Balance, Method: r.Method, Authority: r.Host,
				PathQuery: r.URL.RequestURI(), Path: r.URL.Path, Header: out.Header.Clone(), Body: body,
				GRPC: grpc, Timeout: c.Timeout, HTTP1: r.ProtoMajor == 1,
			}
			go m.Send()
		}
	}

	// Attempts: the first, then a retry for each retriable outcome while
	// the router allows.
	var (
		resp *http.Response
		err  error
		sent time.Time
		o    = &rec.outcome
	)
	try := func(hst *host.Host) router.Outcome {
		var perTry bool
		sent, resp, err, perTry = h.attempt(ctx, out, r, rec, hst, body)
		a := router.Outcome{GRPCStatus: -1}
		if err == nil {
			a.Status = resp.StatusCode
			if grpc {
				a.GRPCStatus = grpcproto.StatusOf(resp.Header) // trailers-only
			}
		} else {
			a.End = router.Classify(err, ctx, r.Context().Err() != nil, perTry)
		}
		a.Elapsed = time.Since(sent)
		return a
	}
	settle := func(a *router.Outcome) bool {
		if err == nil {
			resp.Body.Close()
		}
		rec.endClientSpan(a.Status, a.GRPCStatus, err)
		return true
	}
	var rp router.Reply
	var between bool
	c.Begin(hst)
	*o, rp, between = c.Run(ctx, deadline, func() bool { return body != nil }, hst, try, settle)
	rec.info.close() // the handler writes from here on
	rec.flags |= c.Flags
	if rec.idle.fired.Load() && (between || err != nil) {
		if err == nil && resp != nil {
			resp.Body.Close()
		}
		return h.idleReply(w, r, rec)
	}
	if between {
		if o.End == router.EndCancelled {
			return 0
		}
		return h.reply(w, r, rec, rp)
	}
	if err != nil {
		rec.upErr = err
		switch o.End {
		case router.EndCancelled:
			o.TxReset = true
			return 0 // nobody to answer
		case router.EndTimeout:
			o.TxReset = true
		}
		h.Log.Debug().Err(err).Msg("upstream request failed")
		return h.reply(w, r, rec, router.ReplyFor(o.End))
	}
	defer resp.Body.Close()
	rec.upTime = time.Since(sent)
	rec.idle.touch()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		rec.idle.stop() // a tunnel lasts until either side closes
		// The route's timeout bounded the handshake; the tunnel lasts
		// until either side closes.
		return h.tunnel(w, rc, rec, resp)
	}
	// The deadline must also end a response that is streaming: net/http's
	// client watches the request's context only until the request body is
	// sent, and a bidi call's client may never half-close.
	stop := context.AfterFunc(ctx, func() { resp.Body.Close() })
	defer stop()

	dst := w.Header()
	copyHeader(dst, resp.Header)
	if _, ok := resp.Header["Content-Type"]; !ok {
		// A nil value stops net/http from sniffing one: a type the
		// upstream did not send (text/html on an upload served back)
		// is an XSS waiting to happen.
		dst["Content-Type"] = nil
	}
	announceTrailers(dst, resp)
	dst[headerUpstreamServiceTime] = []string{strconv.FormatInt(rec.upTime.Milliseconds(), 10)}
	setRateLimitHeaders(dst, &c.Plan.RateLimit)
	addHeaders(dst, c.Plan.ResponseHeaders)
	if rec.requestID != "" && h.Observer.SetInResponse() {
		dst["X-Request-Id"] = []string{rec.requestID}
	}
	w.WriteHeader(resp.StatusCode)
	rec.upStatus = resp.StatusCode
	if grpc {
		rec.grpcStatus = o.GRPCStatus
	}

	var mc *grpcproto.MessageCounter
	if grpc {
		mc = new(grpcproto.MessageCounter)
	}
	n, err := streamBody(w, rc, resp.Body, mc, &rec.respMsgs, &rec.idle)
	rec.tx = n
	o.Elapsed = time.Since(sent)
	if err != nil {
		switch {
		case r.Context().Err() != nil:
			// The client went away; its stream is gone.
			rec.flags |= flags.DownstreamConnectionTerm
			o.TxReset = true
		case rec.idle.fired.Load():
			h.idleMidResponse(w, rc, rec, grpc)
		case ctx.Err() != nil && grpc:
			o.End, o.GRPCStatus, o.TxReset = router.EndTimeout, grpcproto.DeadlineExceeded, true
			rec.grpcStatus, rec.flags = o.GRPCStatus, rec.flags|flags.UpstreamRequestTimeout
			setGRPCTrailerStatus(w, grpcproto.DeadlineExceeded, "upstream request timeout", flags.UpstreamRequestTimeout.String())
		default:
			// The upstream reset mid-response: reset the client's stream
			// too rather than pretend the response ended well.
			o.RxReset = true
			rec.flags |= flags.UpstreamRemoteReset
			h.Stats.DownstreamRqTxReset.Inc(1)
			panic(http.ErrAbortHandler)
		}
		return resp.StatusCode
	}
	for k, vs := range resp.Trailer {
		dst[http.TrailerPrefix+k] = vs
	}
	if grpc && o.GRPCStatus < 0 {
		o.GRPCStatus = grpcproto.StatusOf(resp.Trailer)
		rec.grpcStatus = o.GRPCStatus
	}
	return resp.StatusCode
}

// attempt sends the request to hst once. The per-try timeout, when set,
// bounds the wait for the response headers; perTryFired says it ended the
// attempt.
func (h *Handler) attempt(ctx context.Context, out, r *http.Request, rec *record, hst *host.Host, body []byte) (sent time.Time, resp *http.Response, err error, perTryFired bool) {
	c := &rec.call
	actx := ctx
	var timer *time.Timer
	var fired atomic.Bool
	if perTry := c.Retry.PerTryTimeout; perTry > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithCancel(ctx)
		timer = time.AfterFunc(perTry, func() { fired.Store(true); cancel() })
		// The attempt's context must outlive this function while the
		// response streams; it ends with ctx.
		context.AfterFunc(ctx, cancel)
	}
	req := out.Clone(actx)
	req.URL.Host = hst.Address
	if body != nil {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		if len(body) == 0 {
			req.Body = http.NoBody
		}
	}
	if h.Observer.Tracing() {
		_, rec.cliSpan = h.Observer.Tracer().StartClient(rec.ctx, tracing.HTTPHeader(req.Header), tracing.Request{
			Method: r.Method, Path: r.URL.RequestURI(), Authority: r.Host, GRPC: c.GRPC, RequestID: rec.requestID,
			Cluster: c.Cluster.Name, Host: hst.Address, Zone: hst.Zone, Attempt: c.Tries,
		})
	}
	sent = time.Now()
	if u, ok := hst.Upstream().(router.RoundTripper); ok {
		resp, err = u.RoundTrip(req, http1Upstream(c, r))
	} else {
		err = fmt.Errorf("%w: %s has no connection pool", upstream.ErrConnect, hst.Address)
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

// http1Upstream reports whether the call goes to its cluster over
// HTTP/1.1.
func http1Upstream(c *router.Call, r *http.Request) bool {
	return c.Cluster.Protocol == cluster.HTTP1 || (c.Cluster.Protocol == cluster.Auto && r.ProtoMajor != 2)
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

// outbound builds the upstream request, for every attempt and the mirror:
// same method, path, query and body, hop-by-hop headers and untrusted
// overrides removed, x-forwarded-for appended. Each attempt clones it and
// sets the host.
func (h *Handler) outbound(r *http.Request, rec *record) *http.Request {
	hdr := make(http.Header, len(r.Header)+3)
	conn := r.Header["Connection"]
	owned := h.Observer != nil
	for k, vs := range r.Header {
		if k == "Te" || k == "Trailer" || router.DropRequestHeader(k, h.TrustRequestHeaders, owned) || namedInConnection(conn, k) {
			continue
		}
		hdr[k] = vs
	}
	if te := r.Header.Get("Te"); strings.EqualFold(te, "trailers") {
		hdr["Te"] = []string{"trailers"}
	}
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	if xff := router.ForwardedFor(strings.Join(r.Header["X-Forwarded-For"], ", "), ip); xff != "" {
		hdr["X-Forwarded-For"] = []string{xff}
		rec.xff = xff
	}
	if owned && rec.requestID != "" {
		// The id the proxy decided replaces the client's.
		hdr["X-Request-Id"] = []string{rec.requestID}
	}
	if _, ok := hdr["X-Forwarded-Proto"]; !ok {
		hdr["X-Forwarded-Proto"] = []string{router.ForwardedProto(h.TLS)}
	}
	if rec.upgrade != "" {
		// Allowed on the route: the hop-by-hop pair goes on this hop.
		hdr["Connection"] = []string{"Upgrade"}
		hdr["Upgrade"] = []string{rec.upgrade}
	}
	body := r.Body
	if r.ContentLength == 0 {
		body = http.NoBody
	}
	out := &http.Request{
		Method:        r.Method,
		URL:           &url.URL{Scheme: "http", Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery},
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        hdr,
		Body:          body,
		ContentLength: r.ContentLength,
		Host:          r.Host,
	}
	return out
}

// reply answers with an error the proxy made itself, gRPC-shaped for
// gRPC clients, records its flag and gRPC status, and returns the HTTP
// status sent.
func (h *Handler) reply(w http.ResponseWriter, r *http.Request, rec *record, rp router.Reply) int {
	rec.flags |= rp.Flag
	if rp.RateLimit.Set {
		setRateLimitHeaders(w.Header(), &rp.RateLimit)
	} else {
		setRateLimitHeaders(w.Header(), &rec.call.Plan.RateLimit)
	}
	if rp.Headers != nil {
		addHeaders(w.Header(), *rp.Headers)
	} else {
		addHeaders(w.Header(), rec.call.Plan.ResponseHeaders)
	}
	if rp.Direct {
		rec.tx = int64(len(rp.Message))
		hdr := w.Header()
		hdr.Set("Content-Type", "text/plain; charset=utf-8")
		hdr.Set("Content-Length", strconv.Itoa(len(rp.Message)))
		w.WriteHeader(rp.Status)
		if r.Method != http.MethodHead {
			io.WriteString(w, rp.Message)
		}
		return rp.Status
	}
	if rec.call.GRPC {
		rec.grpcStatus = rp.GRPC
		rec.outcome.GRPCStatus = rp.GRPC
		return writeGRPCError(w, rp.GRPC, rp.Text(true, r.URL.Path), rp.Flag.String())
	}
	body := rp.Message + "\n"
	rec.tx = int64(len(body))
	hdr := w.Header()
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	hdr.Set(headerResponseFlags, rp.Flag.String())
	w.WriteHeader(rp.Status)
	io.WriteString(w, body)
	return rp.Status
}

// setRateLimitHeaders adds the x-ratelimit-* headers a rate limit asked
// for, when it did.
func setRateLimitHeaders(dst http.Header, rl *router.RateLimitHeaders) {
	if !rl.Set {
		return
	}
	limit, remaining, reset := rl.Values()
	dst[router.HeaderRateLimitLimit] = []string{limit}
	dst[router.HeaderRateLimitRemaining] = []string{remaining}
	dst[router.HeaderRateLimitReset] = []string{reset}
}

// addHeaders adds headers a rate limit service asked for.
func addHeaders(dst http.Header, list []ratelimit.Entry) {
	for _, e := range list {
		dst.Add(e.Key, e.Value)
	}
}

// streamBody copies the response body, flushing after every read so that
// streamed messages reach the client at once. It returns the bytes written
// and, when mc is set, adds the gRPC messages completed to *msgs.
func streamBody(w http.ResponseWriter, rc *http.ResponseController, body io.Reader, mc *grpcproto.MessageCounter, msgs *int64, idle *idleWatch) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if mc != nil {
				*msgs += int64(mc.Feed(buf[:n]))
			}
			m, werr := w.Write(buf[:n])
			total += int64(m)
			idle.touch()
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

// copyHeader copies a response's headers into dst without hop-by-hop
// headers (the router's list, and te and trailer, which net/http writes
// itself), nor those the upstream named in its Connection header.
func copyHeader(dst, src http.Header) {
	conn := src["Connection"]
	for k, vs := range src {
		if k == "Te" || k == "Trailer" || router.HopByHop(k) || namedInConnection(conn, k) {
			continue
		}
		dst[k] = vs
	}
}

// announceTrailers lists the response's trailers in its Trailer header,
// as the upstream announced them: net/http's client turns an HTTP/1.1
// upstream's Trailer header into the keys of resp.Trailer, and the h2
// engine leaves an HTTP/2 upstream's trailer field in resp.Header. The
// values follow the body (see serve); net/http's server sends them, and
// unannounced ones, in the last chunk.
func announceTrailers(dst http.Header, resp *http.Response) {
	for k := range resp.Trailer {
		if !router.HopByHop(k) {
			dst["Trailer"] = append(dst["Trailer"], k)
		}
	}
	if vs := resp.Header["Trailer"]; len(vs) > 0 {
		dst["Trailer"] = append(dst["Trailer"], vs...)
	}
}

// maxInformational bounds the 1xx responses forwarded for one request:
// net/http's transport stops at 5 when it keeps them, and leaves the
// bound to whoever takes them.
const maxInformational = 10

var errTooManyInformational = errors.New("upstream sent too many 1xx responses")

// informational forwards an HTTP/1.1 upstream's 1xx responses (103 Early
// Hints, 102) to the client while the handler waits for the final one.
// net/http's transport calls got on the connection's reader goroutine,
// which may outlive the attempt (a per-try timeout, a retry): mu and
// closed keep it from writing once the handler writes itself.
type informational struct {
	mu     sync.Mutex
	w      http.ResponseWriter // set when forwarding
	closed bool
	n      int
}

// got writes one 1xx response with the upstream's headers alone (the
// response's own, such as x-request-id, wait for the final one). 100
// Continue stays: net/http's server answers Expect: 100-continue itself
// when the body is first read, as Envoy does by default.
func (in *informational) got(code int, hdr textproto.MIMEHeader) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed || in.w == nil || code == http.StatusContinue {
		return nil
	}
	if in.n++; in.n > maxInformational {
		return errTooManyInformational
	}
	h := in.w.Header()
	saved := maps.Clone(h)
	clear(h)
	conn := hdr["Connection"]
	for k, vs := range hdr {
		if k == "Te" || k == "Trailer" || router.HopByHop(k) || namedInConnection(conn, k) {
			continue
		}
		h[k] = vs
	}
	in.w.WriteHeader(code)
	clear(h)
	maps.Copy(h, saved)
	return nil
}

// close stops forwarding; it waits for a write in progress.
func (in *informational) close() {
	in.mu.Lock()
	in.closed = true
	in.mu.Unlock()
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
