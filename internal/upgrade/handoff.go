// Package upgrade replaces a running sightline process with a new one,
// binary and config, without refusing a connection: the running process
// starts the binary at its path with its arguments and passes it every
// listening socket (the listeners' and the admin server's); the new one
// loads its config, takes the sockets whose addresses it still has,
// binds the others, health-checks, and says it is ready; only then does
// the old one stop accepting and drain. A connection waiting in a
// socket's backlog at the switch is accepted by the new process, as the
// socket is the same.
//
// The sockets are passed as inherited file descriptors (exec's
// ExtraFiles) and described in one environment variable; the new process
// reports on a pipe, also inherited, that it is ready, or why it failed.
// It is the design of cloudflare/tableflip, written out here for what
// tableflip does not give: the new process's reason for failing (the
// config problems) reaches the caller of the upgrade, sockets are
// matched by listener name and address rather than by the address
// string alone (two listeners on port 0, a renamed listener), and the
// generation is counted. Linux and other Unix systems only: elsewhere an
// upgrade fails at once and says why (fd_other.go), and the running
// process keeps serving.
package upgrade

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// envVar describes the sockets a new process inherits; its absence means
// the process was started afresh.
const envVar = "SIGHTLINE_UPGRADE"

// The new process's inherited descriptors: the report pipe, then one
// socket each, in the order envVar lists them.
const (
	statusFD      = 3
	firstSocketFD = 4
)

// maxSockets bounds the sockets a description may list: a config has at
// most a few hundred listeners, and a larger number is a corrupt
// description, not a config.
const maxSockets = 1 << 14

// Kinds of socket.
const (
	KindAdmin    = "admin"
	KindListener = "listener"
)

// Socket is one listening socket of a running process.
type Socket struct {
	Kind string // KindAdmin or KindListener
	// Name is the listener's name ("admin" for the admin server).
	Name string
	// Address is the address as the config writes it, which may differ
	// from the bound one (port 0, a host name).
	Address  string
	Listener net.Listener
}

func (s Socket) String() string { return s.Kind + " " + s.Name + " " + s.Address }

// description is what envVar holds: JSON, for it is read by a new
// binary, which may have gained fields.
type description struct {
	// Generation is the new process's: 1 for the first upgrade.
	Generation int `json:"generation"`
	// Parent is the process that started the new one.
	Parent  int      `json:"parent"`
	Sockets []passed `json:"sockets"`
}

// passed is one socket in the description; its descriptor is
// firstSocketFD plus its index.
type passed struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Address string `json:"address"`
	// Bound is the address the socket is bound to, for matching a new
	// config that writes the address differently.
	Bound string `json:"bound"`
}

// encode renders the description for envVar.
func (d description) encode() string {
	b, _ := json.Marshal(d) // strings and ints only: cannot fail
	return string(b)
}

// decode parses and checks envVar's value.
func decode(v string) (description, error) {
	var d description
	if err := json.Unmarshal([]byte(v), &d); err != nil {
		return description{}, fmt.Errorf("%s: %w", envVar, err)
	}
	switch {
	case d.Generation < 1:
		return description{}, fmt.Errorf("%s: generation %d, want 1 or more", envVar, d.Generation)
	case d.Parent < 1:
		return description{}, fmt.Errorf("%s: parent pid %d, want 1 or more", envVar, d.Parent)
	case len(d.Sockets) > maxSockets:
		return description{}, fmt.Errorf("%s: %d sockets, want at most %d", envVar, len(d.Sockets), maxSockets)
	}
	for i, s := range d.Sockets {
		if s.Kind != KindAdmin && s.Kind != KindListener {
			return description{}, fmt.Errorf("%s: sockets[%d]: kind %q, want %q or %q", envVar, i, s.Kind, KindAdmin, KindListener)
		}
		if s.Name == "" || s.Address == "" {
			return description{}, fmt.Errorf("%s: sockets[%d]: no name or address", envVar, i)
		}
	}
	return d, nil
}

// sameAddress reports whether a socket bound to bound serves the config
// address want though the two are written differently: the same
// non-zero port, and the same IP, or both unspecified ("", 0.0.0.0,
// [::]), or a host name that resolves to the bound IP (as binding it
// would).
func sameAddress(want, bound string) bool {
	wh, wp, err := net.SplitHostPort(want)
	if err != nil {
		return false
	}
	bh, bp, err := net.SplitHostPort(bound)
	if err != nil {
		return false
	}
	port, err := strconv.Atoi(wp)
	if err != nil || port == 0 || wp != bp {
		return false
	}
	bip := net.ParseIP(bh)
	if bip == nil {
		return false
	}
	if wh == "" {
		return bip.IsUnspecified()
	}
	wip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(wh, "["), "]"))
	if wip == nil {
		return resolvesTo(wh, bip)
	}
	if wip.IsUnspecified() && bip.IsUnspecified() {
		return true
	}
	return wip.Equal(bip)
}

// resolveTimeout bounds the lookup of a listener's host name: a name
// that does not resolve at once binds fresh, and binding says why.
const resolveTimeout = 2 * time.Second

// resolvesTo reports whether the host name resolves to ip.
func resolvesTo(host string, ip net.IP) bool {
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
	if err != nil {
		return false
	}
	for _, a := range ips {
		if a.Equal(ip) {
			return true
		}
	}
	return false
}
