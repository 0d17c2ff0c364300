//go:build linux

// Package sock accepts TCP connections with accept4(2) and hands them on
// as net.Conns that join Go's network poller only when first used as one.
//
// Go's TCPListener.Accept registers each new socket with the runtime's
// poller, asks the kernel for the socket's local address and sets
// TCP_NODELAY on it: three system calls as it arrives, and the poller's
// removal as it closes, with a netFD, a poll descriptor and two addresses
// in the heap. A client that connects and then asks for nothing until the
// header timeout (19,000 of them in the abuse benchmark's idle-conns)
// needs none of it: the HTTP/2 server's lobby reads and answers such a
// client on its descriptor, through an epoll set of its own (package h2,
// lobby.go), and closes it. A Conn is the descriptor and the client's
// address; the first call that needs Go's poller (a read, a write, a
// deadline, SyscallConn) makes the descriptor an *os.File on the poller,
// which costs the F_GETFL and the registration os.NewFile makes. Accepted
// sockets inherit TCP_NODELAY from the listening socket, where Listen
// sets it once. A connection that is used thus costs what Accept's cost
// it, less the local address (asked for only when wanted, and not at all
// on a listener bound to one address); one that is not costs accept4 and
// close. A Conn can leave the poller again while its owner waits on it
// by other means (LeavePoller), and a connection net dialled can be made
// a Conn (FromTCP).
package sock

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Listener accepts connections from a TCP listener's socket.
type Listener struct {
	f      *os.File // a duplicate of the socket's descriptor, on Go's poller
	rc     syscall.RawConn
	addr   net.Addr
	local  *net.TCPAddr // the bound address, when it is one; nil: asked per Conn
	closed atomic.Bool
}

// Listen prepares to accept from ln's socket, which must be a
// *net.TCPListener's. It works on a duplicate of the descriptor: a net
// listener's own RawConn refuses reads, so Go's poller would not wait for
// it. ln stays open and usable; closing the Listener closes the duplicate
// only, and the socket stays bound until both are closed.
func Listen(ln net.Listener) (*Listener, error) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil, fmt.Errorf("accepting from %s: not a TCP listener", ln.Addr())
	}
	f, rc, err := dupRaw(tl)
	if err != nil {
		return nil, err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	}); err != nil || serr != nil {
		f.Close()
		return nil, fmt.Errorf("setting TCP_NODELAY on %s: %w", ln.Addr(), errors.Join(err, serr))
	}
	growFDTable.Do(func() { growFDs(f) })
	l := &Listener{f: f, rc: rc, addr: ln.Addr()}
	if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsUnspecified() {
		l.local = a
	}
	return l, nil
}

// fdTableAhead is how many descriptors the process's table is made to
// hold before the first accept (fewer when RLIMIT_NOFILE is lower).
const fdTableAhead = 1 << 16

var growFDTable sync.Once

// growFDs makes the kernel's descriptor table of the process large enough
// for fdTableAhead descriptors, by taking one that high and giving it back.
// Linux grows the table as descriptors are taken, doubling it from 256,
// and a process with several threads waits for an RCU grace period at
// each growth: accept4 took 12 to 16 ms for descriptors 256, 512, ...,
// 8192 in a storm of 19,000 connections, and since accept4 is made
// without the scheduler, every other goroutine waited as long (a victim
// client's calls took up to 18 ms). The table, kernel memory, costs 8
// bytes a descriptor and stays at its largest size anyway.
func growFDs(f *os.File) {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil || rl.Cur < 2 {
		return
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	high := min(rl.Cur, fdTableAhead) - 1
	_ = rc.Control(func(fd uintptr) {
		// F_DUPFD takes the lowest free descriptor from high up, so it
		// never replaces one in use.
		if nfd, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, uintptr(high)); e == 0 {
			syscall.Close(int(nfd))
		}
	})
}

// Accept waits for the next connection and returns it. A connection the
// client gave up on while it waited in the backlog (ECONNABORTED) is
// skipped.
func (l *Listener) Accept() (net.Conn, error) {
	var (
		fd   int
		sa   syscall.RawSockaddrAny
		aerr syscall.Errno
	)
	err := l.rc.Read(func(s uintptr) bool {
		for {
			fd, aerr = accept4(s, &sa)
			switch aerr {
			case syscall.EINTR, syscall.ECONNABORTED:
				continue
			case syscall.EAGAIN:
				return false
			}
			return true
		}
	})
	if err == nil && aerr != 0 {
		err = os.NewSyscallError("accept4", aerr)
	}
	if err != nil {
		// The file's raw reads report its close in words of their own.
		if l.closed.Load() {
			err = net.ErrClosed
		}
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: err}
	}
	return &Conn{fd: fd, remote: addrPort(&sa), local: l.local}, nil
}

