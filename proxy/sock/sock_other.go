//go:build !linux

package sock

import (
	"errors"
	"net"
)

// Listener is not available here: listeners accept with net's Accept.
type Listener struct{}

// Listen fails: accept4 and the lobby's epoll set are Linux's.
func Listen(net.Listener) (*Listener, error) { return nil, errors.ErrUnsupported }

// Accept and Close are never called: Listen fails.
func (*Listener) Accept() (net.Conn, error) { return nil, errors.ErrUnsupported }
func (*Listener) Close() error              { return errors.ErrUnsupported }
