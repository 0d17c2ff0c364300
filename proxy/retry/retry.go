// Package retry decides whether a failed upstream attempt is tried again,
// and how long to wait first, by a route's retry_policy, as Envoy's router
// does.
//
// A Policy is built once per route when the config is; the request path
// only reads it. Retriable is a few bit tests and Backoff one random draw:
// neither locks nor allocates. Whether a retry is also safe (the request
// body can be replayed, nothing was written downstream yet) and allowed (the
// cluster's max_retries circuit breaker, the request's deadline) is the
// forwarder's to check; this package only judges the outcome.
package retry

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// defaultBackoffBase is Envoy's retry back-off base interval, for a config
// that leaves it unset (config.Load sets the same). The maximum defaults to
// ten times the base, also as in Envoy.
const defaultBackoffBase = 25 * time.Millisecond

// Policy is a route's retry policy. Build it with New; its zero value
// retries nothing. A *Policy is safe for concurrent use, and a nil *Policy
// is a route without retries.
type Policy struct {
	// On is the set of outcomes worth a retry.
	On Conditions
	// NumRetries is how many retries a request may have, on top of the
	// first attempt.
	NumRetries int
	// PerTryTimeout bounds each attempt; 0 means only the route's timeout
	// bounds them.
	PerTryTimeout time.Duration
	// BackoffBase and BackoffMax shape the wait before each retry; see
	// Backoff.
	BackoffBase time.Duration
	BackoffMax  time.Duration
}

// New builds a route's policy from its retry_policy config. It fails on
// what validation would have refused: an unknown or empty condition, a
// negative num_retries, a back-off base above its maximum.
func New(cfg config.RetryPolicy) (*Policy, error) {
	on, err := ParseConditions(cfg.RetryOn)
	if err != nil {
		return nil, err
	}
	if cfg.NumRetries < 0 {
		return nil, fmt.Errorf("num_retries: must not be negative, got %d", cfg.NumRetries)
	}
	if cfg.PerTryTimeout < 0 {
		return nil, fmt.Errorf("per_try_timeout: must not be negative, got %s", cfg.PerTryTimeout.D())
	}
	p := &Policy{
		On:            on,
		NumRetries:    cfg.NumRetries,
		PerTryTimeout: cfg.PerTryTimeout.D(),
		BackoffBase:   cfg.BackoffBase.D(),
		BackoffMax:    cfg.BackoffMax.D(),
	}
	if p.BackoffBase <= 0 {
		p.BackoffBase = defaultBackoffBase
	}
	if p.BackoffMax <= 0 {
		p.BackoffMax = 10 * p.BackoffBase
	}
	if p.BackoffBase > p.BackoffMax {
		return nil, fmt.Errorf("backoff_base: must not exceed backoff_max (%s), got %s", p.BackoffMax, p.BackoffBase)
	}
	return p, nil
}

// gRPC status codes the conditions name (google.golang.org/grpc/codes).
const (
	grpcCancelled         = 1
	grpcDeadlineExceeded  = 4
	grpcResourceExhausted = 8
	grpcInternal          = 13
	grpcUnavailable       = 14
)

// Outcome is how one upstream attempt ended, as far as a retry decision
// needs to know.
type Outcome struct {
	// HTTPStatus is the upstream's response status; 0 when there was no
	// response. A status the proxy answers in the upstream's place (503
	// for a connect failure, 504 for a timeout) does not belong here: the
	// flags below say what happened.
	HTTPStatus int
	// GRPCStatus is the grpc-status in the response headers, that is, of a
	// trailers-only response; -1 when the headers carry none.
	GRPCStatus int
	// ConnectFailure: no connection to the upstream could be made.
	ConnectFailure bool
	// Reset: the stream or the connection was reset before a response.
	Reset bool
	// RefusedStream: the upstream reset the stream with REFUSED_STREAM.
	RefusedStream bool
	// PerTryTimeout: the attempt ran out its per-try timeout.
	PerTryTimeout bool
}

