package upgrade

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// childModeEnv makes the test binary play the new process of an
// upgrade, as the mode says: "ready" takes the listener named "ingress",
// says it is ready and answers one connection with its pid; "fail"
// reports a config problem; "crash" exits 3 without a word; "hang"
// never says anything.
const childModeEnv = "SIGHTLINE_UPGRADE_TEST_CHILD"

func runChild(mode string) int {
	in, err := Inherit()
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	switch mode {
	case "ready":
		ln, ok := in.Take(KindListener, "ingress", "127.0.0.1:0")
		if !ok {
			in.Fail(errors.New("no socket for ingress"))
			return 1
		}
		if _, err := in.Ready(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 1
		}
		c, err := ln.Accept()
		if err != nil {
			return 1
		}
		fmt.Fprintf(c, "%d %d\n", os.Getpid(), in.Generation())
		c.Close()
		return 0
	case "fail":
		in.Fail(errors.New("sightline.yaml:3:5: clusters[0].connect_timeout: durations need a unit, e.g. 15s"))
		return 1
	case "crash":
		return 3
	case "hang":
		time.Sleep(time.Hour)
	}
	return 2
}

// startChild runs the test binary as the new process in mode, passing it
// one listener.
func startChild(t *testing.T, mode string, timeout time.Duration) (Child, net.Listener, error) {
	t.Helper()
	t.Setenv(childModeEnv, mode)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	child, err := Start(context.Background(), Options{
		Executable: exe,
		Args:       []string{"-test.run=^$"},
		Generation: 4,
		Sockets:    []Socket{{Kind: KindListener, Name: "ingress", Address: "127.0.0.1:0", Listener: ln}},
		Timeout:    timeout,
	})
	return child, ln, err
}

func TestStartPassesTheSocket(t *testing.T) {
	child, ln, err := startChild(t, "ready", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if child.Generation != 5 {
		t.Errorf("generation %d, want 5", child.Generation)
	}
	// This process never accepts: the connection is the new process's,
	// on the same socket.
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the new process's answer: %v", err)
	}
	f := strings.Fields(line)
	if len(f) != 2 || f[0] != strconv.Itoa(child.PID) || f[1] != "5" {
		t.Errorf("the new process answered %q, want \"%d 5\"", line, child.PID)
	}
	// The new process closes the connection and exits; leakcheck sees
	// that Start's goroutine reaped it.
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the new process sent more than its line")
	}
}

func TestStartReportsWhyTheNewProcessFailed(t *testing.T) {
	tests := []struct {
		mode    string
		timeout time.Duration
		want    string
	}{
		{mode: "fail", timeout: 30 * time.Second, want: "failed: sightline.yaml:3:5: clusters[0].connect_timeout: durations need a unit"},
		{mode: "crash", timeout: 30 * time.Second, want: "ended before it was ready: exit status 3"},
		{mode: "hang", timeout: 300 * time.Millisecond, want: "was not ready within 300ms; killed it"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			_, ln, err := startChild(t, tt.mode, tt.timeout)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			// The socket is still this process's and still open.
			c, derr := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
			if derr != nil {
				t.Fatalf("the socket refuses after a failed upgrade: %v", derr)
			}
			c.Close()
		})
	}
}

func TestStartCanceled(t *testing.T) {
	t.Setenv(childModeEnv, "hang")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Start(ctx, Options{Executable: exe, Args: []string{"-test.run=^$"}})
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Start did not return after its context ended")
	}
}

func TestStartMissingBinary(t *testing.T) {
	_, err := Start(context.Background(), Options{Executable: "/nonexistent/sightline"})
	if err == nil || !strings.Contains(err.Error(), "starting /nonexistent/sightline") {
		t.Errorf("error %v, want one naming the binary", err)
	}
}
