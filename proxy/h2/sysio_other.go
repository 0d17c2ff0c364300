//go:build unix && !linux

package h2

import "syscall"

// sysRead and sysWrite: see sysio_linux.go; elsewhere the plain calls.
func sysRead(fd uintptr, p []byte) (int, error)  { return syscall.Read(int(fd), p) }
func sysWrite(fd uintptr, p []byte) (int, error) { return syscall.Write(int(fd), p) }
