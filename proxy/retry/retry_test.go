package retry

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/proxy/config"
)

func TestParseConditions(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    Conditions
		wantErr error // nil: no error; errUnnamed: an error with no sentinel
	}{
		{name: "5xx", give: "5xx", want: On5xx},
		{name: "gateway-error", give: "gateway-error", want: OnGatewayError},
		{name: "reset", give: "reset", want: OnReset},
		{name: "connect-failure", give: "connect-failure", want: OnConnectFailure},
		{name: "retriable-4xx", give: "retriable-4xx", want: OnRetriable4xx},
		{name: "refused-stream", give: "refused-stream", want: OnRefusedStream},
		{name: "cancelled", give: "cancelled", want: OnCancelled},
		{name: "deadline-exceeded", give: "deadline-exceeded", want: OnDeadlineExceeded},
		{name: "resource-exhausted", give: "resource-exhausted", want: OnResourceExhausted},
		{name: "unavailable", give: "unavailable", want: OnUnavailable},
		{name: "internal", give: "internal", want: OnInternal},
		{name: "the contract's example", give: "5xx,reset,connect-failure,unavailable", want: On5xx | OnReset | OnConnectFailure | OnUnavailable},
		{name: "spaces around words", give: " 5xx , unavailable ", want: On5xx | OnUnavailable},
		{name: "a word twice", give: "reset,reset", want: OnReset},
		{name: "empty", give: "", wantErr: errUnnamed},
		{name: "trailing comma", give: "5xx,", wantErr: errUnnamed},
		{name: "unknown", give: "5xx,4xx", wantErr: ErrUnknownCondition},
		{name: "case matters, as in Envoy", give: "5XX", wantErr: ErrUnknownCondition},
		{name: "envoy's retriable-status-codes is not supported", give: "retriable-status-codes", wantErr: ErrUnknownCondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConditions(tt.give)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("ParseConditions(%q): %v", tt.give, err)
			case tt.wantErr != nil && err == nil:
				t.Fatalf("ParseConditions(%q) = %s, want an error", tt.give, got)
			case tt.wantErr != nil && tt.wantErr != errUnnamed && !errors.Is(err, tt.wantErr):
				t.Fatalf("ParseConditions(%q): %v, want it to wrap %v", tt.give, err, tt.wantErr)
			case tt.wantErr != nil && !strings.Contains(err.Error(), "retry_on"):
				t.Errorf("error %q does not name retry_on", err)
			}
			if got != tt.want {
				t.Errorf("ParseConditions(%q) = %s (%#x), want %s (%#x)", tt.give, got, uint16(got), tt.want, uint16(tt.want))
			}
		})
	}
}

// errUnnamed stands for an error that wraps no sentinel.
var errUnnamed = errors.New("any error")

func TestConditionsString(t *testing.T) {
	all, err := ParseConditions("internal,unavailable,resource-exhausted,deadline-exceeded,cancelled,refused-stream,retriable-4xx,connect-failure,reset,gateway-error,5xx")
	if err != nil {
		t.Fatal(err)
	}
	const want = "5xx,gateway-error,reset,connect-failure,retriable-4xx,refused-stream,cancelled,deadline-exceeded,resource-exhausted,unavailable,internal"
	if got := all.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	back, err := ParseConditions(want)
	if err != nil || back != all {
		t.Errorf("ParseConditions(String()) = %s, %v; want %s", back, err, all)
	}
	if !all.Has(On5xx|OnInternal) || On5xx.Has(On5xx|OnReset) {
		t.Error("Has is wrong")
	}
	if got := Conditions(0).String(); got != "" {
		t.Errorf("empty set = %q", got)
	}
}

