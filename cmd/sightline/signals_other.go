//go:build !unix

package main

import "os"

// upgradeSignals: none. Hot upgrade needs inherited descriptors, which
// this system does not have (internal/upgrade), so no upgrade starts a
// process here; POST /upgrade reports why.
var upgradeSignals []os.Signal

// stopProcess kills a process: there is no SIGTERM to ask it with.
func stopProcess(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}
