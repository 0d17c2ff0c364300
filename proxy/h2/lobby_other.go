//go:build !linux

package h2

import (
	"net"
	"time"
)

// The lobby (lobby.go) waits on the parking poller, which is Linux's
// only: elsewhere every connection is sniffed and served the usual way.

type lobby struct {
	linger time.Duration // as on Linux, for the tests
}

// Greet hands nc back to a at once, to be sniffed.
func (s *Server) Greet(nc net.Conn, a Arrivals) { a.Sniff(nc, nil) }

func (s *Server) lobbyShutdown()      {}
func (s *Server) lobbyClose()         {}
func (s *Server) lobbyLenLocked() int { return 0 }
