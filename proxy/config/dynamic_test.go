package config

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/testnet"
)

// adsBootstrap is a config whose listeners and clusters come from a
// control plane.
const adsBootstrap = "node: {id: edge-1, cluster: fleet, zone: zone-a}\ndynamic: {ads: {address: 127.0.0.1:18000}}\n"

func TestLoadDynamicDefaults(t *testing.T) {
	inDir(t, map[string]string{"main.yaml": adsBootstrap})
	cfg, err := Load("main.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) > 0 {
		t.Errorf("warnings %v: a proxy whose listeners come from a control plane has none of its own", cfg.Warnings)
	}
	d := cfg.Dynamic
	if !slices.Equal(d.Resources, []string{"listeners", "clusters"}) {
		t.Errorf("resources = %v, want [listeners clusters]", d.Resources)
	}
	if got := d.ADS.InitialFetch(); got != 15*time.Second {
		t.Errorf("initial_fetch_timeout = %s, want 15s", got)
	}
	if b := d.ADS.RetryBackOff; b.BaseInterval.D() != 500*time.Millisecond || b.MaxInterval.D() != 30*time.Second {
		t.Errorf("retry_back_off = %s..%s, want 500ms..30s", b.BaseInterval, b.MaxInterval)
	}
	if cfg.Node.Cluster != "fleet" {
		t.Errorf("node.cluster = %q", cfg.Node.Cluster)
	}
	if !d.Wants(DynamicClusters) || (*Dynamic)(nil).Wants(DynamicClusters) {
		t.Error("Wants is wrong")
	}
}

