package upgrade

import (
	"fmt"
	"net"
	"os"
)

// Notify sends state to the service manager that started the process
// (systemd's sd_notify protocol: a datagram to $NOTIFY_SOCKET), and does
// nothing when there is none. A unit of Type=notify waits for
// "READY=1"; "MAINPID=<pid>" moves it to the process that took over the
// sockets, so that systemd follows the new process, not the old one
// that is about to exit.
func Notify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // an abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notifying the service manager: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("notifying the service manager: %w", err)
	}
	return nil
}
