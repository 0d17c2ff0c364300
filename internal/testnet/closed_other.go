//go:build !unix

package testnet

import (
	"net"
	"testing"
)

// ClosedPort is a loopback address nothing listens on: a dial gets
// "connection refused" at once. Here the port is only found free and let
// go, so a listener that asks for any port may be given it later.
func ClosedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
