package h2

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/sightline-proxy/sightline/proxy/sock"
)

// pollerOS is an epoll instance of its own, level-triggered and one-shot
// per registration: the runtime's netpoller keeps its own registration of
// the same socket, which this one does not disturb.
//
// The instance is itself registered with the runtime's netpoller (an
// epoll descriptor is readable while events are ready), and its goroutine
// waits there as any network goroutine does. A goroutine blocked in
// epoll_wait would instead hold the P it entered the system call with
// until the runtime's monitor took it back, up to 10 ms later when the
// process had been idle: every goroutine the wake-up readied, and every
// other, waited that long (a victim's call took 19 ms while 19,000 idle
// connections were being closed).
type pollerOS struct {
	epfd int
	file *os.File // epfd, for the runtime's netpoller; keeps it open
}

func (p *pollerOS) init(wake func(id int32), fail func(error)) error {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	// os.NewFile hands a non-blocking descriptor to the netpoller.
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return fmt.Errorf("epoll: set non-blocking: %w", err)
	}
	p.epfd, p.file = fd, os.NewFile(uintptr(fd), "epoll")
	rc, err := p.file.SyscallConn()
	if err != nil {
		p.file.Close()
		return fmt.Errorf("epoll: %w", err)
	}
	go p.wait(rc, wake, fail)
	return nil
}

// add arms a one-shot registration of fd under id: a new one, or with
// rearm the socket's earlier one, which fired or was left armed.
func (p *pollerOS) add(fd int, id int32, rearm bool) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: id}
	op, name := syscall.EPOLL_CTL_ADD, "add"
	if rearm {
		op, name = syscall.EPOLL_CTL_MOD, "mod"
	}
	// Made as sysRead is (sysio_linux.go): epoll_ctl never sleeps.
	if e := epollCtl(p.epfd, op, fd, &ev); e != 0 {
		return fmt.Errorf("epoll_ctl %s: %w", name, e)
	}
	return nil
}

// del removes fd's registration, before the descriptor is closed while
// the socket stays open (sock.Conn.LeavePoller): the registration would
// stay as long as the socket, out of reach.
func (p *pollerOS) del(fd int) {
	_ = epollCtl(p.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
}

// offPoller makes a cleartext upstream connection that net dialled one
// that can leave Go's poller when it parks (see conn.leavePollerLocked);
// nc as it is when it cannot.
func offPoller(nc net.Conn) net.Conn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nc
	}
	c, err := sock.FromTCP(tc)
	if err != nil {
		return nc
	}
	return c
}

func epollCtl(epfd, op, fd int, ev *syscall.EpollEvent) syscall.Errno {
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return e
}

// wait runs until epoll fails, which it should never do. It takes the
// ready events without blocking and, when there are none, waits in the
// netpoller for the instance to become readable. The netpoller's
// registration is edge-triggered; every event added to the instance
// signals it anew, and wait takes events until none is left before it
// waits again, so none is missed.
func (p *pollerOS) wait(rc syscall.RawConn, wake func(id int32), fail func(error)) {
	events := make([]syscall.EpollEvent, 256)
	pace := newPacer() // a mass close wakes thousands at once
	for {
		var n int
		var werr error
		err := rc.Read(func(fd uintptr) bool {
			n, werr = epollWaitNow(int(fd), events)
			return n > 0 || werr != nil
		})
		if err == nil {
			err = werr
		}
		if err != nil {
			fail(fmt.Errorf("epoll_wait: %w", err))
			return
		}
		pace.start = time.Now()
		for i := range n {
			wake(events[i].Fd)
			pace.step()
		}
	}
}

// epollWaitNow takes the ready events without waiting (epoll_pwait with
// no signal mask, which every Linux architecture has). An interrupted
// call reports none.
func epollWaitNow(epfd int, events []syscall.EpollEvent) (int, error) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	switch e {
	case 0:
		return int(r), nil
	case syscall.EINTR:
		return 0, nil
	}
	return 0, e
}
