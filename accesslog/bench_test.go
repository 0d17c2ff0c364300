package accesslog

import (
	"io"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/proxy/config"
)

func renameAndReopen(path string, reopen func() error) error {
	if err := os.Rename(path, path+".1"); err != nil {
		return err
	}
	return reopen()
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) Close() error                { return nil }

func newBenchLogger(b *testing.B) *Logger {
	b.Helper()
	l, err := newLogger(config.AccessLog{Path: "discard", FlushInterval: config.Duration(time.Second), BufferBytes: 64 << 10},
		nil, zerolog.Nop(), func() (io.WriteCloser, error) { return discard{}, nil }, false)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = l.Close(b.Context()) })
	return l
}

// BenchmarkLog is the request path: filter, encode, append to the batch.
func BenchmarkLog(b *testing.B) {
	l := newBenchLogger(b)
	e := fullEntry()
	b.ReportAllocs()
	for b.Loop() {
		l.Log(e)
	}
}

func BenchmarkLogParallel(b *testing.B) {
	l := newBenchLogger(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		e := fullEntry()
		for pb.Next() {
			l.Log(e)
		}
	})
}

// BenchmarkLogFile includes the writer goroutine writing real files.
func BenchmarkLogFile(b *testing.B) {
	l, err := New(config.AccessLog{Path: b.TempDir() + "/access.log"}, nil, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	e := fullEntry()
	b.ReportAllocs()
	for b.Loop() {
		l.Log(e)
	}
	b.StopTimer()
	_ = l.Close(b.Context())
}

// BenchmarkLogText is the request path with format: envoy.
func BenchmarkLogText(b *testing.B) {
	l, err := newLogger(config.AccessLog{Path: "discard", Format: "envoy", FlushInterval: config.Duration(time.Second), BufferBytes: 64 << 10},
		nil, zerolog.Nop(), func() (io.WriteCloser, error) { return discard{}, nil }, false)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = l.Close(b.Context()) })
	e := fullEntry()
	b.ReportAllocs()
	for b.Loop() {
		l.Log(e)
	}
}

// BenchmarkLogJSONFormat is the request path with a json_format.
func BenchmarkLogJSONFormat(b *testing.B) {
	l, err := newLogger(config.AccessLog{Path: "discard", FlushInterval: config.Duration(time.Second), BufferBytes: 64 << 10,
		JSONFormat: map[string]string{
			"start": "%START_TIME%", "method": "%REQ(:METHOD)%", "path": "%REQ(:PATH)%", "code": "%RESPONSE_CODE%",
			"flags": "%RESPONSE_FLAGS%", "duration": "%DURATION%", "ua": "%REQ(USER-AGENT)%", "upstream": "%UPSTREAM_HOST%",
			"line": "%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL%",
		}},
		nil, zerolog.Nop(), func() (io.WriteCloser, error) { return discard{}, nil }, false)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = l.Close(b.Context()) })
	e := fullEntry()
	b.ReportAllocs()
	for b.Loop() {
		l.Log(e)
	}
}
