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

// The fields. Literal is text between operators; None is no field (an Op's
// Alt when it has no fallback).
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

	None Field = Literal
)

// Op is one piece of a format: a literal, or a field cut to Max bytes
// (0: whole).
type Op struct {
	Field Field
	// Alt is printed when Field is not known: B in %REQ(A?B)% when both
	// are headers the access log records.
	Alt  Field
	Text string // the literal
	Max  int
	// Number marks an operator Envoy's json_format writes as a JSON
	// number (%RESPONSE_CODE%, %DURATION%, ...); headers are strings even
	// when their values are digits, as in Envoy.
	Number bool
	// Time is the layout of %START_TIME(...)%; nil is Envoy's default
	// (RFC 3339 with milliseconds, UTC).
	Time []TimePart
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

// responseTrailers: grpc-status, as its number.
var responseTrailers = map[string]Field{"grpc-status": GRPCStatusNumber}

// headerOperators are the operators with a header name for argument.
var headerOperators = []struct {
	prefix  string
	headers map[string]Field
}{
	{"REQ(", requestHeaders}, {"REQUEST_HEADER(", requestHeaders},
	{"RESP(", responseHeaders}, {"RESPONSE_HEADER(", responseHeaders},
	{"TRAILER(", responseTrailers}, {"RESPONSE_TRAILER(", responseTrailers},
}

// command is an operator without an argument: its field and whether
// json_format writes it as a number.
type command struct {
	field  Field
	number bool
}

// commands are the operators without a header argument.
var commands = map[string]command{
	"START_TIME":                             {StartTime, false},
	"PROTOCOL":                               {Protocol, false},
	"RESPONSE_CODE":                          {ResponseCode, true},
	"RESPONSE_FLAGS":                         {ResponseFlags, false},
	"BYTES_RECEIVED":                         {BytesReceived, true},
	"BYTES_SENT":                             {BytesSent, true},
	"DURATION":                               {Duration, true},
	"UPSTREAM_SERVICE_TIME":                  {UpstreamServiceTime, true},
	"UPSTREAM_HOST":                          {UpstreamHost, false},
	"UPSTREAM_CLUSTER":                       {UpstreamCluster, false},
	"ROUTE_NAME":                             {RouteName, false},
	"DOWNSTREAM_REMOTE_ADDRESS":              {DownstreamRemoteAddress, false},
	"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": {DownstreamRemoteAddressWithoutPort, false},
	"DOWNSTREAM_PEER_ADDRESS":                {DownstreamRemoteAddress, false},
	"GRPC_STATUS":                            {GRPCStatus, false},
	"GRPC_STATUS(CAMEL_STRING)":              {GRPCStatus, false},
	"GRPC_STATUS(NUMBER)":                    {GRPCStatusNumber, true},
	"UPSTREAM_REQUEST_ATTEMPT_COUNT":         {Attempts, true},
	"TRACE_ID":                               {TraceID, false},
	"HOSTNAME":                               {Hostname, false},
}

// Text parses a format: value. "envoy" is Default.
func Text(format string) ([]Op, error) {
	if format == "envoy" {
		format = Default
	}
	return Parse(format)
}

// Parse parses a string in Envoy's format language. %% is a literal %.
func Parse(format string) ([]Op, error) {
	var ops []Op
	var lit strings.Builder
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
		if strings.HasPrefix(s, "%") {
			lit.WriteByte('%')
			s = s[1:]
			continue
		}
		j := closing(s)
		if j < 0 {
			return nil, fmt.Errorf("unterminated operator %q: an operator is %%NAME%% (write %%%% for a literal %%)", "%"+s)
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

// closing is the index of the % that ends the operator s starts with: the
// first one outside its parentheses, as %START_TIME(%s.%3f)% holds some.
func closing(s string) int {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
		case '%':
			if depth <= 0 {
				return i
			}
		}
	}
	return -1
}

// operator parses one operator's text, between its percent signs.
func operator(text string) (Op, error) {
	name, max := text, 0
	// A truncation, :N, follows the name or the closing parenthesis.
	if k := strings.LastIndexByte(text, ':'); k > 0 && k > strings.LastIndexByte(text, ')') {
		n, err := strconv.Atoi(text[k+1:])
		if err != nil || n <= 0 {
			return Op{}, fmt.Errorf("operator %%%s%%: the length after ':' must be a positive number", text)
		}
		name, max = text[:k], n
	}
	if layout, ok := strings.CutPrefix(name, "START_TIME("); ok {
		layout, ok = strings.CutSuffix(layout, ")")
		if !ok {
			return Op{}, fmt.Errorf("operator %%%s%%: missing ')'", text)
		}
		parts, err := parseTime(layout)
		if err != nil {
			return Op{}, fmt.Errorf("operator %%%s%%: %w", text, err)
		}
		return Op{Field: StartTime, Max: max, Time: parts}, nil
	}
	for _, p := range headerOperators {
		if rest, ok := strings.CutPrefix(name, p.prefix); ok {
			arg, ok := strings.CutSuffix(rest, ")")
			if !ok {
				return Op{}, fmt.Errorf("operator %%%s%%: missing ')'", text)
			}
			f, alt, err := header(arg, p.headers)
			if err != nil {
				return Op{}, fmt.Errorf("operator %%%s%%: %w", text, err)
			}
			return Op{Field: f, Alt: alt, Max: max}, nil
		}
	}
	if c, ok := commands[name]; ok {
		return Op{Field: c.field, Max: max, Number: c.number && max == 0}, nil
	}
	return Op{}, fmt.Errorf("unknown operator %%%s%%", text)
}

// header resolves a %REQ()% or %RESP()% argument, "A" or "A?B" (B when A
// is absent). A header the access log does not record is skipped, so
// %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% is the path; when both are recorded,
// B is the fallback printed when A is not known.
func header(arg string, known map[string]Field) (Field, Field, error) {
	var found []Field
	for _, h := range strings.SplitN(arg, "?", 2) {
		if f, ok := known[strings.ToLower(h)]; ok {
			found = append(found, f)
		}
	}
	switch len(found) {
	case 2:
		return found[0], found[1], nil
	case 1:
		return found[0], None, nil
	}
	names := make([]string, 0, len(known))
	for h := range known {
		names = append(names, h)
	}
	slices.Sort(names)
	return 0, 0, fmt.Errorf("%s is not a header the access log records (it records %s)", arg, strings.Join(names, ", "))
}

// JSONField is one key of a json_format and the operators of its value.
type JSONField struct {
	Key string
	Ops []Op
}

// JSON parses a json_format: each value in Envoy's format language, the
// keys sorted, as Envoy writes them (its dictionary is a protobuf Struct).
// An error names the key.
func JSON(format map[string]string) ([]JSONField, error) {
	keys := make([]string, 0, len(format))
	for k := range format {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fields := make([]JSONField, 0, len(keys))
	for _, k := range keys {
		ops, err := Parse(format[k])
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
		fields = append(fields, JSONField{Key: k, Ops: ops})
	}
	return fields, nil
}
