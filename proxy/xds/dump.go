package xds

import (
	"encoding/json"
	"maps"
	"slices"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// Dump is what the client last accepted and refused, for /config_dump. It
// is immutable once published.
type Dump struct {
	kinds [numKinds]dumpKind
}

type dumpKind struct {
	version  string
	entries  []dumpEntry // sorted by name
	rejected *Rejection
}

type dumpEntry struct {
	name, version string
	updated       time.Time
	res           *anypb.Any
}

// publish makes the machine's state what /config_dump shows. The entries
// and their resources are never modified once accepted, so the dump
// shares them.
func (c *Client) publish() {
	d := &Dump{}
	for k := range numKinds {
		t := &c.m.types[k]
		dk := &d.kinds[k]
		dk.version, dk.rejected = t.version, c.m.rejected[k]
		for _, name := range slices.Sorted(maps.Keys(t.accepted)) {
			e := t.accepted[name]
			dk.entries = append(dk.entries, dumpEntry{name: name, version: e.ver, updated: e.when, res: e.any})
		}
	}
	c.dump.Store(d)
}

// Dump returns what the client last accepted, for /config_dump; safe
// from any goroutine.
func (c *Client) Dump() *Dump { return c.dump.Load() }

// The admin types of Envoy's config dump.
const (
	clustersDump  = "type.googleapis.com/envoy.admin.v3.ClustersConfigDump"
	listenersDump = "type.googleapis.com/envoy.admin.v3.ListenersConfigDump"
	routesDump    = "type.googleapis.com/envoy.admin.v3.RoutesConfigDump"
	endpointsDump = "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump"
	secretsDump   = "type.googleapis.com/envoy.admin.v3.SecretsConfigDump"
)

// MarshalJSON renders the dump as Envoy's /config_dump does: a configs
// list of ClustersConfigDump (dynamic_active_clusters), ListenersConfigDump
// (dynamic_listeners), RoutesConfigDump (dynamic_route_configs),
// EndpointsConfigDump (dynamic_endpoint_configs) and SecretsConfigDump
// (dynamic_active_secrets, private keys redacted), each resource with the
// version_info of the response that last changed it and when that was
// accepted (last_updated). The last response of a kind refused since
// the last one accepted is in its error_state.
func (d *Dump) MarshalJSON() ([]byte, error) {
	if d == nil {
		d = &Dump{} // no client yet: every list empty
	}
	type obj = map[string]any
	section := func(k kind, typ, list string, item func(e dumpEntry) obj) obj {
		dk := &d.kinds[k]
		items := make([]obj, 0, len(dk.entries))
		for _, e := range dk.entries {
			items = append(items, item(e))
		}
		s := obj{"@type": typ, list: items}
		if kinds[k].wildcard {
			s["version_info"] = dk.version
		}
		if r := dk.rejected; r != nil {
			s["error_state"] = obj{"version_info": r.Version, "details": r.Detail, "last_update_attempt": stamp(r.At)}
		}
		return s
	}
	configs := []obj{
		section(clusters, clustersDump, "dynamic_active_clusters", func(e dumpEntry) obj {
			return obj{"version_info": e.version, "cluster": resourceJSON(e.res), "last_updated": stamp(e.updated)}
		}),
		section(listeners, listenersDump, "dynamic_listeners", func(e dumpEntry) obj {
			return obj{"name": e.name, "active_state": obj{"version_info": e.version, "listener": resourceJSON(e.res), "last_updated": stamp(e.updated)}}
		}),
		section(routes, routesDump, "dynamic_route_configs", func(e dumpEntry) obj {
			return obj{"version_info": e.version, "route_config": resourceJSON(e.res), "last_updated": stamp(e.updated)}
		}),
		section(endpoints, endpointsDump, "dynamic_endpoint_configs", func(e dumpEntry) obj {
			return obj{"version_info": e.version, "endpoint_config": resourceJSON(e.res), "last_updated": stamp(e.updated)}
		}),
		section(secrets, secretsDump, "dynamic_active_secrets", func(e dumpEntry) obj {
			return obj{"name": e.name, "version_info": e.version, "secret": resourceJSON(redactSecret(e.res)), "last_updated": stamp(e.updated)}
		}),
	}
	return json.Marshal(obj{"configs": configs})
}

// stamp formats a time as protobuf's Timestamp JSON does.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// resourceJSON renders a resource as protojson does (with its @type). A
// resource naming an extension type this binary does not know cannot be
// rendered: its type and why stand in for it.
func resourceJSON(a *anypb.Any) json.RawMessage {
	b, err := protojson.Marshal(a)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"@type": a.GetTypeUrl(), "error": err.Error()})
	}
	return b
}

// redacted replaces a private key in the dump, as Envoy's does.
const redacted = "[redacted]"

// redactSecret is a secret with its private keys and generic secret
// replaced by "[redacted]".
func redactSecret(a *anypb.Any) *anypb.Any {
	var s tlsv3.Secret
	if a.UnmarshalTo(&s) != nil {
		return a
	}
	hide := &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: redacted}}
	if c := s.GetTlsCertificate(); c != nil {
		c = proto.Clone(c).(*tlsv3.TlsCertificate)
		if c.PrivateKey != nil {
			c.PrivateKey = hide
		}
		if c.Password != nil {
			c.Password = hide
		}
		s.Type = &tlsv3.Secret_TlsCertificate{TlsCertificate: c}
	}
	if g := s.GetGenericSecret(); g != nil {
		s.Type = &tlsv3.Secret_GenericSecret{GenericSecret: &tlsv3.GenericSecret{Secret: hide}}
	}
	out, err := anypb.New(&s)
	if err != nil {
		return a
	}
	return out
}
