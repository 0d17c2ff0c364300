package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http2"
)

// attack is one entry of the catalog. run blocks until ctx ends (or the
// attack cannot go on) and records what it saw in e.
type attack struct {
	name string
	desc string
	// upstream marks the attacks whose attacker is a malicious upstream:
	// "cut off" is then what the proxy did to that upstream.
	upstream bool
	run      func(ctx context.Context, e *env) error
}

// attacks is the catalog, in the order the report lists them.
var attacks = []attack{
	{name: "zero-window", desc: "4 conns × 100 streams of a 2 MiB server stream, stream window 16 B, never a WINDOW_UPDATE", run: zeroWindow},
	{name: "tiny-unread", desc: "1 conn, 8 endless streams of empty gRPC messages, never a WINDOW_UPDATE", run: tinyUnread},
	{name: "byte-data-stall", desc: "1 conn, 100 streams to a backend that never reads, 1-byte DATA frames as fast as the windows allow", run: byteDataStall},
	{name: "idle-conns", desc: "as many connections as possible (up to 19,000) that finish the handshake, then send nothing", run: idleConns},
	{name: "flood-window-update", desc: "1 conn, 10 open streams, WINDOW_UPDATE(+1) on stream 0 and the streams, as fast as possible", run: floodWindowUpdate},
	{name: "flood-priority", desc: "1 conn, PRIORITY frames on ever new idle streams, as fast as possible", run: floodPriority},
	{name: "flood-rst-closed", desc: "1 conn, 100 finished calls, then RST_STREAM on those closed streams, as fast as possible", run: floodRSTClosed},
	{name: "flood-settings", desc: "1 conn, up to 1,000 open streams, SETTINGS changing INITIAL_WINDOW_SIZE, as fast as possible, never reading", run: floodSettings},
	{name: "flood-ping", desc: "1 conn, PING frames as fast as possible, never reading", run: floodPing},
	{name: "flood-empty-data", desc: "1 conn, 10 open streams, empty DATA frames without END_STREAM, as fast as possible", run: floodEmptyData},
	{name: "stream-hog", desc: "12 conns × 100 streams to a slow endpoint, never finished (the cluster's max_requests is 1024)", run: streamHog},
	{name: "big-header", desc: "a 200 KB request header, 10 a second, on a connection that also carries 10 open streams", run: bigHeader},
	{name: "upstream-window", desc: "a malicious upstream sends DATA past the window it was given; 100 calls in flight to it", upstream: true, run: upstreamWindow},
	{name: "upstream-rst", desc: "a malicious upstream resets every call, then floods RST_STREAM on the closed streams; 100 calls in flight to it", upstream: true, run: upstreamRST},
}

func findAttack(name string) *attack {
	for i := range attacks {
		if attacks[i].name == name {
			return &attacks[i]
		}
	}
	return nil
}

// env is what an attack works with.
type env struct {
	addr     string // the proxy's listener
	evilAddr string // where the malicious upstream listens
	d        time.Duration
	rec      *recorder // the attacker's side
	up       *recorder // the malicious upstream's side
	samp     *procSampler

	idleConns   int
	dialWorkers int
	window      uint32

	mu       sync.Mutex
	notes    []string
	conns    []*clientConn
	perConnK *float64
}

func (e *env) note(format string, args ...any) {
	e.mu.Lock()
	e.notes = append(e.notes, fmt.Sprintf(format, args...))
	e.mu.Unlock()
}

// dial opens an attacker connection and keeps it for stopAll.
func (e *env) dial(ctx context.Context, settings ...http2.Setting) (*clientConn, error) {
	c, err := dialH2(ctx, e.addr, e.rec, settings...)
	if err != nil {
		if ctx.Err() == nil {
			e.rec.onDialFail(err)
		}
		return nil, err
	}
	// A proxy that stops reading blocks the attacker's writes: the end of
	// the attack ends them.
	context.AfterFunc(ctx, func() {
		c.over.Store(true)
		_ = c.nc.SetWriteDeadline(time.Now())
	})
	e.mu.Lock()
	e.conns = append(e.conns, c)
	e.mu.Unlock()
	return c, nil
}

func (e *env) stopAll() {
	e.mu.Lock()
	conns := e.conns
	e.conns = nil
	e.mu.Unlock()
	for _, c := range conns {
		c.stop()
	}
}

// result is what one attack run writes (-out), one JSON object.
type result struct {
	Attack      string    `json:"attack"`
	Desc        string    `json:"desc"`
	Upstream    bool      `json:"upstream"`
	Proxy       string    `json:"proxy"`
	Seconds     float64   `json:"seconds"`
	Proc        procStats `json:"proc"`
	Attacker    *side     `json:"attacker"`
	Evil        *side     `json:"evil_upstream,omitempty"`
	RSSPerConnK *float64  `json:"rss_per_conn_kb,omitempty"`
	// BackendCPUSeconds is the backend's CPU time during the attack: near
	// the attack's length, the backend (and so the victim) was CPU-bound.
	BackendCPUSeconds float64  `json:"backend_cpu_seconds"`
	Notes             []string `json:"notes,omitempty"`
	Error             string   `json:"error,omitempty"`
}