// Retriable reports whether the policy's conditions call for a retry of
// an attempt that ended as o. The forwarder calls it after each failed
// attempt while retries remain; it says nothing of the retry budget.
//
// As in Envoy, 5xx, gateway-error and reset all cover every way of getting
// no response (connect failures, resets, refused streams, per-try
// timeouts); connect-failure and refused-stream cover only their own.
func (p *Policy) Retriable(o Outcome) bool {
	if p == nil || p.On == 0 {
		return false
	}
	on := p.On
	if o.ConnectFailure || o.Reset || o.RefusedStream || o.PerTryTimeout {
		return on&(On5xx|OnGatewayError|OnReset) != 0 ||
			o.ConnectFailure && on&OnConnectFailure != 0 ||
			o.RefusedStream && on&OnRefusedStream != 0
	}
	switch s := o.HTTPStatus; {
	case s >= 500 && s <= 599 && on&On5xx != 0:
		return true
	case (s == 502 || s == 503 || s == 504) && on&OnGatewayError != 0:
		return true
	case s == 409 && on&OnRetriable4xx != 0:
		return true
	}
	switch o.GRPCStatus {
	case grpcCancelled:
		return on&OnCancelled != 0
	case grpcDeadlineExceeded:
		return on&OnDeadlineExceeded != 0
	case grpcResourceExhausted:
		return on&OnResourceExhausted != 0
	case grpcInternal:
		return on&OnInternal != 0
	case grpcUnavailable:
		return on&OnUnavailable != 0
	}
	return false
}

// Backoff returns how long to wait before retry number retry (1 for the
// first retry; lower values count as 1). It is Envoy's fully jittered
// exponential back-off: uniform in [0, (2^retry − 1) × BackoffBase), the
// upper bound capped at BackoffMax. Full jitter spreads the retries of
// many clients that failed at once, instead of sending them back in
// waves.
//
// rnd returns a uniform integer in [0, n) for n > 0, as rand.Int64N does;
// nil means rand.Int64N, which is safe for concurrent use and does not
// allocate. Tests pass a fake.
func (p *Policy) Backoff(retry int, rnd func(n int64) int64) time.Duration {
	if p == nil || p.BackoffBase <= 0 {
		return 0
	}
	base, most := p.BackoffBase, max(p.BackoffMax, p.BackoffBase)
	retry = max(retry, 1)
	limit := most
	// (2^retry − 1) × base, unless that passes the cap (or overflows).
	if retry < 62 {
		if m := time.Duration(1)<<retry - 1; m <= most/base {
			limit = min(m*base, most)
		}
	}
	if rnd == nil {
		rnd = rand.Int64N
	}
	return time.Duration(rnd(int64(limit)))
}

// The per-request override headers, honoured only on listeners that trust
// their clients' headers (and stripped on the others).
const (
	HeaderMaxRetries    = "x-sightline-max-retries"
	HeaderPerTryTimeout = "x-sightline-upstream-rq-per-try-timeout-ms"
)

// ErrBadOverride is what ParseOverrides wraps for a header it cannot use.
var ErrBadOverride = errors.New("invalid retry override")

// Overrides are a request's retry override headers, parsed. The forwarder
// keeps them on the request's stack and applies them with Policy.With.
type Overrides struct {
	// NumRetries replaces the route's num_retries when HasNumRetries.
	NumRetries    int
	HasNumRetries bool
	// PerTryTimeout replaces the route's per_try_timeout when
	// HasPerTryTimeout; 0 turns it off.
	PerTryTimeout    time.Duration
	HasPerTryTimeout bool
}

// ParseOverrides parses the values of the x-sightline-max-retries and
// x-sightline-upstream-rq-per-try-timeout-ms headers; an empty value is an
// absent header. A header that does not parse is left out of the result,
// which is then ignored as Envoy ignores it, and named in the error, for a
// debug log. Valid values parse without allocating.
func ParseOverrides(maxRetries, perTryTimeoutMs string) (Overrides, error) {
	var o Overrides
	var errs []error
	if maxRetries != "" {
		n, err := strconv.ParseUint(maxRetries, 10, 32)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w: %q is not a whole number", HeaderMaxRetries, ErrBadOverride, maxRetries))
		} else {
			o.NumRetries, o.HasNumRetries = int(n), true
		}
	}
	if perTryTimeoutMs != "" {
		ms, err := strconv.ParseUint(perTryTimeoutMs, 10, 63)
		if err != nil || ms > math.MaxInt64/uint64(time.Millisecond) {
			errs = append(errs, fmt.Errorf("%s: %w: %q is not a whole number of milliseconds", HeaderPerTryTimeout, ErrBadOverride, perTryTimeoutMs))
		} else {
			o.PerTryTimeout, o.HasPerTryTimeout = time.Duration(ms)*time.Millisecond, true
		}
	}
	return o, errors.Join(errs...)
}

// With returns a copy of the policy with the overrides applied, a value the
// caller keeps for the one request; the route's Policy is shared and never
// changes. On a nil *Policy (a route without retries) the result still
// retries nothing, since no condition is set, but carries the per-try
// timeout, which bounds the single attempt.
func (p *Policy) With(o Overrides) Policy {
	var q Policy
	if p != nil {
		q = *p
	}
	if o.HasNumRetries {
		q.NumRetries = o.NumRetries
	}
	if o.HasPerTryTimeout {
		q.PerTryTimeout = o.PerTryTimeout
	}
	return q
}
