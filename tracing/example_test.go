package tracing_test

import (
	"context"
	"fmt"

	"golang.org/x/net/http2/hpack"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/tracing"
)

// Example shows the calls the HTTP/2 engine makes for one request with one
// upstream attempt. With tracing off (no otlp) the same calls cost nothing.
func Example() {
	tr, err := tracing.New(config.Tracing{Sampling: 100, Propagation: []string{"tracecontext"}}, config.Node{ID: "n1"})
	if err != nil {
		panic(err)
	}
	defer tr.Shutdown(context.Background())

	down := []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":path", Value: "/pkg.Echo/Say"}}
	id, generated := tracing.RequestID("", config.RequestID{})
	_ = id

	ctx, srv := tr.StartServer(context.Background(), &tracing.HPACKCarrier{Fields: down},
		tracing.Request{Method: "POST", Path: "/pkg.Echo/Say", GRPC: true, RequestID: id})

	// Each attempt gets its own copy of the headers and its own client span.
	up := &tracing.HPACKCarrier{Fields: append([]hpack.HeaderField(nil), down...)}
	up.Set(tracing.RequestIDHeader, id)
	_, cli := tr.StartClient(ctx, up, tracing.Request{Method: "POST", Path: "/pkg.Echo/Say", GRPC: true, Cluster: "primary"})
	cli.End(tracing.Result{HTTPStatus: 200, HasGRPCStatus: true})
	srv.End(tracing.Result{HTTPStatus: 200, HasGRPCStatus: true, Cluster: "primary"})

	fmt.Println(tr.Enabled(), generated, len(up.Fields))
	// Output: false true 3
}
