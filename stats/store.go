package stats

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uber-go/tally/v4"

	"github.com/sightline-proxy/sightline/internal/tick"
	"github.com/sightline-proxy/sightline/proxy/config"
)

// DefaultMaxGRPCMethods is how many gRPC methods a cluster gets stats of
// before further methods count under grpc.other.other: enough for every
// method of every service a real backend serves, few enough that a client
// inventing method names cannot grow memory without bound.
const DefaultMaxGRPCMethods = 1000

// DefaultCompactAfter is how long a family of a cluster's stats stays
// unchanged before the Store compacts it, when stats.compact_after is not
// set.
const DefaultCompactAfter = 5 * time.Second

// Options are the Store's settings that are not in config.Stats.
type Options struct {
	// Sinks get every flush: the Prometheus exposition and the push sinks
	// (see package sinks, which builds them from config).
	Sinks []Sink
	// MaxGRPCMethods caps per-method gRPC stats per cluster; 0 means
	// DefaultMaxGRPCMethods.
	MaxGRPCMethods int
}

// Store holds every stat of the process and flushes them to the sinks.
// Build one per process and keep it across config reloads: handles asked
// for again with the same names (Cluster, HTTP, Listener, AccessLog) are the
// same handles, so counters keep counting. Handles of clusters or listeners
// a reload removed stay (and keep their last values) until the process
// exits; re-adding the name picks them up again. Changes under stats: in a
// reloaded config (include, exclude, sinks, flush_interval) take effect at
// the next start.
type Store struct {
	interval   time.Duration
	fromZone   string
	include    []*regexp.Regexp
	exclude    []*regexp.Regexp
	maxMethods int
	sinks      []Sink
	// push are the sinks that are Reporters, in the order of every stat's
	// out handles; releasers holds, for each, its Releaser or nil.
	push      []Reporter
	releasers []Releaser
	exemplars bool // a sink keeps exemplars
	// compactAfter is stats.compact_after; 0: never compact. retireGrace
	// is retireGrace but in tests.
	compactAfter time.Duration
	retireGrace  time.Duration
	started      time.Time
	server       *Server
	overload     *Overload
	overflow     *Counter

	// mu serializes creating stats and guards the registry and the maps,
	// and the hot, cold and retired families of every cluster.
	mu         sync.Mutex
	counters   []*Counter
	gauges     []*Gauge
	histograms []*Histogram
	clusters   map[string]*Cluster
	// clusterList holds every cluster in the order made; appended to only.
	clusterList []*Cluster
	https       map[string]*HTTP
	listeners   map[string]*Listener
	accessLogs  map[string]*AccessLog
	sinkStats   map[string]*SinkStats
	localRL     map[string]*LocalRateLimit

	// flushMu makes flushes one at a time and guards what only a flush
	// touches.
	flushMu     sync.Mutex
	runtime     runtimeSampler
	sinksClosed bool
	flushes     uint64 // flushes done
	scratch     []byte // a section being compacted (compact.go)

	// life guards running, closed and err.
	life    sync.Mutex
	running bool
	closed  bool
	err     error
	stop    chan struct{}
	done    chan struct{}
}

