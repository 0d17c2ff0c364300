//go:build unix

package h2

import (
	"net"
	"syscall"
)

// rawSock writes to a socket without waiting for it (inline.go).
type rawSock struct {
	rc     syscall.RawConn
	count  WriteCounter
	write1 func(fd uintptr) bool // rawSock.once, made once

	// The write in progress: its bytes, and what once did with them.
	p   []byte
	n   int
	err error
}

// newRawSock returns nc's socket for inline writes, or nil when nc is
// not a plain TCP socket under wrappers that hold no bytes.
func newRawSock(nc net.Conn) *rawSock {
	tc, wc := findSocket(nc)
	if tc == nil {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	s := &rawSock{rc: rc, count: wc}
	s.write1 = s.once
	return s
}

// write makes one non-blocking write of p and returns how much the socket
// took; a full socket takes nothing and is no error.
func (s *rawSock) write(p []byte) (int, error) {
	s.p = p
	err := s.rc.Write(s.write1)
	n := s.n
	if err == nil {
		err = s.err
	}
	s.p, s.n, s.err = nil, 0, nil
	if n > 0 && s.count != nil {
		s.count.CountWritten(n)
	}
	return n, err
}

// once is the write under the descriptor's lock; it never asks RawConn to
// wait for the socket. A short write means the socket is full: trying
// again would only find it so.
func (s *rawSock) once(fd uintptr) bool {
	for {
		n, err := syscall.Write(int(fd), s.p)
		if err == syscall.EINTR {
			continue
		}
		if n > 0 {
			s.n = n
		}
		if err != nil && err != syscall.EAGAIN {
			s.err = err
		}
		return true
	}
}
