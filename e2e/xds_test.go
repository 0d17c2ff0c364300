package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/sightline-proxy/sightline/internal/backend"
	"github.com/sightline-proxy/sightline/internal/controlplane"
)

// The resources of the tests, in Envoy's YAML as sightline-controlplane
// reads it: an HTTP/2 cluster whose endpoints come by EDS, its endpoints,
// a route configuration sending everything to one cluster, and a
// listener on a free port taking its routes by RDS.
func xdsCluster(name string) string {
	return fmt.Sprintf(`  - "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
    name: %s
    type: EDS
    eds_cluster_config: {eds_config: {ads: {}, resource_api_version: V3}}
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
`, name)
}

func xdsEndpoints(cluster string, bs ...*backend.Backend) string {
	var eps []string
	for _, b := range bs {
		host, port, _ := net.SplitHostPort(b.Addr)
		eps = append(eps, fmt.Sprintf("{endpoint: {address: {socket_address: {address: %s, port_value: %s}}}}", host, port))
	}
	return fmt.Sprintf(`  - "@type": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
    cluster_name: %s
    endpoints: [{lb_endpoints: [%s]}]
`, cluster, strings.Join(eps, ", "))
}

func xdsRoutes(cluster string) string {
	return fmt.Sprintf(`  - "@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
    name: routes
    virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: %s}}]}]
`, cluster)
}

const xdsListener = `  - "@type": type.googleapis.com/envoy.config.listener.v3.Listener
    name: ingress
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
      - filters:
          - name: envoy.filters.network.http_connection_manager
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
              stat_prefix: ingress
              rds: {route_config_name: routes, config_source: {ads: {}, resource_api_version: V3}}
              http_filters:
                - name: envoy.filters.http.router
                  typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
`

// controlPlane is a go-control-plane server in the test process, serving
// a directory the test writes; it can be stopped and started again on
// the same address.
type controlPlane struct {
	t     *testing.T
	dir   string
	addr  string
	nacks chan controlplane.Nack
	cp    *controlplane.Server

	cancel context.CancelFunc
	served chan error
}

func startControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	c := &controlPlane{t: t, dir: t.TempDir(), addr: freeAddr(t), nacks: make(chan controlplane.Nack, 100)}
	c.write("listeners.yaml", xdsListener)
	t.Cleanup(c.stop)
	return c
}

// write replaces one resource file.
func (c *controlPlane) write(file, resources string) {
	c.t.Helper()
	if err := os.WriteFile(filepath.Join(c.dir, file), []byte("resources:\n"+resources), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// push serves what the files hold now.
func (c *controlPlane) push() {
	c.t.Helper()
	if _, err := c.cp.Reload(); err != nil {
		c.t.Fatal(err)
	}
}

// start loads the directory and serves it on c.addr.
func (c *controlPlane) start() {
	c.t.Helper()
	cp, err := controlplane.New(controlplane.Options{Dir: c.dir, Log: zerolog.Nop(), OnNack: func(n controlplane.Nack) {
		select {
		case c.nacks <- n:
		default:
		}
	}})
	if err != nil {
		c.t.Fatal(err)
	}
	var ln net.Listener
	// The address was given up by the last server a moment ago.
	if err := eventually(5*time.Second, func() (err error) { ln, err = net.Listen("tcp", c.addr); return err }); err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cp, c.cancel, c.served = cp, cancel, make(chan error, 1)
	go func() { c.served <- cp.Serve(ctx, ln) }()
}

// stop ends every stream and closes the listener.
func (c *controlPlane) stop() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	if err := <-c.served; err != nil {
		c.t.Errorf("control plane: %v", err)
	}
	c.cancel = nil
}

// startXDSProxy runs the proxy with only a bootstrap pointing at c.
func startXDSProxy(t *testing.T, c *controlPlane) *proxy {
	t.Helper()
	body := fmt.Sprintf(`node: {id: edge-1, cluster: fleet, zone: zone-a}
server: {drain_time: 10ms}
dynamic:
  ads:
    address: %s
    initial_fetch_timeout: 15s
    retry_back_off: {base_interval: 50ms, max_interval: 500ms}
`, c.addr)
	skipWithoutTranslation(t, body)
	return startProxy(t, body)
}

// skipWithoutTranslation skips the test when the binary cannot translate
// Envoy resources (sightline validate refuses a dynamic section then).
func skipWithoutTranslation(t *testing.T, body string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binPath, "validate", "-c", path).CombinedOutput()
	if err != nil && strings.Contains(string(out), "cannot translate Envoy resources") {
		t.Skip("this build of sightline cannot translate Envoy resources yet")
	}
	if err != nil {
		t.Fatalf("sightline validate: %v\n%s", err, out)
	}
}

