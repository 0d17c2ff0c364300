// Package xds keeps a proxy's listeners, routes, clusters, endpoints and
// secrets in step with a control plane over Envoy's v3 xDS API: one gRPC
// stream (the aggregated discovery service, state of the world) carries
// every kind of resource, each response is accepted (ACK) or refused
// (NACK, with error_detail saying why) as a whole, and the stream is kept
// up with jittered exponential back-off, the last accepted resources
// serving while it is down.
//
// The client does not know what the resources mean: it hands each
// complete set (a Snapshot: every listener and cluster, and every route
// configuration, endpoint assignment and secret they name) to an
// Applier, whose error refuses the response that brought the set. Package
// proxy/xds/apply turns a Snapshot into a running config.
//
// The client is written on go-control-plane's generated stubs rather than
// its pkg/client/sotw ADSClient, which follows a single type URL per
// client and acknowledges the last response of that type only: an ADS
// stream here carries five types, and a cluster response is decided
// together with the endpoints it names.
package xds

import (
	"google.golang.org/protobuf/proto"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// The type URLs of the resources the client asks for.
const (
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	SecretType   = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

	// resourceWrapper is the type of a resource wrapped with its name
	// (envoy.service.discovery.v3.Resource), which some control planes
	// send in state-of-the-world responses too.
	resourceWrapper = "type.googleapis.com/envoy.service.discovery.v3.Resource"
)

// kind indexes the resource types, in the order a set is built: clusters
// and their endpoints, then listeners and their routes, then secrets.
type kind int

const (
	clusters kind = iota
	endpoints
	listeners
	routes
	secrets
	numKinds
)

// kindInfo describes one kind of resource.
type kindInfo struct {
	url string
	// short is the xDS name (cds, eds, ...), for logs and stats.
	short string
	// wildcard kinds (clusters, listeners) are asked for whole: a
	// response holds every resource of the kind, and one left out is
	// removed. The others are asked for by name, as the wildcard ones
	// name them.
	wildcard bool
	// newMsg makes an empty resource of the kind.
	newMsg func() proto.Message
	// name is the resource's name.
	name func(proto.Message) string
}

var kinds = [numKinds]kindInfo{
	clusters: {url: ClusterType, short: "cds", wildcard: true,
		newMsg: func() proto.Message { return new(clusterv3.Cluster) },
		name:   func(m proto.Message) string { return m.(*clusterv3.Cluster).GetName() }},
	endpoints: {url: EndpointType, short: "eds",
		newMsg: func() proto.Message { return new(endpointv3.ClusterLoadAssignment) },
		name:   func(m proto.Message) string { return m.(*endpointv3.ClusterLoadAssignment).GetClusterName() }},
	listeners: {url: ListenerType, short: "lds", wildcard: true,
		newMsg: func() proto.Message { return new(listenerv3.Listener) },
		name:   func(m proto.Message) string { return m.(*listenerv3.Listener).GetName() }},
	routes: {url: RouteType, short: "rds",
		newMsg: func() proto.Message { return new(routev3.RouteConfiguration) },
		name:   func(m proto.Message) string { return m.(*routev3.RouteConfiguration).GetName() }},
	secrets: {url: SecretType, short: "sds",
		newMsg: func() proto.Message { return new(tlsv3.Secret) },
		name:   func(m proto.Message) string { return m.(*tlsv3.Secret).GetName() }},
}

// kindOf is the kind of a type URL.
func kindOf(url string) (kind, bool) {
	for k := range numKinds {
		if kinds[k].url == url {
			return k, true
		}
	}
	return 0, false
}

// Snapshot is a complete set of resources: the listeners and clusters the
// control plane sends, with every route configuration, endpoint
// assignment and secret they name, as far as the control plane has them.
// Each list is sorted by name. An Applier must not modify it.
type Snapshot struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	Secrets   []*tlsv3.Secret
}
