package server

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// placedError is an error about a config value, placed where the value
// was written, as config problems are: "file:line:column: path: message
// (hint)". It unwraps to the cause.
type placedError struct {
	problem config.Problem
	err     error
}

func (e *placedError) Error() string { return e.problem.String() }
func (e *placedError) Unwrap() error { return e.err }

// Problem returns the error as a config problem.
func (e *placedError) Problem() config.Problem { return e.problem }

// bindError places the failure to listen on addr, the value of the config
// key at path (such as "listeners[2].address"), where cfg says it was
// written, with a hint at the usual causes. what names the socket's
// owner for the message: "listener ingress", "admin server".
func bindError(cfg *config.Config, path, what, addr string, err error) error {
	p := cfg.Locate(path)
	cause := err
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		cause = op.Err // "bind: address already in use"
	}
	p.Message = fmt.Sprintf("%s cannot listen on %s: %v", what, addr, cause)
	p.Hint = bindHint(addr, err)
	return &placedError{problem: p, err: err}
}

// bindHint says what usually causes a bind error, and how to look.
func bindHint(addr string, err error) string {
	_, port, _ := net.SplitHostPort(addr)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Sprintf("another process is listening on port %s (or a second sightline): find it with `ss -ltnp 'sport = :%s'`, stop it or pick another port", port, port)
	case errors.Is(err, syscall.EACCES):
		return "ports below 1024 need root or CAP_NET_BIND_SERVICE (setcap cap_net_bind_service=+ep on the binary), or pick a port from 1024"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no interface of this host has that address: use one `ip addr` lists, 127.0.0.1, or 0.0.0.0 for all"
	}
	return ""
}

// listenerPath is the config path of the address of the listener named
// name in cfg.
func listenerPath(cfg *config.Config, name string) string {
	for i := range cfg.Listeners {
		if cfg.Listeners[i].Name == name {
			return fmt.Sprintf("listeners[%d].address", i)
		}
	}
	return "listeners"
}
