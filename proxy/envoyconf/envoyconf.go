// Package envoyconf translates Envoy v3 configuration (a bootstrap's
// static_resources, or what a control plane sends over xDS) into a
// Sightline config document: YAML with listeners: and clusters:, as a user
// would write them by hand.
//
// The translation never drops a field silently. Each Envoy field present
// in the input is either carried onto the Sightline key with the same
// meaning, or reported as Skipped, with a `# not carried: ...` comment in
// the document where it would have gone. Fields whose loss would change
// what the proxy does in a way a user would not accept unknowingly (an
// authentication filter, a TLS context that cannot be honoured, a path
// rewrite, a match condition that Sightline cannot express) are errors,
// unless the caller asks to proceed (Options.SkipUnsupported); see
// README "Coming from Envoy" for the rule.
//
// Where Envoy's default differs from Sightline's (connect_timeout 5s,
// route timeout 15s, HTTP/1.1 upstreams unless http2 is asked for, ...),
// the document carries Envoy's value explicitly, so that the translated
// proxy behaves as the Envoy config did.
package envoyconf

import (
	"errors"
	"sort"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// Resources holds Envoy v3 resources, as a bootstrap's static_resources or an ADS stream gives them.
type Resources struct {
	Listeners []*listenerv3.Listener              // github.com/envoyproxy/go-control-plane/envoy/config/listener/v3
	Routes    []*routev3.RouteConfiguration       // RDS: resolved by name from a listener's http_connection_manager.rds
	Clusters  []*clusterv3.Cluster                //
	Endpoints []*endpointv3.ClusterLoadAssignment // EDS: resolved by cluster_name (or eds_cluster_config.service_name)
	Secrets   []*tlsv3.Secret                     // SDS: resolved by name from sds_config references
}

// Skipped is one Envoy field the translation could not carry.
type Skipped struct {
	Path string // the Envoy field, e.g. "clusters[backend].outlier_detection.split_external_local_origin_errors"
	Why  string // one line: what Sightline does instead, or that it has no such feature
}

// Options tune a translation.
type Options struct {
	// SkipUnsupported drops, as Skipped, the fields whose loss changes
	// what the proxy does to traffic (an authorization filter, a client
	// certificate requirement, a path rewrite...), instead of refusing
	// the translation. Their Why starts with UnsafePrefix.
	SkipUnsupported bool
}

// UnsafePrefix starts the Why of a field dropped only because
// Options.SkipUnsupported asked for it.
const UnsafePrefix = "UNSAFE to drop: "

// Translate renders the resources as a Sightline config document: YAML with `listeners:` and `clusters:`
// (what a user would write by hand), and a `# not carried: <why>` comment where each skipped field would be.
// An error means the resources cannot be translated at all (a listener naming a route config that is absent,
// a field whose meaning would change if dropped, such as a TLS context Sightline cannot honour); its message names
// the Envoy field, e.g. `clusters[backend].lb_policy: CLUSTER_PROVIDED is not supported`.
//
// Translate is safe to call from any goroutine; it reads r and never
// changes it.
func Translate(r *Resources) (doc []byte, skipped []Skipped, err error) {
	return TranslateWith(r, Options{})
}

// TranslateWith is Translate with options.
func TranslateWith(r *Resources, opts Options) (doc []byte, skipped []Skipped, err error) {
	t := newTranslator(r, opts)
	root := t.resources()
	if err := t.err(); err != nil {
		return nil, nil, err
	}
	doc, err = render(root)
	if err != nil {
		return nil, nil, err
	}
	return doc, t.skipped, nil
}

// err joins the translation's errors, in the order of the input.
func (t *translator) err() error {
	if len(t.errs) == 0 {
		return nil
	}
	return errors.Join(t.errs...)
}

// resources translates r into the document's root: listeners, then
// clusters.
func (t *translator) resources() *obj {
	root := &obj{}
	var listeners []any
	for i, l := range t.r.Listeners {
		if l == nil {
			continue
		}
		if o := t.listener(i, l); o != nil {
			listeners = append(listeners, o)
		}
	}
	if len(listeners) > 0 {
		root.set("listeners", listeners)
	}
	var clusters []any
	for i, c := range t.r.Clusters {
		if c == nil {
			continue
		}
		if o := t.cluster(i, c); o != nil {
			clusters = append(clusters, o)
		}
	}
	if len(clusters) > 0 {
		root.set("clusters", clusters)
	}
	t.unused(root)
	return root
}

// unused notes the route configurations, endpoints and secrets no listener
// or cluster named: they have no effect in Envoy either, but whoever wrote
// them may expect them to.
func (t *translator) unused(root *obj) {
	for _, name := range unusedNames(t.routes, t.usedRoutes) {
		t.top("routes", name, t.routes[name], root).skipAll("no listener names this route configuration (rds.route_config_name)")
	}
	for _, name := range unusedNames(t.endpoints, t.usedEndpoints) {
		t.top("endpoints", name, t.endpoints[name], root).skipAll("no EDS cluster names this load assignment")
	}
	for _, name := range unusedNames(t.secrets, t.usedSecrets) {
		t.top("secrets", name, t.secrets[name], root).skipAll("no TLS context names this secret (sds_config)")
	}
}

// unusedNames returns the names of all that are not in used, sorted.
func unusedNames[T any](all map[string]T, used map[string]bool) []string {
	var names []string
	for name := range all {
		if !used[name] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}
