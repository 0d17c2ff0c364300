// Package controlplane is a small xDS control plane: it serves the Envoy
// resources written in a directory of YAML (or JSON) files to every proxy
// that connects, over the aggregated discovery service, and serves them
// anew when the files change. It is go-control-plane's snapshot cache and
// server; sightline-controlplane runs it, and the end-to-end tests run it
// in process.
//
// Each file is shaped as an Envoy DiscoveryResponse, as Envoy's own
// file-based subscriptions read it: a resources list whose entries name
// their type in "@type" (type.googleapis.com/envoy.config.cluster.v3.Cluster,
// ...v3.ClusterLoadAssignment, ...listener.v3.Listener,
// ...route.v3.RouteConfiguration, ...tls.v3.Secret); a version_info in
// it is ignored. The files are merged, in name order, into one snapshot
// for every proxy. A subdirectory named after a proxy's node id holds
// resources for that proxy alone, added to the shared ones (its own
// listener, in a fleet of proxies on one machine); one added while the
// proxy is connected applies when it connects again. Each kind gets as
// its version a hash of its resources, so that a change to endpoints
// alone sends endpoints alone.
package controlplane

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v4"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/log"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"

	// The resource types and the extensions they commonly name in
	// typed_config, so that the files can be read.
	_ "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"github.com/sightline-proxy/sightline/internal/yamljson"
	"github.com/sightline-proxy/sightline/proxy/config/watch"
)

// kinds are the resource types served, in the order a proxy needs them.
var kinds = []string{
	resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType, resourcev3.SecretType,
}

// Nack is a response a proxy refused.
type Nack struct {
	Node    string // the proxy's node id
	TypeURL string
	Version string // the version the proxy still runs
	Detail  string // its error_detail
}

// Options configure a Server.
type Options struct {
	// Dir holds the resource files.
	Dir string
	Log zerolog.Logger
	// OnNack, when set, is called with each response a proxy refuses, on
	// the stream's goroutine; the Server logs them whether or not.
	OnNack func(Nack)
}

// Server serves a directory's resources. New loads them; Serve serves
// them on a listener; Watch reloads them when the directory changes.
type Server struct {
	opts  Options
	log   zerolog.Logger
	cache cachev3.SnapshotCache

	mu sync.Mutex // one Reload at a time; guards versions and files
	// versions holds the version served of each type URL, by snapshot
	// key: "" for the shared snapshot, or a node id.
	versions map[string]map[string]string
	files    []string // the files and directories read, for Watch
	w        *watch.Watcher

	// nodes holds the node ids that have a directory of their own; the
	// cache's NodeHash reads it.
	nodesMu sync.RWMutex
	nodes   map[string]bool
}

// sharedKey is the snapshot key of the proxies with no directory of their
// own.
const sharedKey = ""

// nodeHash gives a proxy its own snapshot when it has a directory, the
// shared one otherwise.
type nodeHash struct{ s *Server }

func (h nodeHash) ID(n *corev3.Node) string {
	h.s.nodesMu.RLock()
	defer h.s.nodesMu.RUnlock()
	if h.s.nodes[n.GetId()] {
		return n.GetId()
	}
	return sharedKey
}

// New loads the resources of opts.Dir; an error says which file and
// resource is wrong.
func New(opts Options) (*Server, error) {
	s := &Server{opts: opts, log: opts.Log.With().Str("component", "controlplane").Logger()}
	s.cache = cachev3.NewSnapshotCache(true, nodeHash{s}, cacheLog{s.log})
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the directory again and serves what it holds, when it
// differs from what is served; it reports whether it did. On error what
// is served stays.
func (s *Server) Reload() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	shared, files, err := loadDir(s.opts.Dir)
	if err != nil {
		return false, err
	}
	files = append(files, s.opts.Dir)
	sets := map[string]map[string][]types.Resource{sharedKey: shared}
	ents, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return false, fmt.Errorf("reading the resources: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		dir := filepath.Join(s.opts.Dir, e.Name())
		own, more, err := loadDir(dir)
		if err != nil {
			return false, err
		}
		files = append(append(files, more...), dir)
		set := map[string][]types.Resource{}
		for _, typ := range kinds {
			set[typ] = append(slices.Clip(shared[typ]), own[typ]...)
		}
		if err := unique(set); err != nil {
			return false, fmt.Errorf("%s: %w", dir, err)
		}
		sets[e.Name()] = set
	}
	s.files = files
	if s.w != nil {
		s.w.SetFiles(files, nil)
	}

	changed := false
	versions := map[string]map[string]string{}
	for key, set := range sets {
		snap := &cachev3.Snapshot{}
		vs := map[string]string{}
		for _, typ := range kinds {
			vs[typ] = versionOf(set[typ])
			snap.Resources[cachev3.GetResponseType(typ)] = cachev3.NewResources(vs[typ], set[typ])
		}
		versions[key] = vs
		if maps.Equal(s.versions[key], vs) {
			continue
		}
		// No consistency check: a route configuration no listener names
		// is fine here (each node's listener is in its own directory);
		// one a listener names but nobody wrote makes the proxy wait for
		// it, then refuse the set saying what is missing, which the log
		// shows as a NACK.
		if err := s.cache.SetSnapshot(context.Background(), key, snap); err != nil {
			return false, fmt.Errorf("serving the snapshot: %w", err)
		}
		changed = true
		s.log.Info().Str("node", key).Interface("versions", shortVersions(vs)).Msg("serving resources")
	}
	nodes := map[string]bool{}
	for key := range sets {
		if key != sharedKey {
			nodes[key] = true
		}
	}
	for key := range s.versions {
		if _, ok := sets[key]; !ok {
			s.cache.ClearSnapshot(key)
			changed = true
		}
	}
	s.nodesMu.Lock()
	s.nodes = nodes
	s.nodesMu.Unlock()
	s.versions = versions
	return changed, nil
}

