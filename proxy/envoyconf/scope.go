package envoyconf

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// translator is the state of one translation.
type translator struct {
	r    *Resources
	opts Options

	// By name, for rds, eds and sds references.
	routes    map[string]*routev3.RouteConfiguration
	endpoints map[string]*endpointv3.ClusterLoadAssignment
	secrets   map[string]*tlsv3.Secret
	clusters  map[string]*clusterv3.Cluster

	usedRoutes, usedEndpoints, usedSecrets map[string]bool

	// tracing is the document's tracing: section when the translation
	// is an import of a bootstrap, where a listener's tracing provider
	// is lifted to; nil for resources alone, whose tracing is skipped.
	tracing *obj
	// outlierLog is the bootstrap's outlier event log, carried onto each
	// cluster with outlier detection; "" for resources alone.
	outlierLog string
	// localRLFilter is set while the routes of an HTTP connection manager
	// with a local_ratelimit filter are translated: their per-route
	// local rate limits apply only then.
	localRLFilter bool

	skipped []Skipped
	errs    []error
	// carried holds the paths of the fields carried whole (a leaf, or a
	// message every field of which means what the Sightline key says);
	// entered the paths of messages whose fields were looked at one by
	// one. Tests check that every field of the input is in one, or
	// skipped.
	carried, entered map[string]bool
}

func newTranslator(r *Resources, opts Options) *translator {
	t := &translator{
		r: r, opts: opts,
		routes:        map[string]*routev3.RouteConfiguration{},
		endpoints:     map[string]*endpointv3.ClusterLoadAssignment{},
		secrets:       map[string]*tlsv3.Secret{},
		clusters:      map[string]*clusterv3.Cluster{},
		usedRoutes:    map[string]bool{},
		usedEndpoints: map[string]bool{},
		usedSecrets:   map[string]bool{},
		carried:       map[string]bool{},
		entered:       map[string]bool{},
	}
	for _, rc := range r.Routes {
		if rc != nil {
			t.routes[rc.GetName()] = rc
		}
	}
	for _, e := range r.Endpoints {
		if e != nil {
			t.endpoints[e.GetClusterName()] = e
		}
	}
	for _, s := range r.Secrets {
		if s != nil {
			t.secrets[s.GetName()] = s
		}
	}
	for _, c := range r.Clusters {
		if c != nil {
			t.clusters[c.GetName()] = c
		}
	}
	return t
}

// scope is one Envoy message being translated: where it is in the input
// (path), what its fields became, and where the notes about the fields it
// could not carry go in the document (out).
type scope struct {
	t    *translator
	path string
	m    protoreflect.Message
	out  *obj
	// seen holds the fields handled so far; done reports the others.
	seen map[string]bool
}

// top opens the scope of a top-level resource, named by its name.
func (t *translator) top(kind, name string, m proto.Message, out *obj) *scope {
	return t.open(kind+"["+name+"]", m, out)
}

func (t *translator) open(path string, m proto.Message, out *obj) *scope {
	t.entered[path] = true
	return &scope{t: t, path: path, m: m.ProtoReflect(), out: out, seen: map[string]bool{}}
}

// at is the path of field f of the scope's message.
func (s *scope) at(f string) string {
	if s.path == "" {
		return f
	}
	return s.path + "." + f
}

// has reports whether field f is set.
func (s *scope) has(f string) bool {
	fd := s.m.Descriptor().Fields().ByName(protoreflect.Name(f))
	return fd != nil && s.m.Has(fd)
}

// carry records fields as carried whole.
func (s *scope) carry(fields ...string) {
	for _, f := range fields {
		s.seen[f] = true
		if s.has(f) {
			s.t.carried[s.at(f)] = true
		}
	}
}

// sub opens the scope of the message in field f, whose notes go in out
// (the scope's own out when nil).
func (s *scope) sub(f string, m proto.Message, out *obj) *scope {
	s.seen[f] = true
	if out == nil {
		out = s.out
	}
	return s.t.open(s.at(f), m, out)
}

