package upgrade

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
)

// Inherited is what a process received from the one it replaces: the
// sockets, and the pipe on which it says whether it is ready. A process
// started afresh has an Inherited too, with no parent, generation 0 and
// no socket.
//
// Its methods are safe from any goroutine: the server binds listeners
// from its start and from reloads (a control plane's update may add
// one before the process is ready).
type Inherited struct {
	generation, parent int

	mu      sync.Mutex
	status  *os.File // nil once reported, or when there is no parent
	socks   []*held
	fresh   []string // "kind name address" of what Take found no socket for
	settled bool     // Ready or Fail was called
}

// held is one inherited socket.
type held struct {
	passed
	ln    net.Listener
	taken bool
}

// statusMsg is the new process's one report on the pipe.
type statusMsg struct {
	Ready bool   `json:"ready,omitempty"`
	Error string `json:"error,omitempty"`
}

// maxStatus bounds a report: a config with many problems lists them all,
// one a line, in far less.
const maxStatus = 1 << 20

// Inherit returns the sockets this process was passed, if an upgrade
// started it. An error means the description or a descriptor is bad: it
// has been reported to the old process, which keeps serving, and the
// caller should exit.
func Inherit() (*Inherited, error) {
	v, ok := os.LookupEnv(envVar)
	if !ok {
		return &Inherited{}, nil
	}
	// Not for this process's own successor, which gets a new one.
	os.Unsetenv(envVar)
	closeOnExec(statusFD)
	in := &Inherited{status: os.NewFile(statusFD, "upgrade status")}
	d, err := decode(v)
	if err != nil {
		in.Fail(err)
		return nil, err
	}
	in.generation, in.parent = d.Generation, d.Parent
	for i, p := range d.Sockets {
		fd := firstSocketFD + i
		closeOnExec(fd)
		f := os.NewFile(uintptr(fd), p.Kind+" "+p.Name)
		ln, err := net.FileListener(f)
		f.Close() // FileListener holds a duplicate
		if err != nil {
			err = fmt.Errorf("inherited socket %d (%s %s %s): %w", fd, p.Kind, p.Name, p.Address, err)
			in.Fail(err)
			return nil, err
		}
		in.socks = append(in.socks, &held{passed: p, ln: ln})
	}
	return in, nil
}

// Generation is the number of upgrades since the first process: 0 for a
// process started afresh.
func (in *Inherited) Generation() int { return in.generation }

// Parent is the pid of the process this one replaces, 0 for a process
// started afresh.
func (in *Inherited) Parent() int { return in.parent }

// Take returns the inherited socket for the listener name of kind kind
// at the config address addr, or false when there is none: the caller
// binds one. The socket goes to the first of these it finds unclaimed:
// the same kind, name and address as written; the same kind and
// address; the same address as written, of any kind; or one bound to
// what addr means (sameAddress). A renamed listener thus keeps its
// socket, and two listeners on port 0 each keep their own.
func (in *Inherited) Take(kind, name, addr string) (net.Listener, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.settled {
		return nil, false
	}
	rules := []func(h *held) bool{
		func(h *held) bool { return h.Kind == kind && h.Name == name && h.Address == addr },
		func(h *held) bool { return h.Kind == kind && h.Address == addr },
		func(h *held) bool { return h.Address == addr },
		func(h *held) bool { return sameAddress(addr, h.Bound) },
	}
	for _, match := range rules {
		for _, h := range in.socks {
			if !h.taken && match(h) {
				h.taken = true
				return h.ln, true
			}
		}
	}
	if in.parent != 0 {
		in.fresh = append(in.fresh, kind+" "+name+" "+addr)
	}
	return nil, false
}

// Report says what a new process did with what it inherited, for its
// log line.
type Report struct {
	Generation int
	Parent     int      // 0: the process was started afresh
	Inherited  []string // "kind name address" of each socket taken
	Bound      []string // those bound afresh, for want of one
	Closed     []string // inherited sockets no longer in the config
}

// Ready tells the old process that this one serves: it closes the
// inherited sockets nobody took (their addresses left the config), then
// reports on the pipe. From then on Take finds nothing. Later calls
// return the same report and do nothing.
func (in *Inherited) Ready() (Report, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	r := Report{Generation: in.generation, Parent: in.parent, Bound: in.fresh}
	for _, h := range in.socks {
		s := h.Kind + " " + h.Name + " " + h.Address
		if h.taken {
			r.Inherited = append(r.Inherited, s)
			continue
		}
		r.Closed = append(r.Closed, s)
		if !in.settled {
			h.ln.Close()
		}
	}
	if in.settled {
		return r, nil
	}
	in.settled = true
	return r, in.reportLocked(statusMsg{Ready: true})
}

// Fail tells the old process why this one will not serve; the old one
// keeps serving and says why to whoever asked for the upgrade. The
// caller exits next. It does nothing after Ready, or in a process
// started afresh.
func (in *Inherited) Fail(err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.settled {
		return
	}
	in.settled = true
	for _, h := range in.socks {
		h.ln.Close()
	}
	in.reportLocked(statusMsg{Error: err.Error()})
}

// reportLocked writes the one report and closes the pipe.
func (in *Inherited) reportLocked(m statusMsg) error {
	if in.status == nil {
		return nil
	}
	b, _ := json.Marshal(m) // two plain fields: cannot fail
	if len(b) > maxStatus {
		b, _ = json.Marshal(statusMsg{Error: m.Error[:maxStatus/2] + "…"})
	}
	_, werr := in.status.Write(b)
	cerr := in.status.Close()
	in.status = nil
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("telling the old process: %w", err)
	}
	return nil
}
