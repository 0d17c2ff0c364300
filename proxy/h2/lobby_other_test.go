//go:build !linux

package h2

// lobbyLingeringLocked: no lobby here (lobby_other.go).
func lobbyLingeringLocked(*Server) int { return 0 }
