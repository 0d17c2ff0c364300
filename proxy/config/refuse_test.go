package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// listenerA is a valid listener routing to cluster c, for configs about
// something else.
const listenerA = "listeners: [{name: a, address: 127.0.0.1:1, virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, cluster: c}]}]}]\n"

func TestLoadRefusesMissingInclude(t *testing.T) {
	tests := []struct {
		name    string
		give    map[string]string
		wantErr string
	}{
		{
			name: "a plain path that does not exist",
			give: map[string]string{
				"main.yaml": "include: [conf.d/api.yaml]\n" + listenerA + clusterC,
			},
			wantErr: "main.yaml:1:11: include[0]: included file conf.d/api.yaml does not exist " +
				"(relative paths are from the directory of main.yaml (.); to allow a file that may be missing, use a glob such as \"conf.d/*.yaml\")",
		},
		{
			name: "in an included file, relative to it",
			give: map[string]string{
				"main.yaml":       "include: [nested/top.yaml]\n" + listenerA + clusterC,
				"nested/top.yaml": "include:\n  - more.yaml\n",
			},
			wantErr: "nested/top.yaml:2:5: include[0]: included file nested/more.yaml does not exist " +
				"(relative paths are from the directory of nested/top.yaml (nested); to allow a file that may be missing, use a glob such as \"conf.d/*.yaml\")",
		},
		{
			name: "its clusters are missing too, but only the include is reported",
			give: map[string]string{
				"main.yaml": "include: [clusters.yaml]\n" + listenerA,
			},
			wantErr: "main.yaml:1:11: include[0]: included file clusters.yaml does not exist " +
				"(relative paths are from the directory of main.yaml (.); to allow a file that may be missing, use a glob such as \"conf.d/*.yaml\")",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inDir(t, tt.give)
			if got := loadProblems(t, "main.yaml"); got != tt.wantErr {
				t.Errorf("problems:\n%s\nwant:\n%s", got, tt.wantErr)
			}
		})
	}
}

