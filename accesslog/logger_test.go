package accesslog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/stats"
)

// contractKeys are the access log keys the contract fixes.
var contractKeys = []string{
	"start_time", "method", "authority", "path", "protocol", "response_code",
	"grpc_status", "response_flags", "bytes_received", "bytes_sent",
	"duration_ms", "upstream_service_time_ms", "upstream_host",
	"upstream_cluster", "upstream_zone", "route_name", "attempts",
	"request_id", "trace_id", "downstream_remote_address", "x_forwarded_for",
	"user_agent",
}

func newStats() *stats.AccessLog {
	return &stats.AccessLog{Written: &stats.Counter{}, Dropped: &stats.Counter{}, Flushes: &stats.Counter{}}
}

func fullEntry() *Entry {
	return &Entry{
		StartTime:               time.Date(2026, 11, 23, 21, 30, 5, 123456789, time.FixedZone("X", 3600)),
		Method:                  "POST",
		Authority:               "my-service:10000",
		Path:                    "/grpc.testing.TestService/UnaryCall",
		Protocol:                "HTTP/2",
		ResponseCode:            200,
		GRPCStatus:              14,
		ResponseFlags:           "UH,URX",
		BytesReceived:           123,
		BytesSent:               4567,
		Duration:                12345678 * time.Nanosecond,
		UpstreamServiceTime:     10 * time.Millisecond,
		UpstreamHost:            "127.0.0.1:5101",
		UpstreamCluster:         "primary",
		UpstreamZone:            "zone-a",
		RouteName:               "home",
		Attempts:                2,
		RequestID:               "4b0c1f0e-6a4f-4f7e-9d38-4a7b0b9f1c11",
		TraceID:                 "4bf92f3577b34da6a3ce929d0e0e4736",
		DownstreamRemoteAddress: "10.0.0.7:51234",
		XForwardedFor:           "203.0.113.9",
		UserAgent:               `grpc-go/1.85.0 "quoted"`,
	}
}

func newTestLogger(t *testing.T, cfg config.AccessLog, st *stats.AccessLog) *Logger {
	t.Helper()
	l, err := New(cfg, st, zerolog.Nop())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

func closeLogger(t *testing.T, c interface{ Close(context.Context) error }) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// readLines returns the file's lines, each decoded; a line that is not one
// JSON object fails the test.
func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d is not a JSON object: %v: %q", len(out)+1, err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0
		}
		t.Fatal(err)
	}
	return bytes.Count(b, []byte{'\n'})
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}