// outcomes is every kind of attempt end the conditions tell apart.
var outcomes = []struct {
	name string
	o    Outcome
}{
	{"200", Outcome{HTTPStatus: 200, GRPCStatus: -1}},
	{"404", Outcome{HTTPStatus: 404, GRPCStatus: -1}},
	{"409", Outcome{HTTPStatus: 409, GRPCStatus: -1}},
	{"429", Outcome{HTTPStatus: 429, GRPCStatus: -1}},
	{"500", Outcome{HTTPStatus: 500, GRPCStatus: -1}},
	{"501", Outcome{HTTPStatus: 501, GRPCStatus: -1}},
	{"502", Outcome{HTTPStatus: 502, GRPCStatus: -1}},
	{"503", Outcome{HTTPStatus: 503, GRPCStatus: -1}},
	{"504", Outcome{HTTPStatus: 504, GRPCStatus: -1}},
	{"599", Outcome{HTTPStatus: 599, GRPCStatus: -1}},
	{"connect failure", Outcome{GRPCStatus: -1, ConnectFailure: true}},
	{"reset", Outcome{GRPCStatus: -1, Reset: true}},
	{"refused stream", Outcome{GRPCStatus: -1, RefusedStream: true}},
	{"per-try timeout", Outcome{GRPCStatus: -1, PerTryTimeout: true}},
	{"grpc OK", Outcome{HTTPStatus: 200, GRPCStatus: 0}},
	{"grpc CANCELLED", Outcome{HTTPStatus: 200, GRPCStatus: 1}},
	{"grpc UNKNOWN", Outcome{HTTPStatus: 200, GRPCStatus: 2}},
	{"grpc DEADLINE_EXCEEDED", Outcome{HTTPStatus: 200, GRPCStatus: 4}},
	{"grpc RESOURCE_EXHAUSTED", Outcome{HTTPStatus: 200, GRPCStatus: 8}},
	{"grpc INTERNAL", Outcome{HTTPStatus: 200, GRPCStatus: 13}},
	{"grpc UNAVAILABLE", Outcome{HTTPStatus: 200, GRPCStatus: 14}},
	{"grpc DATA_LOSS", Outcome{HTTPStatus: 200, GRPCStatus: 15}},
}

// noResponse are the outcomes without any response.
var noResponse = []string{"connect failure", "reset", "refused stream", "per-try timeout"}

func TestRetriable(t *testing.T) {
	tests := []struct {
		retryOn string
		want    []string // the outcomes retried; every other one is not
	}{
		{"5xx", append([]string{"500", "501", "502", "503", "504", "599"}, noResponse...)},
		{"gateway-error", append([]string{"502", "503", "504"}, noResponse...)},
		{"reset", noResponse},
		{"connect-failure", []string{"connect failure"}},
		{"retriable-4xx", []string{"409"}},
		{"refused-stream", []string{"refused stream"}},
		{"cancelled", []string{"grpc CANCELLED"}},
		{"deadline-exceeded", []string{"grpc DEADLINE_EXCEEDED"}},
		{"resource-exhausted", []string{"grpc RESOURCE_EXHAUSTED"}},
		{"unavailable", []string{"grpc UNAVAILABLE"}},
		{"internal", []string{"grpc INTERNAL"}},
		{"connect-failure,retriable-4xx,unavailable", []string{"connect failure", "409", "grpc UNAVAILABLE"}},
		{"refused-stream,internal,cancelled", []string{"refused stream", "grpc INTERNAL", "grpc CANCELLED"}},
	}
	for _, tt := range tests {
		t.Run(tt.retryOn, func(t *testing.T) {
			p, err := New(config.RetryPolicy{RetryOn: tt.retryOn, NumRetries: 1})
			if err != nil {
				t.Fatal(err)
			}
			for _, oc := range outcomes {
				want := slices.Contains(tt.want, oc.name)
				if got := p.Retriable(oc.o); got != want {
					t.Errorf("retry_on %s, outcome %s (%+v): Retriable = %t, want %t", tt.retryOn, oc.name, oc.o, got, want)
				}
			}
		})
	}
}

