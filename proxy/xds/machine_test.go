package xds

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/stats"
)

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// edsCluster is a cluster whose endpoints come by EDS, under its own name.
func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{}}},
	}
}

func cla(name, addr string) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 5100}}}},
		}}}},
	}}}
}

// rdsListener is a listener whose routes come by RDS from routeName, on
// TLS with its certificate from the secret named secret ("" for none).
func rdsListener(t *testing.T, name, routeName, secret string) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{StatPrefix: name, RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{
		Rds: &hcmv3.Rds{RouteConfigName: routeName, ConfigSource: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{}}}}}
	fc := &listenerv3.FilterChain{Filters: []*listenerv3.Filter{{
		Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)}}}}
	if secret != "" {
		down := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: secret}}}}
		fc.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, down)}}
	}
	return &listenerv3.Listener{Name: name, FilterChains: []*listenerv3.FilterChain{fc}}
}

// harness drives a machine as a stream would, recording what it sends and
// what it applies.
type harness struct {
	t       *testing.T
	m       *machine
	st      *stats.XDS
	sent    []*discoveryv3.DiscoveryRequest
	applied []*Snapshot
	fail    error // what Apply returns
	nonce   int
}

func newHarness(t *testing.T, resources ...string) *harness {
	t.Helper()
	store, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Second)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, st: store.XDS()}
	d := config.Dynamic{Resources: resources}
	var want [numKinds]bool
	want[clusters], want[listeners] = d.Wants(config.DynamicClusters), d.Wants(config.DynamicListeners)
	clock := time.Unix(1_700_000_000, 0)
	h.m = newMachine(&corev3.Node{Id: "edge-1"}, want, ApplierFunc(func(s *Snapshot) error {
		h.applied = append(h.applied, s)
		return h.fail
	}), h.st, func() time.Time { clock = clock.Add(time.Second); return clock })
	h.m.send = func(r *discoveryv3.DiscoveryRequest) { h.sent = append(h.sent, r) }
	h.m.repeatBase, h.m.repeatMax = time.Second, 4*time.Second
	h.m.streamStarted()
	return h
}

// respond sends a response of type url with version and resources, and
// returns its nonce.
func (h *harness) respond(url, version string, res ...proto.Message) string {
	h.t.Helper()
	h.nonce++
	nonce := "n" + string(rune('0'+h.nonce))
	r := &discoveryv3.DiscoveryResponse{TypeUrl: url, VersionInfo: version, Nonce: nonce}
	for _, m := range res {
		r.Resources = append(r.Resources, mustAny(h.t, m))
	}
	h.m.receive(r)
	return nonce
}

// takeSent returns the requests sent since the last call, as
// "type version nonce [names] error" strings.
func (h *harness) takeSent() []string {
	var out []string
	for _, r := range h.sent {
		short := ""
		if k, ok := kindOf(r.GetTypeUrl()); ok {
			short = kinds[k].short
		}
		s := short + " v=" + r.GetVersionInfo() + " nonce=" + r.GetResponseNonce()
		if len(r.GetResourceNames()) > 0 {
			s += " [" + strings.Join(r.GetResourceNames(), ",") + "]"
		}
		if e := r.GetErrorDetail(); e != nil {
			if codes.Code(e.GetCode()) != codes.InvalidArgument {
				h.t.Errorf("NACK code %d, want INVALID_ARGUMENT", e.GetCode())
			}
			s += " NACK: " + e.GetMessage()
		}
		out = append(out, s)
	}
	h.sent = nil
	return out
}