func TestLoadDynamicErrors(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		wantErr string
	}{
		{
			name:    "no address",
			give:    "dynamic: {ads: {}}\n",
			wantErr: "main.yaml:1:16: dynamic.ads.address: must not be empty (use host:port, e.g. 127.0.0.1:18000)",
		},
		{
			name:    "a scheme in the address",
			give:    "dynamic: {ads: {address: 'grpc://cp:18000'}}\n",
			wantErr: `main.yaml:1:26: dynamic.ads.address: invalid address "grpc://cp:18000": must be host:port, without a scheme (use host:port, e.g. 127.0.0.1:18000)`,
		},
		{
			name:    "an unknown resource kind",
			give:    "dynamic: {ads: {address: 'cp:18000'}, resources: [listeners, cluster]}\n",
			wantErr: `main.yaml:1:62: dynamic.resources[1]: must be one of listeners, clusters, got "cluster" (did you mean "clusters"?)`,
		},
		{
			name:    "a kind twice",
			give:    "dynamic: {ads: {address: 'cp:18000'}, resources: [clusters, clusters]}\n",
			wantErr: `main.yaml:1:61: dynamic.resources[1]: duplicate resource kind "clusters" (first defined at main.yaml:1:51)`,
		},
		{
			name:    "a bare number for a timeout",
			give:    "dynamic: {ads: {address: 'cp:18000', initial_fetch_timeout: 15}}\n",
			wantErr: `main.yaml:1:61: dynamic.ads.initial_fetch_timeout: duration 15 has no unit (durations need a unit, e.g. 15s)`,
		},
		{
			name:    "max below base",
			give:    "dynamic: {ads: {address: 'cp:18000', retry_back_off: {base_interval: 2s, max_interval: 1s}}}\n",
			wantErr: `main.yaml:1:88: dynamic.ads.retry_back_off.max_interval: must be at least base_interval (2s), got 1s`,
		},
		{
			name:    "an unknown key",
			give:    "dynamic: {ads: {address: 'cp:18000', timeout: 1s}}\n",
			wantErr: `main.yaml:1:38: dynamic.ads: unknown key "timeout" (known keys: address, tls, initial_fetch_timeout, retry_back_off)`,
		},
		{
			name:    "a TLS client certificate without its key",
			give:    "dynamic: {ads: {address: 'cp:18000', tls: {cert_pem: x}}}\n",
			wantErr: `main.yaml:1:43: dynamic.ads.tls.key_pem: must not be empty when cert_pem is set (a client certificate needs both cert_pem and key_pem)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inDir(t, map[string]string{"main.yaml": tt.give})
			if got := loadProblems(t, "main.yaml"); got != tt.wantErr {
				t.Errorf("problems:\n%s\nwant:\n%s", got, tt.wantErr)
			}
		})
	}
}

// pemConfig is a TLS listener and a TLS cluster with their key pairs
// inline.
func pemConfig(certPEM, keyPEM, caPEM string) string {
	q := func(s string) string { return `"` + strings.ReplaceAll(s, "\n", `\n`) + `"` }
	return "listeners:\n" +
		"  - {name: a, address: 127.0.0.1:1, protocols: [h2], tls: {cert_pem: " + q(certPEM) + ", key_pem: " + q(keyPEM) + "},\n" +
		"     virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, cluster: c}]}]}\n" +
		"clusters:\n" +
		"  - {name: c, endpoints: [{address: 127.0.0.1:1}], tls: {ca_pem: " + q(caPEM) + ", cert_pem: " + q(certPEM) + ", key_pem: " + q(keyPEM) + "}}\n"
}

func TestLoadInlinePEM(t *testing.T) {
	kp := testnet.NewKeyPair(t, 7, time.Now().Add(time.Hour))
	other := testnet.NewKeyPair(t, 8, time.Now().Add(time.Hour))
	t.Run("a valid pair loads and is redacted", func(t *testing.T) {
		inDir(t, map[string]string{"main.yaml": pemConfig(string(kp.Cert), string(kp.Key), string(kp.Cert))})
		cfg, err := Load("main.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Listeners[0].TLS.KeyPEM != string(kp.Key) {
			t.Error("key_pem not loaded")
		}
		js, err := cfg.JSON()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(js), "PRIVATE KEY") || strings.Contains(string(js), "CERTIFICATE") {
			t.Errorf("/config_dump shows PEM:\n%s", js)
		}
		if n := strings.Count(string(js), `"[redacted]"`); n != 5 {
			t.Errorf("%d values redacted, want 5 (cert_pem, key_pem of the listener; ca_pem, cert_pem, key_pem of the cluster)", n)
		}
	})
	tests := []struct {
		name                 string
		cert, key, ca        string
		wantErr              string
		wantNoPrivateKeyEcho bool
	}{
		{
			name: "a key of another certificate",
			cert: string(kp.Cert), key: string(other.Key), ca: string(kp.Cert),
			wantErr: "listeners[0].tls.cert_pem: is not a key pair with key_pem: tls: private key does not match public key",
		},
		{
			name: "no CA in ca_pem",
			cert: string(kp.Cert), key: string(kp.Key), ca: "not pem",
			wantErr: "clusters[0].tls.ca_pem: holds no PEM certificate",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inDir(t, map[string]string{"main.yaml": pemConfig(tt.cert, tt.key, tt.ca)})
			got := loadProblems(t, "main.yaml")
			if !strings.Contains(got, tt.wantErr) {
				t.Errorf("problems:\n%s\nwant one with: %s", got, tt.wantErr)
			}
			if strings.Contains(got, "PRIVATE KEY") {
				t.Errorf("a problem shows the private key:\n%s", got)
			}
		})
	}
	t.Run("a file and PEM for one half", func(t *testing.T) {
		inDir(t, map[string]string{"main.yaml": "listeners: [{name: a, address: 127.0.0.1:1, protocols: [h2], tls: {cert_file: c.pem, cert_pem: x, key_pem: y}, virtual_hosts: []}]\n"})
		got := loadProblems(t, "main.yaml")
		if !strings.Contains(got, "listeners[0].tls.cert_pem: must not be set with cert_file") {
			t.Errorf("problems:\n%s", got)
		}
	})
}

func TestLoadWithSources(t *testing.T) {
	const bootstrap = adsBootstrap + "clusters: [{name: local, endpoints: [{address: 127.0.0.1:1}]}]\n"
	generated := Source{Name: "xds", Data: []byte(
		"listeners: [{name: ingress, address: 127.0.0.1:0, virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, cluster: backend}]}]}]\n" +
			"clusters: [{name: backend, endpoints: [{address: 127.0.0.1:2}]}]\n")}

	t.Run("appended after the file's own", func(t *testing.T) {
		inDir(t, map[string]string{"main.yaml": bootstrap})
		cfg, err := LoadWith("main.yaml", generated)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range cfg.Clusters {
			names = append(names, c.Name)
		}
		if !slices.Equal(names, []string{"local", "backend"}) || len(cfg.Listeners) != 1 {
			t.Errorf("clusters %v, %d listeners", names, len(cfg.Listeners))
		}
		if !slices.Equal(cfg.Files, []string{"main.yaml"}) {
			t.Errorf("files %v: a source is no file to watch", cfg.Files)
		}
		if cfg.Listeners[0].StatPrefix != "ingress" {
			t.Errorf("defaults not applied to a source's listener: stat_prefix %q", cfg.Listeners[0].StatPrefix)
		}
	})

	tests := []struct {
		name    string
		give    []Source
		wantErr string
	}{
		{
			name:    "a problem is placed in the source and names the cluster",
			give:    []Source{{Name: "xds", Data: []byte("clusters: [{name: backend, lb_policy: CLUSTER_PROVIDED, endpoints: [{address: 127.0.0.1:2}]}]\n")}},
			wantErr: `xds:1:39: clusters[backend].lb_policy: must be one of round_robin, least_request, random, ring_hash, maglev, got "CLUSTER_PROVIDED"`,
		},
		{
			name:    "a name the file uses already",
			give:    []Source{{Name: "xds", Data: []byte("clusters: [{name: local, endpoints: [{address: 127.0.0.1:2}]}]\n")}},
			wantErr: `xds:1:19: clusters[local].name: duplicate cluster name "local" (first defined at main.yaml:3:19)`,
		},
		{
			name:    "a route naming a cluster nobody has",
			give:    []Source{{Name: "xds", Data: []byte("listeners: [{name: in, address: 127.0.0.1:0, virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, cluster: nope}]}]}]\n")}},
			wantErr: `xds:1:118: listeners[in].virtual_hosts[0].routes[0].cluster: unknown cluster "nope" (defined clusters: local)`,
		},
		{
			name:    "no include",
			give:    []Source{{Name: "xds", Data: []byte("include: ['*.yaml']\n")}},
			wantErr: `xds:1:1: include: "include" is not allowed in a generated document (it may hold listeners and clusters only)`,
		},
		{
			name:    "no other section",
			give:    []Source{{Name: "xds", Data: []byte("admin: {address: 127.0.0.1:1}\n")}},
			wantErr: `xds:1:1: "admin" is not allowed in an included file (an included file may only hold include, listeners, clusters)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inDir(t, map[string]string{"main.yaml": bootstrap})
			cfg, err := LoadWith("main.yaml", tt.give...)
			var problems Errors
			if !errors.As(err, &problems) {
				t.Fatalf("LoadWith = %v, %v; want Errors", cfg, err)
			}
			if got := err.Error(); got != tt.wantErr {
				t.Errorf("problems:\n%s\nwant:\n%s", got, tt.wantErr)
			}
		})
	}
}

