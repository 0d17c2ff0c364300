//go:build !linux

package main

import (
	"errors"
	"net"
)

// floorLoop needs epoll: Linux only.
func floorLoop(net.Listener) error { return errors.New("floor -loop needs Linux (epoll)") }
