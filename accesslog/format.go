package accesslog

import (
	"encoding/json"
	"net"
	"os"
	"strconv"
	"unicode/utf8"

	"google.golang.org/grpc/codes"

	"github.com/sightline-proxy/sightline/accesslog/envoyfmt"
)

// hostname is %HOSTNAME%, read once.
var hostname = func() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}()

// appendText renders e with a format parsed by envoyfmt, as Envoy renders
// its text formats: "-" for a value not known, times in UTC with
// milliseconds, durations in whole milliseconds, gRPC status by name.
// It ends the line with a newline when the format does not.
func appendText(b []byte, ops []envoyfmt.Op, e *Entry) []byte {
	b = appendOps(b, ops, e)
	if len(b) == 0 || b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	return b
}

// appendOps renders ops, "-" for each value not known.
func appendOps(b []byte, ops []envoyfmt.Op, e *Entry) []byte {
	for i := range ops {
		var ok bool
		if b, ok = appendOp(b, &ops[i], e); !ok {
			b = append(b, '-')
		}
	}
	return b
}

// appendOp appends op's value, cut to op.Max bytes, and reports whether it
// was known; when it was not, nothing is appended.
func appendOp(b []byte, op *envoyfmt.Op, e *Entry) ([]byte, bool) {
	if op.Field == envoyfmt.Literal {
		return append(b, op.Text...), true
	}
	start := len(b)
	b, ok := appendField(b, op, op.Field, e)
	if !ok && op.Alt != envoyfmt.None {
		b, ok = appendField(b, op, op.Alt, e)
	}
	if op.Max > 0 && len(b)-start > op.Max {
		b = b[:start+op.Max]
	}
	return b, ok
}

// appendField appends e's value of f, as Envoy prints it, and reports
// whether it was known.
func appendField(b []byte, op *envoyfmt.Op, f envoyfmt.Field, e *Entry) ([]byte, bool) {
	switch f {
	case envoyfmt.StartTime:
		switch {
		case e.StartTime.IsZero():
			return b, false
		case op.Time != nil:
			return envoyfmt.AppendTime(b, e.StartTime, op.Time), true
		}
		return e.StartTime.UTC().AppendFormat(b, timeLayout), true
	case envoyfmt.Method:
		return appendStr(b, e.Method)
	case envoyfmt.Path:
		if e.PathQuery != "" {
			return appendStr(b, e.PathQuery)
		}
		return appendStr(b, e.Path)
	case envoyfmt.Authority:
		return appendStr(b, e.Authority)
	case envoyfmt.UserAgent:
		return appendStr(b, e.UserAgent)
	case envoyfmt.XForwardedFor:
		return appendStr(b, e.XForwardedFor)
	case envoyfmt.RequestID:
		return appendStr(b, e.RequestID)
	case envoyfmt.Protocol:
		return appendStr(b, e.Protocol)
	case envoyfmt.ResponseCode:
		return strconv.AppendInt(b, int64(e.ResponseCode), 10), true // 0: none sent, as Envoy prints it
	case envoyfmt.ResponseFlags:
		return appendStr(b, e.ResponseFlags)
	case envoyfmt.BytesReceived:
		return strconv.AppendInt(b, e.BytesReceived, 10), true
	case envoyfmt.BytesSent:
		return strconv.AppendInt(b, e.BytesSent, 10), true
	case envoyfmt.Duration:
		return strconv.AppendInt(b, e.Duration.Milliseconds(), 10), true
	case envoyfmt.UpstreamServiceTime:
		if e.UpstreamServiceTime < 0 {
			return b, false
		}
		return strconv.AppendInt(b, e.UpstreamServiceTime.Milliseconds(), 10), true
	case envoyfmt.UpstreamHost:
		return appendStr(b, e.UpstreamHost)
	case envoyfmt.UpstreamCluster:
		return appendStr(b, e.UpstreamCluster)
	case envoyfmt.RouteName:
		return appendStr(b, e.RouteName)
	case envoyfmt.DownstreamRemoteAddress:
		return appendStr(b, e.DownstreamRemoteAddress)
	case envoyfmt.DownstreamRemoteAddressWithoutPort:
		host, _, err := net.SplitHostPort(e.DownstreamRemoteAddress)
		if err != nil {
			host = e.DownstreamRemoteAddress
		}
		return appendStr(b, host)
	case envoyfmt.GRPCStatus:
		if e.GRPCStatus < 0 {
			return b, false
		}
		return append(b, codes.Code(e.GRPCStatus).String()...), true
	case envoyfmt.GRPCStatusNumber:
		if e.GRPCStatus < 0 {
			return b, false
		}
		return strconv.AppendInt(b, int64(e.GRPCStatus), 10), true
	case envoyfmt.Attempts:
		return strconv.AppendInt(b, int64(e.Attempts), 10), true
	case envoyfmt.TraceID:
		return appendStr(b, e.TraceID)
	case envoyfmt.Hostname:
		return appendStr(b, hostname)
	}
	return b, false
}

// appendStr appends s and reports whether it is known (not empty).
func appendStr(b []byte, s string) ([]byte, bool) {
	return append(b, s...), s != ""
}

// jsonKey is one key of a json_format, its "key": prefix encoded once.
type jsonKey struct {
	prefix []byte
	ops    []envoyfmt.Op
}

// compileJSON encodes the keys of fields once, for appendJSON.
func compileJSON(fields []envoyfmt.JSONField) []jsonKey {
	keys := make([]jsonKey, len(fields))
	for i, f := range fields {
		k, _ := json.Marshal(f.Key) // a string always encodes
		keys[i] = jsonKey{prefix: append(k, ':'), ops: f.Ops}
	}
	return keys
}

// appendJSON renders e as one JSON object of keys, as Envoy's json_format
// does: a value that is one operator is typed (a number for the numeric
// operators, null when not known, else a string); any other value is a
// string with "-" for each value not known. scratch holds a value while it
// is escaped; it is returned for reuse.
func appendJSON(b, scratch []byte, keys []jsonKey, e *Entry) ([]byte, []byte) {
	b = append(b, '{')
	for i := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, keys[i].prefix...)
		b, scratch = appendJSONValue(b, scratch, keys[i].ops, e)
	}
	return append(b, '}', '\n'), scratch
}

// appendJSONValue appends one json_format value.
func appendJSONValue(b, scratch []byte, ops []envoyfmt.Op, e *Entry) ([]byte, []byte) {
	if len(ops) == 1 && ops[0].Field != envoyfmt.Literal {
		v, ok := appendOp(scratch[:0], &ops[0], e)
		switch {
		case !ok:
			return append(b, "null"...), v
		case ops[0].Number:
			return append(b, v...), v
		}
		return appendJSONString(b, v), v
	}
	v := appendOps(scratch[:0], ops, e)
	return appendJSONString(b, v), v
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD, as in encoding/json.
func appendJSONString(b, s []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}
