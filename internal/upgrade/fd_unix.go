//go:build unix

package upgrade

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// errNoFile is a listener that cannot give its descriptor.
var errNoFile = errors.New("listener has no file descriptor")

// SocketFile returns a duplicate of ln's descriptor, for a new process,
// and leaves the socket non-blocking. The duplicate shares the socket's
// open file, flags included, and the *os.File a listener's own File
// method returns is made so that its Fd, which os/exec and
// net.FileListener call, puts the descriptor in blocking mode: ln's own
// Accept then waited in the kernel, where closing ln cannot interrupt it,
// and an idle listener (the admin server's) kept the old process's
// Retire from returning until a client happened to connect.
func SocketFile(ln net.Listener) (*os.File, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil, errNoFile
	}
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
		return nil, fmt.Errorf("duplicating the socket of %s: %w", ln.Addr(), errno)
	}
	// Already non-blocking, so Fd leaves it so.
	return os.NewFile(nfd, "socket "+ln.Addr().String()), nil
}

// closeOnExec keeps an inherited descriptor from the process's own
// children: a successor gets the descriptors it is given, not every one
// left open.
func closeOnExec(fd int) { syscall.CloseOnExec(fd) }