func TestLoadWarnings(t *testing.T) {
	tests := []struct {
		name string
		give string
		want []string
	}{
		{
			name: "a glob that matches nothing loads, with a warning",
			give: "include: ['conf.d/*.yaml']\n" + listenerA + clusterC,
			want: []string{`main.yaml:1:11: include[0]: include glob "conf.d/*.yaml" matches no file (files that appear later are read on the next reload)`},
		},
		{
			name: "no listener at all",
			give: "admin: {address: 127.0.0.1:9901}\n",
			want: []string{"main.yaml:1:1: listeners: no listeners: the proxy serves only its admin endpoints " +
				"(add a listeners: section, e.g. listeners: [{name: ingress, address: 127.0.0.1:10000, virtual_hosts: [...]}])"},
		},
		{
			name: "an empty listener list is placed",
			give: "listeners: []\n",
			want: []string{"main.yaml:1:12: listeners: no listeners: the proxy serves only its admin endpoints " +
				"(add a listeners: section, e.g. listeners: [{name: ingress, address: 127.0.0.1:10000, virtual_hosts: [...]}])"},
		},
		{
			name: "a complete config has none",
			give: listenerA + clusterC,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inDir(t, map[string]string{"main.yaml": tt.give})
			cfg, err := Load("main.yaml")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range cfg.Warnings {
				got = append(got, w.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestLoadRefusesInvalidJSON(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		wantErr string
	}{
		{
			name:    "trailing comma in an object, placed at the comma",
			give:    "{\n  \"admin\": {\"address\": \"127.0.0.1:9901\"},\n}\n",
			wantErr: "main.json:2:41: invalid JSON: trailing comma (JSON allows no comma before } or ]: remove it)",
		},
		{
			name:    "trailing comma in a list",
			give:    `{"include": ["a.yaml", ]}`,
			wantErr: "main.json:1:22: invalid JSON: trailing comma (JSON allows no comma before } or ]: remove it)",
		},
		{
			name:    "a comment",
			give:    "{\n  // the admin server\n  \"admin\": {}\n}\n",
			wantErr: "main.json:2:3: invalid JSON: invalid character '/' looking for beginning of object key string (JSON has no comments: remove it, or write the config as YAML (.yaml), which has # comments)",
		},
		{
			name:    "single quotes",
			give:    `{'admin': {}}`,
			wantErr: "main.json:1:2: invalid JSON: invalid character '\\'' looking for beginning of object key string (JSON strings are in double quotes)",
		},
		{
			name:    "a bare key",
			give:    `{admin: {}}`,
			wantErr: "main.json:1:2: invalid JSON: invalid character 'a' looking for beginning of object key string (JSON keys are strings in double quotes, e.g. \"listeners\")",
		},
		{
			name:    "cut short",
			give:    "{\"admin\": {\"address\": \"127.0.0.1:9901\"}\n",
			wantErr: "main.json:1:40: invalid JSON: unexpected end of JSON input (the file ends inside a value: look for an unclosed {, [ or \")",
		},
		{
			name:    "two values",
			give:    "{}\n{}\n",
			wantErr: "main.json:2:1: invalid JSON: invalid character '{' after top-level value (a JSON config is one object: remove what follows it)",
		},
		{
			name:    "YAML in a .json file",
			give:    "admin:\n  address: 127.0.0.1:9901\n",
			wantErr: "main.json:1:1: invalid JSON: invalid character 'a' looking for beginning of value (JSON values are numbers, true, false, null, or strings in double quotes)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inDir(t, map[string]string{"main.json": tt.give})
			if got := loadProblems(t, "main.json"); got != tt.wantErr {
				t.Errorf("problems:\n%s\nwant:\n%s", got, tt.wantErr)
			}
		})
	}
}

func TestLoadJSONIncludedIsChecked(t *testing.T) {
	inDir(t, map[string]string{
		"main.yaml":     "include: ['conf.d/*.json']\n" + listenerA,
		"conf.d/c.json": `{"clusters": [{"name": "c", "endpoints": [{"address": "127.0.0.1:1"}]},]}`,
	})
	want := "conf.d/c.json:1:71: invalid JSON: trailing comma (JSON allows no comma before } or ]: remove it)"
	if got := loadProblems(t, "main.yaml"); got != want {
		t.Errorf("problems:\n%s\nwant:\n%s", got, want)
	}
}

func TestLoadWhiteSpaceJSONIsDefaults(t *testing.T) {
	inDir(t, map[string]string{"main.json": "\n  \n"})
	if _, err := Load("main.json"); err != nil {
		t.Fatal(err)
	}
}

func TestLoadConnectionLimits(t *testing.T) {
	inDir(t, map[string]string{"main.yaml": `server: {max_connections: -1}
listeners:
  - name: a
    address: 127.0.0.1:1
    limits: {max_connections: -5}
    virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, cluster: c}]}]
` + clusterC})
	want := "main.yaml:1:27: server.max_connections: must not be negative, got -1\n" +
		"main.yaml:5:31: listeners[0].limits.max_connections: must not be negative, got -5"
	if got := loadProblems(t, "main.yaml"); got != want {
		t.Errorf("problems:\n%s\nwant:\n%s", got, want)
	}
}

func TestLoadUpstreamClientCertNeedsBoth(t *testing.T) {
	inDir(t, map[string]string{
		"main.yaml":  listenerA + "clusters: [{name: c, endpoints: [{address: 127.0.0.1:1}], tls: {cert_file: client.pem}}]\n",
		"client.pem": "x",
	})
	want := "main.yaml:2:64: clusters[0].tls.key_file: must not be empty when cert_file is set (a client certificate needs both cert_file and key_file)"
	if got := loadProblems(t, "main.yaml"); got != want {
		t.Errorf("problems:\n%s\nwant:\n%s", got, want)
	}
}

func TestLocate(t *testing.T) {
	inDir(t, map[string]string{
		"main.yaml":     "include: ['conf.d/*.yaml']\nlisteners:\n  - name: a\n    address: 127.0.0.1:1\n    virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, cluster: c}]}]\n",
		"conf.d/b.yaml": "listeners:\n  - name: b\n    address: 127.0.0.1:2\n    virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, cluster: c}]}]\n" + clusterC,
	})
	cfg, err := Load("main.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ give, want string }{
		{"listeners[0].address", "main.yaml:4:14: listeners[0].address: m"},
		{"listeners[1].address", filepath.Join("conf.d", "b.yaml") + ":3:14: listeners[1].address: m"},
		{"listeners[1].limits.max_connections", filepath.Join("conf.d", "b.yaml") + ":2:5: listeners[1].limits.max_connections: m"},
		{"server.max_connections", "main.yaml:1:1: server.max_connections: m"},
		// Only what can fail after loading keeps its own position: a
		// cluster's fields are placed at the clusters section.
		{"clusters[0].endpoints[0].address", filepath.Join("conf.d", "b.yaml") + ":5:11: clusters[0].endpoints[0].address: m"},
	} {
		p := cfg.Locate(tt.give)
		p.Message = "m"
		if got := p.String(); got != tt.want {
			t.Errorf("Locate(%q) = %s, want %s", tt.give, got, tt.want)
		}
	}
	// A config built in code knows only its main file.
	p := (&Config{Files: []string{"x.yaml"}}).Locate("admin.address")
	if p.File != "x.yaml" || p.Line != 0 {
		t.Errorf("Locate on a config not loaded = %+v", p)
	}
}

// TestLoadRefusesLeadingZero: an integer written with a leading zero is
// refused with both readings, instead of taken as YAML's octal (024 is 20
// to yaml v4) or as the decimal its writer likely meant; 0 itself is a
// number like any other.
func TestLoadRefusesLeadingZero(t *testing.T) {
	const cluster = "clusters:\n  - name: c\n    endpoints: [{address: 127.0.0.1:2}]\n    circuit_breakers: "
	inDir(t, map[string]string{"main.yaml": listenerA + cluster + "{max_connections: 024}\n"})
	want := "main.yaml:5:41: clusters[0].circuit_breakers.max_connections: must be an integer, got 024, a number with a leading zero, which YAML reads as octal " +
		"(write 24 for the decimal number, or 0o24 for octal)"
	if got := loadProblems(t, "main.yaml"); got != want {
		t.Errorf("problems:\n%s\nwant:\n%s", got, want)
	}
	// A number field as well (yaml v4 reads it as 20.0 too); a duration
	// says durations need a unit, as for any bare number.
	inDir(t, map[string]string{"main.yaml": "tracing: {sampling: 024}\n" + listenerA + clusterC})
	want = "main.yaml:1:21: tracing.sampling: must be a number, got 024, a number with a leading zero, which YAML reads as octal " +
		"(write 24 for the decimal number, or 0o24 for octal)"
	if got := loadProblems(t, "main.yaml"); got != want {
		t.Errorf("problems:\n%s\nwant:\n%s", got, want)
	}
	inDir(t, map[string]string{"main.yaml": listenerA + cluster + "{max_retries: 0, max_connections: 0o24}\n    connect_timeout: 00\n"})
	cfg, err := Load("main.yaml")
	if err != nil {
		t.Fatalf("0 and 0o24: %v", err)
	}
	if n := cfg.Clusters[0].CircuitBreakers.MaxConnections; n != 20 {
		t.Errorf("max_connections: 0o24 loaded as %d, want 20", n)
	}
}
