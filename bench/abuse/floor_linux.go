package main

import (
	"fmt"
	"net"
	"runtime"
	"syscall"
)

// floorLoop is runFloor -loop: one goroutine, locked to its thread,
// waits on an epoll set of its own for the listener and every connection,
// accepts with accept4 until the backlog is empty, answers a
// connection's first bytes with floorAnswer, and reads and drops the rest
// until the client hangs up.
func floorLoop(ln net.Listener) error {
	// File duplicates the listener's descriptor, in blocking mode.
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		return err
	}
	lfd := int(f.Fd())
	if err := syscall.SetNonblock(lfd, true); err != nil {
		return err
	}
	runtime.LockOSThread()
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, lfd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(lfd)}); err != nil {
		return err
	}
	var (
		events   = make([]syscall.EpollEvent, 256)
		buf      = make([]byte, 512)
		answered = map[int]bool{}
	)
	// serve reads what fd has; it answers the first bytes, and closes
	// fd at its end.
	serve := func(fd int) {
		for {
			n, err := syscall.Read(fd, buf)
			switch {
			case err == syscall.EAGAIN:
				return
			case err == syscall.EINTR:
				continue
			case err != nil || n == 0:
				delete(answered, fd)
				syscall.Close(fd) // its last reference: it leaves the epoll set
				return
			case !answered[fd]:
				answered[fd] = true
				syscall.Write(fd, floorAnswer)
			}
		}
	}
	for {
		n, err := syscall.EpollWait(ep, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range events[:n] {
			if fd := int(ev.Fd); fd != lfd {
				serve(fd)
				continue
			}
			for {
				fd, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
				if err != nil {
					break // EAGAIN: the backlog is empty
				}
				ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
				if syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &ev) != nil {
					syscall.Close(fd)
					continue
				}
				serve(fd) // the client's preface is most likely there already
			}
		}
	}
}
