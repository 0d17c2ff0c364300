package xds

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// TestDumpShapeAndRedaction: the dump has Envoy's five config dumps in
// order, each accepted resource with its version and time, a refusal in
// error_state, and a secret's private key redacted.
func TestDumpShapeAndRedaction(t *testing.T) {
	h := newHarness(t, "listeners", "clusters")
	c := &Client{m: h.m}
	h.respond(ClusterType, "c1", edsCluster("backend"))
	h.respond(EndpointType, "e1", cla("backend", "127.0.0.1"))
	h.respond(ListenerType, "l1", rdsListener(t, "ingress", "routes", "cert"))
	h.respond(RouteType, "r1", &routev3.RouteConfiguration{Name: "routes"})
	key := "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n"
	h.respond(SecretType, "s1", &tlsv3.Secret{Name: "cert", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "chain"}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: key}},
	}}})
	h.fail = errors.New("clusters[x]: no")
	h.respond(ClusterType, "c2", edsCluster("backend"), edsCluster("x"))
	h.m.decide(true)
	c.publish()

	b, err := json.Marshal(c.Dump())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "secret\\n") {
		t.Fatalf("the private key is in the dump:\n%s", b)
	}
	var d struct {
		Configs []map[string]json.RawMessage `json:"configs"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	wantTypes := []string{clustersDump, listenersDump, routesDump, endpointsDump, secretsDump}
	wantLists := []string{"dynamic_active_clusters", "dynamic_listeners", "dynamic_route_configs", "dynamic_endpoint_configs", "dynamic_active_secrets"}
	if len(d.Configs) != len(wantTypes) {
		t.Fatalf("%d configs, want %d", len(d.Configs), len(wantTypes))
	}
	for i, cfg := range d.Configs {
		var typ string
		json.Unmarshal(cfg["@type"], &typ)
		var list []map[string]any
		json.Unmarshal(cfg[wantLists[i]], &list)
		if typ != wantTypes[i] || len(list) != 1 {
			t.Errorf("config %d: @type %s with %d in %s", i, typ, len(list), wantLists[i])
		}
	}
	s := string(b)
	for _, want := range []string{`"version_info":"c1"`, `"version_info":"e1"`, `"last_updated":"20`, `"[redacted]"`, `"details":"clusters[x]: no (still waiting for eds x)"`, `"version_info":"c2"`} {
		if !strings.Contains(s, want) {
			t.Errorf("the dump lacks %s:\n%s", want, s)
		}
	}
}
