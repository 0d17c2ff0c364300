package main

import (
	"flag"
	"net"
)

// runFloor serves what any Go server must do for an HTTP/2 client that
// connects and asks for nothing, and no more: accept, read what the
// client sent first (its preface and SETTINGS, one write from the attack's
// clients), answer an empty SETTINGS and the ACK of the client's, then
// hold the connection. By default each connection has a goroutine waiting
// in Read, on Go's own poller: run in the proxy's place under idle-conns,
// its CPU is the floor a proxy built on net and goroutines starts from.
// With -loop one goroutine does it all on an epoll set of its own, with
// raw accept4, reads and writes, as an event-loop server does (Linux):
// what a proxy that left Go's poller for its accept and handshake could
// reach (bench/README.md, Abuse).
func runFloor(args []string) error {
	var loop bool
	ln, err := listenOn("floor", "127.0.0.1:18100", "listen address", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&loop, "loop", false, "one goroutine on an epoll set of its own instead of a goroutine a connection")
	})
	if err != nil {
		return err
	}
	if loop {
		return floorLoop(ln)
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
			if _, err := c.Write(floorAnswer); err != nil {
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

// floorAnswer is the floor's whole side of the handshake.
var floorAnswer = []byte{
	0, 0, 0, 4, 0, 0, 0, 0, 0, // SETTINGS, empty
	0, 0, 0, 4, 1, 0, 0, 0, 0, // SETTINGS ACK
}

// listenOn parses the flags of a command whose flags are -addr (def by
// default) and what more adds, and listens there.
func listenOn(name, def, usage string, args []string, more ...func(*flag.FlagSet)) (net.Listener, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	addr := fs.String("addr", def, usage)
	for _, m := range more {
		m(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return net.Listen("tcp", *addr)
}
