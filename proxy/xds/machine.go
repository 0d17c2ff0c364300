package xds

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/sightline-proxy/sightline/stats"
)

// Applier makes a complete set of resources the running config. Its
// error refuses the responses that brought the set: the control plane is
// sent it as the NACK's error_detail, so it should name the resource and
// field at fault ("clusters[backend].lb_policy: ..."), and the config
// that ran before keeps running. The client calls it from one goroutine
// at a time; it may block (a reload waits for first health checks).
type Applier interface {
	Apply(*Snapshot) error
}

// ApplierFunc is a function as an Applier.
type ApplierFunc func(*Snapshot) error

// Apply calls f.
func (f ApplierFunc) Apply(s *Snapshot) error { return f(s) }

// entry is one accepted resource.
type entry struct {
	msg  proto.Message
	any  *anypb.Any // as the control plane sent it, for /config_dump
	raw  []byte     // deterministic encoding, to tell a change
	ver  string     // version_info of the response that last changed it
	when time.Time  // when that response was accepted
}

// response is a decoded response not decided yet: it waits for the
// resources it names.
type response struct {
	version, nonce string
	entries        map[string]*entry
	sum            [sha256.Size]byte // see responseSum
}

// typeState is what the client knows of one kind of resource.
type typeState struct {
	// On the current stream.
	nonce     string   // of the last response received
	requested bool     // a request was sent
	names     []string // the names last asked for (not for wildcard kinds)
	// Across streams.
	version  string            // version_info last accepted
	accepted map[string]*entry // by name
	received bool              // a response was accepted once
	pending  *response
}

// machine is the client's state: what was accepted, what waits, what
// each kind is subscribed to. It decides every response (ACK or NACK) and
// says what to send; the stream is the client's. Its methods are called
// from one goroutine.
type machine struct {
	node    *corev3.Node
	want    [numKinds]bool // wildcard kinds asked for (dynamic.resources)
	apply   Applier
	send    func(*discoveryv3.DiscoveryRequest)
	now     func() time.Time
	stats   [numKinds]*stats.Subscription
	types   [numKinds]typeState
	applied bool // a set was accepted once
	// rejected holds the last refusal of each kind, for /config_dump.
	rejected [numKinds]*Rejection
	// repeat tells a response the control plane sends again after a NACK
	// (a control plane answers a NACK's old version with its current
	// one, the very response refused) from a new one, so that the proxy
	// does not refuse the same response in a tight loop: the NACK of a
	// repeat is held, longer each time, from repeatBase up to repeatMax.
	repeat     [numKinds]repeatState
	repeatBase time.Duration
	repeatMax  time.Duration
}

// repeatState is what the machine knows of a kind's last refusal.
type repeatState struct {
	sum    [sha256.Size]byte // of the refused response's version and resources
	detail string            // its error_detail
	n      int               // repeats since
	held   bool              // a NACK waits for heldUntil
	until  time.Time
}

// Rejection is a response refused, for /config_dump.
type Rejection struct {
	Version string
	Detail  string
	At      time.Time
}

func newMachine(node *corev3.Node, want [numKinds]bool, apply Applier, st *stats.XDS, now func() time.Time) *machine {
	m := &machine{node: node, want: want, apply: apply, now: now}
	m.stats = [numKinds]*stats.Subscription{clusters: st.CDS, endpoints: st.EDS, listeners: st.LDS, routes: st.RDS, secrets: st.SDS}
	for k := range m.types {
		m.types[k].accepted = map[string]*entry{}
	}
	return m
}

// streamStarted forgets what the last stream knew (nonces, requests) and
// asks for the wanted kinds, and for the names the accepted resources
// point at, with the versions accepted so far: a control plane that has
// nothing newer need send nothing.
func (m *machine) streamStarted() {
	for k := range m.types {
		t := &m.types[k]
		t.nonce, t.requested, t.names = "", false, nil
		t.pending = nil // its nonce was for the old stream
		m.repeat[k].held = false
	}
	for k := range numKinds {
		if kinds[k].wildcard && m.want[k] {
			m.request(k, "")
		}
	}
	m.subscribe(m.candidate())
}

// request sends a request for kind k on the current stream, carrying the
// version accepted and the nonce of the last response (so it ACKs it),
// with errDetail set when it refuses it instead.
func (m *machine) request(k kind, errDetail string) {
	t := &m.types[k]
	req := &discoveryv3.DiscoveryRequest{
		VersionInfo:   t.version,
		Node:          m.node,
		TypeUrl:       kinds[k].url,
		ResponseNonce: t.nonce,
	}
	if !kinds[k].wildcard {
		req.ResourceNames = t.names
	}
	if errDetail != "" {
		req.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: errDetail}
	}
	t.requested = true
	m.send(req)
}

