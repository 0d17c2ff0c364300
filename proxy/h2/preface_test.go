package h2

import (
	"net"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/net/http2"
)

// writeCounter counts the writes made on a connection: each is a syscall
// on a socket.
type writeCounter struct {
	net.Conn
	writes atomic.Int32
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes.Add(1)
	return w.Conn.Write(p)
}

// TestPrefaceCoalesced checks the server's half of the handshake: when the
// client's SETTINGS come with its preface, as every client sends them, the
// server's SETTINGS, its connection WINDOW_UPDATE and the ACK of the
// client's SETTINGS go in one write; when they do not, the server's preface
// goes alone at once, without waiting for them.
func TestPrefaceCoalesced(t *testing.T) {
	settings := []byte{0, 0, 0, byte(http2.FrameSettings), 0, 0, 0, 0, 0}
	for _, tt := range []struct {
		name       string
		together   bool
		wantWrites int32
	}{
		{"settings with the preface", true, 1},
		{"settings after the server's preface", false, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := NewServer(ServerOptions{Log: zerolog.Nop()})
			t.Cleanup(srv.Close)
			client, server := net.Pipe()
			t.Cleanup(func() { client.Close() })
			wc := &writeCounter{Conn: server}
			go srv.Serve(wc, func() {})

			first := []byte(http2.ClientPreface)
			if tt.together {
				first = append(first, settings...)
			}
			go client.Write(first) //nolint:errcheck // the reads below fail if it does

			fr := http2.NewFramer(client, client)
			want := []http2.FrameType{http2.FrameSettings, http2.FrameWindowUpdate, http2.FrameSettings}
			for i, ft := range want {
				if i == 2 && !tt.together {
					// The server's preface came without the client's
					// SETTINGS: send them now.
					go client.Write(settings) //nolint:errcheck
				}
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if f.Header().Type != ft {
					t.Fatalf("frame %d is %v, want %v", i, f.Header().Type, ft)
				}
				if isAck := f.Header().Flags.Has(http2.FlagSettingsAck); ft == http2.FrameSettings && isAck != (i == 2) {
					t.Fatalf("frame %d: SETTINGS ack %v", i, isAck)
				}
			}
			if got := wc.writes.Load(); got != tt.wantWrites {
				t.Errorf("the server made %d writes for its preface and the ACK, want %d", got, tt.wantWrites)
			}
		})
	}
}
