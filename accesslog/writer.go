package accesslog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/internal/tick"
	"github.com/sightline-proxy/sightline/stats"
)

// Defaults used when a config leaves a value at zero. They match the config
// package's defaults so a Logger built from an unloaded config behaves the same.
const (
	DefaultFlushInterval = time.Second
	DefaultBufferBytes   = 64 << 10
)

// errLogEvery rate-limits the log line about failed writes: a full disk fails
// every flush, and one line per flush would flood the proxy's own log.
const errLogEvery = 10 * time.Second

// maxInitialBuffer bounds the memory allocated up front for a batch buffer. A
// larger buffer_bytes grows by append to its limit once and is reused after.
const maxInitialBuffer = 1 << 20

// ErrClosed is returned by Reopen after Close.
var ErrClosed = errors.New("accesslog: closed")

// opener opens the destination of a batchWriter. It is a function, not a
// path, so that tests can put a stuck pipe or a failing writer behind it.
type opener func() (io.WriteCloser, error)

// batchWriter is the part shared by access logs and the health-check event
// log: callers append complete lines to an in-memory batch and never wait for
// I/O; one goroutine owns the file and writes whole batches.
//
// There are exactly two buffers. Callers append to cur; the other one is
// either spare (the writer is idle) or held by the writer while it writes.
// When cur is full and spare is there, cur is handed to the writer and spare
// takes its place. When cur is full and the writer still holds the other
// buffer, the writer is behind and the line is dropped: the request path
// must never block on a slow disk or a stuck stdout.
type batchWriter struct {
	path     string
	interval time.Duration
	limit    int
	st       *stats.AccessLog
	log      zerolog.Logger
	open     opener
	reopens  bool // false for stdout and test writers: Reopen is a no-op

	mu          sync.Mutex
	cur         []byte
	curLines    int
	spare       []byte // nil while the writer holds it
	queued      []byte // a full batch handed to the writer, not yet taken
	queuedLines int
	closed      bool

	kick      chan struct{} // cap 1: a batch was queued
	reopenc   chan chan error
	closing   chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error

	// Owned by the writer goroutine.
	out        io.WriteCloser
	lastErrLog time.Time
	suppressed int
	failing    bool // the last write failed
}

// newBatchWriter opens the destination and starts the writer goroutine. An
// error opening it is returned here, so a bad path fails at startup or reload
// rather than silently losing every line.
func newBatchWriter(path string, interval time.Duration, limit int, st *stats.AccessLog, log zerolog.Logger, open opener, reopens bool) (*batchWriter, error) {
	if interval <= 0 {
		interval = DefaultFlushInterval
	}
	if limit <= 0 {
		limit = DefaultBufferBytes
	}
	if st == nil {
		st = &stats.AccessLog{} // nil counters do nothing
	}
	out, err := open()
	if err != nil {
		return nil, err
	}
	initial := min(limit, maxInitialBuffer)
	w := &batchWriter{
		path:     path,
		interval: interval,
		limit:    limit,
		st:       st,
		log:      log,
		open:     open,
		reopens:  reopens,
		cur:      make([]byte, 0, initial),
		spare:    make([]byte, 0, initial),
		kick:     make(chan struct{}, 1),
		reopenc:  make(chan chan error),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
		out:      out,
	}
	go w.run()
	return w, nil
}

// pathOpener returns the opener for a config path: "-" is stdout, which is
// never closed or reopened; anything else is a file opened append-only, so
// several writers and logrotate's copytruncate keep working, created 0644
// with its parent directories.
func pathOpener(path string) (opener, bool) {
	if path == "-" {
		return func() (io.WriteCloser, error) { return nopCloser{os.Stdout}, nil }, false
	}
	return func() (io.WriteCloser, error) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("accesslog: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("accesslog: %w", err)
		}
		return f, nil
	}, true
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Write appends one complete line (p ends with a newline) to the batch. It
// never blocks on I/O and never fails: a line that cannot be kept is counted
// in Dropped. It copies p, so the caller may reuse it at once; zerolog relies
// on that to pool its event buffers.
func (w *batchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		w.st.Dropped.Inc(1)
		return len(p), nil
	}
	if len(w.cur) > 0 && len(w.cur)+len(p) > w.limit {
		if w.spare == nil {
			w.mu.Unlock()
			w.st.Dropped.Inc(1)
			return len(p), nil
		}
		w.handOffLocked()
	}
	w.cur = append(w.cur, p...)
	w.curLines++
	if len(w.cur) >= w.limit && w.spare != nil {
		w.handOffLocked()
	}
	w.mu.Unlock()
	return len(p), nil
}

