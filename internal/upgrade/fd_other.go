//go:build !unix

package upgrade

import (
	"errors"
	"net"
	"os"
	"runtime"
)

// errUnsupported is an upgrade asked for where sockets cannot be passed
// as inherited descriptors.
var errUnsupported = errors.New("hot upgrade passes the listening sockets to the new process as inherited descriptors, which " + runtime.GOOS + " does not support: restart the process instead")

// SocketFile fails: there is no descriptor to pass (fd_unix.go).
func SocketFile(net.Listener) (*os.File, error) { return nil, errUnsupported }

// closeOnExec does nothing: no upgrade starts a process here, so none
// inherits a descriptor.
func closeOnExec(int) {}
