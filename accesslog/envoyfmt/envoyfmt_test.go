package envoyfmt

import (
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		format  string
		want    []Op
		wantErr string
	}{
		{format: "%START_TIME% %REQ(:PATH)%", want: []Op{{Field: StartTime}, {Field: Literal, Text: " "}, {Field: Path}}},
		{format: "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH):10%", want: []Op{{Field: Path, Max: 10}}},
		{format: "%req(user-agent)%", wantErr: "unknown operator %req(user-agent)%"},
		{format: "%REQ(User-Agent)% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", want: []Op{{Field: UserAgent}, {Field: Literal, Text: " "}, {Field: UpstreamServiceTime}}},
		{format: "%GRPC_STATUS(NUMBER)%/%GRPC_STATUS%", want: []Op{{Field: GRPCStatusNumber}, {Field: Literal, Text: "/"}, {Field: GRPCStatus}}},
		{format: "plain text\n", want: []Op{{Field: Literal, Text: "plain text\n"}}},
		{format: "%REQ(X-CUSTOM)%", wantErr: "X-CUSTOM is not a header the access log records"},
		{format: "%DURATION", wantErr: "unterminated operator"},
		{format: "100%% done", wantErr: "empty operator"},
		{format: "%BYTES_SENT:0%", wantErr: "must be a positive number"},
		{format: "%UPSTREAM_TRANSPORT_FAILURE_REASON%", wantErr: "unknown operator"},
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

// TestDefaultParses: the "envoy" preset is Envoy's default line, and every
// operator in it is one the access log records.
func TestDefaultParses(t *testing.T) {
	ops, err := Parse("envoy")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ops); n < 20 {
		t.Errorf("the default format has %d pieces, want Envoy's line", n)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Default)
	f.Add("%REQ(:PATH):5% %%")
	f.Fuzz(func(t *testing.T, s string) {
		ops, err := Parse(s)
		if err != nil {
			return
		}
		for _, op := range ops {
			if op.Field == Literal && op.Text == "" || op.Max < 0 {
				t.Fatalf("bad op %+v from %q", op, s)
			}
		}
	})
}
