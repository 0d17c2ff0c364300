package controlplane

import (
	"context"
	"errors"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/xds"
)

// copyDir copies the example resources into a new directory.
func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return to
}

// TestExampleResources: the example directory loads; each node gets the
// shared resources and its own listener.
func TestExampleResources(t *testing.T) {
	s, err := New(Options{Dir: filepath.Join("..", "..", "configs", "xds"), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	one, two, other := s.Versions("edge-1"), s.Versions("edge-2"), s.Versions("someone")
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.RouteType} {
		if one[typ] != two[typ] || one[typ] != other[typ] {
			t.Errorf("%s: versions %s, %s, %s; the shared resources are the same for all", typ, one[typ], two[typ], other[typ])
		}
	}
	if one[resourcev3.ListenerType] == two[resourcev3.ListenerType] || one[resourcev3.ListenerType] == other[resourcev3.ListenerType] {
		t.Errorf("listener versions %s, %s, %s: each node has its own", one[resourcev3.ListenerType], two[resourcev3.ListenerType], other[resourcev3.ListenerType])
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		wantErr string
	}{
		{"unknown type", "resources: [{'@type': type.googleapis.com/envoy.config.core.v3.Node, id: x}]",
			`a.yaml: resources[0]: @type "type.googleapis.com/envoy.config.core.v3.Node" is not one of`},
		{"unknown field", "resources: [{'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster, name: x, colour: red}]",
			`a.yaml: resources[0]: proto:`},
		{"no name", "resources: [{'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster}]",
			`a.yaml: resources[0]: a type.googleapis.com/envoy.config.cluster.v3.Cluster needs a name`},
		{"twice", "resources: [{'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster, name: x}, {'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster, name: x}]",
			`Cluster "x" is defined twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(tt.give), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := New(Options{Dir: dir, Log: zerolog.Nop()})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New = %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

// TestServesAndFollowsChanges: a real client gets the node's complete
// set; a change to the endpoints file alone is served as a new
// endpoints version alone; a set the client refuses reaches OnNack with
// its error_detail.
func TestServesAndFollowsChanges(t *testing.T) {
	dir := copyDir(t, filepath.Join("..", "..", "configs", "xds"))
	nacks := make(chan Nack, 10)
	cp, err := New(Options{Dir: dir, Log: zerolog.Nop(), OnNack: func(n Nack) { nacks <- n }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- cp.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	sets := make(chan *xds.Snapshot, 10)
	refuse := make(chan error, 1)
	apply := xds.ApplierFunc(func(s *xds.Snapshot) error {
		select {
		case err := <-refuse:
			return err
		default:
		}
		sets <- s
		return nil
	})
	d := config.Dynamic{ADS: config.ADS{Address: ln.Addr().String(),
		RetryBackOff: config.BackOff{BaseInterval: config.Duration(10 * time.Millisecond), MaxInterval: config.Duration(100 * time.Millisecond)}},
		Resources: []string{config.DynamicListeners, config.DynamicClusters}}
	c := xds.New(xds.Options{Dynamic: d, Node: config.Node{ID: "edge-2"}, Apply: apply, Log: zerolog.Nop()})
	cctx, ccancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); c.Run(cctx) }()
	t.Cleanup(func() { ccancel(); <-ran })

	first := next(t, sets)
	if len(first.Listeners) != 1 || len(first.Routes) != 1 || len(first.Clusters) != 1 || len(first.Endpoints) != 1 {
		t.Fatalf("first set %v", first)
	}
	if port := first.Listeners[0].GetAddress().GetSocketAddress().GetPortValue(); port != 10002 {
		t.Errorf("edge-2 got the listener on port %d, want its own, 10002", port)
	}
	select {
	case <-c.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("not ready after the first set")
	}

	before := cp.Versions("edge-2")
	eps := filepath.Join(dir, "endpoints.yaml")
	b, err := os.ReadFile(eps)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(eps, []byte(strings.ReplaceAll(string(b), "5102", "5103")), 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, err := cp.Reload(); err != nil || !changed {
		t.Fatalf("Reload = %v, %v", changed, err)
	}
	after := cp.Versions("edge-2")
	for typ := range maps.Keys(before) {
		if (before[typ] != after[typ]) != (typ == resourcev3.EndpointType) {
			t.Errorf("%s: version %s → %s; only the endpoints changed", typ, before[typ], after[typ])
		}
	}
	second := next(t, sets)
	if got := second.Endpoints[0].GetEndpoints()[1].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue(); got != 5103 {
		t.Errorf("the new endpoints have port %d, want 5103", got)
	}

	refuse <- errors.New("clusters[backend].endpoints: no")
	if err := os.WriteFile(eps, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.Reload(); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-nacks:
		if n.Node != "edge-2" || n.TypeURL != resourcev3.EndpointType || n.Detail != "clusters[backend].endpoints: no" || n.Version != after[resourcev3.EndpointType] {
			t.Errorf("NACK %+v", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no NACK reached the control plane")
	}
}

func next(t *testing.T, sets chan *xds.Snapshot) *xds.Snapshot {
	t.Helper()
	select {
	case s := <-sets:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no set applied in 10s")
		return nil
	}
}
