package accesslog

import (
	"context"
	"encoding/json"
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
		{"grpc status and more", "%GRPC_STATUS% %GRPC_STATUS(NUMBER)% %TRAILER(GRPC-STATUS)% %UPSTREAM_CLUSTER% %ROUTE_NAME% %UPSTREAM_REQUEST_ATTEMPT_COUNT% %DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %TRACE_ID%", fullEntry(),
			"Unavailable 14 14 primary home 2 10.0.0.7:51234 10.0.0.7 4bf92f3577b34da6a3ce929d0e0e4736\n"},
		{"nothing known", "%GRPC_STATUS%|%GRPC_STATUS(NUMBER)%|%RESP(X-SIGHTLINE-UPSTREAM-SERVICE-TIME)%|%UPSTREAM_SERVICE_TIME%|%UPSTREAM_CLUSTER%|%ROUTE_NAME%|%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%|%TRACE_ID%|%REQ(X-REQUEST-ID)%|%RESPONSE_FLAGS%|%START_TIME(%s)%",
			none, "-|-|-|-|-|-|-|-|-|-|-\n"},
		{"counts known as 0", "%RESPONSE_CODE% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %UPSTREAM_REQUEST_ATTEMPT_COUNT%", none, "0 0 0 0 0\n"},
		{"upstream service time", "%UPSTREAM_SERVICE_TIME% %RESP(X-SIGHTLINE-UPSTREAM-SERVICE-TIME)% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", fullEntry(), "10 10 10\n"},
		{"v6 address without port", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", &Entry{DownstreamRemoteAddress: "[::1]:4000", GRPCStatus: -1}, "::1\n"},
		{"path with its query", "%REQ(:PATH)%", &Entry{Path: "/search", PathQuery: "/search?q=a%20b&x=1", GRPCStatus: -1}, "/search?q=a%20b&x=1\n"},
		{"fallback header", "%REQ(X-FORWARDED-FOR?X-REQUEST-ID)%", &Entry{RequestID: "id-1", GRPCStatus: -1}, "id-1\n"},
		{"first header wins", "%REQ(X-FORWARDED-FOR?X-REQUEST-ID)%", fullEntry(), "203.0.113.9\n"},
		{"start time layout", "%START_TIME(%Y/%m/%d %H:%M:%S %s.%3f)%", fullEntry(), "2026/11/23 20:30:05 1795465805.123\n"},
		{"truncated", "%REQ(:PATH):6% %START_TIME:10%", fullEntry(), "/grpc. 2026-11-23\n"},
		{"truncated fallback", "%REQ(X-FORWARDED-FOR?:PATH):3%", none, "-\n"},
		{"percent", "%RESPONSE_CODE% 100%%", fullEntry(), "200 100%\n"},
		{"hostname", "%HOSTNAME%", fullEntry(), hostname + "\n"},
		{"newline kept once", "%RESPONSE_CODE%\n", fullEntry(), "200\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops, err := envoyfmt.Text(tt.format)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(appendText(nil, ops, tt.e)); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestJSONFormat: json_format values are typed as Envoy types them: a lone
// numeric operator is a number, a lone operator not known is null, any
// other value a string (with "-" for what is not known), keys sorted.
func TestJSONFormat(t *testing.T) {
	none := &Entry{}
	none.Reset()
	format := map[string]string{
		"status":       "%RESPONSE_CODE%",
		"grpc":         "%GRPC_STATUS(NUMBER)%",
		"grpc_name":    "%GRPC_STATUS%",
		"duration":     "%DURATION%",
		"svc_time":     "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
		"svc_time_num": "%UPSTREAM_SERVICE_TIME%",
		"ua":           "%REQ(USER-AGENT)%",
		"line":         "%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL%",
		"attempts":     "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
		"short":        "%BYTES_SENT:2%",
		"fixed":        "sightline",
		"empty":        "",
	}
	tests := []struct {
		name string
		e    *Entry
		want string
	}{
		{"known", fullEntry(), `{"attempts":2,"duration":12,"empty":"","fixed":"sightline","grpc":14,"grpc_name":"Unavailable",` +
			`"line":"POST /grpc.testing.TestService/UnaryCall HTTP/2","short":"45","status":200,"svc_time":"10","svc_time_num":10,` +
			`"ua":"grpc-go/1.85.0 \"quoted\""}` + "\n"},
		{"not known", none, `{"attempts":0,"duration":0,"empty":"","fixed":"sightline","grpc":null,"grpc_name":null,` +
			`"line":"- - -","short":"0","status":0,"svc_time":null,"svc_time_num":null,"ua":null}` + "\n"},
		{"escaped", &Entry{UserAgent: "a\tb\x01\xff\u00e9", GRPCStatus: -1, UpstreamServiceTime: -1}, ""},
	}
	fields, err := envoyfmt.JSON(format)
	if err != nil {
		t.Fatal(err)
	}
	keys := compileJSON(fields)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := appendJSON(nil, nil, keys, tt.e)
			var m map[string]any
			if err := json.Unmarshal(got, &m); err != nil {
				t.Fatalf("not JSON: %v: %s", err, got)
			}
			if tt.want == "" {
				if ua := m["ua"]; ua != "a\tb\x01\ufffd\u00e9" {
					t.Errorf("ua = %q", ua)
				}
				return
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
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

// TestJSONFormatFile: a logger with json_format writes one JSON object a
// line, each line parsed by a JSON reader with numbers as numbers.
func TestJSONFormatFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	st := newStats()
	l := newTestLogger(t, config.AccessLog{Path: path, FlushInterval: config.Duration(time.Hour),
		JSONFormat: map[string]string{"code": "%RESPONSE_CODE%", "path": "%REQ(:PATH)%", "host": "%UPSTREAM_HOST%"}}, st)
	e := fullEntry()
	l.Log(e)
	e.Reset()
	e.ResponseCode = 503
	l.Log(e)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"code":200,"host":"127.0.0.1:5101","path":"/grpc.testing.TestService/UnaryCall"}` + "\n" +
		`{"code":503,"host":null,"path":null}` + "\n"
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	if st.Written.Value() != 2 {
		t.Errorf("written = %d, want 2", st.Written.Value())
	}
}