// handOffLocked queues cur for the writer and wakes it. The caller holds mu
// and has checked that spare is there.
func (w *batchWriter) handOffLocked() {
	w.queued, w.queuedLines = w.cur, w.curLines
	w.cur, w.curLines = w.spare, 0
	w.spare = nil
	w.kickFlush()
}

// kickFlush asks the writer to write what is buffered now rather than at
// the next tick.
func (w *batchWriter) kickFlush() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// run is the writer goroutine. A ticker with the flush interval as its period
// bounds the age of a line when written: a line appended between two ticks is
// written at the second one, less than one interval later (plus the time to
// write, which only a slow disk makes noticeable).
func (w *batchWriter) run() {
	defer close(w.done)
	t := tick.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.flushAll()
		case <-w.kick:
			w.flush()
		case reply := <-w.reopenc:
			reply <- w.reopen()
		case <-w.closing:
			for w.flush() {
			}
			if err := w.out.Close(); err != nil {
				w.closeErr = fmt.Errorf("accesslog: closing %s: %w", w.path, err)
			}
			return
		}
	}
}

// flush writes one batch: the queued one, or else whatever cur holds. It
// reports whether there was anything to write.
func (w *batchWriter) flush() bool {
	w.mu.Lock()
	buf, lines := w.queued, w.queuedLines
	if buf != nil {
		w.queued, w.queuedLines = nil, 0
	} else if len(w.cur) > 0 && w.spare != nil {
		buf, lines = w.cur, w.curLines
		w.cur, w.curLines = w.spare, 0
		w.spare = nil
	}
	w.mu.Unlock()
	if buf == nil {
		return false
	}

	n, err := w.out.Write(buf)
	written := lines
	if err != nil {
		// Whole lines that made it out count as written; the rest, a partial
		// line included, are lost.
		written = min(bytes.Count(buf[:n], newline), lines)
		w.writeFailed(err, lines-written)
	}
	if err == nil && w.failing {
		w.failing = false
		w.log.Info().Str("path", w.path).Msg("access log writes recovered")
	}
	w.st.Written.Inc(int64(written))
	w.st.Dropped.Inc(int64(lines - written))
	w.st.Flushes.Inc(1)

	w.mu.Lock()
	w.spare = buf[:0]
	w.mu.Unlock()
	return true
}

// flushAll writes everything buffered when it is called: the queued batch,
// then cur. A tick must not leave cur behind a queued batch, or its lines
// would wait a second interval.
func (w *batchWriter) flushAll() {
	if w.flush() {
		w.flush()
	}
}

var newline = []byte{'\n'}

// writeFailed logs a failed write at most once per errLogEvery, with how many
// reports it held back, and keeps going: the next batch may well succeed
// (space freed, file fixed), and an access log must not take the proxy down.
func (w *batchWriter) writeFailed(err error, lost int) {
	w.failing = true
	now := time.Now()
	if !w.lastErrLog.IsZero() && now.Sub(w.lastErrLog) < errLogEvery {
		w.suppressed++
		return
	}
	w.log.Error().Err(err).Str("path", w.path).Int("lines_lost", lost).
		Int("errors_suppressed", w.suppressed).Msg("access log write failed")
	w.lastErrLog, w.suppressed = now, 0
}

// reopen writes what is buffered to the old file (those lines were logged
// before the rotation, so they belong to the renamed file), then opens the
// path afresh. If opening fails the old file is kept, so no line is lost.
func (w *batchWriter) reopen() error {
	if !w.reopens {
		return nil
	}
	w.flushAll()
	out, err := w.open()
	if err != nil {
		w.log.Error().Err(err).Str("path", w.path).Msg("access log reopen failed; still writing to the old file")
		return err
	}
	if err := w.out.Close(); err != nil {
		w.log.Warn().Err(err).Str("path", w.path).Msg("closing the rotated access log")
	}
	w.out = out
	return nil
}

// Reopen closes and reopens the file, for logrotate's rename-then-reopen.
// Lines logged before the call end up in the old file, lines after it in the
// new one; none is lost. It waits for the writer goroutine, so it may take as
// long as one write; it is meant for the admin endpoint, not the request path.
func (w *batchWriter) Reopen() error {
	reply := make(chan error, 1)
	select {
	case w.reopenc <- reply:
		return <-reply
	case <-w.done:
		return ErrClosed
	case <-w.closing:
		return ErrClosed
	}
}

// Close stops accepting lines, writes every buffered one and closes the file
// (never stdout). It returns when that is done or ctx ends, whichever comes
// first; on SIGTERM the caller gives it the drain deadline. Later calls
// return the same result.
func (w *batchWriter) Close(ctx context.Context) error {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		close(w.closing)
	})
	select {
	case <-w.done:
		return w.closeErr
	case <-ctx.Done():
		return ctx.Err()
	}
}
