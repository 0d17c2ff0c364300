package apply

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/server"
	"github.com/sightline-proxy/sightline/proxy/xds"
)

// bootstrap follows a control plane for clusters and has a cluster of
// its own.
const bootstrap = `admin: {address: 127.0.0.1:0}
server: {drain_time: 10ms}
dynamic: {ads: {address: 127.0.0.1:1}, resources: [clusters]}
clusters: [{name: local, endpoints: [{address: 127.0.0.1:1}]}]
`

// byName renders each cluster as a static cluster on 127.0.0.1:<n>, n
// from its connect timeout's seconds, and its lb_policy as written: the
// translation in miniature, so that what the loader and the server do
// with a document is what is under test.
func byName(s *xds.Snapshot) ([]byte, []Skipped, error) {
	var b strings.Builder
	b.WriteString("clusters:\n")
	var skipped []Skipped
	for _, c := range s.Clusters {
		if c.GetName() == "untranslatable" {
			return nil, nil, errors.New("clusters[untranslatable].lb_policy: CLUSTER_PROVIDED is not supported")
		}
		lb := strings.ToLower(c.GetLbPolicy().String())
		fmt.Fprintf(&b, "  - {name: %s, lb_policy: %s, endpoints: [{address: '127.0.0.1:%d'}]}\n", c.GetName(), lb, 1000+c.GetConnectTimeout().GetSeconds())
		skipped = append(skipped, Skipped{Path: "clusters[" + c.GetName() + "].connect_timeout", Why: "used as a port"})
	}
	return []byte(b.String()), skipped, nil
}

func setup(t *testing.T) (*Applier, *server.Server, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(path, []byte(bootstrap), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return New(path, byName, srv, zerolog.Nop()), srv, path
}

func clusterNames(srv *server.Server) []string {
	var out []string
	for _, c := range srv.Config().Clusters {
		out = append(out, c.Name)
	}
	return out
}

func TestApply(t *testing.T) {
	a, srv, _ := setup(t)
	if err := a.Apply(&xds.Snapshot{Clusters: []*clusterv3.Cluster{{Name: "backend"}}}); err != nil {
		t.Fatal(err)
	}
	if got := clusterNames(srv); !slices.Equal(got, []string{"local", "backend"}) {
		t.Fatalf("clusters %v, want the file's and the control plane's", got)
	}

	tests := []struct {
		name    string
		give    []*clusterv3.Cluster
		wantErr string
	}{
		{
			name:    "the loader refuses a value, named by cluster and without the document's lines",
			give:    []*clusterv3.Cluster{{Name: "backend", LbPolicy: clusterv3.Cluster_CLUSTER_PROVIDED}},
			wantErr: `clusters[backend].lb_policy: must be one of round_robin, least_request, random, ring_hash, maglev, got "cluster_provided"`,
		},
		{
			name:    "a name the file has",
			give:    []*clusterv3.Cluster{{Name: "local"}},
			wantErr: `clusters[local].name: duplicate cluster name "local" (first defined at `,
		},
		{
			name:    "the translation refuses",
			give:    []*clusterv3.Cluster{{Name: "untranslatable"}},
			wantErr: "clusters[untranslatable].lb_policy: CLUSTER_PROVIDED is not supported",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := a.Apply(&xds.Snapshot{Clusters: tt.give})
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("Apply = %v, want an error starting %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), SourceName+":") {
				t.Errorf("the error places the problem in the generated document: %v", err)
			}
			if got := clusterNames(srv); !slices.Equal(got, []string{"local", "backend"}) {
				t.Errorf("clusters %v after a refusal, want the last good ones", got)
			}
		})
	}
}

// TestReloadFile: a reload of the file keeps the control plane's
// resources; one that drops the dynamic section drops them.
func TestReloadFile(t *testing.T) {
	a, srv, path := setup(t)
	if err := a.Apply(&xds.Snapshot{Clusters: []*clusterv3.Cluster{{Name: "backend"}}}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(bootstrap, "name: local", "name: local2", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.ReloadFile(srv.Reload); err != nil {
		t.Fatal(err)
	}
	if got := clusterNames(srv); !slices.Equal(got, []string{"local2", "backend"}) {
		t.Errorf("clusters %v, want the file's new one and the control plane's", got)
	}

	if err := os.WriteFile(path, []byte(strings.Replace(bootstrap, "dynamic: {ads: {address: 127.0.0.1:1}, resources: [clusters]}\n", "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.ReloadFile(srv.Reload); err != nil {
		t.Fatal(err)
	}
	if got := clusterNames(srv); !slices.Equal(got, []string{"local"}) {
		t.Errorf("clusters %v, want the file's alone", got)
	}
	var problems config.Errors
	if err := os.WriteFile(path, []byte("listeners: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.ReloadFile(srv.Reload); !errors.As(err, &problems) {
		t.Errorf("ReloadFile of a broken file = %v, want the loader's problems", err)
	}
}
