//go:build !unix

package h2

import "net"

// rawSock: inline writes need a non-blocking write on the socket, which
// only Unix sockets give here; elsewhere writer goroutines write.
type rawSock struct{}

func newRawSock(net.Conn, func() bool, func()) *rawSock { return nil }

func (*rawSock) write([]byte) (int, error) { panic("h2: inline write without a socket") }
func (*rawSock) read([]byte) (int, error)  { panic("h2: inline read without a socket") }
func (*rawSock) discard(int) bool          { panic("h2: inline read without a socket") }
