package tracing

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/http2/hpack"

	"github.com/sightline-proxy/sightline/proxy/config"
)

var (
	testTraceID = trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	testSpanID  = trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
)

// carriers returns a fresh instance of each adapter, with a pseudo-header and
// an unrelated field present as the engine would have them.
func carriers() map[string]func() Carrier {
	return map[string]func() Carrier{
		"http.Header": func() Carrier { return HTTPHeader(http.Header{"Accept": {"*/*"}}) },
		"hpack": func() Carrier {
			return &HPACKCarrier{Fields: []hpack.HeaderField{{Name: ":path", Value: "/x"}, {Name: "accept", Value: "*/*"}}}
		},
	}
}

func TestPropagationRoundTrip(t *testing.T) {
	tests := []struct {
		format  string
		headers []string // what inject must write
		sampled bool
	}{
		{"tracecontext", []string{"traceparent"}, true},
		{"tracecontext", []string{"traceparent"}, false},
		{"b3", []string{"b3"}, true},
		{"b3", []string{"b3"}, false},
		{"b3multi", []string{"x-b3-traceid", "x-b3-spanid", "x-b3-sampled"}, true},
		{"b3multi", []string{"x-b3-traceid", "x-b3-spanid", "x-b3-sampled"}, false},
	}
	for _, tt := range tests {
		for cname, newCarrier := range carriers() {
			t.Run(tt.format+"/"+cname, func(t *testing.T) {
				prop, err := NewPropagator([]string{tt.format})
				if err != nil {
					t.Fatal(err)
				}
				flags := trace.TraceFlags(0)
				if tt.sampled {
					flags = trace.FlagsSampled
				}
				sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: testTraceID, SpanID: testSpanID, TraceFlags: flags, Remote: true})
				c := newCarrier()
				prop.Inject(trace.ContextWithSpanContext(context.Background(), sc), c)
				for _, h := range tt.headers {
					if c.Get(h) == "" {
						t.Errorf("inject did not write %q (keys %v)", h, c.Keys())
					}
				}
				got := trace.SpanContextFromContext(prop.Extract(context.Background(), c))
				if got.TraceID() != testTraceID || got.SpanID() != testSpanID || got.IsSampled() != tt.sampled || !got.IsRemote() {
					t.Errorf("extracted %+v, want trace %s span %s sampled %v", got, testTraceID, testSpanID, tt.sampled)
				}
			})
		}
	}
}

func TestPropagationBaggageRoundTrip(t *testing.T) {
	for cname, newCarrier := range carriers() {
		t.Run(cname, func(t *testing.T) {
			prop, err := NewPropagator([]string{"tracecontext", "baggage"})
			if err != nil {
				t.Fatal(err)
			}
			m, _ := baggage.NewMember("tenant", "acme")
			b, _ := baggage.New(m)
			ctx := baggage.ContextWithBaggage(context.Background(), b)
			c := newCarrier()
			prop.Inject(ctx, c)
			if c.Get("baggage") != "tenant=acme" {
				t.Fatalf("baggage header = %q", c.Get("baggage"))
			}
			got := baggage.FromContext(prop.Extract(context.Background(), c))
			if v := got.Member("tenant").Value(); v != "acme" {
				t.Errorf("extracted tenant = %q, want acme", v)
			}
		})
	}
}

// TestPropagationLastWins documents the composite's extract order: when a
// request carries two formats with different ids, the last listed wins.
func TestPropagationLastWins(t *testing.T) {
	h := http.Header{}
	h.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.Set("b3", "11111111111111111111111111111111-2222222222222222-1")
	for _, tt := range []struct {
		order []string
		want  string
	}{
		{[]string{"tracecontext", "b3"}, "11111111111111111111111111111111"},
		{[]string{"b3", "tracecontext"}, "4bf92f3577b34da6a3ce929d0e0e4736"},
	} {
		prop, err := NewPropagator(tt.order)
		if err != nil {
			t.Fatal(err)
		}
		got := trace.SpanContextFromContext(prop.Extract(context.Background(), HTTPHeader(h))).TraceID().String()
		if got != tt.want {
			t.Errorf("%v: trace id %s, want %s", tt.order, got, tt.want)
		}
	}
}

func TestNewPropagatorUnknown(t *testing.T) {
	if _, err := NewPropagator([]string{"tracecontext", "jaeger"}); err == nil {
		t.Fatal("want an error for jaeger")
	}
}

