//go:build unix

package h2

import (
	"io"
	"net"
	"os"
	"syscall"
)

// rawSock reads and writes a socket itself, so that the reader writes what
// it queued only when its socket has nothing more to read, and writes
// without waiting (inline.go).
type rawSock struct {
	rc syscall.RawConn
	// leaver is the socket when it can leave Go's poller while its
	// connection is parked (conn.leavePollerLocked): its raw connection
	// is asked for at each use, which puts it back on the poller.
	leaver pollerLeaver
	counts counters
	write1 func(fd uintptr) bool // rawSock.writeOnce, made once
	writeN func(fd uintptr) bool // rawSock.writeSome, made once
	read1  func(fd uintptr) bool // rawSock.readOnce, made once
	// idle runs when a read finds the socket empty: it closes the
	// reader's flush queue and reports true if nothing is queued to
	// write, and the reader waits; otherwise flush runs, outside the
	// read, and the reader reads again.
	idle  func() bool
	flush func()
	// grow, when set, is asked for a larger buffer to read into once the
	// socket is readable after a wait (rbuf.grow).
	grow func() []byte

	// The write in progress: its bytes, and what was done. A read's own
	// (rp, rn, rerr, and its mode): a read that finds the socket empty
	// flushes, which may write to this very socket.
	p     []byte
	n     int
	err   error
	rp    []byte
	rn    int
	rerr  error
	rmode uint8
	short bool // the last read took less than it asked for
	// waited is set when readOnce asks RawConn to wait: its next call
	// finds the socket readable. readable says the same of the first
	// read of a reader started for a parked connection the poller found
	// readable (woken): it is set before that reader starts.
	waited   bool
	readable bool
}

// newRawSock returns nc's socket, or nil when nc is not a TCP socket
// under wrappers that hold no bytes, or a TLS layer on a base of the
// engine's, which it returns too. idle and flush are the reader's
// (rawSock.idle); mayLeave says the connection's socket may leave Go's
// poller when it parks (conn.leavePollerLocked).
func newRawSock(nc net.Conn, idle func() bool, flush func(), mayLeave bool) (*rawSock, *tlsBase) {
	tc, cs, tb := findSocket(nc)
	if tc == nil {
		return nil, nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, nil
	}
	s := &rawSock{rc: rc, counts: cs, idle: idle, flush: flush}
	if l, ok := tc.(pollerLeaver); ok && mayLeave && tb == nil {
		s.leaver = l
	}
	s.write1, s.writeN, s.read1 = s.writeOnce, s.writeSome, s.readOnce
	return s, tb
}

// read reads into p, waiting for the socket as net.Conn's Read does; when
// the socket is empty and the reader has frames to write, it writes them
// first. The flush runs outside RawConn's callback, which holds a
// reference to the descriptor (a flush that fails closes connections, and
// a close waits for every reference to go); the read after it reads
// before it waits, since RawConn forgets, as each read starts, a
// readiness the poller reported meanwhile.
//
// A read that took less than it asked for emptied the socket, most
// likely: the next read writes first, rather than find the socket empty
// with one more system call (a call through the proxy is a handful of
// passes, each of them a read, a write and the read that waits).
func (s *rawSock) read(p []byte) (int, error) {
	s.rp, s.rmode, s.waited, s.readable = p, readTry, s.readable, false
	if s.short && !s.idle() {
		s.flush()
		s.rmode = readWait
	}
	err := s.rawRead(s.read1)
	if err == nil && s.rmode == readEmpty {
		s.flush()
		s.rmode = readWait
		err = s.rawRead(s.read1)
	}
	n := s.rn
	if err == nil {
		err = s.rerr
	}
	s.short = err == nil && n < len(s.rp) // s.rp: p, or what grow gave
	s.rp, s.rn, s.rerr = nil, 0, nil
	if n > 0 {
		s.counts.read(n)
	}
	return n, err
}

// rawRead and rawWrite are the socket's RawConn Read and Write, on the
// raw connection of the moment for a socket that leaves the poller.
func (s *rawSock) rawRead(f func(fd uintptr) bool) error {
	rc, err := s.rawConn()
	if err != nil {
		return err
	}
	return rc.Read(f)
}

