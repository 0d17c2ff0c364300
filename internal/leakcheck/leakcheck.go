// Package leakcheck fails a package's tests when goroutines they started
// outlive them: every server, pool and watcher a test starts must be shut
// down, so its goroutines must be gone by the end of the run.
//
// MainAll and Check work as grpc-go's internal/leakcheck does: no snapshot
// is taken before the tests, and every goroutine still running after them
// is a leak, unless its stack matches the ignore list below (the runtime's,
// the testing package's and os/signal's own goroutines) or a pattern the
// caller adds. A goroutine that is shutting down gets a grace period to end
// before it counts.
//
// Main and Wait are the older, narrower check: only goroutines whose
// stacks name one of the given markers are suspects. Prefer MainAll and
// WaitAll; Main stays for the packages that still call it.
package leakcheck

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// ignored lists the goroutines that are never leaks, wherever they are
// found, each with why. A goroutine is ignored when its stack, header
// line included, contains the pattern.
var ignored = []struct{ pattern, why string }{
	// The testing package's goroutines: the test binary's main goroutine
	// (blocked in M.Run while a per-test check runs), each running test and
	// its parents waiting in T.Run, and the fuzzing coordinator and workers.
	{"testing.(*M).", "the test binary's main goroutine"},
	{"testing.tRunner(", "a test's own goroutine, or a parent waiting for its subtests"},
	{"testing.runFuzzing(", "the fuzzing engine"},
	{"testing.(*F).Fuzz", "the fuzzing engine"},
	{"testing.runFuzzTests(", "the fuzzing engine"},
	// os/signal: the first signal.Notify starts a loop that runs for the
	// life of the process, and the runtime a goroutine that keeps the
	// signal mask.
	{"os/signal.signal_recv", "os/signal's receive loop, started once per process"},
	{"os/signal.loop", "os/signal's receive loop, started once per process"},
	{"runtime.ensureSigM", "the runtime's signal mask goroutine, started with os/signal"},
	// A goroutine the runtime lists while it runs finalizers or cleanups:
	// it belongs to the runtime, whatever the finalizer does.
	{"runtime.runfinq", "the runtime's finalizer goroutine"},
	{"runtime.runCleanups", "the runtime's cleanup goroutine"},
	{"runtime.unique_runtime_registerUniqueMapCleanup", "the unique package's map cleanup, started once per process"},
	// The HTTP/2 engine's poller for parked connections, its sweep and
	// the lobby's reaper, started at the first parkable connection or
	// lobby wait (proxy/h2/park.go, lobby.go). A
	// parked connection left open has no goroutine to find: its server's
	// Shutdown, which every test's cleanup runs, reports it instead.
	{"proxy/h2.(*pollerOS).wait", "the HTTP/2 engine's poller, started once per process"},
	{"proxy/h2.(*poller).sweep", "the HTTP/2 engine's parking sweep, started once per process"},
	{"proxy/h2.(*lobbyReaper).run", "the HTTP/2 lobby's reaper, started once per process"},
}

// Main runs the tests, then waits up to d for the goroutines whose stacks
// name any of markers (e.g. "proxy/h2.(*conn).readLoop") to end. If some
// remain, their stacks are printed and the run fails. Call it from
// TestMain. Prefer MainAll, which suspects every goroutine.
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
	return poll(d, func(g string) bool {
		for _, m := range markers {
			if strings.Contains(g, m) {
				return true
			}
		}
		return false
	})
}

// MainAll runs the tests and then, if they passed, checks that no
// goroutine is left but those of the ignore list and of ignore (patterns
// matched against each goroutine's stack, for goroutines a library starts
// once per process and never stops; say why beside each). Goroutines still
// running after d are printed and fail the run. Call it from TestMain.
func MainAll(m *testing.M, d time.Duration, ignore ...string) {
	code := m.Run()
	if code == 0 {
		if leaked := WaitAll(d, ignore...); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// Check fails t if, once t and its subtests are done and its other
// cleanups have run, any goroutine other than those of the ignore list and
// of ignore is still running after d. Call it first in the test, so that
// its cleanup runs last. It blames t for every goroutine it finds, so it
// is for tests that do not run in parallel with others (no t.Parallel in
// the package).
func Check(t testing.TB, d time.Duration, ignore ...string) {
	t.Helper()
	t.Cleanup(func() {
		if leaked := WaitAll(d, ignore...); leaked != "" {
			t.Errorf("goroutines left when the test ended:\n%s", leaked)
		}
	})
}

// WaitAll returns the stacks of the goroutines, other than the caller's,
// that are still running after d and are neither on the ignore list nor
// match any of ignore; "" when there are none.
//
// It first closes the idle connections of http.DefaultTransport, which
// keeps a reader and a writer goroutine per connection that only closing
// it ends: a test that used http.Get is not the leak, a transport of its
// own left open is.
func WaitAll(d time.Duration, ignore ...string) string {
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
	return poll(d, func(g string) bool {
		for _, ig := range ignored {
			if strings.Contains(g, ig.pattern) {
				return false
			}
		}
		for _, p := range ignore {
			if strings.Contains(g, p) {
				return false
			}
		}
		return true
	})
}

// poll returns the stacks of the goroutines other than the caller's for
// which suspect is true, as soon as there are none or once d has passed.
func poll(d time.Duration, suspect func(stack string) bool) string {
	deadline := time.Now().Add(d)
	wait := 5 * time.Millisecond
	for {
		var leaked []string
		gs := strings.Split(stacks(), "\n\n")
		for _, g := range gs[1:] { // the first is the caller's
			if g = strings.TrimSpace(g); g != "" && suspect(g) {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(wait)
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// stacks returns the stacks of every goroutine, the caller's first.
func stacks() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}
