//go:build unix

package upgrade

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/sightline-proxy/sightline/proxy/sock"
)

// errNoFile is a listener that cannot give its descriptor.
var errNoFile = errors.New("listener has no file descriptor")

// SocketFile returns a duplicate of ln's descriptor, for a new process,
// and leaves the socket non-blocking (sock.Dup): ln's own File would put
// it in blocking mode once os/exec or net.FileListener called its Fd,
// and ln's Accept then waited in the kernel, where closing ln cannot
// interrupt it: an idle listener (the admin server's) kept the old
// process's Retire from returning until a client happened to connect.
func SocketFile(ln net.Listener) (*os.File, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil, errNoFile
	}
	f, err := sock.Dup(sc)
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", ln.Addr(), err)
	}
	return f, nil
}

// closeOnExec keeps an inherited descriptor from the process's own
// children: a successor gets the descriptors it is given, not every one
// left open.
func closeOnExec(fd int) { syscall.CloseOnExec(fd) }
