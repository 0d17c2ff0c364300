//go:build unix

package sock

import (
	"fmt"
	"os"
	"syscall"
)

// Dup returns a duplicate of sc's descriptor as an *os.File on Go's
// poller, and leaves the socket non-blocking. A net listener's or
// connection's own File method returns one whose Fd (which os/exec and
// net.FileListener call) puts the shared open file in blocking mode: the
// listener's accepts then wait in the kernel, where closing the listener
// cannot interrupt them.
func Dup(sc syscall.Conn) (*os.File, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var (
		nfd   uintptr
		errno syscall.Errno
	)
	if err := rc.Control(func(fd uintptr) {
		nfd, _, errno = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if errno != 0 {
		return nil, fmt.Errorf("duplicating a socket: %w", errno)
	}
	// Already non-blocking, so Fd leaves it so.
	return os.NewFile(nfd, "socket"), nil
}
