package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
)

// event is the first time something happened during an attack, in seconds
// since the attack started.
type event struct {
	T      float64 `json:"t"`
	Code   string  `json:"code,omitempty"`
	Detail string  `json:"detail,omitempty"`
}

// recorder collects what one side of an attack saw from the proxy: the
// attacker's connections, or (for the upstream attacks) the malicious
// upstream's. Every method is safe for concurrent use.
type recorder struct {
	start time.Time

	mu         sync.Mutex
	goAway     *event
	goAwayN    int
	goAwayCode map[string]int
	closed     *event
	closedN    int
	firstReset *event
	resets     map[string]int
	responses  map[string]int
	conns      int
	dialFail   int
	dialErr    string
	streams    int

	framesSent atomic.Int64
	bytesSent  atomic.Int64
	dataRecv   atomic.Int64
}

func newRecorder(start time.Time) *recorder {
	return &recorder{
		start:      start,
		goAwayCode: map[string]int{},
		resets:     map[string]int{},
		responses:  map[string]int{},
	}
}

func (r *recorder) since() float64 { return time.Since(r.start).Seconds() }

func (r *recorder) onGoAway(code http2.ErrCode, debug []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.goAwayN++
	r.goAwayCode[code.String()]++
	if r.goAway == nil {
		r.goAway = &event{T: r.since(), Code: code.String(), Detail: trim(string(debug), 120)}
	}
}

// onClosed records that the proxy closed a connection (or reset it). Errors
// caused by the attack itself ending are not passed here.
func (r *recorder) onClosed(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closedN++
	if r.closed == nil {
		r.closed = &event{T: r.since(), Code: closeKind(err), Detail: trim(err.Error(), 120)}
	}
}

func (r *recorder) onReset(code http2.ErrCode) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resets[code.String()]++
	if r.firstReset == nil {
		r.firstReset = &event{T: r.since(), Code: code.String()}
	}
}

func (r *recorder) onResponse(key string) {
	r.mu.Lock()
	r.responses[key]++
	r.mu.Unlock()
}

func (r *recorder) onConn() {
	r.mu.Lock()
	r.conns++
	r.mu.Unlock()
}

func (r *recorder) onDialFail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dialFail++
	if r.dialErr == "" {
		r.dialErr = trim(err.Error(), 120)
	}
}

func (r *recorder) onStream() {
	r.mu.Lock()
	r.streams++
	r.mu.Unlock()
}

func (r *recorder) sent(frames, bytes int64) {
	r.framesSent.Add(frames)
	r.bytesSent.Add(bytes)
}

// side is a recorder's summary in the result file.
type side struct {
	Conns        int            `json:"conns"`
	DialFailures int            `json:"dial_failures,omitempty"`
	DialError    string         `json:"dial_error,omitempty"`
	Streams      int            `json:"streams"`
	FramesSent   int64          `json:"frames_sent"`
	BytesSent    int64          `json:"bytes_sent"`
	DataReceived int64          `json:"data_received"`
	GoAway       *event         `json:"goaway,omitempty"`
	GoAwayConns  int            `json:"goaway_conns,omitempty"`
	GoAwayCodes  map[string]int `json:"goaway_codes,omitempty"`
	Closed       *event         `json:"closed,omitempty"`
	ClosedConns  int            `json:"closed_conns,omitempty"`
	FirstReset   *event         `json:"first_reset,omitempty"`
	Resets       map[string]int `json:"resets,omitempty"`
	Responses    map[string]int `json:"responses,omitempty"`
}

func (r *recorder) summary() *side {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &side{
		Conns:        r.conns,
		DialFailures: r.dialFail,
		DialError:    r.dialErr,
		Streams:      r.streams,
		FramesSent:   r.framesSent.Load(),
		BytesSent:    r.bytesSent.Load(),
		DataReceived: r.dataRecv.Load(),
		GoAway:       r.goAway,
		GoAwayConns:  r.goAwayN,
		GoAwayCodes:  copyMap(r.goAwayCode),
		Closed:       r.closed,
		ClosedConns:  r.closedN,
		FirstReset:   r.firstReset,
		Resets:       copyMap(r.resets),
		Responses:    copyMap(r.responses),
	}
}

func copyMap(m map[string]int) map[string]int {
	if len(m) == 0 {
		return nil
	}
	c := make(map[string]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// closeKind names how a connection ended, from the error a read or write
// on it returned.
func closeKind(err error) string {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	case errors.Is(err, syscall.ECONNRESET):
		return "TCP RST"
	case errors.Is(err, syscall.EPIPE):
		return "EPIPE"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	}
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		return "h2 " + http2.ErrCode(ce).String()
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return "net error"
	}
	return "error"
}

func trim(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// countsString renders a code→count map as "A×3, B×1", largest first.
func countsString(m map[string]int) string {
	type kv struct {
		k string
		v int
	}
	var l []kv
	for k, v := range m {
		l = append(l, kv{k, v})
	}
	sort.Slice(l, func(i, j int) bool {
		if l[i].v != l[j].v {
			return l[i].v > l[j].v
		}
		return l[i].k < l[j].k
	})
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = fmt.Sprintf("%s×%s", e.k, human(int64(e.v)))
	}
	return strings.Join(parts, ", ")
}

// human writes n with a k/M/G suffix above 10,000.
func human(n int64) string {
	switch {
	case n >= 10_000_000_000:
		return fmt.Sprintf("%.0fG", float64(n)/1e9)
	case n >= 10_000_000:
		return fmt.Sprintf("%.0fM", float64(n)/1e6)
	case n >= 10_000:
		return fmt.Sprintf("%.0fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}