// TestHeaderCarrierCanonical checks the fast key table against net/http.
func TestHeaderCarrierCanonical(t *testing.T) {
	for _, k := range []string{"traceparent", "tracestate", "baggage", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "x-b3-flags", "x-b3-parentspanid", "X-Other-key"} {
		if got, want := canonicalKey(k), http.CanonicalHeaderKey(k); got != want {
			t.Errorf("canonicalKey(%q) = %q, want %q", k, got, want)
		}
	}
	h := http.Header{}
	c := HTTPHeader(h)
	c.Set("traceparent", "v")
	if h.Get("Traceparent") != "v" || c.Get("TRACEPARENT") != "v" || len(c.Keys()) != 1 {
		t.Errorf("header %v", h)
	}
	if n := testing.AllocsPerRun(100, func() { c.Get("traceparent") }); n != 0 {
		t.Errorf("Get allocates %v times", n)
	}
}

func TestHPACKCarrierSetReplaces(t *testing.T) {
	c := &HPACKCarrier{Fields: []hpack.HeaderField{
		{Name: "traceparent", Value: "old1"},
		{Name: "accept", Value: "*/*"},
		{Name: "traceparent", Value: "old2"},
	}}
	c.Set("TraceParent", "new")
	c.Set("b3", "x")
	want := []hpack.HeaderField{{Name: "traceparent", Value: "new"}, {Name: "accept", Value: "*/*"}, {Name: "b3", Value: "x"}}
	if len(c.Fields) != len(want) {
		t.Fatalf("fields %v, want %v", c.Fields, want)
	}
	for i := range want {
		if c.Fields[i] != want[i] {
			t.Fatalf("fields %v, want %v", c.Fields, want)
		}
	}
	if got := c.Get("TRACEPARENT"); got != "new" {
		t.Errorf("Get = %q", got)
	}
}

// TestStaleTraceHeadersRemoved: the upstream request carries the proxy's
// trace context and nothing left of the client's that names another
// parent: the other B3 encoding, or a tracestate of a trace the proxy did
// not continue (B3 won, or no parent at all).
func TestStaleTraceHeadersRemoved(t *testing.T) {
	const clientTraceID = "80f198ee56343ba864fe8b2a57d3eff7"
	tests := []struct {
		name        string
		propagation []string
		client      map[string]string
		gone        []string // must not reach the upstream
		kept        []string // must (the proxy's own)
	}{
		{"b3 single wins over x-b3-* and tracestate",
			[]string{"tracecontext", "b3"},
			map[string]string{"x-b3-traceid": clientTraceID, "x-b3-spanid": "e457b5a2e4d86bd1", "x-b3-sampled": "1", "tracestate": "vendor=client"},
			[]string{"x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "tracestate"},
			[]string{"traceparent", "b3"}},
		{"b3multi replaces a single b3 header",
			[]string{"b3multi"},
			map[string]string{"b3": clientTraceID + "-e457b5a2e4d86bd1-1"},
			[]string{"b3"},
			[]string{"x-b3-traceid", "x-b3-spanid"}},
		{"a new trace drops the client's tracestate",
			[]string{"tracecontext"},
			map[string]string{"tracestate": "vendor=orphan"},
			[]string{"tracestate"},
			[]string{"traceparent"}},
	}
	for _, tt := range tests {
		for cname, newCarrier := range carriers() {
			t.Run(tt.name+"/"+cname, func(t *testing.T) {
				tr, err := New(config.Tracing{Sampling: 100, Propagation: tt.propagation},
					config.Node{}, WithExporter(tracetest.NewInMemoryExporter()))
				if err != nil {
					t.Fatal(err)
				}
				defer tr.Shutdown(context.Background())
				down := newCarrier()
				for k, v := range tt.client {
					down.Set(k, v)
				}
				ctx, srv := tr.StartServer(context.Background(), down, Request{Method: "GET", Path: "/"})
				up := down // the engine forwards the client's fields and injects into them
				_, cli := tr.StartClient(ctx, up, Request{Method: "GET", Path: "/"})
				defer srv.End(Result{HTTPStatus: 200})
				defer cli.End(Result{HTTPStatus: 200})
				for _, h := range tt.gone {
					if v := up.Get(h); v != "" {
						t.Errorf("upstream got the client's %s: %q", h, v)
					}
				}
				for _, h := range tt.kept {
					if up.Get(h) == "" {
						t.Errorf("upstream got no %s", h)
					}
				}
			})
		}
	}
}