func TestNamedPath(t *testing.T) {
	names := []string{"a", ""}
	name := func(n int) string {
		if n < len(names) {
			return names[n]
		}
		return ""
	}
	tests := []struct{ give, want string }{
		{"clusters[0].tls", "clusters[a].tls"},
		{"clusters[0]", "clusters[a]"},
		{"clusters[1].name", "clusters[1].name"}, // no name known
		{"clusters[9]", "clusters[9]"},
		{"listeners[0]", "listeners[0]"},
		{"clusters[x]", "clusters[x]"},
		{"clusters[0", "clusters[0"},
	}
	for _, tt := range tests {
		if got := namedPath(tt.give, "clusters", name); got != tt.want {
			t.Errorf("namedPath(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

// FuzzLoadWith checks that a generated document, whatever it holds, is
// loaded with the bootstrap or refused with problems placed in it, and
// never panics.
func FuzzLoadWith(f *testing.F) {
	for _, seed := range []string{
		"",
		"clusters: [{name: backend, endpoints: [{address: 127.0.0.1:2}]}]\n",
		"listeners: [{name: in, address: 127.0.0.1:0, virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, cluster: nope}]}]}]\n",
		"include: ['*.yaml']\n",
		"clusters: [{name: local, endpoints: []}]\n",
		"clusters:\n  -\n  - 5\n",
		"admin: [\n",
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	main := dir + "/main.yaml"
	if err := os.WriteFile(main, []byte(adsBootstrap+"clusters: [{name: local, endpoints: [{address: 127.0.0.1:1}]}]\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := LoadWith(main, Source{Name: "xds", Data: data})
		if err == nil {
			if cfg == nil || len(cfg.Clusters) == 0 || cfg.Clusters[0].Name != "local" {
				t.Fatalf("loaded without the bootstrap's cluster: %+v", cfg)
			}
			return
		}
		var problems Errors
		if !errors.As(err, &problems) || len(problems) == 0 {
			t.Fatalf("LoadWith = %v, want Errors", err)
		}
	})
}

func TestSummaryNamesTheControlPlane(t *testing.T) {
	inDir(t, map[string]string{"main.yaml": adsBootstrap})
	cfg, err := Load("main.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if want := "dynamic: listeners and clusters from the control plane at 127.0.0.1:18000 (ADS)\n"; !strings.Contains(cfg.Summary(), want) {
		t.Errorf("summary:\n%s\nwant a line %q", cfg.Summary(), want)
	}
}