// elem opens the scope of element i of the repeated field f: named by its
// name field when it has one, by index otherwise.
func (s *scope) elem(f string, i int, m proto.Message, out *obj) *scope {
	s.seen[f] = true
	if out == nil {
		out = s.out
	}
	return s.t.open(s.at(f)+"["+ElemKey(m.ProtoReflect(), i)+"]", m, out)
}

// ElemKey is how a path names element i of a list: by its name, when the
// message has a non-empty name field, or by its index.
func ElemKey(m protoreflect.Message, i int) string {
	if fd := m.Descriptor().Fields().ByName("name"); fd != nil && fd.Kind() == protoreflect.StringKind && fd.Cardinality() != protoreflect.Repeated {
		if n := m.Get(fd).String(); n != "" {
			return n
		}
	}
	return strconv.Itoa(i)
}

// skip records field f as not carried, safely: what the proxy does with
// traffic stays the same in kind. No-op when f is unset.
func (s *scope) skip(f, why string) {
	s.seen[f] = true
	if s.has(f) {
		s.t.skip(s.at(f), s.rel(f), why, s.out)
	}
}

// unsafe records field f as one whose loss changes what happens to
// traffic: an error, unless Options.SkipUnsupported. No-op when f is
// unset.
func (s *scope) unsafe(f, why string) {
	s.seen[f] = true
	if s.has(f) {
		s.t.unsafe(s.at(f), s.rel(f), why, s.out)
	}
}

// fail records an error at field f that no option lets through.
func (s *scope) fail(f, format string, args ...any) {
	s.seen[f] = true
	s.t.errs = append(s.t.errs, fmt.Errorf("%s: %s", s.at(f), fmt.Sprintf(format, args...)))
}

// skipAll records the whole message as not carried.
func (s *scope) skipAll(why string) {
	s.t.skip(s.path, s.path, why, s.out)
	s.m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		s.seen[string(fd.Name())] = true
		return true
	})
}

// unsafeAll records the whole message as one whose loss changes traffic.
func (s *scope) unsafeAll(why string) {
	s.t.unsafe(s.path, s.path, why, s.out)
	s.m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		s.seen[string(fd.Name())] = true
		return true
	})
}

// rel is field f's path for a note: from the last list element of the
// path on ("http_filters[envoy.filters.http.grpc_stats].typed_config"),
// enough to find it near where the note sits.
func (s *scope) rel(f string) string {
	p := s.at(f)
	i := strings.LastIndex(p, "[")
	if i < 0 {
		return p
	}
	if j := strings.LastIndex(p[:i], "."); j >= 0 {
		return p[j+1:]
	}
	return p
}

// done reports every set field of the scope's message that was not
// handled, with the reason the table of known fields gives, or a generic
// one; a field the table marks unsafe is unsafe.
func (s *scope) done() {
	var left []protoreflect.FieldDescriptor
	s.m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !s.seen[string(fd.Name())] {
			left = append(left, fd)
		}
		return true
	})
	sort.Slice(left, func(i, j int) bool { return left[i].Number() < left[j].Number() })
	msg := string(s.m.Descriptor().FullName())
	for _, fd := range left {
		f := string(fd.Name())
		r, ok := reasons[msg+"."+f]
		if !ok {
			r = reason{why: "Sightline has no such setting", unsafe: unsafeMessages[msg]}
		}
		if r.unsafe {
			s.unsafe(f, r.why)
		} else {
			s.skip(f, r.why)
		}
	}
}

func (t *translator) skip(path, rel, why string, out *obj) {
	t.skipped = append(t.skipped, Skipped{Path: path, Why: why})
	if out != nil {
		out.note(rel + ": " + why)
	}
}

func (t *translator) unsafe(path, rel, why string, out *obj) {
	if !t.opts.SkipUnsupported {
		t.errs = append(t.errs, fmt.Errorf("%s: %s (dropping it would change what the proxy does; --skip-unsupported drops it anyway)", path, why))
		return
	}
	t.skip(path, rel, UnsafePrefix+why, out)
}

// failf records an error about the field at path.
func (t *translator) failf(path, format string, args ...any) {
	t.errs = append(t.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}
