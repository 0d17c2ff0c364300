package upgrade

import (
	"errors"
	"net"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/leakcheck"
)

// TestMain runs the tests, or, when a test started this binary as the
// new process of an upgrade, plays that process (see child_test.go).
func TestMain(m *testing.M) {
	if mode := os.Getenv(childModeEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	leakcheck.MainAll(m, 10*time.Second)
}

func TestDecode(t *testing.T) {
	ok := description{Generation: 2, Parent: 10, Sockets: []passed{
		{Kind: KindAdmin, Name: "admin", Address: "127.0.0.1:9901", Bound: "127.0.0.1:9901"},
		{Kind: KindListener, Name: "ingress", Address: "127.0.0.1:0", Bound: "127.0.0.1:40000"},
	}}
	tests := []struct {
		name    string
		give    string
		want    description
		wantErr string
	}{
		{name: "valid", give: ok.encode(), want: ok},
		{name: "no sockets", give: `{"generation":1,"parent":3}`, want: description{Generation: 1, Parent: 3}},
		{name: "unknown fields of a newer binary", give: `{"generation":1,"parent":3,"epoch":9}`, want: description{Generation: 1, Parent: 3}},
		{name: "not json", give: `4,5`, wantErr: "SIGHTLINE_UPGRADE: invalid character"},
		{name: "generation 0", give: `{"generation":0,"parent":3}`, wantErr: "generation 0, want 1 or more"},
		{name: "no parent", give: `{"generation":1}`, wantErr: "parent pid 0"},
		{name: "unknown kind", give: `{"generation":1,"parent":3,"sockets":[{"kind":"udp","name":"a","address":"x:1"}]}`, wantErr: `sockets[0]: kind "udp"`},
		{name: "no name", give: `{"generation":1,"parent":3,"sockets":[{"kind":"listener","address":"x:1"}]}`, wantErr: "sockets[0]: no name or address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decode(tt.give)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// FuzzDecode: any value of the variable is refused or decodes into a
// description that passes its own checks again, unchanged.
func FuzzDecode(f *testing.F) {
	f.Add(`{"generation":1,"parent":3,"sockets":[{"kind":"listener","name":"a","address":"127.0.0.1:0","bound":"127.0.0.1:4000"}]}`)
	f.Add(`{"generation":-1}`)
	f.Add(`{"sockets":null}`)
	f.Fuzz(func(t *testing.T, v string) {
		d, err := decode(v)
		if err != nil {
			return
		}
		again, err := decode(d.encode())
		if err != nil {
			t.Fatalf("a decoded description does not decode again: %v", err)
		}
		if !reflect.DeepEqual(d, again) {
			t.Fatalf("decoded %+v, then %+v", d, again)
		}
		if len(d.Sockets) > maxSockets || d.Generation < 1 || d.Parent < 1 {
			t.Fatalf("accepted %+v", d)
		}
	})
}

func TestSameAddress(t *testing.T) {
	tests := []struct {
		want, bound string
		same        bool
	}{
		{"127.0.0.1:8080", "127.0.0.1:8080", true},
		{"localhost:8080", "127.0.0.1:8080", true},
		{":8080", "[::]:8080", true},
		{"0.0.0.0:8080", "[::]:8080", true},
		{"[::]:8080", "0.0.0.0:8080", true},
		{"[::1]:8080", "[::1]:8080", true},
		{"127.0.0.1:8081", "127.0.0.1:8080", false},
		{"127.0.0.2:8080", "127.0.0.1:8080", false},
		{":8080", "127.0.0.1:8080", false},
		{"127.0.0.1:0", "127.0.0.1:0", false}, // port 0: any port, never the same one
		{"127.0.0.1:0", "127.0.0.1:41000", false},
		{"nonsense", "127.0.0.1:8080", false},
		{"127.0.0.1:http", "127.0.0.1:80", false},
	}
	for _, tt := range tests {
		if got := sameAddress(tt.want, tt.bound); got != tt.same {
			t.Errorf("sameAddress(%q, %q) = %v, want %v", tt.want, tt.bound, got, tt.same)
		}
	}
}

// inherited builds what a new process would hold for the given passed
// sockets, each on a real socket of its own.
func inherited(t *testing.T, socks ...passed) *Inherited {
	t.Helper()
	in := &Inherited{generation: 1, parent: 1}
	for _, p := range socks {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		if p.Bound == "" {
			p.Bound = ln.Addr().String()
		}
		in.socks = append(in.socks, &held{passed: p, ln: ln})
	}
	return in
}

func TestTake(t *testing.T) {
	passedSockets := []passed{
		{Kind: KindAdmin, Name: "admin", Address: "127.0.0.1:9901"},
		{Kind: KindListener, Name: "a", Address: "127.0.0.1:0"},
		{Kind: KindListener, Name: "b", Address: "127.0.0.1:0"},
		{Kind: KindListener, Name: "fixed", Address: "localhost:7000", Bound: "127.0.0.1:7000"},
	}
	type take struct {
		kind, name, addr string
		want             string // the passed socket's name; "" for none
	}
	tests := []struct {
		name  string
		takes []take
	}{
		{name: "each keeps its own", takes: []take{
			{KindListener, "b", "127.0.0.1:0", "b"},
			{KindListener, "a", "127.0.0.1:0", "a"},
			{KindAdmin, "admin", "127.0.0.1:9901", "admin"},
			{KindListener, "fixed", "localhost:7000", "fixed"},
		}},
		{name: "a renamed listener keeps its socket", takes: []take{
			{KindListener, "c", "127.0.0.1:0", "a"},
			{KindListener, "d", "127.0.0.1:0", "b"},
			{KindListener, "e", "127.0.0.1:0", ""},
		}},
		{name: "an address written differently", takes: []take{
			{KindListener, "fixed2", "127.0.0.1:7000", "fixed"},
		}},
		{name: "the admin address taken by a listener", takes: []take{
			{KindListener, "x", "127.0.0.1:9901", "admin"},
			{KindAdmin, "admin", "127.0.0.1:9902", ""},
		}},
		{name: "a new address", takes: []take{
			{KindListener, "new", "127.0.0.1:7001", ""},
		}},
		{name: "a socket goes once", takes: []take{
			{KindAdmin, "admin", "127.0.0.1:9901", "admin"},
			{KindAdmin, "admin", "127.0.0.1:9901", ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := inherited(t, passedSockets...)
			byListener := map[net.Listener]string{}
			for _, h := range in.socks {
				byListener[h.ln] = h.Name
			}
			for _, tk := range tt.takes {
				ln, ok := in.Take(tk.kind, tk.name, tk.addr)
				got := byListener[ln]
				if ok != (tk.want != "") || got != tk.want {
					t.Errorf("Take(%s, %s, %s) = %q, %v, want %q", tk.kind, tk.name, tk.addr, got, ok, tk.want)
				}
			}
		})
	}
}

func TestReadyClosesWhatNobodyTook(t *testing.T) {
	in := inherited(t,
		passed{Kind: KindAdmin, Name: "admin", Address: "127.0.0.1:9901"},
		passed{Kind: KindListener, Name: "kept", Address: "127.0.0.1:0"},
		passed{Kind: KindListener, Name: "gone", Address: "127.0.0.1:1234"},
	)
	gone := in.socks[2].ln.Addr().String()
	if _, ok := in.Take(KindAdmin, "admin", "127.0.0.1:9901"); !ok {
		t.Fatal("admin not inherited")
	}
	kept, ok := in.Take(KindListener, "kept", "127.0.0.1:0")
	if !ok {
		t.Fatal("listener kept not inherited")
	}
	if _, ok := in.Take(KindListener, "fresh", "127.0.0.1:7002"); ok {
		t.Fatal("a new address was inherited")
	}
	rep, err := in.Ready()
	if err != nil {
		t.Fatal(err)
	}
	want := Report{
		Generation: 1, Parent: 1,
		Inherited: []string{"admin admin 127.0.0.1:9901", "listener kept 127.0.0.1:0"},
		Bound:     []string{"listener fresh 127.0.0.1:7002"},
		Closed:    []string{"listener gone 127.0.0.1:1234"},
	}
	if !reflect.DeepEqual(rep, want) {
		t.Errorf("report %+v, want %+v", rep, want)
	}
	// The socket nobody took is closed: its port refuses connections.
	if c, err := net.DialTimeout("tcp", gone, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts after Ready", gone)
	}
	// The taken one still accepts.
	c, err := net.DialTimeout("tcp", kept.Addr().String(), time.Second)
	if err != nil {
		t.Fatalf("the inherited listener refuses after Ready: %v", err)
	}
	c.Close()
	// From now on nothing is inherited.
	if _, ok := in.Take(KindListener, "kept", "127.0.0.1:0"); ok {
		t.Error("Take found a socket after Ready")
	}
	if again, _ := in.Ready(); !reflect.DeepEqual(again, want) {
		t.Errorf("second Ready reported %+v", again)
	}
}

func TestFreshProcess(t *testing.T) {
	t.Setenv(envVar, "") // set, then removed: Inherit must see it absent
	os.Unsetenv(envVar)
	in, err := Inherit()
	if err != nil {
		t.Fatal(err)
	}
	if in.Generation() != 0 || in.Parent() != 0 {
		t.Errorf("generation %d, parent %d, want 0, 0", in.Generation(), in.Parent())
	}
	if _, ok := in.Take(KindListener, "a", "127.0.0.1:0"); ok {
		t.Error("a fresh process inherited a socket")
	}
	rep, err := in.Ready()
	if err != nil || rep.Parent != 0 || len(rep.Bound) != 0 {
		t.Errorf("Ready = %+v, %v", rep, err)
	}
	in.Fail(errors.New("nothing to tell")) // no pipe: a no-op
}

// TestSocketFileLeavesListenerNonBlocking: passing a listener to a new
// process (os/exec calls the file's Fd) leaves it non-blocking. A
// blocking one makes the listener's Accept wait in the kernel, where
// closing the listener cannot end it.
func TestSocketFileLeavesListenerNonBlocking(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := SocketFile(ln)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_ = f.Fd() // what os/exec and net.FileListener do with it

	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var flags uintptr
	if err := rc.Control(func(fd uintptr) {
		flags, _, _ = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
	}); err != nil {
		t.Fatal(err)
	}
	if flags&syscall.O_NONBLOCK == 0 {
		t.Error("the listener's socket is in blocking mode after SocketFile")
	}
	ln.Close()
}
