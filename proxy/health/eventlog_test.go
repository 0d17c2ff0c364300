package health

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/accesslog"
	"github.com/sightline-proxy/sightline/proxy/host"
)

// envoyEvent is the line Envoy writes for an HTTP health-check event of
// addr in zone: its HealthCheckEvent as proto JSON with every field.
func envoyEvent(addr, zone, key string, body map[string]any) map[string]any {
	h, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	return map[string]any{
		"health_checker_type": accesslog.CheckerHTTP,
		"host": map[string]any{"socket_address": map[string]any{
			"protocol": "TCP", "address": h, "port_value": float64(port), "resolver_name": "", "ipv4_compat": false}},
		"cluster_name": testCluster,
		"timestamp":    eventTime.Format("2006-01-02T15:04:05.000Z"),
		key:            body,
		"metadata":     map[string]any{"filter_metadata": map[string]any{}, "typed_filter_metadata": map[string]any{}},
		"locality":     map[string]any{"region": "", "zone": zone, "sub_zone": ""},
	}
}

// TestEnvoyEventLog: with event_log_format: envoy, real checks of real
// hosts write each event as Envoy's HealthCheckEvent, field by field: a
// passing first check (add_healthy_event, with the host's zone as
// locality.zone), a first check that cannot connect
// (health_check_failure_event NETWORK), and a host that starts answering
// 503 (eject_unhealthy_event ACTIVE).
func TestEnvoyEventLog(t *testing.T) {
	checkGoroutines(t)
	sw := &switchable{}
	up, dead := switchHTTP(t, sw, 503), deadAddr(t)
	events := newEventLog(t, "envoy")
	ejected := make(chan *host.Host, 4)
	onChange := func(h *host.Host, healthy bool) {
		if !healthy && h.Address != dead { // dead's is its failed first check
			ejected <- h
		}
	}
	c := newChecker(t, Options{Config: hcConfig("http"), Events: events.log, OnChange: onChange})
	zoned := &host.Host{Address: up, Weight: 1, Zone: "zone-a"}
	c.Set([]*host.Host{zoned, newHost(dead)})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.WaitFirst(ctx); err != nil {
		t.Fatal(err)
	}
	sw.failing.Store(true)
	select {
	case h := <-ejected:
		if h != zoned {
			t.Fatalf("ejected %s, want %s", h.Address, up)
		}
	case <-time.After(wait):
		t.Fatal("host never ejected")
	}
	closeChecker(t, c)

	// The two hosts' first events may come in either order: compare each
	// host's own lines.
	byHost := map[string][]map[string]any{}
	for _, l := range events.lines(t) {
		sa := l["host"].(map[string]any)["socket_address"].(map[string]any)
		addr := net.JoinHostPort(sa["address"].(string), strconv.Itoa(int(sa["port_value"].(float64))))
		byHost[addr] = append(byHost[addr], l)
	}
	compareLines(t, byHost[up], []map[string]any{
		envoyEvent(up, "zone-a", "add_healthy_event", map[string]any{"first_check": true}),
		envoyEvent(up, "zone-a", "eject_unhealthy_event", map[string]any{"failure_type": accesslog.FailureActive}),
	})
	compareLines(t, byHost[dead], []map[string]any{
		envoyEvent(dead, "", "health_check_failure_event", map[string]any{"failure_type": accesslog.FailureNetwork, "first_check": true}),
	})
	if len(byHost) != 2 {
		t.Errorf("lines for %d hosts, want 2: %v", len(byHost), byHost)
	}
}
