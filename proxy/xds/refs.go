package xds

import (
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// refs are the names the wildcard resources point at: the cluster load
// assignments of EDS clusters, the route configurations of listeners
// with RDS, and the secrets of TLS contexts with SDS.
type refs [numKinds][]string

// add notes a name of kind k.
func (r *refs) add(k kind, name string) {
	if name != "" {
		r[k] = append(r[k], name)
	}
}

// sorted sorts each list and removes duplicates.
func (r *refs) sorted() {
	for k := range r {
		slices.Sort(r[k])
		r[k] = slices.Compact(r[k])
	}
}

// clusterRefs adds what a cluster names: its cluster load assignment
// when its endpoints come by EDS (named by eds_cluster_config.service_name,
// or else the cluster's name), and the secrets of its TLS context.
func (r *refs) clusterRefs(c *clusterv3.Cluster) {
	if c.GetType() == clusterv3.Cluster_EDS {
		name := c.GetEdsClusterConfig().GetServiceName()
		if name == "" {
			name = c.GetName()
		}
		r.add(endpoints, name)
	}
	var up tlsv3.UpstreamTlsContext
	if typed(c.GetTransportSocket(), &up) {
		r.commonTLS(up.GetCommonTlsContext())
	}
}

// listenerRefs adds what a listener names: the route configurations of
// its HTTP connection managers with RDS, and the secrets of its filter
// chains' TLS contexts.
func (r *refs) listenerRefs(l *listenerv3.Listener) {
	chains := l.GetFilterChains()
	if dc := l.GetDefaultFilterChain(); dc != nil {
		chains = append(slices.Clip(chains), dc)
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			var hcm hcmv3.HttpConnectionManager
			if f.GetTypedConfig() != nil && f.GetTypedConfig().UnmarshalTo(&hcm) == nil {
				if rds := hcm.GetRds(); rds != nil {
					r.add(routes, rds.GetRouteConfigName())
				}
			}
		}
		var down tlsv3.DownstreamTlsContext
		if typed(fc.GetTransportSocket(), &down) {
			r.commonTLS(down.GetCommonTlsContext())
		}
	}
}

// commonTLS adds the secrets a TLS context names: its certificates and
// its validation context.
func (r *refs) commonTLS(c *tlsv3.CommonTlsContext) {
	for _, s := range c.GetTlsCertificateSdsSecretConfigs() {
		r.add(secrets, s.GetName())
	}
	r.add(secrets, c.GetValidationContextSdsSecretConfig().GetName())
	r.add(secrets, c.GetCombinedValidationContext().GetValidationContextSdsSecretConfig().GetName())
}

// typed decodes a transport socket's typed_config into m, and reports
// whether it is one.
func typed(ts *corev3.TransportSocket, m proto.Message) bool {
	a := ts.GetTypedConfig()
	return a != nil && isType(a, m) && a.UnmarshalTo(m) == nil
}

// isType reports whether a holds a message of m's type.
func isType(a *anypb.Any, m proto.Message) bool {
	return a.MessageIs(m)
}
