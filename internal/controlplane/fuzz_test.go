package controlplane

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: any file content is parsed or refused with an error, never
// a panic, and what parses has named resources of the served kinds.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"clusters.yaml", "endpoints.yaml", "routes.yaml", "edge-1/listener.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "configs", "xds", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("resources: [{'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster, name: x, 1: 2}]"))
	f.Add([]byte(`{"resources": [{"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret", "name": "s"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := parse("f.yaml", data)
		if err != nil {
			return
		}
		for _, r := range res {
			if !validKind(typeURL(r)) {
				t.Errorf("parsed a %s", typeURL(r))
			}
		}
	})
}

func validKind(url string) bool {
	for _, k := range kinds {
		if k == url {
			return true
		}
	}
	return false
}