func TestEntryKeysAndTypes(t *testing.T) {
	empty := &Entry{}
	empty.Reset()
	tests := []struct {
		name  string
		entry *Entry
		want  map[string]any
	}{
		{
			name:  "full",
			entry: fullEntry(),
			want: map[string]any{
				"start_time": "2026-11-23T20:30:05.123Z", "method": "POST",
				"authority": "my-service:10000", "path": "/grpc.testing.TestService/UnaryCall",
				"protocol": "HTTP/2", "response_code": 200.0, "grpc_status": 14.0,
				"response_flags": "UH,URX", "bytes_received": 123.0, "bytes_sent": 4567.0,
				"duration_ms": 12.346, "upstream_service_time_ms": 10.0,
				"upstream_host": "127.0.0.1:5101", "upstream_cluster": "primary",
				"upstream_zone": "zone-a", "route_name": "home", "attempts": 2.0,
				"request_id":                "4b0c1f0e-6a4f-4f7e-9d38-4a7b0b9f1c11",
				"trace_id":                  "4bf92f3577b34da6a3ce929d0e0e4736",
				"downstream_remote_address": "10.0.0.7:51234",
				"x_forwarded_for":           "203.0.113.9", "user_agent": `grpc-go/1.85.0 "quoted"`,
			},
		},
		{
			name:  "empty after Reset",
			entry: empty,
			want: map[string]any{
				"start_time": nil, "method": nil, "authority": nil, "path": nil,
				"protocol": nil, "response_code": nil, "grpc_status": nil,
				"response_flags": nil, "bytes_received": 0.0, "bytes_sent": 0.0,
				"duration_ms": 0.0, "upstream_service_time_ms": nil,
				"upstream_host": nil, "upstream_cluster": nil, "upstream_zone": nil,
				"route_name": nil, "attempts": 0.0, "request_id": nil, "trace_id": nil,
				"downstream_remote_address": nil, "x_forwarded_for": nil, "user_agent": nil,
			},
		},
		{
			name:  "grpc status 0 and upstream time 0 are values, not empties",
			entry: &Entry{GRPCStatus: 0, UpstreamServiceTime: 0, ResponseCode: 503},
			want: map[string]any{
				"start_time": nil, "method": nil, "authority": nil, "path": nil,
				"protocol": nil, "response_code": 503.0, "grpc_status": 0.0,
				"response_flags": nil, "bytes_received": 0.0, "bytes_sent": 0.0,
				"duration_ms": 0.0, "upstream_service_time_ms": 0.0,
				"upstream_host": nil, "upstream_cluster": nil, "upstream_zone": nil,
				"route_name": nil, "attempts": 0.0, "request_id": nil, "trace_id": nil,
				"downstream_remote_address": nil, "x_forwarded_for": nil, "user_agent": nil,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "access.log")
			l := newTestLogger(t, config.AccessLog{Path: path}, nil)
			l.Log(tt.entry)
			closeLogger(t, l)
			lines := readLines(t, path)
			if len(lines) != 1 {
				t.Fatalf("got %d lines, want 1", len(lines))
			}
			got := lines[0]
			var keys []string
			for k := range got {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			want := append([]string(nil), contractKeys...)
			sort.Strings(want)
			if len(keys) != len(want) {
				t.Fatalf("keys = %v, want %v", keys, want)
			}
			for i := range keys {
				if keys[i] != want[i] {
					t.Fatalf("keys = %v, want %v", keys, want)
				}
			}
			for k, w := range tt.want {
				if got[k] != w {
					t.Errorf("%s = %#v, want %#v", k, got[k], w)
				}
			}
		})
	}
}

func TestKeyOrderIsContractOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	l := newTestLogger(t, config.AccessLog{Path: path}, nil)
	l.Log(fullEntry())
	closeLogger(t, l)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil { // {
		t.Fatal(err)
	}
	for i := 0; dec.More(); i++ {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		if k != contractKeys[i] {
			t.Fatalf("key %d = %v, want %s", i, k, contractKeys[i])
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFlushByTime(t *testing.T) {
	const interval = 100 * time.Millisecond
	path := filepath.Join(t.TempDir(), "access.log")
	st := newStats()
	l := newTestLogger(t, config.AccessLog{Path: path, FlushInterval: config.Duration(interval)}, st)
	start := time.Now()
	l.Log(fullEntry())
	if !waitFor(interval+time.Second, func() bool { return countLines(t, path) == 1 }) {
		t.Fatalf("line not on disk %v after Log (flush_interval %v)", time.Since(start), interval)
	}
	// The counters move just after the write; give them a moment.
	if !waitFor(time.Second, func() bool { return st.Flushes.Value() == 1 && st.Written.Value() == 1 }) {
		t.Errorf("flushes = %d, written = %d; want 1, 1", st.Flushes.Value(), st.Written.Value())
	}
}

func TestFlushBySize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	st := newStats()
	// An hour-long interval: only a full buffer can get lines out in time.
	l := newTestLogger(t, config.AccessLog{Path: path, FlushInterval: config.Duration(time.Hour), BufferBytes: 4096}, st)
	for range 20 { // ~11 KB: at least two full buffers
		l.Log(fullEntry())
	}
	if !waitFor(5*time.Second, func() bool { return countLines(t, path) > 0 }) {
		t.Fatal("a full buffer was not written")
	}
	if !waitFor(time.Second, func() bool { return st.Flushes.Value() > 0 }) {
		t.Error("flushes not counted")
	}
	closeLogger(t, l)
	if n := countLines(t, path); int64(n) != st.Written.Value() || n+int(st.Dropped.Value()) != 20 {
		t.Errorf("lines %d, written %d, dropped %d; want lines = written, written+dropped = 20", n, st.Written.Value(), st.Dropped.Value())
	}
}

func TestCloseWritesEverything(t *testing.T) {
	const goroutines, perG = 8, 1250
	path := filepath.Join(t.TempDir(), "sub", "dir", "access.log")
	st := newStats()
	// A buffer larger than all the lines: this test is about Close losing
	// nothing, not about drops (TestDropWhenWriterStuck covers those).
	l := newTestLogger(t, config.AccessLog{Path: path, BufferBytes: 16 << 20}, st)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			e := fullEntry()
			for i := range perG {
				e.Attempts = g*perG + i
				l.Log(e)
			}
		})
	}
	wg.Wait()
	closeLogger(t, l)
	lines := readLines(t, path)
	if len(lines) != goroutines*perG {
		t.Fatalf("got %d lines, want %d (dropped %d)", len(lines), goroutines*perG, st.Dropped.Value())
	}
	seen := make(map[float64]bool, len(lines))
	for _, m := range lines {
		seen[m["attempts"].(float64)] = true
	}
	if len(seen) != goroutines*perG {
		t.Errorf("%d distinct lines, want %d", len(seen), goroutines*perG)
	}
	if st.Written.Value() != int64(goroutines*perG) {
		t.Errorf("written = %d", st.Written.Value())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&^0o644 != 0 {
		t.Errorf("mode %v, want at most 0644", perm)
	}
	// Logging after Close is counted, not written.
	l.Log(fullEntry())
	if st.Dropped.Value() != 1 {
		t.Errorf("dropped after Close = %d, want 1", st.Dropped.Value())
	}
}

func TestAppendsToExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	if err := os.WriteFile(path, []byte("{\"old\":1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := newTestLogger(t, config.AccessLog{Path: path}, nil)
	l.Log(fullEntry())
	closeLogger(t, l)
	lines := readLines(t, path)
	if len(lines) != 2 || lines[0]["old"] != 1.0 {
		t.Fatalf("lines = %v", lines)
	}
}

func TestReopenAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	rotated := path + ".1"
	st := newStats()
	l := newTestLogger(t, config.AccessLog{Path: path, FlushInterval: config.Duration(time.Hour)}, st)
	const before, after = 37, 23
	for range before {
		l.Log(fullEntry())
	}
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	for range after {
		l.Log(fullEntry())
	}
	closeLogger(t, l)
	if n := len(readLines(t, rotated)); n != before {
		t.Errorf("rotated file has %d lines, want %d", n, before)
	}
	if n := len(readLines(t, path)); n != after {
		t.Errorf("new file has %d lines, want %d", n, after)
	}
	if st.Written.Value() != before+after || st.Dropped.Value() != 0 {
		t.Errorf("written %d dropped %d", st.Written.Value(), st.Dropped.Value())
	}
	if err := l.Reopen(); !errors.Is(err, ErrClosed) {
		t.Errorf("Reopen after Close = %v, want ErrClosed", err)
	}
}

func TestReopenStdoutIsNoop(t *testing.T) {
	l := newTestLogger(t, config.AccessLog{Path: "-"}, nil)
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	closeLogger(t, l)
}

func ptr[T any](v T) *T { return &v }

func TestFilter(t *testing.T) {
	mk := func(code int, d time.Duration, hc bool) *Entry {
		e := fullEntry()
		e.ResponseCode, e.Duration, e.HealthCheck = code, d, hc
		return e
	}
	entries := []*Entry{
		mk(200, time.Millisecond, false),
		mk(404, 5*time.Millisecond, false),
		mk(503, 50*time.Millisecond, false),
		mk(200, 100*time.Millisecond, true),
		mk(500, 2*time.Second, true),
	}
	tests := []struct {
		name   string
		filter config.AccessLogFilter
		want   int
	}{
		{"none", config.AccessLogFilter{}, 5},
		{"status_min 400", config.AccessLogFilter{StatusMin: 400}, 3},
		{"status_min 500", config.AccessLogFilter{StatusMin: 500}, 2},
		{"duration_min 50ms", config.AccessLogFilter{DurationMin: config.Duration(50 * time.Millisecond)}, 3},
		{"not_health_check", config.AccessLogFilter{NotHealthCheck: true}, 3},
		{"all three", config.AccessLogFilter{StatusMin: 500, DurationMin: config.Duration(10 * time.Millisecond), NotHealthCheck: true}, 1},
		{"sample 100", config.AccessLogFilter{SamplePercent: ptr(100.0)}, 5},
		{"sample 0", config.AccessLogFilter{SamplePercent: ptr(0.0)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "access.log")
			l := newTestLogger(t, config.AccessLog{Path: path, Filter: tt.filter}, nil)
			for _, e := range entries {
				l.Log(e)
			}
			closeLogger(t, l)
			if n := countLines(t, path); n != tt.want {
				t.Errorf("logged %d, want %d", n, tt.want)
			}
		})
	}
}

