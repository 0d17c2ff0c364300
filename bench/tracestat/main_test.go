package main

import (
	"bytes"
	"runtime"
	rtrace "runtime/trace"
	"strings"
	"testing"
	"time"

	"golang.org/x/exp/trace"
)

// spin keeps the P for d.
func spin(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
	}
}

// hog wakes the waiter, then keeps the only P for d before it blocks,
// so the waiter waits about d to run.
func hog(wake chan<- struct{}, d time.Duration, done <-chan struct{}) {
	close(wake)
	spin(d)
	<-done
}

// waiter blocks until woken, then reports that it ran.
func waiter(wake <-chan struct{}, ran chan<- struct{}) {
	<-wake
	close(ran)
}

// traced runs f on one P under the execution tracer and returns a
// reader of the trace.
func traced(t *testing.T, f func()) *trace.Reader {
	t.Helper()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var buf bytes.Buffer
	if err := rtrace.Start(&buf); err != nil {
		t.Fatal(err)
	}
	f()
	rtrace.Stop()
	r, err := trace.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// hogAndWaiter runs hog for d against a waiter it wakes first.
func hogAndWaiter(d time.Duration) {
	wake, ran, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go waiter(wake, ran)
	runtime.Gosched() // the waiter blocks first
	go hog(wake, d, done)
	<-ran
	close(done)
}

// TestRuns: a goroutine that keeps the P 5 ms shows as a run of at
// least that, named by where it then blocked; nothing of the kind shows
// with a threshold above it.
func TestRuns(t *testing.T) {
	const d = 5 * time.Millisecond
	r := traced(t, func() { hogAndWaiter(d) })
	var out strings.Builder
	if err := printRuns(&out, r, d); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "tracestat.hog") {
		t.Errorf("runs of %v or more:\n%s\nwant one of hog's", d, out.String())
	}

	r = traced(t, func() { hogAndWaiter(d) })
	out.Reset()
	if err := printRuns(&out, r, time.Second); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "tracestat.hog") {
		t.Errorf("runs of a second or more:\n%s\nwant none of hog's", out.String())
	}
}

// TestWaits: a goroutine woken while another keeps the only P for 5 ms
// waits about that long to run, and waits reports it.
func TestWaits(t *testing.T) {
	const d = 5 * time.Millisecond
	r := traced(t, func() { hogAndWaiter(d) })
	var out strings.Builder
	if err := printWaits(&out, r, "tracestat.waiter"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "over 2 ms") {
		t.Errorf("waits:\n%s\nwant the waiter's wait of about %v", out.String(), d)
	}
	r = traced(t, func() { hogAndWaiter(d) })
	if err := printWaits(&out, r, "no.such.function"); err == nil {
		t.Error("waits of a function no goroutine ran: no error")
	}
}
