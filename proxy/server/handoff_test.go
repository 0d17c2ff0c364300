package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/internal/upgrade"
)

// passedSockets stands for the new process's inherited sockets: a
// duplicate of each listener Handoff listed, taken by kind and name.
type passedSockets struct {
	byName map[string]net.Listener
	taken  []string
}

func (p *passedSockets) Take(kind, name, _ string) (net.Listener, bool) {
	ln, ok := p.byName[kind+"/"+name]
	if ok {
		delete(p.byName, kind+"/"+name)
		p.taken = append(p.taken, kind+"/"+name)
	}
	return ln, ok
}

// canceled is a context already ended: a Shutdown with it skips the
// config's drain_time of an hour.
func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func handoffConfig(admin, extra string) string {
	return fmt.Sprintf(`admin: {address: %q}
server: {drain_time: 1h}
listeners:
  - name: in
    address: 127.0.0.1:0
    virtual_hosts: [{name: all, domains: ['*'], routes: [{match: {prefix: /}, cluster: a}]}]
%sclusters:
  - {name: a, endpoints: [{address: 127.0.0.1:1}]}
`, admin, extra)
}

// TestHandoffAndRetire: a server hands its sockets over, a second one
// starts on them (keeping the listener's port 0 and the admin address),
// and the first retires without waiting drain_time; the sockets then
// answer with the second server, and the first refuses reloads once it
// has handed over.
func TestHandoffAndRetire(t *testing.T) {
	oldCfg := load(t, handoffConfig("127.0.0.1:0", `  - name: gone
    address: 127.0.0.1:0
    virtual_hosts: [{name: all, domains: ['*'], routes: [{match: {prefix: /}, cluster: a}]}]
`))
	old, err := New(oldCfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { old.Shutdown(canceled()) })
	adminAddr, inAddr := old.AdminAddr(), old.ListenerAddr("in")

	passed := &passedSockets{byName: map[string]net.Listener{}}
	var listed []string
	err = old.Handoff(func(socks []upgrade.Socket) error {
		for _, s := range socks {
			listed = append(listed, fmt.Sprintf("%s/%s %s", s.Kind, s.Name, s.Address))
			f, err := upgrade.SocketFile(s.Listener)
			if err != nil {
				return err
			}
			ln, err := net.FileListener(f)
			f.Close()
			if err != nil {
				return err
			}
			passed.byName[s.Kind+"/"+s.Name] = ln
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"admin/admin 127.0.0.1:0", "listener/in 127.0.0.1:0", "listener/gone 127.0.0.1:0"}
	if fmt.Sprint(listed) != fmt.Sprint(want) {
		t.Errorf("Handoff listed %v, want %v", listed, want)
	}
	if err := old.Reload(oldCfg); !errors.Is(err, ErrShuttingDown) {
		t.Errorf("Reload after Handoff: %v, want ErrShuttingDown", err)
	}

	// The new config has the admin server and "in", not "gone", and a
	// listener of its own.
	newCfg := load(t, handoffConfig(adminAddr, `  - name: added
    address: 127.0.0.1:0
    virtual_hosts: [{name: all, domains: ['*'], routes: [{match: {prefix: /}, cluster: a}]}]
`))
	succ, err := New(newCfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	succ.SetSockets(passed)
	if err := succ.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { succ.Shutdown(canceled()) })
	if got := succ.ListenerAddr("in"); got != inAddr {
		t.Errorf("listener in moved from %s to %s", inAddr, got)
	}
	if succ.AdminAddr() != adminAddr {
		t.Errorf("admin moved from %s to %s", adminAddr, succ.AdminAddr())
	}
	if fmt.Sprint(passed.taken) != "[admin/admin listener/in]" {
		t.Errorf("the new server took %v", passed.taken)
	}
	passed.byName["listener/gone"].Close() // what nobody took is closed

	// drain_time is an hour: Retire must not wait for it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := old.Retire(ctx); err != nil {
		t.Fatalf("Retire: %v", err)
	}
	// The admin address now answers with the new server's listeners.
	resp, err := http.Get("http://" + adminAddr + "/server_info")
	if err != nil {
		t.Fatalf("the admin address after Retire: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var info struct{ Listeners []string }
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatalf("/server_info: %v: %s", err, b)
	}
	if len(info.Listeners) != 2 || info.Listeners[0] != "in="+inAddr {
		t.Errorf("/server_info after Retire lists %v, want in=%s and added", info.Listeners, inAddr)
	}
	// The listener's socket still accepts, for the new server.
	c, err := net.DialTimeout("tcp", inAddr, 5*time.Second)
	if err != nil {
		t.Fatalf("listener in refuses after Retire: %v", err)
	}
	c.Close()
}