func TestFilterSamplePercent(t *testing.T) {
	const n = 4000
	path := filepath.Join(t.TempDir(), "access.log")
	l := newTestLogger(t, config.AccessLog{Path: path, BufferBytes: 8 << 20,
		Filter: config.AccessLogFilter{SamplePercent: ptr(25.0)}}, nil)
	for range n {
		l.Log(fullEntry())
	}
	closeLogger(t, l)
	// 25% of 4000 is 1000, σ ≈ 27: ±200 is over 7σ.
	if got := countLines(t, path); got < 800 || got > 1200 {
		t.Errorf("sampled %d of %d at 25%%", got, n)
	}
}

// stuckWriter blocks every Write until release is closed, as a stdout pipe
// nobody reads or a hung NFS mount does.
type stuckWriter struct {
	release chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (s *stuckWriter) Write(p []byte) (int, error) {
	<-s.release
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *stuckWriter) Close() error { return nil }

// TestDropWhenWriterStuck puts the writer behind a destination that does not
// take writes: once both buffers are full, Log must keep returning at once and
// count drops, and every line must end up either written or counted dropped.
func TestDropWhenWriterStuck(t *testing.T) {
	sw := &stuckWriter{release: make(chan struct{})}
	st := newStats()
	l, err := newLogger(config.AccessLog{Path: "stuck", BufferBytes: 2048, FlushInterval: config.Duration(10 * time.Millisecond)},
		st, zerolog.Nop(), func() (io.WriteCloser, error) { return sw, nil }, false)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	done := make(chan struct{})
	go func() {
		defer close(done)
		e := fullEntry()
		for range n {
			l.Log(e)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Log blocked behind a stuck writer")
	}
	if st.Dropped.Value() == 0 {
		t.Fatal("nothing dropped behind a stuck writer")
	}
	// Close cannot finish while the writer is stuck; it gives up with ctx.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := l.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close on a stuck writer = %v, want DeadlineExceeded", err)
	}
	// Unstick the writer: Close now completes, and every line is accounted for.
	close(sw.release)
	closeLogger(t, l)
	sw.mu.Lock()
	read := int64(bytes.Count(sw.buf.Bytes(), []byte{'\n'}))
	sw.mu.Unlock()
	if read != st.Written.Value() || st.Written.Value()+st.Dropped.Value() != n {
		t.Errorf("got %d lines, written %d, dropped %d; want lines = written, written+dropped = %d",
			read, st.Written.Value(), st.Dropped.Value(), n)
	}
	if read == 0 {
		t.Error("nothing written after the writer came back")
	}
}

// TestDropWhenPipeFull does the same with a real pipe nobody reads.
func TestDropWhenPipeFull(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	st := newStats()
	l, err := newLogger(config.AccessLog{Path: "pipe", BufferBytes: 2048, FlushInterval: config.Duration(time.Millisecond)},
		st, zerolog.Nop(), func() (io.WriteCloser, error) { return pw, nil }, false)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000 // ~11 MB, far more than a pipe holds
	done := make(chan struct{})
	go func() {
		defer close(done)
		e := fullEntry()
		for i := range n {
			l.Log(e)
			if i%100 == 0 {
				time.Sleep(10 * time.Microsecond) // let the writer fill the pipe
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Log blocked behind a full pipe")
	}
	var read int64
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		b, _ := io.ReadAll(pr)
		read = int64(bytes.Count(b, []byte{'\n'}))
	}()
	closeLogger(t, l)
	<-readDone
	if st.Dropped.Value() == 0 {
		t.Error("nothing dropped behind a full pipe")
	}
	if read != st.Written.Value() || st.Written.Value()+st.Dropped.Value() != n {
		t.Errorf("read %d, written %d, dropped %d; want read = written, written+dropped = %d",
			read, st.Written.Value(), st.Dropped.Value(), n)
	}
}

func TestUnwritablePath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		filepath.Join(file, "access.log"),        // parent is a file
		filepath.Join(file, "sub", "access.log"), // MkdirAll fails
		dir,                                      // a directory
		"",
	} {
		if l, err := New(config.AccessLog{Path: path}, nil, zerolog.Nop()); err == nil {
			_ = l.Close(context.Background())
			t.Errorf("New(%q) succeeded", path)
		}
	}
}