// accept4 is accept4(2) on the non-blocking socket s, made without telling
// the scheduler, as the HTTP/2 engine reads and writes (package h2,
// sysio_linux.go): the call never sleeps, and one the scheduler knows of
// lets the runtime's monitor hand the P to another thread when the call
// is slow, which a storm of connections made it often enough to cost
// thousands of thread switches a second on one core.
func accept4(s uintptr, sa *syscall.RawSockaddrAny) (int, syscall.Errno) {
	n := uint32(syscall.SizeofSockaddrAny)
	fd, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, s, uintptr(unsafe.Pointer(sa)), uintptr(unsafe.Pointer(&n)),
		syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0, 0)
	return int(fd), e
}

// addrPort is the address of an AF_INET or AF_INET6 socket address; the
// zero AddrPort for any other.
func addrPort(sa *syscall.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case syscall.AF_INET:
		a := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), port(a.Port))
	case syscall.AF_INET6:
		a := (*syscall.RawSockaddrInet6)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), port(a.Port))
	}
	return netip.AddrPort{}
}

// port is a port in network byte order, as a socket address holds it.
func port(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// Close closes the duplicate descriptor, which ends a waiting Accept with
// net.ErrClosed; the socket itself is closed with the net listener.
func (l *Listener) Close() error {
	l.closed.Store(true)
	return l.f.Close()
}

// Conn is an accepted TCP connection: a net.Conn whose descriptor joins
// Go's poller on first use as one, and which its owner may read and write
// by its descriptor (FD) until then.
type Conn struct {
	fd     int // guarded by mu: LeavePoller changes it
	remote netip.AddrPort
	local  *net.TCPAddr // the listener's, when bound to one address

	on           atomic.Pointer[onPoller] // while on the poller
	laddr, raddr atomic.Pointer[net.TCPAddr]
	mu           sync.Mutex // on's making and ending, fd, and closing
	closed       bool
}

// onPoller is a Conn's descriptor on Go's poller, and its raw connection,
// made once each time it joins.
type onPoller struct {
	f  *os.File
	rc syscall.RawConn
}

// FD is the connection's descriptor, open until Close. Its owner may read
// and write it directly, and register it with an epoll set of its own,
// while no one uses the Conn as a net.Conn; a registration is dropped
// when the descriptor closes.
func (c *Conn) FD() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fd
}

// file returns the descriptor on Go's poller, putting it there first.
func (c *Conn) file() (*os.File, error) {
	on, err := c.poller()
	if err != nil {
		return nil, err
	}
	return on.f, nil
}

func (c *Conn) poller() (*onPoller, error) {
	if on := c.on.Load(); on != nil {
		return on, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, net.ErrClosed
	}
	on := c.on.Load()
	if on == nil {
		f := os.NewFile(uintptr(c.fd), "tcp")
		// SyscallConn fails only for a nil *File. Dropping f on an
		// error would let its cleanup close the Conn's descriptor.
		rc, _ := f.SyscallConn()
		on = &onPoller{f: f, rc: rc}
		c.on.Store(on)
	}
	return on, nil
}

// LeavePoller takes the connection off Go's poller, if a use put it
// there, and returns its descriptor: a new one, when it was on. The
// runtime keeps a poll descriptor for every socket on its poller, and
// never frees it, only reuses it: about 530 bytes, with what goes with
// it, for each socket a process ever held there at once. A
// connection that waits for its peer on an epoll set of its own (package
// h2 parks idle ones) need not hold one. The descriptor is duplicated and
// the poller's copy closed, which takes it off the poller; the next use as
// a net.Conn puts it back. The caller makes sure that nothing reads,
// writes or waits on the connection meanwhile, and that no epoll set of
// its own holds the old descriptor (whose registration would stay, out
// of reach, as long as the socket).
func (c *Conn) LeavePoller() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return -1, net.ErrClosed
	}
	on := c.on.Load()
	if on == nil {
		return c.fd, nil
	}
	nfd, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(c.fd), syscall.F_DUPFD_CLOEXEC, 0)
	if e != 0 {
		return c.fd, os.NewSyscallError("fcntl", e)
	}
	c.on.Store(nil)
	c.fd = int(nfd)
	_ = on.f.Close() // the duplicate keeps the socket open
	return c.fd, nil
}

