package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v4"
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
		decodesAsYAML(t, name, data)
		splitsAsWhole(t, data, 1)
	}
}

// decodesAsYAML checks that the walker decodes a document the way yaml v4
// decodes the tree it leaves, where it found nothing to refuse.
func decodesAsYAML(t *testing.T, name string, data []byte) {
	l := &loader{cfg: &Config{}, main: name, loaded: map[string]bool{}, failed: map[string]bool{}}
	doc := l.parse(name, data)
	if doc == nil || len(doc.Content) == 0 {
		return
	}
	w := &walker{l: l, file: name, offsets: map[string]int{}}
	var walked, decoded Config
	if !w.walk(doc.Content[0], reflect.ValueOf(&walked).Elem(), nil) || len(l.problems) > 0 {
		return
	}
	if err := doc.Load(&decoded, yaml.WithKnownFields()); err != nil {
		t.Fatalf("the walker took what yaml v4 refuses: %v", err)
	}
	if !reflect.DeepEqual(walked, decoded) {
		t.Fatalf("the walker decoded\n%+v\nwhere yaml v4 decodes\n%+v", walked, decoded)
	}
}