func TestRetriableEdges(t *testing.T) {
	p5xx := &Policy{On: On5xx}
	pGRPC := &Policy{On: OnUnavailable}
	tests := []struct {
		name string
		p    *Policy
		o    Outcome
		want bool
	}{
		{name: "nil policy", p: nil, o: Outcome{HTTPStatus: 503, GRPCStatus: -1}, want: false},
		{name: "no conditions", p: &Policy{}, o: Outcome{Reset: true, GRPCStatus: -1}, want: false},
		{name: "no status is no 5xx", p: p5xx, o: Outcome{GRPCStatus: -1}, want: false},
		{name: "grpc status on a 503 response", p: pGRPC, o: Outcome{HTTPStatus: 503, GRPCStatus: 14}, want: true},
		{name: "the 5xx of a grpc error response", p: p5xx, o: Outcome{HTTPStatus: 503, GRPCStatus: 14}, want: true},
		{name: "a grpc error in a 200 is no 5xx", p: p5xx, o: Outcome{HTTPStatus: 200, GRPCStatus: 13}, want: false},
		{name: "the proxy's own 503 for a connect failure is not judged as a response", p: &Policy{On: OnRetriable4xx | OnUnavailable}, o: Outcome{HTTPStatus: 503, GRPCStatus: 14, ConnectFailure: true}, want: false},
		{name: "zero-value grpc status is OK", p: pGRPC, o: Outcome{}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Retriable(tt.o); got != tt.want {
				t.Errorf("Retriable(%+v) = %t, want %t", tt.o, got, tt.want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	ms := func(n int) config.Duration { return config.Duration(time.Duration(n) * time.Millisecond) }
	tests := []struct {
		name    string
		give    config.RetryPolicy
		want    Policy
		wantErr string
	}{
		{
			name: "every field",
			give: config.RetryPolicy{RetryOn: "5xx,unavailable", NumRetries: 2, PerTryTimeout: ms(1000), BackoffBase: ms(10), BackoffMax: ms(40)},
			want: Policy{On: On5xx | OnUnavailable, NumRetries: 2, PerTryTimeout: time.Second, BackoffBase: 10 * time.Millisecond, BackoffMax: 40 * time.Millisecond},
		},
		{
			name: "Envoy's back-off by default",
			give: config.RetryPolicy{RetryOn: "reset", NumRetries: 1},
			want: Policy{On: OnReset, NumRetries: 1, BackoffBase: 25 * time.Millisecond, BackoffMax: 250 * time.Millisecond},
		},
		{
			name: "the maximum defaults to ten times the base",
			give: config.RetryPolicy{RetryOn: "reset", BackoffBase: ms(100)},
			want: Policy{On: OnReset, BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second},
		},
		{name: "unknown condition", give: config.RetryPolicy{RetryOn: "5xx,sometimes"}, wantErr: `unknown retry condition "sometimes"`},
		{name: "empty retry_on", give: config.RetryPolicy{}, wantErr: "empty condition"},
		{name: "negative retries", give: config.RetryPolicy{RetryOn: "5xx", NumRetries: -1}, wantErr: "num_retries"},
		{name: "negative per-try timeout", give: config.RetryPolicy{RetryOn: "5xx", PerTryTimeout: ms(-1)}, wantErr: "per_try_timeout"},
		{name: "base above max", give: config.RetryPolicy{RetryOn: "5xx", BackoffBase: ms(300), BackoffMax: ms(250)}, wantErr: "backoff_base"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := New(tt.give)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New: %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *got != tt.want {
				t.Errorf("New = %+v, want %+v", *got, tt.want)
			}
		})
	}
}

func TestBackoffLimit(t *testing.T) {
	p := &Policy{BackoffBase: 25 * time.Millisecond, BackoffMax: 250 * time.Millisecond}
	tests := []struct {
		retry int
		want  time.Duration // the exclusive upper bound handed to rnd
	}{
		{retry: 1, want: 25 * time.Millisecond},
		{retry: 2, want: 75 * time.Millisecond},
		{retry: 3, want: 175 * time.Millisecond},
		{retry: 4, want: 250 * time.Millisecond}, // 375ms, capped
		{retry: 10, want: 250 * time.Millisecond},
		{retry: 62, want: 250 * time.Millisecond},
		{retry: 100, want: 250 * time.Millisecond}, // 2^100 would overflow
		{retry: 0, want: 25 * time.Millisecond},
		{retry: -3, want: 25 * time.Millisecond},
	}
	for _, tt := range tests {
		var asked int64
		top := func(n int64) int64 { asked = n; return n - 1 }
		got := p.Backoff(tt.retry, top)
		if time.Duration(asked) != tt.want {
			t.Errorf("Backoff(%d) drew from [0, %s), want [0, %s)", tt.retry, time.Duration(asked), tt.want)
		}
		if got != tt.want-1 {
			t.Errorf("Backoff(%d) = %s, want the draw, %s", tt.retry, got, tt.want-1)
		}
	}
}

// TestBackoffBounds draws many real samples per retry and checks they stay
// in [0, limit) and spread over it.
func TestBackoffBounds(t *testing.T) {
	p, err := New(config.RetryPolicy{RetryOn: "5xx"})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for retry, limit := range map[int]time.Duration{
		1: 25 * time.Millisecond, 2: 75 * time.Millisecond, 3: 175 * time.Millisecond, 4: 250 * time.Millisecond, 8: 250 * time.Millisecond,
	} {
		const n = 20000
		var lo, hi, sum time.Duration = limit, 0, 0
		for range n {
			d := p.Backoff(retry, rng.Int64N)
			if d < 0 || d >= limit {
				t.Fatalf("Backoff(%d) = %s, outside [0, %s)", retry, d, limit)
			}
			lo, hi, sum = min(lo, d), max(hi, d), sum+d
		}
		if lo > limit/100 || hi < limit*99/100 {
			t.Errorf("Backoff(%d) samples span [%s, %s], want nearly all of [0, %s)", retry, lo, hi, limit)
		}
		if mean := sum / n; mean < limit*45/100 || mean > limit*55/100 {
			t.Errorf("Backoff(%d) mean = %s, want about %s (uniform)", retry, mean, limit/2)
		}
	}
	if d := p.Backoff(1, nil); d < 0 || d >= 25*time.Millisecond {
		t.Errorf("Backoff with the default source = %s", d)
	}
	if d := (*Policy)(nil).Backoff(3, nil); d != 0 {
		t.Errorf("nil policy Backoff = %s, want 0", d)
	}
}

func TestParseOverrides(t *testing.T) {
	tests := []struct {
		name       string
		maxRetries string
		perTry     string
		want       Overrides
		wantErr    []string // headers named in the error
	}{
		{name: "none", want: Overrides{}},
		{name: "both", maxRetries: "3", perTry: "250", want: Overrides{NumRetries: 3, HasNumRetries: true, PerTryTimeout: 250 * time.Millisecond, HasPerTryTimeout: true}},
		{name: "zero retries", maxRetries: "0", want: Overrides{HasNumRetries: true}},
		{name: "zero per-try timeout turns it off", perTry: "0", want: Overrides{HasPerTryTimeout: true}},
		{name: "negative retries", maxRetries: "-1", wantErr: []string{HeaderMaxRetries}},
		{name: "not a number", maxRetries: "three", perTry: "100", want: Overrides{PerTryTimeout: 100 * time.Millisecond, HasPerTryTimeout: true}, wantErr: []string{HeaderMaxRetries}},
		{name: "a unit is not allowed", perTry: "100ms", maxRetries: "2", want: Overrides{NumRetries: 2, HasNumRetries: true}, wantErr: []string{HeaderPerTryTimeout}},
		{name: "spaces", maxRetries: " 2", wantErr: []string{HeaderMaxRetries}},
		{name: "retries past uint32", maxRetries: "4294967296", wantErr: []string{HeaderMaxRetries}},
		{name: "milliseconds that overflow a duration", perTry: "9223372036854775807", wantErr: []string{HeaderPerTryTimeout}},
		{name: "both bad", maxRetries: "x", perTry: "y", wantErr: []string{HeaderMaxRetries, HeaderPerTryTimeout}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOverrides(tt.maxRetries, tt.perTry)
			if got != tt.want {
				t.Errorf("ParseOverrides(%q, %q) = %+v, want %+v", tt.maxRetries, tt.perTry, got, tt.want)
			}
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Errorf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrBadOverride) {
				t.Fatalf("error %v does not wrap ErrBadOverride", err)
			}
			for _, h := range tt.wantErr {
				if !strings.Contains(err.Error(), h) {
					t.Errorf("error %q does not name %s", err, h)
				}
			}
		})
	}
}

func TestWith(t *testing.T) {
	route := &Policy{On: On5xx, NumRetries: 2, PerTryTimeout: time.Second, BackoffBase: 25 * time.Millisecond, BackoffMax: 250 * time.Millisecond}
	before := *route
	tests := []struct {
		name string
		p    *Policy
		o    Overrides
		want Policy
	}{
		{name: "no overrides", p: route, want: before},
		{name: "retries", p: route, o: Overrides{NumRetries: 5, HasNumRetries: true}, want: Policy{On: On5xx, NumRetries: 5, PerTryTimeout: time.Second, BackoffBase: 25 * time.Millisecond, BackoffMax: 250 * time.Millisecond}},
		{name: "no retries", p: route, o: Overrides{HasNumRetries: true}, want: Policy{On: On5xx, PerTryTimeout: time.Second, BackoffBase: 25 * time.Millisecond, BackoffMax: 250 * time.Millisecond}},
		{name: "per-try timeout", p: route, o: Overrides{PerTryTimeout: 100 * time.Millisecond, HasPerTryTimeout: true}, want: Policy{On: On5xx, NumRetries: 2, PerTryTimeout: 100 * time.Millisecond, BackoffBase: 25 * time.Millisecond, BackoffMax: 250 * time.Millisecond}},
		{name: "per-try timeout off", p: route, o: Overrides{HasPerTryTimeout: true}, want: Policy{On: On5xx, NumRetries: 2, BackoffBase: 25 * time.Millisecond, BackoffMax: 250 * time.Millisecond}},
		{name: "a route without retries still retries nothing", p: nil, o: Overrides{NumRetries: 3, HasNumRetries: true, PerTryTimeout: time.Second, HasPerTryTimeout: true}, want: Policy{NumRetries: 3, PerTryTimeout: time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.p.With(tt.o)
			if got != tt.want {
				t.Errorf("With = %+v, want %+v", got, tt.want)
			}
			if got.Retriable(Outcome{Reset: true, GRPCStatus: -1}) != (tt.p != nil) {
				t.Error("With changed what is retried")
			}
		})
	}
	if *route != before {
		t.Errorf("With changed the route's policy: %+v", *route)
	}
}

func TestHotPathAllocs(t *testing.T) {
	p, err := New(config.RetryPolicy{RetryOn: "5xx,unavailable", NumRetries: 2})
	if err != nil {
		t.Fatal(err)
	}
	o := Outcome{HTTPStatus: 200, GRPCStatus: 14}
	for name, f := range map[string]func(){
		"Retriable": func() { p.Retriable(o) },
		"Backoff":   func() { p.Backoff(2, nil) },
		"ParseOverrides+With": func() {
			ov, _ := ParseOverrides("3", "250")
			q := p.With(ov)
			q.Retriable(o)
		},
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s allocates %v times", name, n)
		}
	}
}

func BenchmarkRetriable(b *testing.B) {
	p, err := New(config.RetryPolicy{RetryOn: "5xx,reset,connect-failure,unavailable", NumRetries: 2})
	if err != nil {
		b.Fatal(err)
	}
	o := Outcome{HTTPStatus: 200, GRPCStatus: 14}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if p.Retriable(o) {
			n++
		}
	}
	_ = n
}

func BenchmarkBackoff(b *testing.B) {
	p, err := New(config.RetryPolicy{RetryOn: "5xx"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var d time.Duration
	for b.Loop() {
		d += p.Backoff(3, nil)
	}
	_ = d
}

func BenchmarkOverrides(b *testing.B) {
	p, err := New(config.RetryPolicy{RetryOn: "5xx", NumRetries: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		ov, _ := ParseOverrides("3", "250")
		q := p.With(ov)
		n += q.NumRetries
	}
	_ = n
}