// New builds a Store from the stats config (defaults applied, as
// config.Load leaves it) and this proxy's node. It does no I/O and starts
// nothing: see Start.
func New(cfg config.Stats, node config.Node, opts Options) (*Store, error) {
	if cfg.FlushInterval <= 0 {
		return nil, fmt.Errorf("stats.flush_interval: must be positive, got %s", cfg.FlushInterval.D())
	}
	include, err := compileAll("stats.include", cfg.Include)
	if err != nil {
		return nil, err
	}
	exclude, err := compileAll("stats.exclude", cfg.Exclude)
	if err != nil {
		return nil, err
	}
	compact := DefaultCompactAfter
	if cfg.CompactAfter != nil {
		compact = cfg.CompactAfter.D()
	}
	s := &Store{
		interval:   cfg.FlushInterval.D(),
		fromZone:   node.Zone,
		include:    include,
		exclude:    exclude,
		maxMethods: orDefault(opts.MaxGRPCMethods, DefaultMaxGRPCMethods),
		sinks:      slices.Clone(opts.Sinks),
		started:    time.Now(),
		clusters:   map[string]*Cluster{},
		https:      map[string]*HTTP{},
		localRL:    map[string]*LocalRateLimit{},
		listeners:  map[string]*Listener{},
		accessLogs: map[string]*AccessLog{},
		sinkStats:  map[string]*SinkStats{},
		runtime:    newRuntimeSampler(),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	s.compactAfter, s.retireGrace = max(compact, 0), retireGrace
	for _, sk := range s.sinks {
		if r, ok := sk.(Reporter); ok {
			rl, _ := sk.(Releaser)
			s.push = append(s.push, r)
			s.releasers = append(s.releasers, rl)
		}
		if k, ok := sk.(ExemplarKeeper); ok && k.KeepsExemplars() {
			s.exemplars = true
		}
	}
	s.mu.Lock()
	root := scope{s: s, labels: &labels{}}
	s.server = root.newServer()
	s.overload = root.newOverload()
	s.overflow = root.counter(statsOverflow)
	s.mu.Unlock()
	for _, sk := range s.sinks {
		if b, ok := sk.(statsBinder); ok {
			b.BindStats(s)
		}
	}
	return s, nil
}

// statsBinder is a sink that reads the Store (a pull sink), or counts its
// own failures in it: the Store hands itself over once built.
type statsBinder interface {
	BindStats(*Store)
}

func compileAll(field string, exprs []string) ([]*regexp.Regexp, error) {
	res := make([]*regexp.Regexp, 0, len(exprs))
	for i, e := range exprs {
		re, err := regexp.Compile(e)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		res = append(res, re)
	}
	return res, nil
}

func orDefault(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// allowed applies stats.exclude and stats.include to a flat name. An empty
// include list is no include filter.
func (s *Store) allowed(flat string) bool {
	for _, re := range s.exclude {
		if re.MatchString(flat) {
			return false
		}
	}
	if len(s.include) == 0 {
		return true
	}
	for _, re := range s.include {
		if re.MatchString(flat) {
			return true
		}
	}
	return false
}

// Start runs the flush loop: every flush_interval one Flush, until ctx is
// done or Close is called. It returns at once; calling it again, or after
// Close, does nothing.
func (s *Store) Start(ctx context.Context) {
	s.life.Lock()
	defer s.life.Unlock()
	if s.running || s.closed {
		return
	}
	s.running = true
	go func() {
		defer close(s.done)
		t := tick.NewTicker(s.interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.stop:
				return
			case <-t.C:
				s.Flush()
			}
		}
	}()
}

// Close stops the flush loop, flushes once more so the last interval
// reaches the sinks, and closes the sinks, which get until ctx is done to
// deliver it. It is safe to call more than once and without Start; later
// calls return the first call's error.
func (s *Store) Close(ctx context.Context) error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return s.err
	}
	s.closed = true
	close(s.stop)
	if s.running {
		<-s.done
	}
	s.flushMu.Lock()
	s.flush()
	s.sinksClosed = true
	s.flushMu.Unlock()

	var errs []error
	for _, k := range s.sinks {
		if c, ok := k.(closer); ok {
			errs = append(errs, c.Close(ctx))
		}
	}
	s.err = errors.Join(errs...)
	return s.err
}

// Flush reads every stat once and hands what changed to every sink, then
// flushes the sinks: all sinks see the same values at the same flush. The
// flush loop calls it; tests call it to get a flush now. Flushes run one at
// a time; after Close, Flush does nothing.
func (s *Store) Flush() {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	if !s.sinksClosed {
		s.flush()
	}
}

// flush is Flush with flushMu held.
func (s *Store) flush() {
	s.flushes++
	now := time.Now()
	s.runtime.sample(s.server, s.started)
	counters, gauges, histograms := s.instruments()
	for _, c := range counters {
		c.flush()
	}
	for _, g := range gauges {
		g.flush()
	}
	for _, h := range histograms {
		h.flush()
	}
	for _, c := range s.clusterSnapshot() {
		s.flushCluster(c, now)
	}
	for _, k := range s.sinks {
		k.Flush()
	}
}

// instruments returns every stat created outside a compactable family so
// far. Creating appends only, so the slices stay valid after the lock is
// released.
func (s *Store) instruments() ([]*Counter, []*Gauge, []*Histogram) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counters, s.gauges, s.histograms
}

// clusterSnapshot returns every cluster made so far.
func (s *Store) clusterSnapshot() []*Cluster {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clusterList
}

// Server returns the process-wide stats.
func (s *Store) Server() *Server { return s.server }

// Overload returns the overload manager's stats.
func (s *Store) Overload() *Overload { return s.overload }

