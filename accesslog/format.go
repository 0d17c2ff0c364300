package accesslog

import (
	"net"
	"os"
	"strconv"

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
	for _, op := range ops {
		start := len(b)
		switch op.Field {
		case envoyfmt.Literal:
			b = append(b, op.Text...)
			continue
		case envoyfmt.StartTime:
			if e.StartTime.IsZero() {
				b = append(b, '-')
			} else {
				b = e.StartTime.UTC().AppendFormat(b, timeLayout)
			}
		case envoyfmt.Method:
			b = appendStr(b, e.Method)
		case envoyfmt.Path:
			b = appendStr(b, e.Path)
		case envoyfmt.Authority:
			b = appendStr(b, e.Authority)
		case envoyfmt.UserAgent:
			b = appendStr(b, e.UserAgent)
		case envoyfmt.XForwardedFor:
			b = appendStr(b, e.XForwardedFor)
		case envoyfmt.RequestID:
			b = appendStr(b, e.RequestID)
		case envoyfmt.Protocol:
			b = appendStr(b, e.Protocol)
		case envoyfmt.ResponseCode:
			b = strconv.AppendInt(b, int64(e.ResponseCode), 10) // 0: none sent, as Envoy prints it
		case envoyfmt.ResponseFlags:
			b = appendStr(b, e.ResponseFlags)
		case envoyfmt.BytesReceived:
			b = strconv.AppendInt(b, e.BytesReceived, 10)
		case envoyfmt.BytesSent:
			b = strconv.AppendInt(b, e.BytesSent, 10)
		case envoyfmt.Duration:
			b = strconv.AppendInt(b, e.Duration.Milliseconds(), 10)
		case envoyfmt.UpstreamServiceTime:
			if e.UpstreamServiceTime < 0 {
				b = append(b, '-')
			} else {
				b = strconv.AppendInt(b, e.UpstreamServiceTime.Milliseconds(), 10)
			}
		case envoyfmt.UpstreamHost:
			b = appendStr(b, e.UpstreamHost)
		case envoyfmt.UpstreamCluster:
			b = appendStr(b, e.UpstreamCluster)
		case envoyfmt.RouteName:
			b = appendStr(b, e.RouteName)
		case envoyfmt.DownstreamRemoteAddress:
			b = appendStr(b, e.DownstreamRemoteAddress)
		case envoyfmt.DownstreamRemoteAddressWithoutPort:
			host, _, err := net.SplitHostPort(e.DownstreamRemoteAddress)
			if err != nil {
				host = e.DownstreamRemoteAddress
			}
			b = appendStr(b, host)
		case envoyfmt.GRPCStatus:
			if e.GRPCStatus < 0 {
				b = append(b, '-')
			} else {
				b = append(b, codes.Code(e.GRPCStatus).String()...)
			}
		case envoyfmt.GRPCStatusNumber:
			if e.GRPCStatus < 0 {
				b = append(b, '-')
			} else {
				b = strconv.AppendInt(b, int64(e.GRPCStatus), 10)
			}
		case envoyfmt.Attempts:
			b = strconv.AppendInt(b, int64(e.Attempts), 10)
		case envoyfmt.TraceID:
			b = appendStr(b, e.TraceID)
		case envoyfmt.Hostname:
			b = appendStr(b, hostname)
		}
		if op.Max > 0 && len(b)-start > op.Max {
			b = b[:start+op.Max]
		}
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	return b
}

// appendStr appends s, or "-" when it is empty (Envoy's absent value).
func appendStr(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return append(b, s...)
}
