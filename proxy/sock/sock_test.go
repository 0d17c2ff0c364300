//go:build linux

package sock

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/nettest"
	"golang.org/x/sys/unix"
)

// listen binds a socket on 127.0.0.1 and prepares to accept from it.
func listen(t *testing.T) (net.Listener, *Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := Listen(ln)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		l.Close()
		ln.Close()
	})
	return ln, l
}

// pair returns an accepted Conn and the client's end of it.
func pair(t *testing.T, ln net.Listener, l *Listener) (*Conn, net.Conn) {
	t.Helper()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.Accept()
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	return c.(*Conn), client
}

// TestConn runs x/net's conformance tests for net.Conn implementations
// on an accepted Conn, as either end of the pair.
func TestConn(t *testing.T) {
	for _, accepted := range []string{"first", "second"} {
		t.Run("accepted "+accepted, func(t *testing.T) {
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					return nil, nil, nil, err
				}
				defer ln.Close()
				l, err := Listen(ln)
				if err != nil {
					return nil, nil, nil, err
				}
				defer l.Close()
				client, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					return nil, nil, nil, err
				}
				c, err := l.Accept()
				if err != nil {
					client.Close()
					return nil, nil, nil, err
				}
				stop = func() {
					c.Close()
					client.Close()
				}
				if accepted == "first" {
					return c, client, stop, nil
				}
				return client, c, stop, nil
			})
		})
	}
}

// TestAccepted checks what an accepted Conn is before anything used it:
// its addresses, the socket options it inherited from the listener, and
// its descriptor, read and written directly, after which the Conn reads
// and writes on Go's poller what follows.
func TestAccepted(t *testing.T) {
	ln, l := listen(t)
	c, client := pair(t, ln, l)
	defer c.Close()
	defer client.Close()

	if got, want := c.RemoteAddr().String(), client.LocalAddr().String(); got != want {
		t.Errorf("RemoteAddr = %s, want %s", got, want)
	}
	if got, want := c.LocalAddr().String(), ln.Addr().String(); got != want {
		t.Errorf("LocalAddr = %s, want %s", got, want)
	}
	for _, o := range []struct {
		name       string
		level, opt int
		want       int
	}{
		{"TCP_NODELAY", syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1},
		{"SO_KEEPALIVE", syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 0},
	} {
		got, err := syscall.GetsockoptInt(c.FD(), o.level, o.opt)
		if err != nil {
			t.Fatal(err)
		}
		if got != o.want {
			t.Errorf("%s = %d on an accepted socket, want %d", o.name, got, o.want)
		}
	}
	if c.OnPoller() {
		t.Fatal("the Conn joined Go's poller before any use")
	}

	// The descriptor, directly: non-blocking, so an empty socket says so.
	buf := make([]byte, 16)
	if _, err := syscall.Read(c.FD(), buf); err != syscall.EAGAIN {
		t.Fatalf("reading an empty socket: %v, want EAGAIN", err)
	}
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	// Wait for the bytes on the Conn's descriptor, as an epoll set would.
	if n, err := unix.Poll([]unix.PollFd{{Fd: int32(c.FD()), Events: unix.POLLIN}}, 5000); n != 1 || err != nil {
		t.Fatalf("poll: %d, %v; want the socket readable", n, err)
	}
	if n, err := syscall.Read(c.FD(), buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("direct read: %q, %v; want ping", buf[:n], err)
	}
	if _, err := syscall.Write(c.FD(), []byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(client, buf[:4]); err != nil || string(buf[:4]) != "pong" {
		t.Fatalf("client read %q, %v; want pong", buf[:4], err)
	}

	// Then as a net.Conn: a read waits on Go's poller.
	go func() {
		time.Sleep(20 * time.Millisecond)
		client.Write([]byte("later"))
	}()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf[:5]); err != nil || string(buf[:5]) != "later" {
		t.Fatalf("Conn read %q, %v; want later", buf[:5], err)
	}
	if !c.OnPoller() {
		t.Error("the Conn read without Go's poller")
	}
}

