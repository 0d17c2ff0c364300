package accesslog

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/accesslog/envoyfmt"
	"github.com/sightline-proxy/sightline/proxy/config"
)

// envoyDefaultLine is the pattern log shippers use for Envoy's default
// access-log line (the shape of Filebeat's Envoy module's grok pattern):
// a bracketed time, the quoted request line, the numbers, then five quoted
// fields.
var envoyDefaultLine = regexp.MustCompile(`^\[(\S+)\] "(\S+) (\S+) (\S+)" (\d+) (\S+) (\d+) (\d+) (\d+) (\S+) "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)"$`)

func TestTextFormat(t *testing.T) {
	none := &Entry{}
	none.Reset()
	tests := []struct {
		name   string
		format string
		e      *Entry
		want   string
	}{
		{"envoy default", "envoy", fullEntry(),
			`[2026-11-23T20:30:05.123Z] "POST /grpc.testing.TestService/UnaryCall HTTP/2" 200 UH,URX 123 4567 12 10 "203.0.113.9" "grpc-go/1.85.0 "quoted"" "4b0c1f0e-6a4f-4f7e-9d38-4a7b0b9f1c11" "my-service:10000" "127.0.0.1:5101"` + "\n"},
		{"envoy default, nothing known", "envoy", none,
			`[-] "- - -" 0 - 0 0 0 - "-" "-" "-" "-" "-"` + "\n"},
		{"grpc status and more", "%GRPC_STATUS% %GRPC_STATUS(NUMBER)% %UPSTREAM_CLUSTER% %ROUTE_NAME% %UPSTREAM_REQUEST_ATTEMPT_COUNT% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %TRACE_ID%", fullEntry(),
			"Unavailable 14 primary home 2 10.0.0.7 4bf92f3577b34da6a3ce929d0e0e4736\n"},
		{"not a gRPC call", "%GRPC_STATUS%|%GRPC_STATUS(NUMBER)%|%RESP(X-SIGHTLINE-UPSTREAM-SERVICE-TIME)%", none, "-|-|-\n"},
		{"truncated", "%REQ(:PATH):6%", fullEntry(), "/grpc.\n"},
		{"newline kept once", "%RESPONSE_CODE%\n", fullEntry(), "200\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops, err := envoyfmt.Parse(tt.format)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(appendText(nil, ops, tt.e)); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestEnvoyFormatFile: a logger with format: envoy writes lines that an
// Envoy log parser reads field by field.
func TestEnvoyFormatFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	st := newStats()
	l := newTestLogger(t, config.AccessLog{Path: path, Format: "envoy", FlushInterval: config.Duration(time.Hour)}, st)
	e := fullEntry()
	e.UserAgent = "curl/8.5.0"
	l.Log(e)
	l.Log(e)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := regexp.MustCompile("\n").Split(string(b), -1)
	if len(lines) != 3 || lines[2] != "" {
		t.Fatalf("want 2 lines, got %q", b)
	}
	m := envoyDefaultLine.FindStringSubmatch(lines[0])
	if m == nil {
		t.Fatalf("Envoy's pattern does not match %q", lines[0])
	}
	for i, want := range map[int]string{2: "POST", 5: "200", 6: "UH,URX", 9: "12", 10: "10", 12: "curl/8.5.0", 15: "127.0.0.1:5101"} {
		if m[i] != want {
			t.Errorf("field %d = %q, want %q", i, m[i], want)
		}
	}
	if st.Written.Value() != 2 {
		t.Errorf("written = %d, want 2", st.Written.Value())
	}
}