// dupRaw is Dup with the duplicate's raw connection.
func dupRaw(sc syscall.Conn) (*os.File, syscall.RawConn, error) {
	f, err := Dup(sc)
	if err != nil {
		return nil, nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, rc, nil
}

// OnPoller reports whether the connection is on Go's poller now.
func (c *Conn) OnPoller() bool { return c.on.Load() != nil }

// FromTCP makes a Conn of tc, a connected socket that net dialled: its
// descriptor is duplicated and tc closed, so that the Conn, on Go's poller
// as tc was, may leave it (LeavePoller).
func FromTCP(tc *net.TCPConn) (*Conn, error) {
	f, rc, err := dupRaw(tc)
	if err != nil {
		return nil, err
	}
	var fd int
	_ = rc.Control(func(s uintptr) { fd = int(s) })
	c := &Conn{fd: fd}
	c.on.Store(&onPoller{f: f, rc: rc})
	if a, ok := tc.RemoteAddr().(*net.TCPAddr); ok {
		c.remote = a.AddrPort()
	}
	if a, ok := tc.LocalAddr().(*net.TCPAddr); ok {
		c.local = a
	}
	tc.Close()
	return c, nil
}

// Read reads as net.TCPConn's does.
func (c *Conn) Read(p []byte) (int, error) {
	f, err := c.file()
	if err != nil {
		return 0, c.opError("read", err)
	}
	n, err := f.Read(p)
	return n, c.opError("read", err)
}

// Write writes as net.TCPConn's does.
func (c *Conn) Write(p []byte) (int, error) {
	f, err := c.file()
	if err != nil {
		return 0, c.opError("write", err)
	}
	n, err := f.Write(p)
	return n, c.opError("write", err)
}

// Close closes the connection. A read or write waiting on the poller
// returns net.ErrClosed.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.opError("close", net.ErrClosed)
	}
	c.closed = true
	on := c.on.Load()
	c.mu.Unlock()
	if on != nil {
		return c.opError("close", on.f.Close())
	}
	// Off the poller, so made as accept4 is; as os and net close, close(2)
	// is not retried, EINTR or not. Without SO_LINGER it never sleeps.
	return c.opError("close", os.NewSyscallError("close", rawErr(syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(c.fd), 0, 0))))
}

// CloseWrite shuts down the writing side of the connection.
func (c *Conn) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.opError("close", net.ErrClosed)
	}
	shut := func(fd uintptr) error {
		return os.NewSyscallError("shutdown", rawErr(syscall.RawSyscall(syscall.SYS_SHUTDOWN, fd, syscall.SHUT_WR, 0)))
	}
	on := c.on.Load()
	if on == nil {
		return c.opError("close", shut(uintptr(c.fd)))
	}
	var err error
	if cerr := on.rc.Control(func(fd uintptr) { err = shut(fd) }); cerr != nil {
		err = cerr
	}
	return c.opError("close", err)
}

// SyscallConn returns the descriptor's raw connection on Go's poller,
// the same one until the connection leaves it.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	on, err := c.poller()
	if err != nil {
		return nil, err
	}
	return on.rc, nil
}

// SetDeadline sets the read and write deadlines, as net.TCPConn's does.
func (c *Conn) SetDeadline(t time.Time) error {
	return c.deadline("set deadline", t, (*os.File).SetDeadline)
}

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error {
	return c.deadline("set read deadline", t, (*os.File).SetReadDeadline)
}

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	return c.deadline("set write deadline", t, (*os.File).SetWriteDeadline)
}

func (c *Conn) deadline(op string, t time.Time, set func(*os.File, time.Time) error) error {
	f, err := c.file()
	if err == nil {
		err = set(f, t)
	}
	return c.opError(op, err)
}

// RemoteAddr is the client's address, as accept4 gave it.
func (c *Conn) RemoteAddr() net.Addr {
	if a := c.raddr.Load(); a != nil {
		return a
	}
	a := net.TCPAddrFromAddrPort(c.remote)
	c.raddr.Store(a)
	return a
}

// LocalAddr is the connection's local address: the listener's, when it
// is bound to one; otherwise the kernel's answer, asked for once.
func (c *Conn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	if a := c.laddr.Load(); a != nil {
		return a
	}
	a := new(net.TCPAddr)
	c.mu.Lock()
	if !c.closed {
		var sa syscall.RawSockaddrAny
		n := uint32(syscall.SizeofSockaddrAny)
		if _, _, e := syscall.RawSyscall(syscall.SYS_GETSOCKNAME, uintptr(c.fd), uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&n))); e == 0 {
			a = net.TCPAddrFromAddrPort(addrPort(&sa))
		}
	}
	c.mu.Unlock()
	c.laddr.Store(a)
	return a
}

// opError makes err what net.TCPConn would return: a *net.OpError, with
// net.ErrClosed for a closed connection; io.EOF and nil as they are.
func (c *Conn) opError(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	var pe *os.PathError
	switch {
	case errors.Is(err, os.ErrClosed), errors.Is(err, net.ErrClosed):
		err = net.ErrClosed
	case errors.As(err, &pe):
		err = pe.Err
		if en, ok := err.(syscall.Errno); ok {
			err = os.NewSyscallError(op, en)
		}
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// rawErr is a raw system call's error, nil for none.
func rawErr(_, _ uintptr, e syscall.Errno) error {
	if e != 0 {
		return e
	}
	return nil
}