// TestLocalAddrAsked: on a listener bound to no one address, a Conn asks
// the kernel for its local address.
func TestLocalAddrAsked(t *testing.T) {
	ln, l := listen(t)
	l.local = nil // as if bound to 0.0.0.0
	c, client := pair(t, ln, l)
	defer c.Close()
	defer client.Close()
	if got, want := c.LocalAddr().String(), client.RemoteAddr().String(); got != want {
		t.Errorf("LocalAddr = %s, want %s", got, want)
	}
}

// TestCloseUnused: a Conn closed before it joined Go's poller closes its
// socket (the client reads EOF), and uses after the close fail as a
// closed net.Conn's do.
func TestCloseUnused(t *testing.T) {
	ln, l := listen(t)
	c, client := pair(t, ln, l)
	defer client.Close()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the client read %v after the close, want EOF", err)
	}
	for name, err := range map[string]error{
		"Read":  func() error { _, err := c.Read(make([]byte, 1)); return err }(),
		"Write": func() error { _, err := c.Write([]byte("x")); return err }(),
		"Close": c.Close(),
	} {
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s after Close: %v, want net.ErrClosed", name, err)
		}
	}
}

// TestCloseWrite: after CloseWrite, before or after the Conn joined Go's
// poller, the client reads EOF and may still send.
func TestCloseWrite(t *testing.T) {
	for _, used := range []bool{false, true} {
		ln, l := listen(t)
		c, client := pair(t, ln, l)
		if used {
			c.SetDeadline(time.Now().Add(5 * time.Second))
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		client.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := client.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("used %v: the client read %v after CloseWrite, want EOF", used, err)
		}
		if _, err := client.Write([]byte("bye")); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 3)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "bye" {
			t.Errorf("used %v: read %q, %v after CloseWrite; want bye", used, buf, err)
		}
		c.Close()
		client.Close()
	}
}

// TestTimeoutIsNetError: a read past its deadline fails as net.TCPConn's
// does, with a net.Error that says it timed out.
func TestTimeoutIsNetError(t *testing.T) {
	ln, l := listen(t)
	c, client := pair(t, ln, l)
	defer c.Close()
	defer client.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read past the deadline: %v, want a net.Error that timed out", err)
	}
}