func (h *harness) wantSent(want ...string) {
	h.t.Helper()
	if got := h.takeSent(); !slices.Equal(got, want) {
		h.t.Errorf("sent:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func names[T interface{ GetName() string }](items []T) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.GetName())
	}
	return out
}

// TestMachineWaitsForWhatResourcesName: a cluster response is decided
// with the endpoints it names, a listener response with its route
// configuration and secret; nothing is applied until the set is whole,
// and then every response is ACKed with its version and nonce.
func TestMachineWaitsForWhatResourcesName(t *testing.T) {
	h := newHarness(t, "listeners", "clusters")
	h.wantSent("cds v= nonce=", "lds v= nonce=")

	n1 := h.respond(ClusterType, "c1", edsCluster("backend"))
	h.wantSent("eds v= nonce= [backend]")
	n2 := h.respond(ListenerType, "l1", rdsListener(t, "ingress", "routes", "cert"))
	h.wantSent("rds v= nonce= [routes]", "sds v= nonce= [cert]")
	n3 := h.respond(EndpointType, "e1", cla("backend", "127.0.0.1"))
	n4 := h.respond(RouteType, "r1", &routev3.RouteConfiguration{Name: "routes"})
	if len(h.applied) != 0 {
		t.Fatalf("applied %d sets before the secret came", len(h.applied))
	}
	h.wantSent()
	n5 := h.respond(SecretType, "s1", &tlsv3.Secret{Name: "cert"})
	if len(h.applied) != 1 {
		t.Fatalf("applied %d sets, want 1", len(h.applied))
	}
	s := h.applied[0]
	if !slices.Equal(names(s.Clusters), []string{"backend"}) || len(s.Endpoints) != 1 || len(s.Listeners) != 1 || len(s.Routes) != 1 || len(s.Secrets) != 1 {
		t.Errorf("applied %+v", s)
	}
	h.wantSent(
		"cds v=c1 nonce="+n1,
		"eds v=e1 nonce="+n3+" [backend]",
		"lds v=l1 nonce="+n2,
		"rds v=r1 nonce="+n4+" [routes]",
		"sds v=s1 nonce="+n5+" [cert]",
	)
	for _, sub := range []*stats.Subscription{h.st.CDS, h.st.EDS, h.st.LDS, h.st.RDS, h.st.SDS} {
		if sub.UpdateAttempt.Value() != 1 || sub.UpdateSuccess.Value() != 1 || sub.UpdateRejected.Value() != 0 || sub.ConfigReload.Value() != 1 {
			t.Errorf("attempt %d success %d rejected %d config_reload %d, want 1 1 0 1",
				sub.UpdateAttempt.Value(), sub.UpdateSuccess.Value(), sub.UpdateRejected.Value(), sub.ConfigReload.Value())
		}
	}
	if h.st.CDS.Version.Value() != versionHash("c1") || h.st.CDS.UpdateTime.Value() == 0 {
		t.Errorf("version %d, update_time %d", h.st.CDS.Version.Value(), h.st.CDS.UpdateTime.Value())
	}
}

// TestMachineNACK: a set the Applier refuses NACKs the response with the
// version accepted before and the Applier's words; what was accepted
// stays, and the next good response is applied on top of it.
func TestMachineNACK(t *testing.T) {
	h := newHarness(t, "clusters")
	h.wantSent("cds v= nonce=")
	h.respond(ClusterType, "1", edsCluster("a"))
	h.respond(EndpointType, "1", cla("a", "127.0.0.1"))
	h.takeSent()

	h.fail = errors.New("clusters[b].lb_policy: CLUSTER_PROVIDED is not supported")
	bad := edsCluster("b")
	bad.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
	nb := h.respond(ClusterType, "2", edsCluster("a"), bad)
	// b names endpoints that never come: the set waits for them, so the
	// machine is forced as the client's timer would.
	h.wantSent("eds v=1 nonce=n2 [a,b]")
	h.m.decide(true)
	h.wantSent(
		"cds v=1 nonce="+nb+" NACK: clusters[b].lb_policy: CLUSTER_PROVIDED is not supported (still waiting for eds b)",
		"eds v=1 nonce=n2 [a]",
	)
	if h.st.CDS.UpdateRejected.Value() != 1 || h.st.CDS.UpdateSuccess.Value() != 1 {
		t.Errorf("cds rejected %d success %d, want 1 1", h.st.CDS.UpdateRejected.Value(), h.st.CDS.UpdateSuccess.Value())
	}
	if got := names(snapshotOf(h.m.candidate()).Clusters); !slices.Equal(got, []string{"a"}) {
		t.Errorf("clusters after the NACK %v, want [a]", got)
	}
	if r := h.m.rejected[clusters]; r == nil || r.Version != "2" {
		t.Errorf("rejection %+v, want version 2", r)
	}

	h.fail = nil
	n := h.respond(EndpointType, "2", cla("a", "127.0.0.2"))
	h.wantSent("eds v=2 nonce=" + n + " [a]")
	if last := h.applied[len(h.applied)-1]; len(last.Endpoints) != 1 || !proto.Equal(last.Endpoints[0], cla("a", "127.0.0.2")) {
		t.Errorf("applied %+v", last)
	}
	if h.m.rejected[clusters] == nil {
		t.Error("an endpoint update cleared the cluster rejection")
	}
}

// TestMachineRefusesUndecodable: a response whose resources are not of its
// type, have no name or repeat one is refused at once, naming the
// resource.
func TestMachineRefusesUndecodable(t *testing.T) {
	tests := []struct {
		name string
		give []proto.Message
		want string
	}{
		{"another type", []proto.Message{&routev3.RouteConfiguration{Name: "r"}},
			"resources[0]: type " + RouteType + " in a response of type " + ClusterType},
		{"no name", []proto.Message{&clusterv3.Cluster{}}, "resources[0]: has no name"},
		{"twice", []proto.Message{edsCluster("a"), edsCluster("a")}, `resources[1]: "a" is in the response twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, "clusters")
			h.takeSent()
			n := h.respond(ClusterType, "1", tt.give...)
			h.wantSent("cds v= nonce=" + n + " NACK: " + tt.want)
			if len(h.applied) != 0 {
				t.Error("applied a refused response")
			}
		})
	}
}

// TestMachineReconnects: a new stream asks again with the versions
// accepted and the names subscribed, without nonces; a response the old
// stream left waiting is dropped.
func TestMachineReconnects(t *testing.T) {
	h := newHarness(t, "clusters")
	h.respond(ClusterType, "7", edsCluster("a"))
	h.respond(EndpointType, "3", cla("a", "127.0.0.1"))
	h.respond(ClusterType, "8", edsCluster("a"), edsCluster("b")) // waits for b
	h.takeSent()
	h.m.streamStarted()
	h.wantSent("cds v=7 nonce=", "eds v=3 nonce= [a]")
	if h.m.waiting() {
		t.Error("a response of the old stream still waits")
	}
}

// TestMachineRemovesAndKeepsVersions: a wildcard response without a
// resource removes it; a resource that did not change keeps the version
// and time it was last changed at.
func TestMachineRemovesAndKeepsVersions(t *testing.T) {
	h := newHarness(t, "clusters")
	static := func(name string) *clusterv3.Cluster {
		return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}
	}
	h.respond(ClusterType, "1", static("a"), static("b"))
	first := h.m.types[clusters].accepted["a"]
	changed := static("b")
	changed.ConnectTimeout = nil
	changed.LbPolicy = clusterv3.Cluster_RANDOM
	h.respond(ClusterType, "2", static("a"), changed)
	h.respond(ClusterType, "3", static("a"))
	acc := h.m.types[clusters].accepted
	if len(acc) != 1 || acc["a"] != first || acc["a"].ver != "1" {
		t.Errorf("accepted %v; a at version %q, want only a, unchanged since version 1", acc, acc["a"].ver)
	}
	if got := len(h.applied); got != 3 {
		t.Errorf("applied %d sets, want 3", got)
	}
	if n := h.st.CDS.ConfigReload.Value(); n != 3 {
		t.Errorf("config_reload %d, want 3", n)
	}
	h.respond(ClusterType, "4", static("a"))
	if n := h.st.CDS.ConfigReload.Value(); n != 3 {
		t.Errorf("config_reload %d after a response that changed nothing, want 3", n)
	}
}

// TestMachineSubscribesOnlyKindsAskedFor: with resources: [clusters], the
// proxy asks for no listeners.
func TestMachineSubscribesOnlyKindsAskedFor(t *testing.T) {
	h := newHarness(t, "clusters")
	h.wantSent("cds v= nonce=")
	h.respond(ClusterType, "1", &clusterv3.Cluster{Name: "a"})
	if len(h.applied) != 1 {
		t.Errorf("applied %d, want 1: no listeners are waited for", len(h.applied))
	}
}

// TestMachineHoldsRepeatedNACK: a control plane answers a NACK by sending
// the refused response again; the proxy refuses the repeat without
// applying it or counting it, and holds that NACK, longer each time,
// instead of refusing it in a tight loop. A repeat may list the resources
// in another order (go-control-plane builds responses from a map). A new
// response is decided at once.
func TestMachineHoldsRepeatedNACK(t *testing.T) {
	h := newHarness(t, "clusters")
	h.takeSent()
	h.fail = errors.New("no")
	static := &clusterv3.Cluster{Name: "a", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}
	other := &clusterv3.Cluster{Name: "b", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}
	n := h.respond(ClusterType, "1", static, other)
	h.wantSent("cds v= nonce=" + n + " NACK: no")
	applied := len(h.applied)
	var bounds []time.Duration
	for i := range 4 {
		before := h.m.now()
		if i%2 == 0 {
			n = h.respond(ClusterType, "1", other, static)
		} else {
			n = h.respond(ClusterType, "1", static, other)
		}
		h.wantSent()
		at := h.m.heldUntil()
		if at.IsZero() {
			t.Fatal("no NACK held for a repeat")
		}
		bounds = append(bounds, at.Sub(before).Round(time.Second))
		h.m.sendHeld(at)
		h.wantSent("cds v= nonce=" + n + " NACK: no")
	}
	if want := []time.Duration{2 * time.Second, 3 * time.Second, 5 * time.Second, 5 * time.Second}; !slices.Equal(bounds, want) {
		// The clock of the harness ticks a second per reading.
		t.Errorf("held for %v, want %v", bounds, want)
	}
	if len(h.applied) != applied || h.st.CDS.UpdateRejected.Value() != 1 || h.st.CDS.UpdateAttempt.Value() != 1 {
		t.Errorf("repeats applied %d, rejected %d, attempts %d; want none counted", len(h.applied)-applied,
			h.st.CDS.UpdateRejected.Value(), h.st.CDS.UpdateAttempt.Value())
	}
	h.fail = nil
	n = h.respond(ClusterType, "2", static, other)
	h.wantSent("cds v=2 nonce=" + n)
}