// Versions returns the version served of each type URL to the proxy with
// node id node (the shared snapshot when it has no directory).
func (s *Server) Versions(node string) map[string]string {
	key := nodeHash{s}.ID(&corev3.Node{Id: node})
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.versions[key])
}

// shortVersions names the types by their last part, for the log.
func shortVersions(v map[string]string) map[string]string {
	out := make(map[string]string, len(v))
	for typ, ver := range v {
		out[typ[strings.LastIndexByte(typ, '.')+1:]] = ver
	}
	return out
}

// versionOf is a hash of resources: equal for equal resources, whatever
// process computes it.
func versionOf(items []types.Resource) string {
	h := sha256.New()
	for _, r := range items {
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(r)
		h.Write(b)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:6])
}

// Serve serves the aggregated discovery service on ln until ctx ends or
// the listener fails; it closes every stream when it returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	cb := serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
			if e := r.GetErrorDetail(); e != nil {
				n := Nack{Node: r.GetNode().GetId(), TypeURL: r.GetTypeUrl(), Version: r.GetVersionInfo(), Detail: e.GetMessage()}
				s.log.Warn().Str("node", n.Node).Str("type", n.TypeURL).Str("running_version", n.Version).Str("error_detail", n.Detail).
					Msg("a proxy refused the resources")
				if s.opts.OnNack != nil {
					s.opts.OnNack(n)
				}
			}
			return nil
		},
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	xds := serverv3.NewServer(sctx, s.cache, cb)
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, xds)
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-sctx.Done()
		g.Stop()
	}()
	s.log.Info().Str("address", ln.Addr().String()).Msg("control plane listening")
	err := g.Serve(ln)
	cancel()
	<-done
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Watch reloads the directory whenever its files change, until ctx ends.
func (s *Server) Watch(ctx context.Context) error {
	s.mu.Lock()
	files := slices.Clone(s.files)
	s.mu.Unlock()
	w, err := watch.New(files, func() {
		if _, err := s.Reload(); err != nil {
			s.log.Error().Err(err).Msg("resources not reloaded; the last ones keep being served")
		}
	}, watch.Options{Log: s.log})
	if err != nil {
		return fmt.Errorf("watching %s: %w", s.opts.Dir, err)
	}
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	s.w = nil
	s.mu.Unlock()
	w.Close()
	return nil
}

// loadDir reads the resource files of dir (*.yaml, *.yml, *.json, in
// name order, not in subdirectories) and returns their resources by type
// URL, and the files read. A resource named twice is an error.
func loadDir(dir string) (map[string][]types.Resource, []string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the resources: %w", err)
	}
	out := map[string][]types.Resource{}
	var files []string
	for _, e := range ents {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || !slices.Contains([]string{".yaml", ".yml", ".json"}, ext) || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		files = append(files, path)
		res, err := LoadFile(path)
		if err != nil {
			return nil, nil, err
		}
		for _, r := range res {
			url := typeURL(r)
			out[url] = append(out[url], r)
		}
	}
	if err := unique(out); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	return out, files, nil
}

// unique checks that no two resources of a kind share a name.
func unique(set map[string][]types.Resource) error {
	for typ, items := range set {
		seen := map[string]bool{}
		for _, r := range items {
			name := cachev3.GetResourceName(r)
			if seen[name] {
				return fmt.Errorf("%s %q is defined twice", typ[strings.LastIndexByte(typ, '.')+1:], name)
			}
			seen[name] = true
		}
	}
	return nil
}

// LoadFile reads one resource file.
func LoadFile(path string) ([]types.Resource, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the resources: %w", err)
	}
	return parse(path, data)
}

// parse reads the resources of a file's data; path names it in errors.
func parse(path string, data []byte) ([]types.Resource, error) {
	var doc struct {
		Resources []any `yaml:"resources"`
	}
	if err := yaml.Load(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := make([]types.Resource, 0, len(doc.Resources))
	for i, r := range doc.Resources {
		js, err := yamljson.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("%s: resources[%d]: %w", path, i, err)
		}
		var a anypb.Any
		if err := protojson.Unmarshal(js, &a); err != nil {
			return nil, fmt.Errorf("%s: resources[%d]: %w", path, i, err)
		}
		if !slices.Contains(kinds, a.GetTypeUrl()) {
			return nil, fmt.Errorf("%s: resources[%d]: @type %q is not one of %s", path, i, a.GetTypeUrl(), strings.Join(kinds, ", "))
		}
		m, err := a.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("%s: resources[%d]: %w", path, i, err)
		}
		if cachev3.GetResourceName(m) == "" {
			return nil, fmt.Errorf("%s: resources[%d]: a %s needs a name", path, i, a.GetTypeUrl())
		}
		out = append(out, m)
	}
	return out, nil
}

// typeURL is the type URL of a resource.
func typeURL(r types.Resource) string {
	return "type.googleapis.com/" + string(r.ProtoReflect().Descriptor().FullName())
}

// cacheLog sends go-control-plane's log to zerolog, its chatter at debug.
type cacheLog struct{ l zerolog.Logger }

func (c cacheLog) Debugf(f string, a ...any) { c.l.Debug().Msgf(f, a...) }
func (c cacheLog) Infof(f string, a ...any)  { c.l.Debug().Msgf(f, a...) }
func (c cacheLog) Warnf(f string, a ...any)  { c.l.Warn().Msgf(f, a...) }
func (c cacheLog) Errorf(f string, a ...any) { c.l.Error().Msgf(f, a...) }

var _ log.Logger = cacheLog{}