// TestListenerEnds: Close ends a waiting Accept; the net listener goes on
// accepting.
func TestListenerEnds(t *testing.T) {
	ln, l := listen(t)
	done := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a waiting Accept")
	}
	// The socket is still bound and the net listener's own.
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestListenNeedsTCP: a listener that is no TCP socket's is refused.
func TestListenNeedsTCP(t *testing.T) {
	ln, err := net.Listen("unix", t.TempDir()+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := Listen(ln); err == nil {
		t.Error("Listen took a Unix socket")
	}
}

// TestAddrPort reads the client's address out of the socket addresses
// accept4 fills in, ports in network byte order.
func TestAddrPort(t *testing.T) {
	in4 := syscall.RawSockaddrInet4{Family: syscall.AF_INET, Addr: [4]byte{10, 1, 2, 3}}
	*(*[2]byte)(unsafe.Pointer(&in4.Port)) = [2]byte{0x1f, 0x90} // 8080
	in6 := syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Addr: [16]byte{0: 0x20, 1: 0x01, 2: 0x0d, 3: 0xb8, 15: 1}}
	*(*[2]byte)(unsafe.Pointer(&in6.Port)) = [2]byte{0xc3, 0x50} // 50000
	unixAddr := syscall.RawSockaddrUnix{Family: syscall.AF_UNIX}
	for _, tt := range []struct{ name, want string }{
		{"IPv4", "10.1.2.3:8080"},
		{"IPv6", "[2001:db8::1]:50000"},
		{"other", "invalid AddrPort"},
	} {
		var any syscall.RawSockaddrAny
		switch tt.name {
		case "IPv4":
			*(*syscall.RawSockaddrInet4)(unsafe.Pointer(&any)) = in4
		case "IPv6":
			*(*syscall.RawSockaddrInet6)(unsafe.Pointer(&any)) = in6
		default:
			*(*syscall.RawSockaddrUnix)(unsafe.Pointer(&any)) = unixAddr
		}
		if got := addrPort(&any).String(); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

// TestFDTableGrown: once a Listener is made, the process's descriptor
// table holds fdTableAhead descriptors (or RLIMIT_NOFILE's), so that no
// accept waits for the kernel to grow it.
func TestFDTableGrown(t *testing.T) {
	listen(t)
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var size uint64
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "FDSize:"); ok {
			size, err = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if want := min(rl.Cur, fdTableAhead); size < want {
		t.Errorf("FDSize = %d after Listen, want at least %d", size, want)
	}
}

// TestLeavePoller: a Conn that a read put on Go's poller leaves it for a
// new descriptor of the same socket, which an epoll set of its own can
// wait on; the next use as a net.Conn puts it back, and bytes flow both
// ways throughout. A Conn that never joined keeps its descriptor.
func TestLeavePoller(t *testing.T) {
	ln, l := listen(t)
	c, client := pair(t, ln, l)
	defer c.Close()
	defer client.Close()

	fd0 := c.FD()
	if fd, err := c.LeavePoller(); err != nil || fd != fd0 {
		t.Fatalf("off the poller: LeavePoller = %d, %v; want its descriptor %d", fd, err, fd0)
	}
	buf := make([]byte, 16)
	roundTrip := func(what string) {
		t.Helper()
		if _, err := client.Write([]byte(what)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf[:len(what)]); err != nil || string(buf[:len(what)]) != what {
			t.Fatalf("Conn read %q, %v; want %q", buf[:len(what)], err, what)
		}
		if _, err := c.Write([]byte(what)); err != nil {
			t.Fatal(err)
		}
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(client, buf[:len(what)]); err != nil || string(buf[:len(what)]) != what {
			t.Fatalf("client read %q, %v; want %q", buf[:len(what)], err, what)
		}
	}
	roundTrip("one")
	if !c.OnPoller() {
		t.Fatal("a read did not put the Conn on the poller")
	}

	fd1, err := c.LeavePoller()
	if err != nil {
		t.Fatal(err)
	}
	if c.OnPoller() || fd1 == fd0 || c.FD() != fd1 {
		t.Fatalf("after LeavePoller: on the poller %v, descriptor %d (was %d), FD %d", c.OnPoller(), fd1, fd0, c.FD())
	}
	// The old descriptor is closed (nothing else in this test opens one
	// that could take its number); the socket is not.
	if _, err := unix.FcntlInt(uintptr(fd0), unix.F_GETFD, 0); err != unix.EBADF {
		t.Errorf("descriptor %d: %v after LeavePoller, want EBADF", fd0, err)
	}
	// Off the poller, the new descriptor reports the peer's bytes to
	// a poll of its own.
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd1), Events: unix.POLLIN}}, 5000); n != 1 || err != nil {
		t.Fatalf("poll: %d, %v; want the socket readable", n, err)
	}
	if n, err := syscall.Read(fd1, buf); err != nil || string(buf[:n]) != "x" {
		t.Fatalf("direct read: %q, %v; want x", buf[:n], err)
	}
	roundTrip("two")
	if !c.OnPoller() {
		t.Fatal("a read did not put the Conn back on the poller")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LeavePoller(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("LeavePoller after Close: %v, want net.ErrClosed", err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(buf); err != io.EOF {
		t.Errorf("client after Close: %d bytes, %v; want EOF", n, err)
	}
}

// TestFromTCP: a dialled connection made a Conn keeps its addresses and
// its bytes, and can leave the poller.
func TestFromTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	local := nc.LocalAddr().String()
	c, err := FromTCP(nc.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.RemoteAddr().String() != ln.Addr().String() || c.LocalAddr().String() != local {
		t.Errorf("addresses %s → %s, want %s → %s", c.LocalAddr(), c.RemoteAddr(), local, ln.Addr())
	}
	if _, err := c.LeavePoller(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(srv, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("server read %q, %v", buf, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := srv.Read(buf); err != io.EOF {
		t.Errorf("server after Close: %d bytes, %v; want EOF: the dialled socket stayed open", n, err)
	}
}
