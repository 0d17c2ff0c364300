package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// Service is a client of one rate limit service: Envoy's
// envoy.service.ratelimit.v3.RateLimitService, over gRPC (h2c) to the
// hosts of a cluster, balanced round robin.
type Service struct {
	conn   *grpc.ClientConn
	client rlsv3.RateLimitServiceClient
}

// idleTimeout is how long a service connection with no check stays open:
// the connections of a cluster a reload stopped using go away after it.
const idleTimeout = 5 * time.Minute

// Services keeps one Service per rate limit cluster, across reloads, so
// that a reload does not redial the service; a cluster whose endpoints
// change gets a new one. The server closes them all on exit.
type Services struct {
	mu     sync.Mutex
	byKey  map[string]*Service
	closed bool
}

// NewServices returns an empty set. It dials nothing: a Service connects
// on its first check.
func NewServices() *Services { return &Services{byKey: map[string]*Service{}} }

// errClosed is returned by Get after Close.
var errClosed = errors.New("rate limit services closed")

// Get returns the Service of the cluster cfg, creating it on first use.
// It does no I/O.
func (s *Services) Get(cfg *config.Cluster) (*Service, error) {
	key := serviceKey(cfg)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	if svc, ok := s.byKey[key]; ok {
		return svc, nil
	}
	svc, err := newService(cfg)
	if err != nil {
		return nil, err
	}
	s.byKey[key] = svc
	return svc, nil
}

// Close closes every Service; later checks fail (and count as errors).
func (s *Services) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for k, svc := range s.byKey {
		svc.conn.Close()
		delete(s.byKey, k)
	}
}

func serviceKey(cfg *config.Cluster) string {
	var b strings.Builder
	b.WriteString(cfg.Name)
	b.WriteByte('|')
	b.WriteString(cfg.Type)
	for _, e := range cfg.Endpoints {
		b.WriteByte('|')
		b.WriteString(e.Address)
	}
	return b.String()
}

func newService(cfg *config.Cluster) (*Service, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("rate limit cluster %s has no endpoints", cfg.Name)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"round_robin": {}}]}`),
		grpc.WithIdleTimeout(idleTimeout),
	}
	var target string
	if cfg.Type == "strict_dns" {
		// Every A/AAAA record of the name is a host, as for the
		// cluster itself.
		target = "dns:///" + cfg.Endpoints[0].Address
	} else {
		r := manual.NewBuilderWithScheme("sightline-rls")
		var st resolver.State
		for _, e := range cfg.Endpoints {
			st.Addresses = append(st.Addresses, resolver.Address{Addr: e.Address})
		}
		r.InitialState(st)
		opts = append(opts, grpc.WithResolvers(r))
		target = r.Scheme() + ":///" + cfg.Name
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("rate limit cluster %s: %w", cfg.Name, err)
	}
	return &Service{conn: conn, client: rlsv3.NewRateLimitServiceClient(conn)}, nil
}

// Global is a listener's global rate limit (Envoy's
// envoy.filters.http.ratelimit): where and how to ask, and how to answer.
type Global struct {
	Service         *Service
	Domain          string
	Timeout         time.Duration
	FailureModeDeny bool
	// Status and GRPCStatus answer a refused request; Headers: the
	// x-ratelimit-* headers go on the responses.
	Status, GRPCStatus int
	Headers            bool
}

// Decision is the rate limit service's answer for one request.
type Decision struct {
	// OverLimit: the service said OVER_LIMIT.
	OverLimit bool
	// ResponseHeaders are the service's response_headers_to_add, for the
	// client's response.
	ResponseHeaders []Entry
	// HasLimit is set when a descriptor status carried a limit: Limit,
	// Remaining and Reset then describe the most restrictive one (the
	// fewest requests left), for the x-ratelimit-* headers.
	HasLimit         bool
	Limit, Remaining uint32
	Reset            time.Duration
}

// Check asks the service about a request with descriptors ds, within the
// timeout. An error is a failed check (timeout, no connection, an error
// status, an UNKNOWN answer): failure_mode_deny decides what it means.
func (g *Global) Check(ctx context.Context, ds []Descriptor) (Decision, error) {
	req := &rlsv3.RateLimitRequest{Domain: g.Domain, Descriptors: make([]*commonv3.RateLimitDescriptor, 0, len(ds))}
	for i := range ds {
		d := &ds[i]
		pd := &commonv3.RateLimitDescriptor{Entries: make([]*commonv3.RateLimitDescriptor_Entry, d.N)}
		for j, e := range d.List() {
			pd.Entries[j] = &commonv3.RateLimitDescriptor_Entry{Key: e.Key, Value: e.Value}
		}
		req.Descriptors = append(req.Descriptors, pd)
	}
	if g.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.Timeout)
		defer cancel()
	}
	resp, err := g.Service.client.ShouldRateLimit(ctx, req)
	if err != nil {
		return Decision{}, err
	}
	var dec Decision
	switch resp.GetOverallCode() {
	case rlsv3.RateLimitResponse_OK:
	case rlsv3.RateLimitResponse_OVER_LIMIT:
		dec.OverLimit = true
	default:
		return Decision{}, fmt.Errorf("rate limit service answered %s", resp.GetOverallCode())
	}
	for _, h := range resp.GetResponseHeadersToAdd() {
		// A name or value that is not valid HTTP (or a pseudo-header)
		// would make the client's response malformed: left out.
		k, v := h.GetKey(), headerValue(h)
		if httpguts.ValidHeaderFieldName(k) && httpguts.ValidHeaderFieldValue(v) {
			dec.ResponseHeaders = append(dec.ResponseHeaders, Entry{Key: k, Value: v})
		}
	}
	for _, st := range resp.GetStatuses() {
		lim := st.GetCurrentLimit()
		if lim == nil {
			continue
		}
		if !dec.HasLimit || st.GetLimitRemaining() < dec.Remaining {
			dec.HasLimit, dec.Limit, dec.Remaining = true, lim.GetRequestsPerUnit(), st.GetLimitRemaining()
			dec.Reset = st.GetDurationUntilReset().AsDuration()
		}
	}
	return dec, nil
}

func headerValue(h *corev3.HeaderValue) string {
	if v := h.GetValue(); v != "" {
		return v
	}
	return string(h.GetRawValue())
}