// receive handles a response from the control plane.
func (m *machine) receive(resp *discoveryv3.DiscoveryResponse) {
	k, ok := kindOf(resp.GetTypeUrl())
	if !ok {
		// A type never asked for: nothing to ACK it with. Envoy ignores
		// them too.
		return
	}
	t := &m.types[k]
	t.nonce = resp.GetNonce()
	sum := responseSum(resp)
	if r := &m.repeat[k]; r.detail != "" && r.sum == sum {
		// The response just refused, again: refuse it again, later.
		r.n++
		r.held = true
		r.until = m.now().Add(min(m.repeatBase<<min(r.n-1, 30), m.repeatMax))
		t.pending = nil
		return
	}
	m.repeat[k] = repeatState{}
	m.stats[k].UpdateAttempt.Inc(1)
	entries, err := decode(k, resp.GetResources())
	if err != nil {
		m.reject(k, resp.GetVersionInfo(), err.Error())
		m.repeat[k].sum = sum
		m.subscribe(m.candidate())
		return
	}
	// A newer response of a kind replaces one still waiting: only the
	// latest nonce is answered.
	t.pending = &response{version: resp.GetVersionInfo(), nonce: resp.GetNonce(), entries: entries, sum: sum}
	m.decide(false)
}

// responseSum identifies a response by its version and resources, in
// any order: control planes list a kind's resources in no set order
// (go-control-plane builds each response from a map), and a repeat
// listed otherwise must still be known as a repeat.
func responseSum(resp *discoveryv3.DiscoveryResponse) [sha256.Size]byte {
	res := resp.GetResources()
	each := make([][sha256.Size]byte, len(res))
	for i, a := range res {
		h := sha256.New()
		h.Write([]byte(a.GetTypeUrl()))
		h.Write([]byte{0})
		h.Write(a.GetValue())
		h.Sum(each[i][:0])
	}
	slices.SortFunc(each, func(a, b [sha256.Size]byte) int { return bytes.Compare(a[:], b[:]) })
	h := sha256.New()
	h.Write([]byte(resp.GetVersionInfo()))
	for i := range each {
		h.Write(each[i][:])
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// heldUntil is when the earliest held NACK is due; zero when none is.
func (m *machine) heldUntil() time.Time {
	var at time.Time
	for k := range m.repeat {
		if r := &m.repeat[k]; r.held && (at.IsZero() || r.until.Before(at)) {
			at = r.until
		}
	}
	return at
}

// sendHeld sends the held NACKs that are due at now.
func (m *machine) sendHeld(now time.Time) {
	for k := range numKinds {
		if r := &m.repeat[k]; r.held && !r.until.After(now) {
			r.held = false
			m.request(k, r.detail)
		}
	}
}

// decode unpacks the resources of a response of kind k, by name; a
// resource that is not of the kind, does not decode, has no name or has
// the name of another refuses the response.
func decode(k kind, res []*anypb.Any) (map[string]*entry, error) {
	out := make(map[string]*entry, len(res))
	for i, a := range res {
		if a.GetTypeUrl() == resourceWrapper {
			var w discoveryv3.Resource
			if err := a.UnmarshalTo(&w); err != nil {
				return nil, fmt.Errorf("resources[%d]: %w", i, err)
			}
			a = w.GetResource()
		}
		if a.GetTypeUrl() != kinds[k].url {
			return nil, fmt.Errorf("resources[%d]: type %s in a response of type %s", i, a.GetTypeUrl(), kinds[k].url)
		}
		msg := kinds[k].newMsg()
		if err := a.UnmarshalTo(msg); err != nil {
			return nil, fmt.Errorf("resources[%d]: %w", i, err)
		}
		name := kinds[k].name(msg)
		if name == "" {
			return nil, fmt.Errorf("resources[%d]: has no name", i)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("resources[%d]: %q is in the response twice", i, name)
		}
		raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
		if err != nil {
			return nil, fmt.Errorf("resources[%d] %q: %w", i, name, err)
		}
		out[name] = &entry{msg: msg, any: a, raw: raw}
	}
	return out, nil
}

// candidate is what would run if every waiting response were accepted:
// the accepted resources with the waiting ones over them (a wildcard
// response replaces its kind; a response by name adds to it), each named
// kind kept to the names the wildcard ones point at.
func (m *machine) candidate() [numKinds]map[string]*entry {
	var c [numKinds]map[string]*entry
	for k := range numKinds {
		t := &m.types[k]
		switch {
		case t.pending != nil && kinds[k].wildcard:
			c[k] = t.pending.entries
		case t.pending != nil:
			c[k] = maps.Clone(t.accepted)
			maps.Copy(c[k], t.pending.entries)
		default:
			c[k] = t.accepted
		}
	}
	r := refsOf(c)
	for k := range numKinds {
		if kinds[k].wildcard {
			continue
		}
		kept := make(map[string]*entry, len(r[k]))
		for _, name := range r[k] {
			if e, ok := c[k][name]; ok {
				kept[name] = e
			}
		}
		c[k] = kept
	}
	return c
}

// refsOf is what the clusters and listeners of c point at.
func refsOf(c [numKinds]map[string]*entry) refs {
	var r refs
	for _, e := range c[clusters] {
		r.clusterRefs(e.msg.(*clusterv3.Cluster))
	}
	for _, e := range c[listeners] {
		r.listenerRefs(e.msg.(*listenerv3.Listener))
	}
	r.sorted()
	return r
}

// subscribe asks for the names c points at, for each kind whose names
// changed.
func (m *machine) subscribe(c [numKinds]map[string]*entry) {
	r := refsOf(c)
	for k := range numKinds {
		t := &m.types[k]
		if kinds[k].wildcard || slices.Equal(t.names, r[k]) && (t.requested || len(r[k]) == 0) {
			continue
		}
		t.names = r[k]
		m.request(k, "")
	}
}

// missing lists what c lacks to be complete: a wanted wildcard kind that
// never came, or a name the clusters and listeners point at that the
// control plane has not sent ("eds backend").
func (m *machine) missing(c [numKinds]map[string]*entry) []string {
	var out []string
	for k := range numKinds {
		if kinds[k].wildcard && m.want[k] && !m.types[k].received && m.types[k].pending == nil {
			out = append(out, kinds[k].short)
		}
	}
	r := refsOf(c)
	for k := range numKinds {
		for _, name := range r[k] {
			if _, ok := c[k][name]; !ok {
				out = append(out, kinds[k].short+" "+name)
			}
		}
	}
	return out
}

// waiting reports whether responses wait for resources they name.
func (m *machine) waiting() bool {
	for k := range m.types {
		if m.types[k].pending != nil {
			return true
		}
	}
	return false
}

// decide applies the waiting responses when the set they make is
// complete, or when force says not to wait any longer (the control plane
// was given its time), and ACKs or NACKs each of them.
func (m *machine) decide(force bool) {
	c := m.candidate()
	m.subscribe(c)
	if !m.waiting() || !force && len(m.missing(c)) > 0 {
		return
	}
	snap := snapshotOf(c)
	if err := m.apply.Apply(snap); err != nil {
		detail := err.Error()
		if miss := m.missing(c); len(miss) > 0 {
			detail += " (still waiting for " + strings.Join(miss, ", ") + ")"
		}
		for k := range numKinds {
			if p := m.types[k].pending; p != nil {
				m.types[k].pending = nil
				m.reject(k, p.version, detail)
				m.repeat[k].sum = p.sum
			}
		}
		m.subscribe(m.candidate())
		return
	}
	now := m.now()
	changed := false
	var acked []kind
	for k := range numKinds {
		t := &m.types[k]
		p := t.pending
		ver := t.version
		if p != nil {
			ver = p.version
		}
		next := make(map[string]*entry, len(c[k]))
		for name, e := range c[k] {
			if old, ok := t.accepted[name]; ok && string(old.raw) == string(e.raw) {
				next[name] = old
				continue
			}
			e.ver, e.when = ver, now
			next[name] = e
			changed = true
		}
		if len(next) != len(t.accepted) {
			changed = true
		}
		t.accepted = next
		if p == nil {
			continue
		}
		t.pending, t.version, t.received = nil, p.version, true
		m.rejected[k] = nil
		m.repeat[k] = repeatState{}
		st := m.stats[k]
		st.UpdateSuccess.Inc(1)
		st.UpdateTime.Set(now.UnixMilli())
		st.Version.Set(versionHash(p.version))
		m.request(k, "")
		acked = append(acked, k)
	}
	// config_reload: the responses whose acceptance changed what runs.
	for _, k := range acked {
		if changed {
			m.stats[k].ConfigReload.Inc(1)
		}
	}
	m.applied = true
}

// reject NACKs the response of kind k with version, keeping what was
// accepted.
func (m *machine) reject(k kind, version, detail string) {
	m.repeat[k] = repeatState{detail: detail}
	m.stats[k].UpdateRejected.Inc(1)
	m.rejected[k] = &Rejection{Version: version, Detail: detail, At: m.now()}
	m.request(k, detail)
}

// versionHash is a version_info as a gauge value: a hash, as Envoy's
// version stat is.
func versionHash(v string) int64 {
	h := fnv.New64a()
	h.Write([]byte(v))
	return int64(h.Sum64() & math.MaxInt64)
}

// snapshotOf lists c's resources, each kind sorted by name.
func snapshotOf(c [numKinds]map[string]*entry) *Snapshot {
	var s Snapshot
	for _, name := range slices.Sorted(maps.Keys(c[clusters])) {
		s.Clusters = append(s.Clusters, c[clusters][name].msg.(*clusterv3.Cluster))
	}
	for _, name := range slices.Sorted(maps.Keys(c[endpoints])) {
		s.Endpoints = append(s.Endpoints, c[endpoints][name].msg.(*endpointv3.ClusterLoadAssignment))
	}
	for _, name := range slices.Sorted(maps.Keys(c[listeners])) {
		s.Listeners = append(s.Listeners, c[listeners][name].msg.(*listenerv3.Listener))
	}
	for _, name := range slices.Sorted(maps.Keys(c[routes])) {
		s.Routes = append(s.Routes, c[routes][name].msg.(*routev3.RouteConfiguration))
	}
	for _, name := range slices.Sorted(maps.Keys(c[secrets])) {
		s.Secrets = append(s.Secrets, c[secrets][name].msg.(*tlsv3.Secret))
	}
	return &s
}