// flakyWriter fails while broken is set, as a full disk does.
type flakyWriter struct {
	mu     sync.Mutex
	broken bool
	buf    bytes.Buffer
}

func (f *flakyWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken {
		// Half a batch gets out before the disk fills.
		n := len(p) / 2
		f.buf.Write(p[:n])
		return n, errors.New("no space left on device")
	}
	return f.buf.Write(p)
}

func (f *flakyWriter) Close() error { return nil }

func (f *flakyWriter) setBroken(b bool) {
	f.mu.Lock()
	f.broken = b
	f.mu.Unlock()
}

func TestWriteErrorCountedAndRecovers(t *testing.T) {
	fw := &flakyWriter{broken: true}
	st := newStats()
	var logBuf syncBuffer
	l, err := newLogger(config.AccessLog{Path: "flaky", FlushInterval: config.Duration(time.Hour), BufferBytes: 1 << 20},
		st, zerolog.New(&logBuf), func() (io.WriteCloser, error) { return fw, nil }, false)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		l.Log(fullEntry())
	}
	l.w.kickFlush()
	if !waitFor(5*time.Second, func() bool { return st.Written.Value()+st.Dropped.Value() == 10 }) {
		t.Fatalf("written %d dropped %d", st.Written.Value(), st.Dropped.Value())
	}
	if st.Dropped.Value() == 0 || st.Written.Value() >= 10 {
		t.Errorf("written %d dropped %d: the failed write was not counted", st.Written.Value(), st.Dropped.Value())
	}
	if !bytes.Contains(logBuf.Bytes(), []byte("access log write failed")) {
		t.Errorf("write error not logged: %q", logBuf.Bytes())
	}
	fw.setBroken(false)
	writtenBefore := st.Written.Value()
	for range 5 {
		l.Log(fullEntry())
	}
	closeLogger(t, l)
	if st.Written.Value() != writtenBefore+5 {
		t.Errorf("after recovery written %d, want %d", st.Written.Value(), writtenBefore+5)
	}
}

func TestWriteErrorLogIsRateLimited(t *testing.T) {
	fw := &flakyWriter{broken: true}
	var logBuf syncBuffer
	l, err := newLogger(config.AccessLog{Path: "flaky", FlushInterval: config.Duration(time.Hour)},
		nil, zerolog.New(&logBuf), func() (io.WriteCloser, error) { return fw, nil }, false)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		l.Log(fullEntry())
		l.w.kickFlush()
	}
	closeLogger(t, l)
	if n := bytes.Count(logBuf.Bytes(), []byte("access log write failed")); n != 1 {
		t.Errorf("logged %d write errors in a burst, want 1", n)
	}
}

func TestDevFull(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	st := newStats()
	l, err := New(config.AccessLog{Path: "/dev/full", FlushInterval: config.Duration(20 * time.Millisecond)}, st, zerolog.Nop())
	if err != nil {
		t.Skipf("cannot open /dev/full: %v", err)
	}
	for range 3 {
		l.Log(fullEntry())
	}
	closeLogger(t, l)
	if st.Dropped.Value() != 3 || st.Written.Value() != 0 {
		t.Errorf("written %d dropped %d; want 0, 3", st.Written.Value(), st.Dropped.Value())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// TestReopenFailureKeepsOldFile: when the path cannot be opened again, the
// logger keeps writing to the file it has rather than losing lines.
func TestReopenFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	st := newStats()
	l := newTestLogger(t, config.AccessLog{Path: path, FlushInterval: config.Duration(time.Hour)}, st)
	l.Log(fullEntry())
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o755); err != nil { // a directory where the file was
		t.Fatal(err)
	}
	if err := l.Reopen(); err == nil {
		t.Fatal("Reopen onto a directory succeeded")
	}
	l.Log(fullEntry())
	closeLogger(t, l)
	if n := countLines(t, path+".1"); n != 2 {
		t.Errorf("old file has %d lines, want 2", n)
	}
	if st.Dropped.Value() != 0 {
		t.Errorf("dropped %d", st.Dropped.Value())
	}
}
