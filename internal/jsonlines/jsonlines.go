// Package jsonlines reads the logs the proxy writes one JSON object a
// line (the access log, the health-check event log) for the tests of
// several packages.
package jsonlines

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"
)

// Read decodes every line of the file at path, failing the test on a
// line that is not a JSON object or when the file cannot be read.
func Read(t testing.TB, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: line %d is not JSON: %v\n%s", path, len(out)+1, err, sc.Text())
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return out
}
