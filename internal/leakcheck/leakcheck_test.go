package leakcheck

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	MainAll(m, 5*time.Second)
}

// parked is a goroutine to leak on purpose.
func parked(stop <-chan struct{}) { <-stop }

// startParked starts parked and waits for it to show in the stacks.
func startParked(t *testing.T) (stop func()) {
	t.Helper()
	ch := make(chan struct{})
	go parked(ch)
	for !strings.Contains(stacks(), "leakcheck.parked(") {
		time.Sleep(time.Millisecond)
	}
	return func() { close(ch) }
}

func TestWaitAllFindsAnyGoroutine(t *testing.T) {
	stop := startParked(t)
	leaked := WaitAll(50 * time.Millisecond)
	if !strings.Contains(leaked, "leakcheck.parked(") {
		t.Errorf("WaitAll did not report the parked goroutine; got:\n%s", leaked)
	}
	if strings.Contains(leaked, "testing.tRunner(") {
		t.Errorf("WaitAll reported the test's own goroutine:\n%s", leaked)
	}
	stop()
	if leaked := WaitAll(5 * time.Second); leaked != "" {
		t.Errorf("WaitAll after the goroutine ended:\n%s", leaked)
	}
}

func TestWaitAllIgnores(t *testing.T) {
	stop := startParked(t)
	defer stop()
	if leaked := WaitAll(50*time.Millisecond, "leakcheck.parked("); leaked != "" {
		t.Errorf("WaitAll reported an ignored goroutine:\n%s", leaked)
	}
}

// TestWaitAllGracePeriod checks that a goroutine ending within d is not a
// leak.
func TestWaitAllGracePeriod(t *testing.T) {
	stop := startParked(t)
	time.AfterFunc(50*time.Millisecond, stop)
	if leaked := WaitAll(5 * time.Second); leaked != "" {
		t.Errorf("WaitAll reported a goroutine that ended within the grace period:\n%s", leaked)
	}
}

func TestWaitMarkers(t *testing.T) {
	stop := startParked(t)
	if leaked := Wait(50*time.Millisecond, "no such function"); leaked != "" {
		t.Errorf("Wait with a marker nothing names reported:\n%s", leaked)
	}
	if leaked := Wait(50*time.Millisecond, "leakcheck.parked("); !strings.Contains(leaked, "leakcheck.parked(") {
		t.Errorf("Wait did not report the marked goroutine; got:\n%s", leaked)
	}
	stop()
}

// TestSignalLoopIgnored checks that os/signal's goroutines, which live as
// long as the process, are on the ignore list.
func TestSignalLoopIgnored(t *testing.T) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR2)
	defer signal.Stop(ch)
	if leaked := WaitAll(time.Second); leaked != "" {
		t.Errorf("WaitAll reported os/signal's goroutines:\n%s", leaked)
	}
}

// TestDefaultTransportClosed checks that the keep-alive connections of
// http.DefaultTransport are closed rather than reported: only the server's
// own goroutines, ignored here, are left.
func TestDefaultTransportClosed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(stacks(), "net/http.(*persistConn).readLoop") {
		t.Fatal("no keep-alive connection after the request")
	}
	if leaked := WaitAll(5*time.Second, "net/http.(*conn).serve", "net/http.(*Server).Serve", "httptest.(*Server)"); leaked != "" {
		t.Errorf("WaitAll reported goroutines of http.DefaultTransport:\n%s", leaked)
	}
}

// TestCheck runs Check in a subtest whose goroutine outlives it, with a
// recording TB, and checks that it is blamed.
func TestCheck(t *testing.T) {
	rec := &recorder{TB: t}
	var stop func()
	t.Run("leaky", func(t *testing.T) {
		rec.TB = t
		Check(rec, 50*time.Millisecond)
		// Started and in parked before the test ends: on a busy machine a
		// goroutine not yet scheduled shows only as its go statement.
		stop = startParked(t)
	})
	stop()
	if !strings.Contains(rec.errs.String(), "leakcheck.parked(") {
		t.Errorf("Check did not blame the leaky test; it said %q", rec.errs.String())
	}
}

// recorder is a testing.TB whose Errorf only records; Cleanup and Helper
// go to the real test.
type recorder struct {
	testing.TB
	errs strings.Builder
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs.WriteString(strings.TrimSpace(format))
	for _, a := range args {
		if s, ok := a.(string); ok {
			r.errs.WriteString(s)
		}
	}
}
