// Package envoyfmt parses access-log format strings in Envoy's format
// language (%START_TIME%, %REQ(:PATH)%, %RESPONSE_FLAGS%, ...) into a list
// of operators, once, at config load: the access log renders the list per
// request without parsing anything. It knows the operators whose values
// Sightline records; any other is an error that names it, so a format
// never prints a silent "-" for something it cannot know.
package envoyfmt

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Default is Envoy's default access-log format, the line Envoy's users'
// parsers (Filebeat's Envoy module, Fluent Bit) read.
const Default = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ` +
	`%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% ` +
	`%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" ` +
	`"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"` + "\n"

// Field is a value an operator prints.
type Field uint8

// The fields. Literal is text between operators.
const (
	Literal Field = iota
	StartTime
	Method
	Path
	Authority
	UserAgent
	XForwardedFor
	RequestID
	Protocol
	ResponseCode
	ResponseFlags
	BytesReceived
	BytesSent
	Duration
	UpstreamServiceTime
	UpstreamHost
	UpstreamCluster
	RouteName
	DownstreamRemoteAddress
	DownstreamRemoteAddressWithoutPort
	GRPCStatus
	GRPCStatusNumber
	Attempts
	TraceID
	Hostname
)

// Op is one piece of a format: a literal, or a field cut to Max bytes
// (0: whole).
type Op struct {
	Field Field
	Text  string // the literal
	Max   int
}

// requestHeaders are the request headers the access log records, by
// Envoy's spelling in %REQ()%.
var requestHeaders = map[string]Field{
	":method": Method, ":path": Path, ":authority": Authority, "host": Authority,
	"user-agent": UserAgent, "x-forwarded-for": XForwardedFor, "x-request-id": RequestID,
}

// responseHeaders: the upstream service time, under Envoy's name and ours.
var responseHeaders = map[string]Field{
	"x-envoy-upstream-service-time": UpstreamServiceTime, "x-sightline-upstream-service-time": UpstreamServiceTime,
}

// commands are the other operators.
var commands = map[string]Field{
	"START_TIME": StartTime, "PROTOCOL": Protocol, "RESPONSE_CODE": ResponseCode,
	"RESPONSE_FLAGS": ResponseFlags, "BYTES_RECEIVED": BytesReceived, "BYTES_SENT": BytesSent,
	"DURATION": Duration, "UPSTREAM_HOST": UpstreamHost, "UPSTREAM_CLUSTER": UpstreamCluster,
	"ROUTE_NAME": RouteName, "DOWNSTREAM_REMOTE_ADDRESS": DownstreamRemoteAddress,
	"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": DownstreamRemoteAddressWithoutPort,
	"DOWNSTREAM_PEER_ADDRESS":                DownstreamRemoteAddress,
	"GRPC_STATUS":                            GRPCStatus, "GRPC_STATUS(CAMEL_STRING)": GRPCStatus, "GRPC_STATUS(NUMBER)": GRPCStatusNumber,
	"UPSTREAM_REQUEST_ATTEMPT_COUNT": Attempts, "TRACE_ID": TraceID, "HOSTNAME": Hostname,
	"REQUEST_DURATION": Duration, "RESPONSE_DURATION": Duration,
}

// Parse parses format. "envoy" is Default.
func Parse(format string) ([]Op, error) {
	if format == "envoy" {
		format = Default
	}
	var ops []Op
	lit := strings.Builder{}
	flush := func() {
		if lit.Len() > 0 {
			ops = append(ops, Op{Field: Literal, Text: lit.String()})
			lit.Reset()
		}
	}
	for s := format; s != ""; {
		i := strings.IndexByte(s, '%')
		if i < 0 {
			lit.WriteString(s)
			break
		}
		lit.WriteString(s[:i])
		s = s[i+1:]
		j := strings.IndexByte(s, '%')
		if j < 0 {
			return nil, fmt.Errorf("unterminated operator %q: an operator is %%NAME%%", "%"+s)
		}
		op, err := operator(s[:j])
		if err != nil {
			return nil, err
		}
		flush()
		ops = append(ops, op)
		s = s[j+1:]
	}
	flush()
	return ops, nil
}

// operator parses one operator's text, between its percent signs.
func operator(text string) (Op, error) {
	if text == "" {
		return Op{}, fmt.Errorf("empty operator %%%%: Envoy's format language has no escape for %%")
	}
	name, max := text, 0
	// A truncation, :N, follows the name or the closing parenthesis.
	if k := strings.LastIndexByte(text, ':'); k > 0 && k > strings.LastIndexByte(text, ')') {
		n, err := strconv.Atoi(text[k+1:])
		if err != nil || n <= 0 {
			return Op{}, fmt.Errorf("operator %%%s%%: the length after ':' must be a positive number", text)
		}
		name, max = text[:k], n
	}
	for _, p := range []struct {
		prefix  string
		headers map[string]Field
	}{{"REQ(", requestHeaders}, {"RESP(", responseHeaders}} {
		if rest, ok := strings.CutPrefix(name, p.prefix); ok {
			arg, ok := strings.CutSuffix(rest, ")")
			if !ok {
				return Op{}, fmt.Errorf("operator %%%s%%: missing ')'", text)
			}
			f, err := header(arg, p.headers)
			if err != nil {
				return Op{}, fmt.Errorf("operator %%%s%%: %w", text, err)
			}
			return Op{Field: f, Max: max}, nil
		}
	}
	if f, ok := commands[name]; ok {
		return Op{Field: f, Max: max}, nil
	}
	return Op{}, fmt.Errorf("unknown operator %%%s%%", text)
}

// header resolves a %REQ()% or %RESP()% argument, "A" or "A?B" (B when A
// is absent): the first of them the access log records.
func header(arg string, known map[string]Field) (Field, error) {
	for _, h := range strings.Split(arg, "?") {
		if f, ok := known[strings.ToLower(h)]; ok {
			return f, nil
		}
	}
	names := make([]string, 0, len(known))
	for h := range known {
		names = append(names, h)
	}
	slices.Sort(names)
	return 0, fmt.Errorf("%s is not a header the access log records (it records %s)", arg, strings.Join(names, ", "))
}
