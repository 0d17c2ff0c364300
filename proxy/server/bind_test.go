package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
)

// TestBindErrorIsPlaced: a listener address another process holds fails
// Start with the file:line:column of the address and a hint naming the
// port and how to find who holds it.
func TestBindErrorIsPlaced(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, port, _ := net.SplitHostPort(taken.Addr().String())
	tests := []struct {
		name, give, wantAt string
	}{
		{
			name: "listener",
			give: fmt.Sprintf(`admin: {address: 127.0.0.1:0}
listeners:
  - name: in
    address: %s
    virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, cluster: a}]}]
clusters: [{name: a, endpoints: [{address: 127.0.0.1:1}]}]
`, taken.Addr()),
			wantAt: ":4:14: listeners[0].address: listener in cannot listen on " + taken.Addr().String() + ": bind: address already in use",
		},
		{
			name:   "admin",
			give:   fmt.Sprintf("admin:\n  address: %s\n", taken.Addr()),
			wantAt: ":2:12: admin.address: the admin server cannot listen on " + taken.Addr().String() + ": bind: address already in use",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := load(t, tt.give)
			s, err := New(cfg, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			err = s.Start(context.Background())
			if err == nil {
				s.Shutdown(context.Background())
				t.Fatal("Start on a taken address succeeded")
			}
			if want := cfg.Files[0] + tt.wantAt; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error:\n%v\nwant it to start with:\n%s", err, want)
			}
			if want := fmt.Sprintf("`ss -ltnp 'sport = :%s'`", port); !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks the hint %s: %v", want, err)
			}
			if !errors.Is(err, syscall.EADDRINUSE) {
				t.Errorf("error does not unwrap to EADDRINUSE: %#v", err)
			}
		})
	}
}

// TestReloadBindErrorIsPlaced: a reload whose new listener cannot bind is
// refused with the new listener's position.
func TestReloadBindErrorIsPlaced(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	s := started(t, load(t, twoClusters(1, "")))
	bad := load(t, twoClusters(1, fmt.Sprintf(`  - name: clash
    address: %s
    virtual_hosts: [{name: all, domains: ['*'], routes: [{match: {prefix: /}, cluster: a}]}]
`, taken.Addr())))
	err = s.Reload(bad)
	if want := bad.Files[0] + ":8:14: listeners[1].address: listener clash cannot listen on "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error:\n%v\nwant it to start with:\n%s", err, want)
	}
}
