package h2

import (
	"fmt"
	"syscall"
	"unsafe"
)

// pollerOS is an epoll instance of its own, level-triggered and one-shot
// per registration: the runtime's netpoller keeps its own registration of
// the same socket, which this one does not disturb.
type pollerOS struct {
	epfd int
}

func (p *pollerOS) init(wake func(id int32), fail func(error)) error {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	p.epfd = fd
	go p.wait(wake, fail)
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
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(p.epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(&ev)), 0, 0)
	if e != 0 {
		return fmt.Errorf("epoll_ctl %s: %w", name, e)
	}
	return nil
}

// wait runs until epoll fails, which it should never do: the goroutine
// blocks in epoll_wait, a system call, so it holds a thread but no P.
func (p *pollerOS) wait(wake func(id int32), fail func(error)) {
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			fail(fmt.Errorf("epoll_wait: %w", err))
			return
		}
		for i := range n {
			wake(events[i].Fd)
		}
	}
}