func (s *rawSock) rawWrite(f func(fd uintptr) bool) error {
	rc, err := s.rawConn()
	if err != nil {
		return err
	}
	return rc.Write(f)
}

func (s *rawSock) rawConn() (syscall.RawConn, error) {
	if s.leaver == nil {
		return s.rc, nil
	}
	return s.leaver.SyscallConn()
}

// emptied says the socket was most likely emptied by a read made around
// it: the sniffing read of the listener took what the client had sent.
// The next read then writes what the reader queued (our SETTINGS) first,
// as after a short read of its own, rather than find the socket empty
// with one more system call.
func (s *rawSock) emptied() { s.short = true }

// Read modes (rawSock.rmode).
const (
	readTry   uint8 = iota // an empty socket with frames to write ends the read
	readEmpty              // it did: flush, then read again
	readWait               // an empty socket is waited for
)

// readOnce is one read under the descriptor's lock; false asks RawConn
// to wait for the socket and call again.
func (s *rawSock) readOnce(fd uintptr) bool {
	if s.waited {
		s.waited = false
		if s.grow != nil {
			if p := s.grow(); p != nil {
				s.rp = p
			}
		}
	}
	for {
		n, err := sysRead(fd, s.rp)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			if s.rmode == readTry && !s.idle() {
				s.rmode = readEmpty
				return true
			}
			s.waited = true
			return false
		case err != nil:
			s.rerr = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)}
		case n == 0 && len(s.rp) > 0:
			s.rerr = io.EOF
		default:
			s.rn = n
		}
		return true
	}
}

// write makes one non-blocking write of p and returns how much the socket
// took; a full socket takes nothing and is no error.
func (s *rawSock) write(p []byte) (int, error) {
	s.p = p
	err := s.rawWrite(s.write1)
	n := s.n
	if err == nil {
		err = s.err
	}
	s.p, s.n, s.err = nil, 0, nil
	if n > 0 {
		s.counts.written(n)
	}
	return n, err
}

// writeOnce is the write under the descriptor's lock; it never asks RawConn to
// wait for the socket. A short write means the socket is full: trying
// again would only find it so.
func (s *rawSock) writeOnce(fd uintptr) bool {
	for {
		n, err := sysWrite(fd, s.p)
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

// writeAll writes all of p, waiting for the socket when it is full, as
// net.Conn's Write does and under its write deadline: a writer
// goroutine's write.
func (s *rawSock) writeAll(p []byte) (int, error) {
	s.p = p
	err := s.rawWrite(s.writeN)
	n := s.n
	if err == nil && s.err != nil {
		err = &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", s.err)}
	}
	s.p, s.n, s.err = nil, 0, nil
	if n > 0 {
		s.counts.written(n)
	}
	return n, err
}

// writeSome writes what is left of writeAll's bytes until the socket is
// full (false: RawConn waits for it and calls again) or all are written.
func (s *rawSock) writeSome(fd uintptr) bool {
	for s.n < len(s.p) {
		n, err := sysWrite(fd, s.p[s.n:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false
		case err != nil:
			s.err = err
			return true
		}
		s.n += n
	}
	return true
}

// discard reads and drops what the socket holds, without waiting, up to
// limit bytes, and reports whether the connection is done with: the peer
// closed or the socket failed, or it sent more than limit.
func (s *rawSock) discard(limit int) (done bool) {
	var buf [512]byte
	total := 0
	err := s.rawRead(func(fd uintptr) bool {
		total, done = discardFD(fd, buf[:], limit)
		return true
	})
	if total > 0 {
		s.counts.read(total)
	}
	return done || err != nil
}

// discardFD is discard's work on socket fd, reading into buf: it returns
// the bytes it dropped and whether the connection is done with.
func discardFD(fd uintptr, buf []byte, limit int) (total int, done bool) {
	for total < limit {
		n, err := sysRead(fd, buf)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return total, false
		case err != nil || n == 0:
			return total, true
		}
		total += n
	}
	return total, true
}
