package h2

import (
	"context"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/sightline-proxy/sightline/accesslog"
	"github.com/sightline-proxy/sightline/proxy/observe"
	"github.com/sightline-proxy/sightline/tracing"
)

// observeStart gives a new request its x-request-id and, when tracing, its
// SERVER span (joined to the caller's trace context). It runs on the
// downstream reader before routing, so that even a request with no route is
// logged and traced with its id.
func (sc *serverConn) observeStart(cl *call) {
	obs := sc.srv.obs
	hb := &sc.hb
	cl.method = hb.method
	cl.authority = hb.authority
	if cl.authority == "" {
		cl.authority = hb.host
	}
	existing, traceparent := "", ""
	for i := range sc.fields {
		f := &sc.fields[i]
		switch f.Name {
		case tracing.RequestIDHeader:
			existing = f.Value
		case "user-agent":
			cl.userAgent = f.Value
		case "traceparent":
			traceparent = f.Value
		}
	}
	cl.requestID = obs.RequestID(existing)
	if !obs.Tracing() {
		cl.traceID = observe.TraceIDFromTraceparent(traceparent)
		return
	}
	cl.ctx, cl.srvSpan = obs.Tracer().StartServer(context.Background(), &tracing.HPACKCarrier{Fields: sc.fields}, tracing.Request{
		Method: cl.method, Path: cl.fullPath, Authority: cl.authority, GRPC: cl.grpc, RequestID: cl.requestID,
		Scheme: hb.scheme,
	})
	cl.traceID = cl.srvSpan.TraceID()
}

// startAttempt starts the CLIENT span of the upstream attempt and injects
// its context into the request's fields. cl.reqFields is built and cl.rc.Host
// picked.
func (cl *call) startAttempt() {
	obs := cl.sc.srv.obs
	if !obs.Tracing() {
		return
	}
	c := &tracing.HPACKCarrier{Fields: cl.reqFields}
	_, cl.cliSpan = obs.Tracer().StartClient(cl.ctx, c, tracing.Request{
		Method: cl.method, Path: cl.fullPath, Authority: cl.authority, GRPC: cl.grpc, RequestID: cl.requestID,
		Cluster: cl.rc.Cluster.Name, Host: cl.rc.Host.Address, Zone: cl.rc.Host.Zone,
		Attempt: cl.rc.Tries + cl.attempts, // a refused stream sent again counts
	})
	cl.reqFields = c.Fields
}

// requestIDField is the x-request-id field the proxy adds to requests and
// responses.
func (cl *call) requestIDField() hpack.HeaderField {
	return hpack.HeaderField{Name: tracing.RequestIDHeader, Value: cl.requestID}
}

// observeEnd ends the call's spans and writes its access-log entry. sent is
// the status the client got (0: none), elapsed the whole call.
func (cl *call) observeEnd(obs *observe.Observer, sent int, elapsed time.Duration) {
	f := flag(cl.flags.Load())
	var e accesslog.Entry
	e.Reset()
	if cl.grpc {
		e.GRPCStatus = int(cl.grpcStatus.Load())
	}
	if obs.Tracing() && cl.rc.Open() {
		var err error
		if why := cl.endedBy.Load(); why != 0 {
			err = endedErrors[why-1]
		}
		cl.endClientSpan(int(cl.upStatus.Load()), e.GRPCStatus, f, err)
	}
	e.StartTime = cl.start
	e.Method = cl.method
	e.Authority = cl.authority
	e.Path = cl.path
	e.PathQuery = cl.fullPath
	e.Protocol = "HTTP/2"
	e.ResponseCode = sent
	e.ResponseFlags = f.String()
	e.BytesReceived = cl.rxBytes.Load()
	// What reached the client, not what the upstream sent: a response
	// reset before its queue drained says so.
	e.BytesSent = cl.sentBytes.Load()
	e.Duration = elapsed
	if t := cl.upTime.Load(); t > 0 {
		e.UpstreamServiceTime = time.Duration(t)
	}
	if h := cl.rc.Host; h != nil {
		e.UpstreamHost, e.UpstreamCluster, e.UpstreamZone = h.Address, cl.rc.Cluster.Name, h.Zone
	}
	if cl.rc.Route != nil {
		e.RouteName = cl.rc.Route.Name
	}
	if cl.rc.Host != nil {
		e.Attempts = cl.rc.Tries + cl.attempts // moves of a refused stream count
	}
	e.RequestID = cl.requestID
	e.TraceID = cl.traceID
	e.DownstreamRemoteAddress = cl.sc.remoteAddr
	e.XForwardedFor = cl.xff
	e.UserAgent = cl.userAgent
	obs.End(&e, cl.srvSpan)
}

// endClientSpan ends the CLIENT span of the current attempt; err is why it
// got no response.
func (cl *call) endClientSpan(status, grpcStatus int, f flag, err error) {
	r := tracing.Result{GRPCStatus: grpcStatus, HasGRPCStatus: cl.grpc && grpcStatus >= 0, ResponseFlags: f.String(), Err: err}
	if err == nil {
		r.HTTPStatus = status
	}
	cl.cliSpan.End(r)
	cl.cliSpan = tracing.Span{}
}

// endedErrors are the span errors for call.endedBy values.
var endedErrors = [...]error{
	endedConnectFailure - 1: errorString("upstream connect failure"),
	endedReset - 1:          errorString("upstream reset"),
	endedTimeout - 1:        errorString("upstream request timeout"),
}

type errorString string

func (e errorString) Error() string { return string(e) }