// Cluster returns the stats of the named cluster. Call it when the cluster
// is built, not per request: it takes the Store's lock. Its stats are
// created family by family on first use, and families left unchanged for
// stats.compact_after are compacted (compact.go), so an idle cluster costs
// a few hundred bytes.
func (s *Store) Cluster(name string) *Cluster {
	return getOrCreate(s, s.clusters, name, func() *Cluster {
		c := &Cluster{sc: scope{s: s, labels: clusterLabels(name)}}
		s.clusterList = append(s.clusterList, c)
		return c
	})
}

// HTTP returns the stats of the HTTP connection manager with this
// stat_prefix. Call it when the listener is built.
func (s *Store) HTTP(statPrefix string) *HTTP {
	return getOrCreate(s, s.https, statPrefix, func() *HTTP {
		return scope{s: s, labels: (&labels{}).with(TagHTTPPrefix, statPrefix)}.newHTTP()
	})
}

// LocalRateLimit returns the stats of the local rate limits with this
// stat_prefix. Call it when the config is built.
func (s *Store) LocalRateLimit(statPrefix string) *LocalRateLimit {
	return getOrCreate(s, s.localRL, statPrefix, func() *LocalRateLimit {
		sc := scope{s: s, labels: (&labels{}).with(TagLocalRateLimit, statPrefix)}
		return &LocalRateLimit{
			Enabled:     sc.counter(localRateLimitEnabled),
			OK:          sc.counter(localRateLimitOK),
			RateLimited: sc.counter(localRateLimitLimited),
			Enforced:    sc.counter(localRateLimitEnforced),
		}
	})
}

// Listener returns the stats of the listener bound to address, as written
// in the config. Call it when the listener is built.
func (s *Store) Listener(address string) *Listener {
	return getOrCreate(s, s.listeners, address, func() *Listener {
		return scope{s: s, labels: (&labels{}).with(TagListener, address)}.newListener()
	})
}

// AccessLog returns the stats of the named access log. The name is the
// caller's choice, stable across reloads (the listener's name and the log's
// index, say); it may hold dots.
func (s *Store) AccessLog(name string) *AccessLog {
	return getOrCreate(s, s.accessLogs, name, func() *AccessLog {
		sc := scope{s: s, labels: (&labels{}).with(TagAccessLog, name)}
		return &AccessLog{Written: sc.counter(accessLogWritten), Dropped: sc.counter(accessLogDropped), Flushes: sc.counter(accessLogFlushes)}
	})
}

// SinkStats returns the stats of the push sink named name (sink.<name>.*).
func (s *Store) SinkStats(name string) *SinkStats {
	return getOrCreate(s, s.sinkStats, name, func() *SinkStats {
		sc := scope{s: s, labels: (&labels{}).with(TagSink, name)}
		return &SinkStats{BatchesDropped: sc.counter(sinkBatchesDropped), Reconnects: sc.counter(sinkReconnects)}
	})
}

func getOrCreate[V any](s *Store, m map[string]*V, key string, build func() *V) *V {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := m[key]; ok {
		return v
	}
	v := build()
	m[key] = v
	return v
}

// labels are the tag values a group of stats share, keys in pattern order.
// They are immutable and shared by every stat of the group.
type labels struct {
	keys   []string
	values []string
}

func (l *labels) with(key, value string) *labels {
	return &labels{
		keys:   append(slices.Clip(l.keys), key),
		values: append(slices.Clip(l.values), value),
	}
}

// clusterKeys are the tag keys of a cluster's own stats, shared by every
// cluster.
var clusterKeys = []string{TagCluster}

func clusterLabels(name string) *labels {
	return &labels{keys: clusterKeys, values: []string{name}}
}

// scope creates stats under one set of labels: into a compactable family
// (g) or the Store's own registry. Its methods run with the Store's lock
// held.
type scope struct {
	s      *Store
	labels *labels
	g      *group // nil: the Store's registry
}

func (sc scope) with(key, value string) scope {
	return scope{s: sc.s, labels: sc.labels.with(key, value), g: sc.g}
}

// in returns sc creating into g.
func (sc scope) in(g *group) scope {
	sc.g = g
	return sc
}

// admit decides whether the stat d with sc's labels exists, and returns the
// tags its push sinks are given. It panics when the labels are not d's tag
// keys: that is a mistake in this package, which the tests exercise.
func (sc scope) admit(d *Def) (map[string]string, bool) {
	if !slices.Equal(sc.labels.keys, d.tags) {
		panic(fmt.Sprintf("stats: %s created with tags %v", d.flat, sc.labels.keys))
	}
	if (len(sc.s.exclude) != 0 || len(sc.s.include) != 0) && !sc.s.allowed(d.FlatName(sc.labels.values)) {
		return nil, false
	}
	if len(sc.s.push) == 0 {
		return nil, true
	}
	// Made for each stat and dropped: no sink keeps the map (each turns
	// it into its own label values).
	return sc.labels.tags(), true
}

