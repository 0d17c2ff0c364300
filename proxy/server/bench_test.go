package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// BenchmarkReloadOneCluster is a reload of 10,000 clusters of which one
// changed (a host's weight), the config already loaded: what the server
// does with a new config, without reading the file.
func BenchmarkReloadOneCluster(b *testing.B) {
	cfgs := [2]*config.Config{}
	for i := range cfgs {
		var sb strings.Builder
		sb.WriteString("admin: {address: 127.0.0.1:0}\nlisteners:\n  - name: in\n    address: 127.0.0.1:0\n    virtual_hosts: [{name: all, domains: ['*'], routes: [{match: {prefix: /}, cluster: c0}]}]\nclusters:\n")
		for c := range 10000 {
			w := 1
			if c == 9999 {
				w = 1 + i
			}
			fmt.Fprintf(&sb, "  - {name: c%d, endpoints: [{address: 127.0.0.1:%d, weight: %d}, {address: 127.0.0.1:%d}]}\n", c, 1024+2*c, w, 1025+2*c)
		}
		path := filepath.Join(b.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
			b.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			b.Fatal(err)
		}
		cfgs[i] = cfg
	}
	s, err := New(cfgs[0], zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Shutdown(context.Background()) })
	i := 0
	for b.Loop() {
		i++
		if err := s.Reload(cfgs[i%2]); err != nil {
			b.Fatal(err)
		}
	}
}
