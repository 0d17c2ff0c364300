package main

import (
	"flag"
	"net"
)

// runFloor serves what any Go server must do for an HTTP/2 client that
// connects and asks for nothing, and no more: accept, read what the
// client sent first (its preface and SETTINGS, one write from the attack's
// clients), answer an empty SETTINGS and the ACK of the client's, then
// hold the connection with a goroutine waiting in Read, on Go's own
// poller. Run in the proxy's place under idle-conns, its CPU is the floor
// a proxy built on net and goroutines starts from (bench/README.md,
// Abuse).
func runFloor(args []string) error {
	ln, err := listenOn("floor", "127.0.0.1:18100", "listen address", args)
	if err != nil {
		return err
	}
	answer := []byte{
		0, 0, 0, 4, 0, 0, 0, 0, 0, // SETTINGS, empty
		0, 0, 0, 4, 1, 0, 0, 0, 0, // SETTINGS ACK
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 512)
			if _, err := c.Read(buf); err != nil {
				return
			}
			if _, err := c.Write(answer); err != nil {
				return
			}
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
	}
}

// listenOn parses the flags of a command whose only flag is -addr (def
// by default) and listens there.
func listenOn(name, def, usage string, args []string) (net.Listener, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	addr := fs.String("addr", def, usage)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return net.Listen("tcp", *addr)
}