func runAttack(args []string) error {
	fs := flag.NewFlagSet("attack", flag.ContinueOnError)
	name := fs.String("name", "", "attack to run (abuse list names them)")
	addr := fs.String("addr", "127.0.0.1:18100", "the proxy's h2c listener")
	evil := fs.String("evil-addr", "127.0.0.1:50071", "listen address of the malicious upstream (upstream-* attacks)")
	pid := fs.Int("pid", 0, "the proxy's PID: its RSS and CPU are sampled")
	backendPID := fs.Int("backend-pid", 0, "the backend's PID: its CPU time is reported too")
	proxy := fs.String("proxy", "", "the proxy's name, for the report")
	d := fs.Duration("d", 20*time.Second, "how long the attack runs")
	out := fs.String("out", "", "write the result (JSON) here; default stdout")
	capMB := fs.Int64("cap-mb", 4096, "stop the attack when the proxy's RSS passes this many MiB (0: never)")
	idle := fs.Int("idle-conns", 19000, "idle-conns: connections to open")
	workers := fs.Int("dial-workers", 64, "idle-conns: concurrent dials")
	window := fs.Uint("window", 16, "zero-window: the stream window the attacker advertises")
	if err := fs.Parse(args); err != nil {
		return err
	}
	a := findAttack(*name)
	if a == nil {
		return fmt.Errorf("unknown attack %q", *name)
	}
	if *pid <= 0 {
		return errors.New("-pid is required")
	}
	start := time.Now()
	backendTicks := func() int64 { return 0 }
	if *backendPID > 0 {
		backendTicks = func() int64 { t, _ := readTicks(*backendPID); return t }
	}
	backend0 := backendTicks()
	samp, err := newProcSampler(*pid, *capMB<<10, start)
	if err != nil {
		return fmt.Errorf("proxy pid %d: %w", *pid, err)
	}
	e := &env{
		addr: *addr, evilAddr: *evil, d: *d,
		rec: newRecorder(start), up: newRecorder(start), samp: samp,
		idleConns: *idle, dialWorkers: *workers, window: uint32(*window),
	}
	ctx, cancel := context.WithTimeout(context.Background(), *d)
	defer cancel()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case <-sig:
			cancel()
		case <-ctx.Done():
		}
	}()
	sampCtx, sampStop := context.WithCancel(context.Background())
	sampDone := make(chan struct{})
	go func() {
		defer close(sampDone)
		samp.run(sampCtx, 100*time.Millisecond, cancel)
	}()

	// The proxy's stats cover the attack's time only (not what an attack
	// does after it, like reading what it left unread), and are read
	// before the attacker lets go, so the end RSS is the RSS under attack.
	type atEnd struct {
		ps         procStats
		backendCPU float64
		elapsed    float64
	}
	endCh := make(chan atEnd, 1)
	go func() {
		<-ctx.Done()
		sampStop()
		<-sampDone
		endCh <- atEnd{samp.stats(), float64(backendTicks()-backend0) / clockTicks, time.Since(start).Seconds()}
	}()
	runErr := a.run(ctx, e)
	<-ctx.Done()
	end := <-endCh
	ps, backendCPU, elapsed := end.ps, end.backendCPU, end.elapsed
	e.stopAll()

	r := result{
		Attack: a.name, Desc: a.desc, Upstream: a.upstream, Proxy: *proxy,
		Seconds: elapsed, Proc: ps, Attacker: e.rec.summary(), RSSPerConnK: e.perConnK,
		BackendCPUSeconds: backendCPU,
	}
	if a.upstream {
		r.Evil = e.up.summary()
	}
	e.mu.Lock()
	r.Notes = e.notes
	e.mu.Unlock()
	if ps.CapHitAt != nil {
		r.Notes = append(r.Notes, fmt.Sprintf("attack stopped at %.1f s: proxy RSS passed the %d MiB cap", *ps.CapHitAt, *capMB))
	}
	if ps.ExitedAt != nil {
		r.Notes = append(r.Notes, fmt.Sprintf("proxy process exited at %.1f s", *ps.ExitedAt))
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) && !errors.Is(runErr, context.DeadlineExceeded) {
		r.Error = runErr.Error()
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if *out == "" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(*out, b, 0o644)
}

func runList([]string) error {
	for _, a := range attacks {
		fmt.Printf("%-20s %s\n", a.name, a.desc)
	}
	return nil
}
