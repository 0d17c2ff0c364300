//go:build unix

package yield

import (
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

// A Yielder belongs to one goroutine at a time.
type Yielder struct {
	r, w   *os.File
	rc     syscall.RawConn
	wfd    int
	asked  bool
	buf    [8]byte
	waitFn func(fd uintptr) bool
}

// New makes a Yielder and its pipe. Without one (out of descriptors),
// the Yielder yields as runtime.Gosched does.
func New() *Yielder {
	y := &Yielder{wfd: -1}
	r, w, err := os.Pipe() // non-blocking, and r is in the network poller
	if err != nil {
		return y
	}
	rc, err := r.SyscallConn()
	if err == nil {
		var wc syscall.RawConn
		if wc, err = w.SyscallConn(); err == nil {
			err = wc.Control(func(fd uintptr) { y.wfd = int(fd) })
		}
	}
	if err != nil {
		r.Close()
		w.Close()
		return y
	}
	y.r, y.w, y.rc = r, w, rc
	y.waitFn = y.wait
	return y
}

// Yield returns once the network poller has made a pass after the call
// and the goroutines it readied then have run. Without a pipe it yields
// as runtime.Gosched does.
func (y *Yielder) Yield() {
	if y.rc == nil {
		runtime.Gosched()
		return
	}
	y.asked = false
	_ = y.rc.Read(y.waitFn)
	// The poller's pass readied the pipe and the sockets alike, and the
	// pipe may have come first; the others were queued behind it.
	runtime.Gosched()
}

// wait is RawConn's callback. The byte is written on the first call,
// after RawConn has cleared the readiness the poller last reported, so
// the poller reports this one anew; the next calls take it back.
func (y *Yielder) wait(fd uintptr) bool {
	if !y.asked {
		y.asked = true
		one := byte(1)
		_, _, _ = syscall.RawSyscall(syscall.SYS_WRITE, uintptr(y.wfd), uintptr(unsafe.Pointer(&one)), 1)
		return false
	}
	_, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&y.buf[0])), uintptr(len(y.buf)))
	return e != syscall.EAGAIN // a wake-up before the byte arrived waits again
}

// Close closes the pipe.
func (y *Yielder) Close() {
	if y.rc != nil {
		y.r.Close()
		y.w.Close()
	}
}
