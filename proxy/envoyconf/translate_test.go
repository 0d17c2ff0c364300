package envoyconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"go.yaml.in/yaml/v4"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sightline-proxy/sightline/internal/yamljson"
)

// xdsBootstrap holds, as static resources, what a control plane sends
// over ADS: a listener taking its routes by RDS with a TLS certificate by
// SDS, an EDS cluster verifying its upstream with a CA by SDS; the route
// configuration, load assignment and secrets are given apart.
const xdsBootstrap = `
static_resources:
  listeners:
  - name: ingress
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificate_sds_secret_configs: [{name: edge_cert, sds_config: {ads: {}}}]
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          rds: {route_config_name: routes, config_source: {ads: {}}}
          http_filters: [{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]
  clusters:
  - name: api
    type: EDS
    eds_cluster_config: {eds_config: {ads: {}}, service_name: api-v1}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: api.internal
        common_tls_context:
          validation_context_sds_secret_config: {name: upstream_ca, sds_config: {ads: {}}}
  secrets:
  - name: edge_cert
    tls_certificate:
      certificate_chain: {filename: testdata/certs/server.pem}
      private_key: {filename: testdata/certs/server.key}
  - name: upstream_ca
    validation_context: {trusted_ca: {filename: testdata/certs/ca.pem}}
`

const xdsRoutes = `
name: routes
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - match: {prefix: /, headers: [{name: x-tenant, string_match: {prefix: acme-}}]}
    route: {cluster: api, timeout: 2s}
`

const xdsEndpoints = `
cluster_name: api-v1
endpoints:
- locality: {zone: zone-a}
  lb_endpoints:
  - endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 8443}}}
  - endpoint: {address: {socket_address: {address: 10.0.0.2, port_value: 8443}}}
    health_status: DRAINING
`

// TestTranslateXDS translates resources as an ADS stream gives them: RDS,
// EDS and SDS references resolved by name among them; the document loads.
func TestTranslateXDS(t *testing.T) {
	b, err := ParseBootstrap([]byte(xdsBootstrap), false)
	if err != nil {
		t.Fatal(err)
	}
	rc := &routev3.RouteConfiguration{}
	cla := &endpointv3.ClusterLoadAssignment{}
	parseYAML(t, xdsRoutes, rc)
	parseYAML(t, xdsEndpoints, cla)
	sr := b.GetStaticResources()
	r := &Resources{Listeners: sr.GetListeners(), Clusters: sr.GetClusters(), Secrets: sr.GetSecrets(),
		Routes: []*routev3.RouteConfiguration{rc}, Endpoints: []*endpointv3.ClusterLoadAssignment{cla}}
	doc, skipped, err := Translate(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) != 0 {
		t.Errorf("skipped %v, want nothing", skipped)
	}
	cfg := loads(t, doc)
	l := cfg.Listeners[0]
	if l.TLS == nil || l.TLS.CertFile != "testdata/certs/server.pem" || len(l.VirtualHosts) != 1 {
		t.Errorf("listener %+v, want the SDS certificate and the RDS routes", l)
	}
	if hm := l.VirtualHosts[0].Routes[0].Match.Headers; len(hm) != 1 || hm[0].Regex != "acme-.*" {
		t.Errorf("header matchers %+v, want x-tenant by the regex acme-.*", hm)
	}
	c := cfg.Clusters[0]
	if len(c.Endpoints) != 1 || c.Endpoints[0].Address != "10.0.0.1:8443" || c.Endpoints[0].Zone != "zone-a" {
		t.Errorf("endpoints %+v, want the one host not draining, in zone-a", c.Endpoints)
	}
	if c.TLS == nil || c.TLS.CAFile != "testdata/certs/ca.pem" || c.TLS.SNI != "api.internal" || c.TLS.InsecureSkipVerify {
		t.Errorf("cluster tls %+v, want the SDS CA and the SNI", c.TLS)
	}
	if c.ConnectTimeout.D().String() != "5s" || c.Protocol != "http1" {
		t.Errorf("cluster %s: connect_timeout %s protocol %s, want Envoy's defaults 5s and http1", c.Name, c.ConnectTimeout.D(), c.Protocol)
	}

	// A listener naming a route configuration the resources lack cannot be
	// translated.
	r.Routes = nil
	if _, _, err := Translate(r); err == nil || !strings.Contains(err.Error(), `no route configuration named "routes"`) {
		t.Errorf("without the route configuration: %v", err)
	}
}

// parseYAML reads an Envoy resource written in YAML.
func parseYAML(t *testing.T, s string, m proto.Message) {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	js, err := yamljson.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := protojson.Unmarshal(js, m); err != nil {
		t.Fatal(err)
	}
}

// FuzzImport checks that any input gives a document or an error, never a
// panic, and that a document it gives is YAML.
func FuzzImport(f *testing.F) {
	for _, tc := range goldenCases {
		in, err := os.ReadFile(filepath.Join("testdata", tc.name+".envoy.yaml"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(in, false)
	}
	f.Add([]byte(xdsBootstrap), false)
	f.Add([]byte(`{"static_resources": {"clusters": [{"name": "a", "type": "STATIC"}]}}`), true)
	f.Fuzz(func(t *testing.T, in []byte, isJSON bool) {
		doc, _, err := ImportWith(in, isJSON, Options{SkipUnsupported: len(in)%2 == 0})
		if err != nil {
			return
		}
		var v any
		if err := yaml.Unmarshal(doc, &v); err != nil {
			t.Fatalf("Import gave a document that is not YAML: %v\n%s", err, doc)
		}
	})
}
