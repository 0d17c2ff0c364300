//go:build linux

package h2

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http2"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// readGreeting reads the server's side of the handshake: its SETTINGS, the
// connection WINDOW_UPDATE and acks SETTINGS ACKs, in that order.
func readGreeting(t *testing.T, c *rawPeer, acks int) {
	t.Helper()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	want := []string{"SETTINGS", "WINDOW_UPDATE"}
	for range acks {
		want = append(want, "SETTINGS ACK")
	}
	for i, w := range want {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d of the greeting: %v, want %s", i, err, w)
		}
		got := f.Header().Type.String()
		if f.Header().Flags.Has(http2.FlagSettingsAck) && f.Header().Type == http2.FrameSettings {
			got += " ACK"
		}
		if got != w {
			t.Fatalf("frame %d of the greeting: %s, want %s", i, got, w)
		}
	}
}

// lobbyLingeringLocked counts the lobby's lingering connections. Under
// s.mu.
func lobbyLingeringLocked(s *Server) int { return s.lobby.lingering.n }

// engineConns counts the connections the engine serves.
func engineConns(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// TestLobbyHandshakeThenRequest: a client that connects ahead of its calls
// is greeted in the lobby, with no engine connection and no goroutine;
// its first request takes it to the engine, which applies the SETTINGS the
// lobby ACKed (here a stream window of 10 bytes) without ACKing them
// again, and serves it.
func TestLobbyHandshakeThenRequest(t *testing.T) {
	body := strings.Repeat("x", 100)
	p := okProxy(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(body))
	}), proxyOpts{})
	readers := serverReaders()
	c := dialRaw(t, p.addr, false)
	c.write([]byte(http2.ClientPreface))
	if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10}); err != nil {
		t.Fatal(err)
	}
	readGreeting(t, c, 1)
	if err := c.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	if st := p.srv.Stats(); st.Conns != 1 || st.Parked != 1 {
		t.Errorf("after the handshake: %d connections, %d parked; want 1 and 1", st.Conns, st.Parked)
	}
	if n := engineConns(p.srv); n != 0 {
		t.Errorf("%d engine connections for a client that asked for nothing, want 0 (in the lobby)", n)
	}
	if r := serverReaders(); r > readers {
		t.Errorf("%d reader goroutines for a client in the lobby", r-readers)
	}

	c.request(1, true)
	var got []byte
	settingsAcks := 0
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < 10 {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the response: %v (got %d bytes)", err, len(got))
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			settingsAcks++
		case *http2.DataFrame:
			got = append(got, f.Data()...)
		case *http2.GoAwayFrame, *http2.RSTStreamFrame:
			t.Fatalf("got %v", f.Header())
		}
	}
	if len(got) != 10 {
		t.Fatalf("%d bytes of DATA before any WINDOW_UPDATE, want the window's 10", len(got))
	}
	// Nothing more until the window grows.
	c.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	for {
		f, err := c.fr.ReadFrame()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := f.(*http2.DataFrame); ok && len(d.Data()) > 0 {
			t.Fatalf("%d more bytes of DATA past the stream window", len(d.Data()))
		}
		if f.Header().Type == http2.FrameSettings {
			settingsAcks++
		}
	}
	if err := c.fr.WriteWindowUpdate(1, 1000); err != nil {
		t.Fatal(err)
	}
	for {
		f := c.next(http2.FrameSettings)
		if f == nil {
			t.Fatal("connection closed before the response ended")
		}
		if f.Header().Type == http2.FrameSettings {
			settingsAcks++
			continue
		}
		d, ok := f.(*http2.DataFrame)
		if !ok {
			continue
		}
		got = append(got, d.Data()...)
		if d.StreamEnded() {
			break
		}
	}
	if string(got) != body {
		t.Errorf("body %q, want %q", got, body)
	}
	if settingsAcks != 0 {
		t.Errorf("%d more SETTINGS frames from the engine after the lobby's ACK, want 0", settingsAcks)
	}
	if n := engineConns(p.srv); n != 1 {
		t.Errorf("%d engine connections after the request, want 1", n)
	}
}

// arrivalsLog records what a server's lobby hands a listener.
type arrivalsLog struct {
	mu                               sync.Mutex
	opened, closed, dropped, sniffed int
	heads                            chan string // what a sniffed connection read first
}

func (a *arrivalsLog) Sniff(nc net.Conn, pc *PeekConn) {
	a.mu.Lock()
	a.sniffed++
	a.mu.Unlock()
	go func() {
		defer nc.Close()
		if pc == nil {
			pc = NewPeekConn(nc)
		}
		nc.SetReadDeadline(time.Now().Add(time.Second))
		b, _ := io.ReadAll(pc)
		a.heads <- string(b)
	}()
}

func (a *arrivalsLog) Opened(net.Conn) { a.count(&a.opened) }
func (a *arrivalsLog) Closed(net.Conn) { a.count(&a.closed) }
func (a *arrivalsLog) Dropped(nc net.Conn) {
	nc.Close()
	a.count(&a.dropped)
}

func (a *arrivalsLog) count(n *int) {
	a.mu.Lock()
	*n++
	a.mu.Unlock()
}

