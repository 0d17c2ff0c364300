package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the command line args and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestNoConfigNamesTheFlag(t *testing.T) {
	for _, args := range [][]string{nil, {"run"}, {"run", "--watch"}, {"validate"}} {
		t.Run(strings.Join(append([]string{"sightline"}, args...), " "), func(t *testing.T) {
			code, _, stderr := runCLI(t, args...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			for _, want := range []string{"no config file", "-c FILE", "--config FILE", "no default location", "-c /etc/sightline/sightline.yaml", "sightline demo"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if strings.Contains(stderr, "-log-format") {
				t.Errorf("stderr is the whole usage, not an error:\n%s", stderr)
			}
		})
	}
}

func TestValidatePrintsWarnings(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "admin-only.yaml", "admin: {address: 127.0.0.1:9901}\n")
	code, stdout, stderr := runCLI(t, "validate", "-c", path)
	if code != 0 {
		t.Fatalf("exit %d, want 0 (an admin-only config is valid); stderr:\n%s", code, stderr)
	}
	if want := "warning: " + path + ":1:1: listeners: no listeners: the proxy serves only its admin endpoints"; !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
	if !strings.Contains(stdout, path+": ok") {
		t.Errorf("stdout lacks ok:\n%s", stdout)
	}
}

func TestValidateRefusesMissingIncludeAndBadJSON(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, file, give, want string
	}{
		{"missing include", "main.yaml", "include: [clusters.yaml]\n", ":1:11: include[0]: included file " + filepath.Join(dir, "clusters.yaml") + " does not exist"},
		{"trailing comma", "main.json", "{\"admin\": {},}\n", ":1:13: invalid JSON: trailing comma (JSON allows no comma before } or ]: remove it)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, dir, tt.file, tt.give)
			code, _, stderr := runCLI(t, "validate", "-c", path)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if want := path + tt.want; !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		})
	}
}
