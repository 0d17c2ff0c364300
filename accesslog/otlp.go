package accesslog

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/sightline-proxy/sightline/internal/version"
	"github.com/sightline-proxy/sightline/proxy/config"
)

// An access log with otlp: set goes to an OpenTelemetry collector as OTLP
// logs, so that one collector takes a proxy's traces, metrics and logs.
// The lines are made and batched as a file's are (the request path is the
// same), and the batch writer hands each batch to an otlpWriter, which
// exports it as one request: one LogRecord per line. A JSON line (the
// default layout, or json_format) becomes the record's attributes, its
// trace_id the record's trace id and its start_time the record's time; a
// text line (format: envoy, or an Envoy format) becomes its body. A batch
// the collector does not take within the timeout is dropped and counted in
// accesslog.<name>.dropped, as a failed file write is.

// otlpWriter exports batches of lines; it is the batch writer's output,
// used from its goroutine only.
type otlpWriter struct {
	export   func(context.Context, *collogs.ExportLogsServiceRequest) error
	close    func() error
	timeout  time.Duration
	json     bool // lines are JSON objects
	resource *resourcepb.Resource
	scope    *commonpb.InstrumentationScope
}

// otlpOpener returns the opener of an OTLP access log: it connects (gRPC
// connects lazily, so a collector that is down is not an error at load).
func otlpOpener(o *config.AccessLogOTLP, jsonLines bool, res *resource.Resource) opener {
	return func() (io.WriteCloser, error) {
		w := &otlpWriter{
			timeout:  o.Timeout.D(),
			json:     jsonLines,
			resource: resourceProto(res),
			scope:    &commonpb.InstrumentationScope{Name: "sightline", Version: version.Get().Version},
		}
		if w.timeout <= 0 {
			w.timeout = 10 * time.Second
		}
		var err error
		if o.Protocol == "http" {
			w.export, w.close = httpExporter(o)
		} else {
			w.export, w.close, err = grpcExporter(o)
		}
		if err != nil {
			return nil, fmt.Errorf("accesslog: otlp %s: %w", o.Endpoint, err)
		}
		return w, nil
	}
}

func grpcExporter(o *config.AccessLogOTLP) (func(context.Context, *collogs.ExportLogsServiceRequest) error, func() error, error) {
	creds := insecure.NewCredentials()
	if !o.Insecure {
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	cc, err := grpc.NewClient(o.Endpoint, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, nil, err
	}
	client := collogs.NewLogsServiceClient(cc)
	md := metadata.New(o.Headers)
	export := func(ctx context.Context, req *collogs.ExportLogsServiceRequest) error {
		if len(md) > 0 {
			ctx = metadata.NewOutgoingContext(ctx, md)
		}
		_, err := client.Export(ctx, req)
		return err
	}
	return export, cc.Close, nil
}

func httpExporter(o *config.AccessLogOTLP) (func(context.Context, *collogs.ExportLogsServiceRequest) error, func() error) {
	url := "https://" + o.Endpoint + "/v1/logs"
	if o.Insecure {
		url = "http://" + o.Endpoint + "/v1/logs"
	}
	client := &http.Client{}
	export := func(ctx context.Context, req *collogs.ExportLogsServiceRequest) error {
		body, err := proto.Marshal(req)
		if err != nil {
			return err
		}
		hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		hr.Header.Set("Content-Type", "application/x-protobuf")
		for k, v := range o.Headers {
			hr.Header.Set(k, v)
		}
		resp, err := client.Do(hr)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("collector answered %s", resp.Status)
		}
		return nil
	}
	return export, func() error { client.CloseIdleConnections(); return nil }
}

// Write exports one batch of complete lines as one request. On failure
// nothing counts as written: the collector took none of it, or cannot say
// which.
func (w *otlpWriter) Write(batch []byte) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	defer cancel()
	if err := w.export(ctx, w.request(batch, time.Now())); err != nil {
		return 0, err
	}
	return len(batch), nil
}

// Close closes the connection to the collector.
func (w *otlpWriter) Close() error { return w.close() }

// request turns a batch of lines into one export request.
func (w *otlpWriter) request(batch []byte, now time.Time) *collogs.ExportLogsServiceRequest {
	observed := uint64(now.UnixNano())
	records := make([]*logspb.LogRecord, 0, bytes.Count(batch, newline))
	for line := range bytes.Lines(batch) {
		line = bytes.TrimSuffix(line, newline)
		if len(line) == 0 {
			continue
		}
		r := &logspb.LogRecord{ObservedTimeUnixNano: observed}
		if w.json {
			jsonRecord(r, line)
		} else {
			r.Body = &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: string(line)}}
		}
		records = append(records, r)
	}
	return &collogs.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource:  w.resource,
		ScopeLogs: []*logspb.ScopeLogs{{Scope: w.scope, LogRecords: records}},
	}}}
}

// jsonRecord fills r from a JSON line: each key an attribute (null values
// left out, as OTLP has no null), trace_id the record's trace id,
// start_time its time. A line that is not a JSON object (it cannot be,
// short of a bug) goes whole into the body.
func jsonRecord(r *logspb.LogRecord, line []byte) {
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		r.Body = &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: string(line)}}
		return
	}
	r.Attributes = make([]*commonpb.KeyValue, 0, len(m))
	for k, v := range m {
		if av := anyValue(v); av != nil {
			r.Attributes = append(r.Attributes, &commonpb.KeyValue{Key: k, Value: av})
		}
	}
	if id, ok := m[KeyTraceID].(string); ok {
		if b, err := hex.DecodeString(id); err == nil && len(b) == 16 {
			r.TraceId = b
		}
	}
	if s, ok := m[KeyStartTime].(string); ok {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			r.TimeUnixNano = uint64(t.UnixNano())
		}
	}
}

// anyValue converts a decoded JSON value; nil for null.
func anyValue(v any) *commonpb.AnyValue {
	switch v := v.(type) {
	case string:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}
	case bool:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: v}}
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: i}}
		}
		f, _ := v.Float64()
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: f}}
	case nil:
		return nil
	}
	b, _ := json.Marshal(v) // an object or array: kept as its JSON
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: string(b)}}
}

// resourceProto converts the proxy's OpenTelemetry resource.
func resourceProto(res *resource.Resource) *resourcepb.Resource {
	if res == nil {
		return &resourcepb.Resource{}
	}
	out := &resourcepb.Resource{}
	for _, kv := range res.Attributes() {
		var av *commonpb.AnyValue
		switch kv.Value.Type() {
		case attribute.BOOL:
			av = &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: kv.Value.AsBool()}}
		case attribute.INT64:
			av = &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: kv.Value.AsInt64()}}
		case attribute.FLOAT64:
			av = &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: kv.Value.AsFloat64()}}
		default:
			av = &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: kv.Value.String()}}
		}
		out.Attributes = append(out.Attributes, &commonpb.KeyValue{Key: string(kv.Key), Value: av})
	}
	return out
}

// describe names an access log's destination in the proxy's own log.
func describe(cfg config.AccessLog) string {
	if o := cfg.OTLP; o != nil {
		return "otlp " + strings.ToLower(o.Protocol) + "://" + o.Endpoint
	}
	return cfg.Path
}

var errNoDestination = errors.New(`accesslog: no destination: a path ("-" for stdout) or otlp`)
