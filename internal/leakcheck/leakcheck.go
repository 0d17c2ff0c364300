// Package leakcheck fails a package's tests when goroutines they started
// outlive them: every server, pool and watcher a test starts must be shut
// down, so its goroutines must be gone by the end of the run.
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Main runs the tests, then waits up to d for the goroutines whose stacks
// name any of markers (e.g. "proxy/h2.(*conn).readLoop") to end. If some
// remain, their stacks are printed and the run fails. Call it from
// TestMain.
func Main(m *testing.M, d time.Duration, markers ...string) {
	code := m.Run()
	if code == 0 {
		if leaked := Wait(d, markers...); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// Wait returns the stacks of the goroutines naming any of markers that are
// still running after d ("" when none is), for a test that checks one
// component's shutdown.
func Wait(d time.Duration, markers ...string) string {
	deadline := time.Now().Add(d)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			for _, m := range markers {
				if strings.Contains(g, m) {
					leaked = append(leaked, g)
					break
				}
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
