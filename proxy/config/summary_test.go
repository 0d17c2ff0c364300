package config

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestSummary(t *testing.T) {
	cfg := loadContractExample(t)
	want := `listeners: 1, routes: 2, clusters: 3, hosts: 4
listener  ingress  127.0.0.1:10000  h2,http1  1 virtual host / 2 routes
cluster  primary   static      round_robin    http2  2 endpoints
cluster  readonly  strict_dns  least_request  auto   1 endpoint
cluster  shadow    static      ring_hash      http2  1 endpoint
`
	if got := cfg.Summary(); got != want {
		t.Errorf("Summary:\n%s\nwant:\n%s", got, want)
	}
}

func TestJSON(t *testing.T) {
	cfg := loadContractExample(t)
	out, err := cfg.JSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"connect_timeout": "500ms"`,
		`"idle_timeout": "5m0s"`,
		`"key_file": "key.pem"`,
		`"files": [`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("JSON lacks %s:\n%s", want, out)
		}
	}
	// The dump decodes back to the same config (up to empty lists, which
	// JSON leaves out).
	var back Config
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatalf("decoding the dump: %v", err)
	}
	again, err := back.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(out) {
		t.Errorf("the dump does not decode back to the config:\n%s\nwant:\n%s", again, out)
	}
}

func TestRedact(t *testing.T) {
	type sink struct {
		Address  string
		Password string            `redact:"true"`
		Unset    string            `redact:"true"`
		Headers  map[string]string `redact:"true"`
	}
	type root struct {
		Sinks []sink
		Main  *sink
	}
	give := root{
		Sinks: []sink{{Address: "a:1", Password: "hunter2"}},
		Main:  &sink{Address: "b:2", Password: "s3cret", Headers: map[string]string{"api-key": "k3y"}},
	}
	want := root{
		Sinks: []sink{{Address: "a:1", Password: "[redacted]"}},
		Main:  &sink{Address: "b:2", Password: "[redacted]", Headers: map[string]string{"api-key": "[redacted]"}},
	}
	redact(reflect.ValueOf(&give).Elem())
	if !reflect.DeepEqual(give, want) {
		t.Errorf("redacted %+v, want %+v", give, want)
	}
}
