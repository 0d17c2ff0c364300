//go:build unix

package testnet

import (
	"fmt"
	"syscall"
	"testing"
)

// ClosedPort is a loopback address nothing listens on: a dial gets
// "connection refused" at once. The port stays taken until the test
// ends, by a socket bound to it that never listens: a port only found
// free and let go could be given to the next listener that asks for any
// port, a backend of the same test among them.
func ClosedPort(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	syscall.CloseOnExec(fd)
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}
