package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad checks that Load never panics and always returns a config or at
// least one problem, whatever the main file holds.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		contractExample,
		contractIncluded,
		"",
		"admin: {address: 127.0.0.1:9901}\n",
		"listeners: [{name: a, address: 127.0.0.1:1, virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, cluster: c}]}]}]\n" + clusterC,
		"server: {drain_time: 15}\nlistners: []\n",
		"clusters:\n  - &c {name: a, endpoints: [{address: 127.0.0.1:1}]}\n  - *c\n  - <<: *c\n    name: b\n",
		"listeners:\n  -\n  - ~\n  - 5\n",
		`{"clusters": [{"name": "c", "endpoints": [{"address": "127.0.0.1:1", "weight": -1}]}]}`,
		"include: [main.yaml]\n",
		"admin: [\n",
		"a: 1\n---\nb: 2\n",
		"include: [missing.yaml, 'conf.d/*.yaml']\n",
		"listeners: []\nserver: {max_connections: -1}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(fuzzLoad("main.yaml"))
}

// FuzzLoadJSON is FuzzLoad for a .json main file, which must be strict
// JSON before the YAML parser reads it.
func FuzzLoadJSON(f *testing.F) {
	for _, seed := range []string{
		"",
		"{}",
		`{"admin": {"address": "127.0.0.1:9901"},}`,
		`{"include": ["a.yaml", ]}`,
		"{\n  // comment\n}",
		`{'a': 1}`,
		`{"a": 1`,
		"{}{}",
		`{"clusters": [{"name": "c", "endpoints": [{"address": "127.0.0.1:1", "weight": -1}]}]}`,
		"admin: {}\n",
		`{"include": ["missing.json"]}`,
		"\"\xff\"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(fuzzLoad("main.json"))
}

// fuzzLoad writes the fuzzed data as the main file name and loads it.
func fuzzLoad(name string) func(t *testing.T, data []byte) {
	return func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path)
		var problems Errors
		switch {
		case err == nil && cfg == nil:
			t.Fatal("Load returned neither a config nor an error")
		case err != nil && cfg != nil:
			t.Fatal("Load returned both a config and an error")
		case err != nil && (!errors.As(err, &problems) || len(problems) == 0):
			t.Fatalf("Load error is not a non-empty Errors: %#v", err)
		}
	}
}
