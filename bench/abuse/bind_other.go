//go:build !linux

package main

import "syscall"

// bindNoPort does nothing: IP_BIND_ADDRESS_NO_PORT is Linux's, and
// elsewhere a bound source address takes its port at bind.
func bindNoPort(_, _ string, _ syscall.RawConn) error { return nil }
