//go:build !linux

package testnet

import "testing"

// FullBacklog is a loopback address whose listener never accepts and
// whose accept queue is full; only on Linux, elsewhere the test is
// skipped.
func FullBacklog(t testing.TB) string {
	t.Skip("a full accept queue is made on Linux only")
	return ""
}
