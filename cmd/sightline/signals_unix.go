//go:build unix

package main

import (
	"os"
	"syscall"
)

// upgradeSignals ask the running process for a hot upgrade: SIGUSR2, as
// HAProxy's and tableflip's, the only one (the trigger is named for it).
var upgradeSignals = []os.Signal{syscall.SIGUSR2}

// stopProcess asks a process to stop, as SIGTERM does the proxy: it
// drains first.
func stopProcess(pid int) { _ = syscall.Kill(pid, syscall.SIGTERM) }
