package health

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/sightline-proxy/sightline/accesslog"
)

// UserAgent is the user-agent of every HTTP and gRPC health check, so that
// upstream access logs (and the proxy's own, through not_health_check) can
// tell checks from traffic. gRPC checks carry it as a prefix: grpc-go
// appends its own product token ("Sightline/HC grpc-go/1.x"), so match with
// IsHealthCheck rather than by equality.
const UserAgent = "Sightline/HC"

// IsHealthCheck reports whether a request's user-agent is a Sightline health
// check's.
func IsHealthCheck(userAgent string) bool {
	rest, ok := strings.CutPrefix(userAgent, UserAgent)
	return ok && (rest == "" || rest[0] == ' ')
}

// errUnhealthy marks a check the host answered, and answered "not
// serving": Envoy's ACTIVE failure, as opposed to a connection that failed
// or timed out.
var errUnhealthy = errors.New("host answered unhealthy")

// errRetriable marks, beside errUnhealthy, an answer listed in
// retriable_statuses: it counts toward unhealthy_threshold instead of
// ejecting the host at once.
var errRetriable = errors.New("retriable status")

// maxBodyBytes is how much of an HTTP check's response body is read so the
// connection can be reused; a longer body closes the connection instead.
const maxBodyBytes = 64 << 10

// prober runs one kind of check against one host. probe is called from the
// host's checker goroutine only, one check at a time; close is called once,
// on that goroutine, after the last probe.
type prober interface {
	// probe returns nil when the host passes. A failure wraps errUnhealthy
	// when the host answered; any other error is a network failure.
	probe(ctx context.Context) error
	close()
}

// classify maps a failed probe to Envoy's failure type. ctx is the probe's
// own context, whose deadline is the check timeout.
func classify(ctx context.Context, err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, errUnhealthy):
		return accesslog.FailureActive
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return accesslog.FailureNetworkTimeout
	}
	return accesslog.FailureNetwork
}

// tcpProber passes when a TCP connection opens; it closes it at once, as
// Envoy's TCP checker with no payload does.
type tcpProber struct {
	addr   string
	dialer net.Dialer
}

func (p *tcpProber) probe(ctx context.Context) error {
	c, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", p.addr, err)
	}
	return c.Close()
}

func (p *tcpProber) close() {}

// httpProber sends GET path and passes on an expected status. Its
// transport, and so its connection, is kept across checks, as Envoy reuses
// the health check connection: a host is not asked for a handshake every
// interval.
type httpProber struct {
	url       string
	authority string
	expected  []int
	retriable []int
	client    *http.Client
	idle      func() // closes the transport's idle connections
}

// newHTTPProber builds the prober for addr. proto is the cluster's protocol
// ("http1", or "http2" and "auto", which mean HTTP/2: h2c with prior
// knowledge in plaintext, h2 by ALPN over TLS). tc may be nil.
func newHTTPProber(addr, authority, path, proto string, expected, retriable []int, tc *tls.Config) *httpProber {
	dialer := &net.Dialer{}
	scheme := "http"
	if tc != nil {
		scheme = "https"
		tc = hostTLS(tc, addr)
	}
	p := &httpProber{url: scheme + "://" + addr + path, authority: authority, expected: expected, retriable: retriable}
	// One protocol, never a fallback: a cluster that says HTTP/2 is checked
	// over HTTP/2 (h2c with prior knowledge in plaintext, h2 by ALPN over
	// TLS), as its requests are sent.
	protos := new(http.Protocols)
	switch {
	case proto == "http1":
		protos.SetHTTP1(true)
	case tc == nil:
		protos.SetUnencryptedHTTP2(true)
	default:
		protos.SetHTTP2(true)
	}
	t := &http.Transport{
		DialContext:         dialer.DialContext,
		TLSClientConfig:     tc,
		Protocols:           protos,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 1,
	}
	p.idle = t.CloseIdleConnections
	// Redirects are answers: a 301 is compared with expected_statuses like
	// any other status, never followed.
	p.client = &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	return p
}

