package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// DefaultTimeout is how long a new process has to be ready when the
// caller gives no timeout: loading a large config, binding, and the
// first round of health checks (each bounded by its timeout) take
// seconds; a control plane's first resources up to its
// initial_fetch_timeout.
const DefaultTimeout = time.Minute

// exitWait bounds the wait for a new process that reported a failure,
// or closed its pipe, to exit: it exits right after; past this it is
// killed.
const exitWait = 10 * time.Second

// Options say how to start the new process.
type Options struct {
	// Executable is the path of the binary to run: the running one's
	// path, so that a binary replaced at that path runs.
	Executable string
	// Args are its arguments after the program name, the running ones'.
	Args []string
	// Dir is its working directory, against which a relative config
	// path is read.
	Dir string
	// Generation is the running process's; the new one's is one more.
	Generation int
	// Sockets are every listening socket of the running process.
	Sockets []Socket
	// Timeout is how long the new process has to be ready; 0 is
	// DefaultTimeout.
	Timeout time.Duration
}

// Child is a new process that said it is ready.
type Child struct {
	PID        int
	Generation int
}

// Start runs the new process with the sockets and waits until it says it
// is ready. On error the new process is gone (killed when it did not
// exit by itself) and the error says why: what the new process reported
// (its config's problems, a socket it could not bind), how it exited, or
// that it was not ready in time or ctx ended. The new process writes its
// own log to the running one's stdout and stderr.
func Start(ctx context.Context, o Options) (Child, error) {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	desc := description{Generation: o.Generation + 1, Parent: os.Getpid()}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, s := range o.Sockets {
		f, err := SocketFile(s.Listener)
		if err != nil {
			return Child{}, fmt.Errorf("passing %s: %w", s, err)
		}
		files = append(files, f)
		desc.Sockets = append(desc.Sockets, passed{Kind: s.Kind, Name: s.Name, Address: s.Address, Bound: s.Listener.Addr().String()})
	}
	r, w, err := os.Pipe()
	if err != nil {
		return Child{}, fmt.Errorf("report pipe: %w", err)
	}
	cmd := &exec.Cmd{
		Path:       o.Executable,
		Args:       append([]string{o.Executable}, o.Args...),
		Dir:        o.Dir,
		Env:        append(environ(), envVar+"="+desc.encode()),
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: append([]*os.File{w}, files...),
	}
	err = cmd.Start()
	w.Close() // the new process holds the write end: EOF when it exits
	if err != nil {
		r.Close()
		return Child{}, fmt.Errorf("starting %s: %w", o.Executable, err)
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	reports := make(chan []byte, 1)
	go func() {
		defer r.Close()
		b, _ := io.ReadAll(io.LimitReader(r, maxStatus+1))
		reports <- b
	}()

	t := time.NewTimer(timeout)
	defer t.Stop()
	kill := func() error {
		cmd.Process.Kill()
		return <-exited
	}
	select {
	case b := <-reports:
		var m statusMsg
		if len(b) == 0 {
			return Child{}, fmt.Errorf("the new process (pid %d) ended before it was ready: %s", pid, exitReason(awaitExit(exited, kill)))
		}
		if err := json.Unmarshal(b, &m); err != nil || (!m.Ready && m.Error == "") {
			kill()
			return Child{}, fmt.Errorf("the new process (pid %d) sent an unreadable report %q; killed it", pid, b)
		}
		if !m.Ready {
			awaitExit(exited, kill)
			return Child{}, fmt.Errorf("the new process (pid %d) failed: %s", pid, m.Error)
		}
		return Child{PID: pid, Generation: desc.Generation}, nil
	case <-t.C:
		kill()
		return Child{}, fmt.Errorf("the new process (pid %d) was not ready within %v; killed it", pid, timeout)
	case <-ctx.Done():
		kill()
		return Child{}, fmt.Errorf("the new process (pid %d) was killed before it was ready: %w", pid, ctx.Err())
	}
}

// awaitExit waits for a new process that will not serve to exit, and
// kills it if it does not within exitWait.
func awaitExit(exited <-chan error, kill func() error) error {
	t := time.NewTimer(exitWait)
	defer t.Stop()
	select {
	case err := <-exited:
		return err
	case <-t.C:
		return kill()
	}
}

// exitReason renders how a process ended.
func exitReason(err error) string {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "exit status 0"
	case errors.As(err, &ee):
		return ee.String() // "exit status 1", "signal: killed"
	}
	return err.Error()
}

// environ is this process's environment without a description this
// process was itself started with.
func environ() []string {
	env := os.Environ()
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, envVar+"=") {
			out = append(out, kv)
		}
	}
	return out
}
