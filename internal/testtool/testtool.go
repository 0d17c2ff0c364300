// Package testtool finds the external tools the tests drive (h2spec, the
// grpc-go interop client, promtool, prometheus, chromium).
package testtool

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Look finds name in PATH or $(go env GOPATH)/bin. Without it the test is
// skipped, or fails when CI is set: the test command installs every tool.
func Look(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			p := filepath.Join(dir, "bin", name)
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
				return p
			}
		}
	}
	msg := fmt.Sprintf("%s not found in PATH or $(go env GOPATH)/bin; scripts/test.sh installs it", name)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