func (p *httpProber) probe(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return fmt.Errorf("building request for %s: %w", p.url, err)
	}
	req.Host = p.authority
	req.Header.Set("User-Agent", UserAgent)
	resp, err := p.client.Do(req)
	if err != nil {
		// Start the next check on a new connection, as Envoy closes its
		// health check connection on a timeout or reset: an HTTP/2
		// connection that swallowed this check may swallow the next.
		p.idle()
		return fmt.Errorf("GET %s: %w", p.url, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBodyBytes))
	_ = resp.Body.Close()
	switch {
	case slices.Contains(p.expected, resp.StatusCode):
		return nil
	case slices.Contains(p.retriable, resp.StatusCode):
		return fmt.Errorf("%w (%w): GET %s: status %d", errUnhealthy, errRetriable, p.url, resp.StatusCode)
	}
	// Any other answer, 503 first of all, ejects the host at once.
	return fmt.Errorf("%w: GET %s: status %d", errUnhealthy, p.url, resp.StatusCode)
}

func (p *httpProber) close() { p.idle() }

// grpcProber calls grpc.health.v1.Health/Check over one ClientConn kept for
// the host's lifetime in the checker.
type grpcProber struct {
	addr    string
	service string
	cc      *grpc.ClientConn
	client  healthpb.HealthClient
}

// newGRPCProber builds the ClientConn for addr; it does no I/O (the first
// check connects). interval is the check interval: reconnect backoff never
// waits longer, so a host that comes back is found by the next check or the
// one after.
func newGRPCProber(addr, authority, service string, tc *tls.Config, interval, timeout time.Duration) (*grpcProber, error) {
	base := min(interval, time.Second)
	opts := []grpc.DialOption{
		grpc.WithUserAgent(UserAgent),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: base, Multiplier: 1.6, Jitter: 0.2, MaxDelay: max(base, interval)},
			MinConnectTimeout: timeout,
		}),
	}
	if tc == nil {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(authority))
	} else {
		// grpc-go makes the TLS server name the :authority and refuses a
		// different one, so over TLS the authority is the name the
		// certificate is verified against: the cluster's sni, or the IP.
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(hostTLS(tc, addr))))
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("grpc client for %s: %w", addr, err)
	}
	return &grpcProber{addr: addr, service: service, cc: cc, client: healthpb.NewHealthClient(cc)}, nil
}

func (p *grpcProber) probe(ctx context.Context) error {
	if p.cc.GetState() == connectivity.TransientFailure {
		// The last connect failed and grpc-go is waiting out its backoff;
		// a check is the moment to try again, as Envoy dials afresh for
		// each check after a connection failure.
		p.cc.ResetConnectBackoff()
	}
	resp, err := p.client.Check(ctx, &healthpb.HealthCheckRequest{Service: p.service})
	if err != nil {
		switch status.Code(err) {
		case codes.DeadlineExceeded:
			// The check's deadline, which grpc-go sends as grpc-timeout:
			// the server's copy may expire, and answer so, a hair before
			// the client's own.
			return fmt.Errorf("grpc health check of %s: %w: %w", p.addr, context.DeadlineExceeded, err)
		case codes.Unavailable, codes.Canceled:
			// No answer from the host: the connection failed.
			return fmt.Errorf("grpc health check of %s: %w", p.addr, err)
		}
		// Any other status is the host's answer: Unimplemented for a
		// server without the health service, NotFound for an unknown
		// service_name, and so on.
		return fmt.Errorf("%w: grpc health check of %s: %w", errUnhealthy, p.addr, err)
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("%w: grpc health check of %s: %s", errUnhealthy, p.addr, s)
	}
	return nil
}

func (p *grpcProber) close() { _ = p.cc.Close() }

// hostTLS returns a copy of tc that verifies addr's host when tc names no
// server, as the data path's connections do.
func hostTLS(tc *tls.Config, addr string) *tls.Config {
	tc = tc.Clone()
	if tc.ServerName == "" {
		if h, _, err := net.SplitHostPort(addr); err == nil {
			tc.ServerName = h
		}
	}
	return tc
}
