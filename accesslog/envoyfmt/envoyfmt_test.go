package envoyfmt

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		format  string
		want    []Op
		wantErr string
	}{
		{format: "%START_TIME% %REQ(:PATH)%", want: []Op{{Field: StartTime}, {Field: Literal, Text: " "}, {Field: Path}}},
		{format: "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH):10%", want: []Op{{Field: Path, Max: 10}}},
		{format: "%REQ(USER-AGENT?X-REQUEST-ID)%", want: []Op{{Field: UserAgent, Alt: RequestID}}},
		{format: "%REQUEST_HEADER(:METHOD)% %RESPONSE_HEADER(X-ENVOY-UPSTREAM-SERVICE-TIME)%", want: []Op{{Field: Method}, {Field: Literal, Text: " "}, {Field: UpstreamServiceTime}}},
		{format: "%req(user-agent)%", wantErr: "unknown operator %req(user-agent)%"},
		{format: "%REQ(User-Agent)% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", want: []Op{{Field: UserAgent}, {Field: Literal, Text: " "}, {Field: UpstreamServiceTime}}},
		{format: "%GRPC_STATUS(NUMBER)%/%GRPC_STATUS%", want: []Op{{Field: GRPCStatusNumber, Number: true}, {Field: Literal, Text: "/"}, {Field: GRPCStatus}}},
		{format: "%TRAILER(GRPC-STATUS)%", want: []Op{{Field: GRPCStatusNumber}}},
		{format: "%RESPONSE_CODE% %DURATION:2%", want: []Op{{Field: ResponseCode, Number: true}, {Field: Literal, Text: " "}, {Field: Duration, Max: 2}}},
		{format: "%UPSTREAM_SERVICE_TIME%", want: []Op{{Field: UpstreamServiceTime, Number: true}}},
		{format: "plain text\n", want: []Op{{Field: Literal, Text: "plain text\n"}}},
		{format: "100%% done", want: []Op{{Field: Literal, Text: "100% done"}}},
		{format: "%%%BYTES_SENT%%%", want: []Op{{Field: Literal, Text: "%"}, {Field: BytesSent, Number: true}, {Field: Literal, Text: "%"}}},
		{format: "%START_TIME(%s.%3f)%", want: []Op{{Field: StartTime, Time: []TimePart{{Epoch: true}, {Text: "."}, {Digits: 3}}}}},
		{format: "%START_TIME(%H:%M):4%", want: []Op{{Field: StartTime, Max: 4, Time: []TimePart{{Text: "15", Layout: true}, {Text: ":"}, {Text: "04", Layout: true}}}}},
		{format: "%START_TIME(%Q)%", wantErr: "unknown time specifier %Q"},
		{format: "%START_TIME()%", wantErr: "empty time layout"},
		{format: "%REQ(X-CUSTOM)%", wantErr: "X-CUSTOM is not a header the access log records"},
		{format: "%TRAILER(GRPC-MESSAGE)%", wantErr: "GRPC-MESSAGE is not a header the access log records (it records grpc-status)"},
		{format: "%REQ(:PATH%", wantErr: "unterminated operator"},
		{format: "%DURATION", wantErr: "unterminated operator"},
		{format: "%BYTES_SENT:0%", wantErr: "must be a positive number"},
		{format: "%UPSTREAM_TRANSPORT_FAILURE_REASON%", wantErr: "unknown operator"},
		{format: "%RESPONSE_DURATION%", wantErr: "unknown operator"},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			got, err := Parse(tt.format)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestTextPreset: "envoy" is Envoy's default line, every operator in it
// one the access log records; Parse takes the word literally.
func TestTextPreset(t *testing.T) {
	ops, err := Text("envoy")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ops); n < 20 {
		t.Errorf("the default format has %d pieces, want Envoy's line", n)
	}
	if ops, _ := Parse("envoy"); len(ops) != 1 || ops[0].Text != "envoy" {
		t.Errorf("Parse(envoy) = %+v, want the literal", ops)
	}
}

func TestAppendTime(t *testing.T) {
	at := time.Date(2026, 11, 23, 20, 30, 5, 123456789, time.FixedZone("CET", 3600))
	tests := []struct{ layout, want string }{
		{"%Y/%m/%dT%H:%M:%S%z %s", "2026/11/23T19:30:05+0000 1795462205"},
		{"%s.%3f", "1795462205.123"},
		{"%s.%6f", "1795462205.123456"},
		{"%f", "123456789"},
		{"%E3S|%T|%F|%b %e|100%%", "05.123|19:30:05|2026-11-23|Nov 23|100%"},
		{"day %j, 2006-01-02", "day 327, 2006-01-02"},
	}
	for _, tt := range tests {
		t.Run(tt.layout, func(t *testing.T) {
			parts, err := parseTime(tt.layout)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(AppendTime(nil, at, parts)); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestJSON(t *testing.T) {
	fields, err := JSON(map[string]string{"status": "%RESPONSE_CODE%", "authority": "%REQ(:AUTHORITY)%", "line": "%REQ(:METHOD)% %REQ(:PATH)%"})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, f := range fields {
		keys = append(keys, f.Key)
	}
	if want := []string{"authority", "line", "status"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("keys %v, want sorted %v", keys, want)
	}
	if _, err := JSON(map[string]string{"ok": "%DURATION%", "bad": "%NOPE%"}); err == nil || !strings.Contains(err.Error(), `key "bad": unknown operator %NOPE%`) {
		t.Errorf("error %v, want the bad key named", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Default)
	f.Add("%REQ(:PATH):5% %%")
	f.Add("%START_TIME(%s.%3f %%)%")
	f.Fuzz(func(t *testing.T, s string) {
		ops, err := Parse(s)
		if err != nil {
			return
		}
		for _, op := range ops {
			if op.Field == Literal && op.Text == "" || op.Max < 0 {
				t.Fatalf("bad op %+v from %q", op, s)
			}
			for _, p := range op.Time {
				if p.Digits < 0 || p.Digits > 9 {
					t.Fatalf("bad time part %+v from %q", p, s)
				}
			}
			_ = AppendTime(nil, time.Unix(1, 2), op.Time)
		}
	})
}