// waitFor waits until the log shows want (opened, closed, dropped,
// sniffed).
func (a *arrivalsLog) waitFor(t *testing.T, want [4]int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		a.mu.Lock()
		got := [4]int{a.opened, a.closed, a.dropped, a.sniffed}
		a.mu.Unlock()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("opened, closed, dropped, sniffed: %v, want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// greetOn serves srv's lobby on a loopback socket of its own, as a
// cleartext listener does, and returns its address and the arrivals log.
func greetOn(t *testing.T, srv *Server) (string, *arrivalsLog) {
	t.Helper()
	a := &arrivalsLog{heads: make(chan string, 8)}
	return serveWith(t, srv, false, nil, a), a
}

// TestLobbyTimeoutAndHandBack: past the header timeout, a greeted client
// gets GOAWAY(0, NO_ERROR) and the end of the stream, a client that sent
// nothing is closed unserved, and bytes that are no client preface go back
// to the listener, read first by what it gets.
func TestLobbyTimeoutAndHandBack(t *testing.T) {
	const timeout = 300 * time.Millisecond
	srv := NewServer(ServerOptions{Limits: config.Limits{HeaderReadTimeout: config.Duration(timeout)}, Log: zerolog.Nop()})
	addr, a := greetOn(t, srv)

	start := time.Now()
	greeted := dialRaw(t, addr, true)
	readGreeting(t, greeted, 1)
	greeted.fr.WriteSettingsAck()
	silent := dialRaw(t, addr, false)
	a.waitFor(t, [4]int{1, 0, 0, 0})

	f := greeted.next()
	ga, ok := f.(*http2.GoAwayFrame)
	if !ok || ga.ErrCode != http2.ErrCodeNo || ga.LastStreamID != 0 {
		t.Fatalf("greeted client got %v, want GOAWAY(0, NO_ERROR)", f)
	}
	if waited := time.Since(start); waited < timeout {
		t.Errorf("GOAWAY after %v, before the header timeout of %v", waited, timeout)
	}
	if f := greeted.next(); f != nil {
		t.Fatalf("after the GOAWAY: %v, want the end of the stream", f.Header())
	}
	silent.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := silent.c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("silent client read %d bytes, %v; want the end of the stream", n, err)
	}
	greeted.c.Close()
	a.waitFor(t, [4]int{1, 1, 1, 0})
	if st := srv.Stats(); st.Conns != 0 {
		t.Errorf("%d connections left, want 0", st.Conns)
	}

	const req = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
	h1 := dialRaw(t, addr, false)
	h1.write([]byte(req))
	a.waitFor(t, [4]int{1, 1, 1, 1})
	if head := <-a.heads; head != req {
		t.Errorf("the listener read %q first, want %q", head, req)
	}
}

// TestLobbyShutdownDrains: a shutdown drains a client waiting in the lobby
// as the engine drains its own: GOAWAY(2^31-1) and a PING, then, once the
// PING is answered, the final GOAWAY.
func TestLobbyShutdownDrains(t *testing.T) {
	srv := NewServer(ServerOptions{Log: zerolog.Nop()})
	addr, a := greetOn(t, srv)
	c := dialRaw(t, addr, true)
	readGreeting(t, c, 1)
	c.fr.WriteSettingsAck()
	a.waitFor(t, [4]int{1, 0, 0, 0})

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	f := c.next()
	if ga, ok := f.(*http2.GoAwayFrame); !ok || ga.LastStreamID != 1<<31-1 {
		t.Fatalf("got %v, want GOAWAY(2^31-1)", f)
	}
	f = c.next(http2.FramePing)
	ping, ok := f.(*http2.PingFrame)
	if !ok || ping.IsAck() {
		t.Fatalf("got %v, want a PING", f)
	}
	c.fr.WritePing(true, ping.Data)
	f = c.next()
	if ga, ok := f.(*http2.GoAwayFrame); !ok || ga.LastStreamID != 0 {
		t.Fatalf("got %v, want GOAWAY(0)", f)
	}
	c.c.Close()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	a.waitFor(t, [4]int{1, 1, 0, 0})
}

// TestParkedWakesWhileLobbyBusy: the lobby's connections and the parked
// ones wake through pollers of their own, so a parked client is served
// while the lobby's goroutine is held up: here on a lobby connection's
// lock, in a storm of new connections by thousands of handshakes. With
// one poller for both, the parked client's request waited behind every
// lobby connection readied before it.
func TestParkedWakesWhileLobbyBusy(t *testing.T) {
	p := okProxy(t, okHandler, proxyOpts{})
	served := dialRaw(t, p.addr, true)
	served.request(1, true)
	if status, _, _ := served.response(1); status != "200" {
		t.Fatalf("first request: status %s", status)
	}
	waitParked(t, p, 1)

	waiting := dialRaw(t, p.addr, false)
	waiting.write([]byte(http2.ClientPreface))
	if err := waiting.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	readGreeting(t, waiting, 1)
	p.srv.mu.Lock()
	lc := p.srv.lobby.waiting.back
	p.srv.mu.Unlock()
	if lc == nil {
		t.Fatal("the greeted client is not in the lobby")
	}
	lc.mu.Lock()
	held := true
	defer func() {
		if held {
			lc.mu.Unlock()
		}
	}()
	// The client's ACK wakes the lobby's poller, which then waits for
	// the connection's lock.
	if err := waiting.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !stackHas("(*lobbyConn).woken("); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the lobby's poller did not wake for the client's ACK")
		}
	}

	served.request(3, true)
	if status, _, _ := served.response(3); status != "200" {
		t.Fatalf("request to the parked connection: status %s", status)
	}
	lc.mu.Unlock()
	held = false
	waiting.request(1, true)
	if status, _, _ := waiting.response(1); status != "200" {
		t.Fatalf("request from the lobby once it is free: status %s", status)
	}
}

// stackHas reports whether a goroutine's stack holds s.
func stackHas(s string) bool {
	buf := make([]byte, 8<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), s)
}