// gauge reads a gauge from /stats (0 when absent).
func (p *proxy) gauge(name string) int64 { return p.counter(name) }

// TestXDS is a proxy run by a control plane alone: it serves gRPC through
// the listener, route and clusters pushed to it; an endpoint change and a
// route change under 500 calls/s fail no call, and the endpoint change
// does not rebuild the cluster; an invalid resource is NACKed, naming
// the field, and the last config keeps serving; with the control plane
// gone the proxy serves on, and when it is back the proxy takes its newer
// resources.
func TestXDS(t *testing.T) {
	bs := startBackends(t, 4)
	c := startControlPlane(t)
	c.write("clusters.yaml", xdsCluster("a")+xdsCluster("b"))
	c.write("endpoints.yaml", xdsEndpoints("a", bs[0])+xdsEndpoints("b", bs[2]))
	c.write("routes.yaml", xdsRoutes("a"))
	c.start()
	p := startXDSProxy(t, c)

	client := testClient(t, p.listener("ingress"))
	if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("a call through the listener the control plane sent: %v", err)
	}
	if bs[0].Calls() != 1 {
		t.Fatalf("backend calls %v, want the one call on a's endpoint", callCounts(bs))
	}
	if n := p.gauge("control_plane.connected_state"); n != 1 {
		t.Errorf("control_plane.connected_state = %d, want 1", n)
	}
	checkDump(t, p, c)

	t.Run("endpoint and route changes under load", func(t *testing.T) {
		load := startSteadyLoad(t, client, 500)
		time.Sleep(time.Second) // load before the change
		cx := p.counter("cluster.a.upstream_cx_total")
		c.write("endpoints.yaml", xdsEndpoints("a", bs[0], bs[1])+xdsEndpoints("b", bs[2]))
		c.push()
		waitCalls(t, client, bs[1], "the endpoint the update added")
		time.Sleep(time.Second) // load across and after the change
		if got := p.counter("cluster.a.upstream_cx_total"); got != cx+1 {
			t.Errorf("cluster.a.upstream_cx_total %d → %d: an endpoints update must keep the cluster and its connections, and open one to the new host", cx, got)
		}
		c.write("routes.yaml", xdsRoutes("b"))
		c.push()
		waitCalls(t, client, bs[2], "cluster b, which the new route names")
		time.Sleep(time.Second)
		load.finish(t)
		if n := load.calls.Load(); n < 1000 {
			t.Errorf("only %d calls were sent across the changes", n)
		}
	})

	t.Run("an invalid resource is refused", func(t *testing.T) {
		rejected := p.counter("cluster_manager.cds.update_rejected")
		c.write("clusters.yaml", xdsCluster("a")+xdsCluster("b")+strings.Replace(xdsCluster("c"), "connect_timeout: 1s", "connect_timeout: 1s\n    lb_policy: CLUSTER_PROVIDED", 1))
		c.write("endpoints.yaml", xdsEndpoints("a", bs[0], bs[1])+xdsEndpoints("b", bs[2])+xdsEndpoints("c", bs[3]))
		c.push()
		select {
		case n := <-c.nacks:
			if !strings.Contains(n.Detail, "lb_policy") || !strings.Contains(n.Detail, "c") {
				t.Errorf("NACK error_detail %q does not name clusters[c].lb_policy", n.Detail)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the control plane got no NACK")
		}
		if err := eventually(5*time.Second, func() error {
			if got := p.counter("cluster_manager.cds.update_rejected"); got != rejected+1 {
				return fmt.Errorf("cluster_manager.cds.update_rejected = %d, want %d", got, rejected+1)
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
		for i := range 50 {
			if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
				t.Fatalf("call %d after the refusal: %v", i, err)
			}
		}
		_, dump := p.adminGet("/config_dump")
		if !strings.Contains(dump, `"error_state"`) {
			t.Errorf("/config_dump shows no error_state after the NACK")
		}
		// Put the good resources back for what follows.
		c.write("clusters.yaml", xdsCluster("a")+xdsCluster("b"))
		c.push()
	})

	t.Run("the control plane goes and comes back", func(t *testing.T) {
		c.stop()
		if err := eventually(10*time.Second, func() error {
			if n := p.gauge("control_plane.connected_state"); n != 0 {
				return fmt.Errorf("control_plane.connected_state = %d", n)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		before := bs[2].Calls()
		for i := range 50 {
			if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
				t.Fatalf("call %d with the control plane gone: %v", i, err)
			}
		}
		if bs[2].Calls()-before != 50 {
			t.Errorf("cluster b's backend got %d of 50 calls with the control plane gone", bs[2].Calls()-before)
		}
		c.write("endpoints.yaml", xdsEndpoints("a", bs[0], bs[1])+xdsEndpoints("b", bs[3]))
		c.start()
		waitCalls(t, client, bs[3], "the endpoint of the newer resources")
		if n := p.gauge("control_plane.connected_state"); n != 1 {
			t.Errorf("control_plane.connected_state = %d after reconnecting, want 1", n)
		}
	})
}

// waitCalls sends calls through client until b has served some, for 20 s
// at most.
func waitCalls(t *testing.T, client testgrpc.TestServiceClient, b *backend.Backend, what string) {
	t.Helper()
	if err := eventually(20*time.Second, func() error {
		if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
			return err
		}
		if b.Calls() == 0 {
			return fmt.Errorf("%s got no call", what)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// checkDump checks /config_dump's xds section: each cluster with the
// version the control plane serves and when it was accepted.
func checkDump(t *testing.T, p *proxy, c *controlPlane) {
	t.Helper()
	_, body := p.adminGet("/config_dump")
	var d struct {
		XDS struct {
			Configs []struct {
				Type     string `json:"@type"`
				Version  string `json:"version_info"`
				Clusters []struct {
					Version     string          `json:"version_info"`
					Cluster     json.RawMessage `json:"cluster"`
					LastUpdated string          `json:"last_updated"`
				} `json:"dynamic_active_clusters"`
			} `json:"configs"`
		} `json:"xds"`
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("/config_dump is not JSON: %v", err)
	}
	want := c.cp.Versions("edge-1")["type.googleapis.com/envoy.config.cluster.v3.Cluster"]
	if len(d.XDS.Configs) == 0 || d.XDS.Configs[0].Version != want || len(d.XDS.Configs[0].Clusters) != 2 {
		t.Fatalf("/config_dump xds %+v, want the clusters at version %s", d.XDS, want)
	}
	for _, cl := range d.XDS.Configs[0].Clusters {
		if cl.Version != want || cl.LastUpdated == "" || !strings.Contains(string(cl.Cluster), `"name"`) {
			t.Errorf("dynamic cluster %s", cl.Cluster)
		}
	}
}

// TestXDSEnvoyBootstrap: an Envoy bootstrap with ADS dynamic_resources
// runs as it is, with no Sightline file: the proxy follows the control
// plane its ads_config names, serves what it sends, and takes its
// changes, each loaded with the bootstrap's translation.
func TestXDSEnvoyBootstrap(t *testing.T) {
	bs := startBackends(t, 2)
	c := startControlPlane(t)
	c.write("clusters.yaml", xdsCluster("a"))
	c.write("endpoints.yaml", xdsEndpoints("a", bs[0]))
	c.write("routes.yaml", xdsRoutes("a"))
	c.start()
	host, port, err := net.SplitHostPort(c.addr)
	if err != nil {
		t.Fatal(err)
	}
	admin := freePort(t)
	path := filepath.Join(t.TempDir(), "envoy.yaml")
	boot := fmt.Sprintf(`node: {id: edge-1, cluster: fleet}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: %d}}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    load_assignment:
      cluster_name: xds
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %s, port_value: %s}}}}]}]
dynamic_resources:
  lds_config: {ads: {}, resource_api_version: V3}
  cds_config: {ads: {}, resource_api_version: V3}
  ads_config: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}
`, admin, host, port)
	if err := os.WriteFile(path, []byte(boot), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startEnvoyProxy(t, path, admin)

	client := testClient(t, p.listener("ingress"))
	if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("a call through the listener the control plane sent: %v", err)
	}
	if bs[0].Calls() != 1 {
		t.Fatalf("backend calls %v, want the one call on a's endpoint", callCounts(bs))
	}
	c.write("endpoints.yaml", xdsEndpoints("a", bs[1]))
	c.push()
	waitCalls(t, client, bs[1], "the endpoint the update moved cluster a to")
}
