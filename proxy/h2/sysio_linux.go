package h2

import (
	"syscall"
	"unsafe"
)

// sysRead and sysWrite are read(2) and write(2) on a non-blocking socket,
// made without telling the scheduler: such a call never sleeps, and one
// the scheduler knows of costs, when it is slow (a loopback write runs the
// receiver's TCP path in the writer's time), the runtime's monitor handing
// the goroutine's P to another thread and taking it back with futex
// wake-ups. At 2,000 calls a second through one connection that was a
// third of the proxy's CPU (bench/README.md, l3). The descriptor is
// always one the runtime's poller made non-blocking.
func sysRead(fd uintptr, p []byte) (int, error) {
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func sysWrite(fd uintptr, p []byte) (int, error) {
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// sysSend is send(2) with flags, made as sysWrite is; MSG_NOSIGNAL is
// added, as a write's EPIPE is all the caller needs.
func sysSend(fd uintptr, p []byte, flags int) (int, error) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), uintptr(flags|syscall.MSG_NOSIGNAL), 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}
