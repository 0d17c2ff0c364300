//go:build !linux

package h2

import (
	"errors"
	"net"
)

// pollerOS: parking needs a poller of its own, written for Linux only;
// elsewhere every connection keeps its reader goroutine.
type pollerOS struct{}

func (*pollerOS) init(func(int32), func(error)) error { return errors.New("h2: parking is Linux-only") }
func (*pollerOS) add(int, int32, bool) error          { return errors.New("h2: parking is Linux-only") }
func (*pollerOS) del(int)                             {}

// offPoller: connections leave Go's poller only where they park.
func offPoller(nc net.Conn) net.Conn { return nc }
