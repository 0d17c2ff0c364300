//go:build !unix

package h2

import "net"

// rawSock: inline writes need a non-blocking write on the socket, which
// only Unix sockets give here; elsewhere writer goroutines write.
type rawSock struct {
	grow     func() []byte
	readable bool
	leaver   pollerLeaver
}

func newRawSock(net.Conn, func() bool, func(), bool) (*rawSock, *tlsBase) { return nil, nil }

func (*rawSock) write([]byte) (int, error)    { panic(errNoSock) }
func (*rawSock) writeAll([]byte) (int, error) { panic(errNoSock) }
func (*rawSock) read([]byte) (int, error)     { panic(errNoSock) }
func (*rawSock) discard(int) bool             { panic(errNoSock) }
func (*rawSock) emptied()                     { panic(errNoSock) }

const errNoSock = "h2: inline read or write without a socket"