// tags returns the labels as a tally tag map.
func (l *labels) tags() map[string]string {
	tags := make(map[string]string, len(l.keys))
	for i, k := range l.keys {
		tags[k] = l.values[i]
	}
	return tags
}

func (sc scope) counter(d *Def) *Counter {
	tags, ok := sc.admit(d)
	if !ok {
		return nil
	}
	c := &Counter{def: d, labels: sc.labels}
	c.allocate(sc.s.push, tags)
	if sc.g != nil {
		sc.g.addCounter(c)
	} else {
		sc.s.counters = append(sc.s.counters, c)
	}
	return c
}

// allocate gives c its handle in every push sink.
func (c *Counter) allocate(push []Reporter, tags map[string]string) {
	if len(push) == 0 {
		return
	}
	c.out = make([]tally.CachedCount, len(push))
	for i, k := range push {
		c.out[i] = k.AllocateCounter(c.def.name, tags)
	}
}

func (sc scope) gauge(d *Def) *Gauge {
	tags, ok := sc.admit(d)
	if !ok {
		return nil
	}
	g := &Gauge{def: d, labels: sc.labels}
	g.allocate(sc.s.push, tags)
	if sc.g != nil {
		sc.g.addGauge(g)
	} else {
		sc.s.gauges = append(sc.s.gauges, g)
	}
	return g
}

// allocate gives g its handle in every push sink.
func (g *Gauge) allocate(push []Reporter, tags map[string]string) {
	if len(push) == 0 {
		return
	}
	g.out = make([]tally.CachedGauge, len(push))
	for i, k := range push {
		g.out[i] = k.AllocateGauge(g.def.name, tags)
	}
}

func (sc scope) histogram(d *Def) *Histogram {
	tags, ok := sc.admit(d)
	if !ok {
		return nil
	}
	h := &Histogram{def: d, labels: sc.labels, keepEx: sc.s.exemplars}
	h.allocate(sc.s.push, tags)
	if sc.g != nil {
		sc.g.addHistogram(h)
	} else {
		sc.s.histograms = append(sc.s.histograms, h)
	}
	return h
}

// allocate gives h its handles in every push sink.
func (h *Histogram) allocate(push []Reporter, tags map[string]string) {
	if len(push) == 0 {
		return
	}
	p := &histPush{
		handles: make([]tally.CachedHistogram, len(push)),
		out:     make([]tally.CachedHistogramBucket, 0, len(push)*nBuckets),
		sums:    make([]SumReporter, len(push)),
	}
	for i, k := range push {
		ch := k.AllocateHistogram(h.def.name, tags, Buckets)
		p.handles[i] = ch
		for _, b := range bucketPairs {
			p.out = append(p.out, ch.DurationBucket(b.LowerBoundDuration(), b.UpperBoundDuration()))
		}
		p.sums[i], _ = ch.(SumReporter)
		if r, ok := ch.(SampleRecorder); ok {
			p.samples = append(p.samples, r)
		}
	}
	h.push = p
}

// lazy holds a family of stats created on first use. The fast path is one
// atomic load; the first use takes the Store's lock.
type lazy[T any] struct{ p atomic.Pointer[T] }

func (l *lazy[T]) get(s *Store, build func() *T) *T {
	if v := l.p.Load(); v != nil {
		return v
	}
	return l.create(s, build)
}

func (l *lazy[T]) create(s *Store, build func() *T) *T {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := l.p.Load(); v != nil {
		return v
	}
	v := build()
	l.p.Store(v)
	return v
}

// unpublish empties the slot of a family compacted (compact.go): its next
// use makes it again.
func (l *lazy[T]) unpublish(string) { l.p.Store(nil) }

// Nop returns a Store that keeps nothing: it excludes every stat, so
// every handle it gives is a no-op. It is for components built without a
// stats store (unit tests, tools); it starts nothing.
func Nop() *Store {
	s, err := New(config.Stats{FlushInterval: config.Duration(time.Hour), Exclude: []string{""}}, config.Node{}, Options{})
	if err != nil {
		panic("stats: building the discarding store: " + err.Error())
	}
	return s
}
