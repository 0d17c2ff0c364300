// Package server wires a loaded config into a running proxy: clusters and
// their pools, route tables, listeners and the admin server, with one
// lifecycle (New does no network I/O, Start binds, Reload swaps in a new
// config in place, Shutdown drains).
package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/sightline-proxy/sightline/accesslog"
	"github.com/sightline-proxy/sightline/internal/otelres"
	"github.com/sightline-proxy/sightline/internal/upgrade"
	"github.com/sightline-proxy/sightline/internal/version"
	"github.com/sightline-proxy/sightline/proxy/admin"
	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/h2"
	"github.com/sightline-proxy/sightline/proxy/listener"
	"github.com/sightline-proxy/sightline/proxy/overload"
	"github.com/sightline-proxy/sightline/proxy/procs"
	"github.com/sightline-proxy/sightline/proxy/ratelimit"
	"github.com/sightline-proxy/sightline/proxy/route"
	"github.com/sightline-proxy/sightline/proxy/server/certs"
	"github.com/sightline-proxy/sightline/sinks"
	"github.com/sightline-proxy/sightline/stats"
	"github.com/sightline-proxy/sightline/tracing"
)

// Server is a running proxy.
type Server struct {
	log    zerolog.Logger
	admin  *admin.Server
	stats  *stats.Store
	sinks  *sinks.Set
	tracer *tracing.Tracer
	// res names the proxy on what it exports (OTLP access logs here; the
	// tracer and the OTLP metrics sink build the same one).
	res *resource.Resource

	cur      atomic.Pointer[state] // the running generation
	loaded   atomic.Pointer[loadInfo]
	started  time.Time
	ctx      context.Context // the clusters' context, from Start
	reloadMu sync.Mutex      // one reload at a time

	// bg counts the listeners draining and clusters closing after a
	// reload.
	bg   sync.WaitGroup
	quit chan struct{} // closed when Shutdown begins: retirements hurry

	logMu sync.Mutex
	hlogs map[string]*accesslog.HealthLog  // health-check event logs by path
	ologs map[string]*accesslog.OutlierLog // outlier-detection event logs by path

	// overload is the process's overload manager: its budget and
	// thresholds are read at start (a reload does not change them).
	overload *overload.Manager
	// rateLimits are the clients of the rate limit services the
	// listeners' rate_limit name, kept across reloads.
	rateLimits *ratelimit.Services
	// certs holds the key pairs of the listeners and the upstream client
	// certificates, and swaps in new ones when their files change.
	certs *certs.Manager
	// global is server.max_connections, shared by every listener;
	// connLimits are the listeners' limits.max_connections by listener
	// name, kept across reloads (guarded by reloadMu).
	global     *listener.ConnLimit
	connLimits map[string]*listener.ConnLimit

	serving atomic.Bool // every listener is bound: /ready may pass
	// readyGate, when set, holds /ready at INITIALIZING until it is
	// closed: the control plane's first resources (see HoldReady).
	readyGate atomic.Pointer[<-chan struct{}]
	// dynamicDump, when set, gives /config_dump what the control plane
	// sent (see SetDynamicDump).
	dynamicDump atomic.Pointer[func() json.Marshaler]
	hcFailed    atomic.Bool
	draining    atomic.Bool
	drainOnce   sync.Once
	drainReq    chan struct{} // closed by POST /drain_listeners
	stop        context.CancelFunc

	shutdownOnce sync.Once
	shutdownErr  error

	// sockets gives the listening sockets a process being upgraded
	// passed to this one (see SetSockets); nil: every socket is bound.
	sockets SocketSource
	// handedOff is set once Handoff's successor is ready: no reload may
	// change the listeners any more.
	handedOff atomic.Bool
}

// SocketSource gives a starting process the sockets its predecessor
// passed (upgrade.Inherited implements it): the socket of the listener
// name of kind kind ("admin" or "listener") at the config address addr,
// or false.
type SocketSource interface {
	Take(kind, name, addr string) (net.Listener, bool)
}

// loadInfo says which config runs, for /server_info. The hash is taken
// when first asked for: it encodes the whole config, which for 10,000
// clusters cost a reload more than everything else it does but parsing.
type loadInfo struct {
	cfg  *config.Config
	at   time.Time
	once sync.Once
	sum  string
}

func (li *loadInfo) hash() string {
	li.once.Do(func() {
		b, _ := li.cfg.JSON()
		sum := sha256.Sum256(b)
		li.sum = hex.EncodeToString(sum[:8])
	})
	return li.sum
}

// New builds every component of cfg. It does no network I/O; it opens the
// access-log files.
func New(cfg *config.Config, lg zerolog.Logger) (_ *Server, err error) {
	s := &Server{log: lg, quit: make(chan struct{}), drainReq: make(chan struct{}), rateLimits: ratelimit.NewServices()}
	defer func() {
		if err != nil {
			if gen := s.cur.Load(); gen != nil {
				for _, c := range gen.clusters {
					c.Close()
				}
			}
			s.closeLogs(context.Background())
			if s.certs != nil {
				s.certs.Close()
			}
			s.rateLimits.Close()
		}
	}()
	set, err := sinks.Build(cfg.Stats, stats.SinkOptions{
		Node: cfg.Node, ServiceName: cfg.Tracing.ServiceName, EmitZeros: cfg.Stats.EmitZeros,
		Log: lg.With().Str("component", "stats").Logger(),
	})
	if err != nil {
		return nil, fmt.Errorf("stats sinks: %w", err)
	}
	st, err := stats.New(cfg.Stats, cfg.Node, stats.Options{Sinks: set.All, MaxGRPCMethods: cfg.Stats.MaxGRPCMethodsPerCluster})
	if err != nil {
		set.Close(context.Background())
		return nil, fmt.Errorf("stats: %w", err)
	}
	s.stats, s.sinks = st, set
	srvStats := st.Server()
	s.certs = certs.New(certs.Options{
		Stats: certs.Stats{
			DaysUntilFirstCertExpiring: srvStats.DaysUntilFirstCertExpiring,
			Updated:                    srvStats.CertUpdate,
			Rejected:                   srvStats.CertUpdateRejected,
		},
		Log: lg.With().Str("component", "certs").Logger(),
	})
	s.global = listener.NewConnLimit(cfg.Server.MaxConnections)
	s.overload = newOverload(cfg.Overload, st.Overload())
	s.connLimits = make(map[string]*listener.ConnLimit, len(cfg.Listeners))
	// A first process is generation 0; a process started by an upgrade
	// is told its generation before it starts.
	st.Server().HotRestartEpoch.Set(0)
	st.Server().HotRestartGeneration.Set(0)
	dropped := st.Server().SpansDropped
	s.tracer, err = tracing.New(cfg.Tracing, cfg.Node,
		tracing.WithDropHook(func(n uint64) { dropped.Inc(int64(n)) }),
		tracing.WithLog(lg.With().Str("component", "tracing").Logger()))
	if err != nil {
		return nil, err
	}
	if s.res, err = otelres.New(cfg.Tracing.ServiceName, cfg.Node); err != nil {
		return nil, err
	}
	gen := &state{cfg: cfg, byName: make(map[string]*cluster.Cluster, len(cfg.Clusters))}
	s.cur.Store(gen) // so that a failure below closes what was opened
	for _, cc := range cfg.Clusters {
		c, err := s.buildCluster(cfg, cc)
		if err != nil {
			return nil, err
		}
		gen.clusters = append(gen.clusters, c)
		gen.byName[c.Name] = c
	}
	cluster.LinkLocal(gen.byName)
	for _, lc := range cfg.Listeners {
		table, err := s.routeTable(&lc, gen.byName)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", lc.Name, err)
		}
		r, err := s.buildListener(lc, table, listener.NewConnLimit(lc.Limits.MaxConnections))
		if err != nil {
			return nil, err
		}
		gen.listeners = append(gen.listeners, r)
		s.connLimits[lc.Name] = r.conns
	}
	s.setLoaded(cfg)
	s.admin = admin.New(cfg.Admin.Address, s, lg)
	s.admin.SetPprof(cfg.Admin.PprofOn())
	s.admin.Handle("GET /stats", statsHandler(st.Handler(), set.Prometheus))
	s.admin.Handle("GET /stats/prometheus", set.Prometheus)
	s.admin.Handle("POST /reopen_logs", http.HandlerFunc(s.reopenLogs))
	s.admin.Handle("POST /drain_listeners", http.HandlerFunc(s.drainListeners))
	return s, nil
}

// routeTable compiles a listener's routes with its rate limits, whose
// stats go to the server's store. New and reload both build with it.
func (s *Server) routeTable(lc *config.Listener, clusters map[string]*cluster.Cluster) (*route.Table, error) {
	return route.New(lc.VirtualHosts, clusters, route.WithListener(lc), route.WithStats(s.stats), route.WithServices(s.rateLimits))
}

func (s *Server) setLoaded(cfg *config.Config) {
	s.loaded.Store(&loadInfo{cfg: cfg, at: time.Now()})
}

// Start starts discovery, health checking, the admin server and every
// listener. On error everything already started is stopped.
func (s *Server) Start(ctx context.Context) error {
	s.ctx, s.stop = context.WithCancel(ctx)
	s.started = time.Now()
	s.stats.Server().Live.Set(1)
	s.stats.Start(s.ctx)
	s.certs.Start()
	s.overload.Start()
	gen := s.cur.Load()
	procs.Process().SetEnabled(gen.cfg.Server.AdaptiveConcurrencyOn())
	for _, c := range gen.clusters {
		c.Start(s.ctx)
	}
	s.bg.Add(1)
	go s.sweepPools()
	s.waitHealthChecked(gen.cfg, gen.clusters)
	ln, err := s.listen(upgrade.KindAdmin, "admin", gen.cfg.Admin.Address, func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) })
	if err != nil {
		s.closeAll()
		return bindError(gen.cfg, "admin.address", "the admin server", gen.cfg.Admin.Address, err)
	}
	s.admin.StartOn(ln)
	for _, r := range gen.listeners {
		if err := s.startListener(r); err != nil {
			s.closeAll()
			return bindError(gen.cfg, listenerPath(gen.cfg, r.cfg.Name), "listener "+r.cfg.Name, r.cfg.Address, err)
		}
	}
	s.serving.Store(true)
	return nil
}

// SetSockets makes Start, and reloads, take the sockets src holds
// before binding any: those an upgraded process passed. Call it before
// Start.
func (s *Server) SetSockets(src SocketSource) { s.sockets = src }

// listen returns the inherited socket for the listener name at addr, or
// binds one with bind.
func (s *Server) listen(kind, name, addr string, bind func(string) (net.Listener, error)) (net.Listener, error) {
	if s.sockets != nil {
		if ln, ok := s.sockets.Take(kind, name, addr); ok {
			return ln, nil
		}
	}
	return bind(addr)
}

// startListener binds (or inherits) a listener's socket and serves on
// it.
func (s *Server) startListener(r *running) error {
	ln, err := s.listen(upgrade.KindListener, r.cfg.Name, r.cfg.Address, listener.Listen)
	if err != nil {
		return fmt.Errorf("listener %s: %w", r.cfg.Name, err)
	}
	r.l.StartOn(ln)
	return nil
}

// Handoff lists every listening socket (the admin server's first, then
// each listener's) and calls pass with them, with reloads held until it
// returns, so that the list stays whole: pass starts the new process and
// waits until it is ready. When pass succeeds no reload changes the
// listeners any more, and the caller calls Retire. pass must not keep
// the listeners: they are still this process's.
func (s *Server) Handoff(pass func([]upgrade.Socket) error) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	select {
	case <-s.quit:
		return ErrShuttingDown
	default:
	}
	gen := s.cur.Load()
	socks := make([]upgrade.Socket, 0, len(gen.listeners)+1)
	if ln := s.admin.Listener(); ln != nil {
		socks = append(socks, upgrade.Socket{Kind: upgrade.KindAdmin, Name: "admin", Address: gen.cfg.Admin.Address, Listener: ln})
	}
	for _, r := range gen.listeners {
		if ln := r.l.Socket(); ln != nil {
			socks = append(socks, upgrade.Socket{Kind: upgrade.KindListener, Name: r.cfg.Name, Address: r.cfg.Address, Listener: ln})
		}
	}
	if err := pass(socks); err != nil {
		return err
	}
	s.handedOff.Store(true)
	return nil
}

// waitHealthChecked gives the health-checked clusters' first checks up to
// their timeout (and a second) to finish, so that listeners open, and a
// reload swaps, with health known; past that the proxy serves anyway, and
// the panic threshold decides where requests go.
func (s *Server) waitHealthChecked(cfg *config.Config, clusters []*cluster.Cluster) {
	var wait time.Duration
	for _, cc := range cfg.Clusters {
		if cc.HealthCheck != nil {
			wait = max(wait, cc.HealthCheck.Timeout.D()+time.Second)
		}
	}
	if wait == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, wait)
	defer cancel()
	for _, c := range clusters {
		if err := c.WaitHealthChecked(ctx); err != nil {
			s.log.Warn().Err(err).Str("cluster", c.Name).Msg("first health checks not done; serving anyway")
		}
	}
}

func (s *Server) closeAll() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gen := s.cur.Load()
	for _, r := range gen.listeners {
		r.l.Shutdown(ctx)
	}
	s.admin.Shutdown(ctx)
	for _, c := range gen.clusters {
		c.Close()
	}
	s.closeLogs(ctx)
	s.stats.Close(ctx)
	s.certs.Close()
	s.overload.Stop()
	procs.Process().SetEnabled(false)
	s.rateLimits.Close()
	if s.stop != nil {
		s.stop()
	}
}

// DrainRequested is closed when POST /drain_listeners asked for the same
// graceful drain as SIGTERM; the binary then calls Shutdown.
func (s *Server) DrainRequested() <-chan struct{} { return s.drainReq }

func (s *Server) drainListeners(w http.ResponseWriter, _ *http.Request) {
	s.draining.Store(true) // /ready fails at once
	s.drainOnce.Do(func() { close(s.drainReq) })
	io.WriteString(w, "OK\n")
}

// Shutdown drains: /ready fails at once while the listeners go on serving
// for drain_time; then they stop accepting and send GOAWAY, in-flight
// requests get until drain_timeout (or ctx) to finish, and upstream pools,
// logs, spans, stats and the admin server close. It is idempotent.
func (s *Server) Shutdown(ctx context.Context) error { return s.shutdown(ctx, false) }

// Retire is Shutdown once Handoff's new process serves on the same
// sockets: the admin server and every listener stop accepting at once,
// with no drain_time (the new process accepts what comes, and answers
// the admin address), then HTTP/2 connections get GOAWAY and HTTP/1.1
// ones "Connection: close", in-flight requests get until drain_timeout
// (or ctx) to finish, and every access-log and event-log line is written
// before it returns. Closing this process's descriptors leaves the
// sockets open in the new one: no connection is refused.
func (s *Server) Retire(ctx context.Context) error { return s.shutdown(ctx, true) }

func (s *Server) shutdown(ctx context.Context, retire bool) error {
	s.shutdownOnce.Do(func() {
		s.draining.Store(true)
		s.stats.Server().Live.Set(0)
		close(s.quit)
		s.reloadMu.Lock() // no reload from here on
		defer s.reloadMu.Unlock()
		gen := s.cur.Load()
		if retire {
			actx, acancel := context.WithTimeout(ctx, 5*time.Second)
			s.admin.Shutdown(actx)
			acancel()
		}
		// Keep serving for drain_time with /ready failing, so that an outer
		// balancer sees the proxy leave before its connections do.
		if d := gen.cfg.Server.DrainTime.D(); d > 0 && !retire {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		timeout := gen.cfg.Server.DrainTimeout.D()
		if timeout <= 0 {
			timeout = 10 * time.Second
		}
		dctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		var wg sync.WaitGroup
		errs := make([]error, len(gen.listeners))
		for i, r := range gen.listeners {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = r.l.Shutdown(dctx)
			}()
		}
		wg.Wait()
		s.bg.Wait() // listeners and clusters retired by reloads
		for _, c := range gen.clusters {
			c.Close()
		}
		actx, acancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer acancel()
		// Every line of every finished request reaches its file, and the
		// last interval the push sinks, before the process ends.
		s.certs.Close()
		s.overload.Stop()
		procs.Process().SetEnabled(false)
		s.rateLimits.Close()
		errs = append(errs, s.closeLogs(actx), s.stats.Close(actx), s.admin.Shutdown(actx))
		if s.stop != nil {
			s.stop()
		}
		s.shutdownErr = errors.Join(errs...)
	})
	return s.shutdownErr
}

// reopenLogs is POST /reopen_logs: every access log and event log
// (health-check and outlier-detection) reopens its file, for log rotation
// (rename, then reopen: no line is lost).
func (s *Server) reopenLogs(w http.ResponseWriter, _ *http.Request) {
	var errs []error
	n := 0
	for _, r := range s.cur.Load().listeners {
		for _, l := range r.logs {
			n++
			if err := l.Reopen(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	s.logMu.Lock()
	for _, l := range s.eventLogsLocked() {
		n++
		if err := l.Reopen(); err != nil {
			errs = append(errs, err)
		}
	}
	s.logMu.Unlock()
	if err := errors.Join(errs...); err != nil {
		s.log.Error().Err(err).Msg("reopening logs")
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.log.Info().Int("files", n).Msg("logs reopened")
	io.WriteString(w, "OK\n")
}

// closeLogs writes every buffered log line and exports the queued spans,
// bounded by ctx.
func (s *Server) closeLogs(ctx context.Context) error {
	var errs []error
	if gen := s.cur.Load(); gen != nil {
		for _, r := range gen.listeners {
			for _, l := range r.logs {
				errs = append(errs, l.Close(ctx))
			}
		}
	}
	s.logMu.Lock()
	for _, l := range s.eventLogsLocked() {
		errs = append(errs, l.Close(ctx))
	}
	s.logMu.Unlock()
	errs = append(errs, s.tracer.Shutdown(ctx))
	return errors.Join(errs...)
}

func closeLoggers(logs []*accesslog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, l := range logs {
		l.Close(ctx)
	}
}

// ListenerAddr returns the bound address of the named listener, or "".
func (s *Server) ListenerAddr(name string) string {
	for _, r := range s.cur.Load().listeners {
		if r.l.Name == name {
			return r.l.Addr()
		}
	}
	return ""
}

// HandleAdmin adds an endpoint to the admin server, for what the binary
// runs beside the server (POST /upgrade).
func (s *Server) HandleAdmin(pattern string, h http.Handler) { s.admin.Handle(pattern, h) }

// AdminAddr returns the admin server's bound address.
func (s *Server) AdminAddr() string { return s.admin.Addr() }

// Stats returns the proxy's stats store, for components the binary runs
// beside the server (the control plane's client).
func (s *Server) Stats() *stats.Store { return s.stats }

// Config returns the running config.
func (s *Server) Config() *config.Config { return s.cur.Load().cfg }

// Clusters implements admin.Source.
func (s *Server) Clusters() []*cluster.Cluster { return s.cur.Load().clusters }

// ConfigJSON implements admin.Source: the running config, and under
// "xds" what the control plane sent, when there is one.
func (s *Server) ConfigJSON() ([]byte, error) {
	b, err := s.cur.Load().cfg.JSON()
	f := s.dynamicDump.Load()
	if err != nil || f == nil {
		return b, err
	}
	dyn, err := json.MarshalIndent((*f)(), "  ", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the control plane's resources: %w", err)
	}
	// The config is an indented object ending in "\n}": the key goes
	// last, keeping the config's keys in schema order.
	end := bytes.LastIndexByte(b, '}')
	if end < 0 {
		return nil, errors.New("encoding config: not an object")
	}
	out := make([]byte, 0, len(b)+len(dyn)+16)
	out = append(out, bytes.TrimRight(b[:end], "\n")...)
	out = append(out, ",\n  \"xds\": "...)
	out = append(out, dyn...)
	return append(out, "\n}"...), nil
}

// SetDynamicDump makes /config_dump show, under "xds", what dump returns:
// the resources a control plane sent, with their versions. Safe from any
// goroutine.
func (s *Server) SetDynamicDump(dump func() json.Marshaler) { s.dynamicDump.Store(&dump) }

// HoldReady makes /ready answer INITIALIZING, once the listeners are
// bound too, until ready is closed: a proxy whose listeners and clusters
// come from a control plane is not ready before the first of them run
// (or the initial fetch timeout gave up on them), as Envoy's init manager
// holds it.
func (s *Server) HoldReady(ready <-chan struct{}) { s.readyGate.Store(&ready) }

// State implements admin.Source.
func (s *Server) State() string {
	switch {
	case s.draining.Load():
		return "DRAINING"
	case !s.serving.Load():
		return "INITIALIZING" // the admin server starts before the listeners
	case !s.gateOpen():
		return "INITIALIZING" // waiting for the control plane's first resources
	case s.hcFailed.Load():
		return "FAILED"
	}
	return "LIVE"
}

// gateOpen reports whether HoldReady's channel, if any, is closed.
func (s *Server) gateOpen() bool {
	g := s.readyGate.Load()
	if g == nil {
		return true
	}
	select {
	case <-*g:
		return true
	default:
		return false
	}
}

// SetHealthcheckFailed implements admin.Source.
func (s *Server) SetHealthcheckFailed(v bool) { s.hcFailed.Store(v) }

// Info implements admin.Source.
func (s *Server) Info() any {
	gen, li := s.cur.Load(), s.loaded.Load()
	return struct {
		version.Info
		UptimeSeconds  int64       `json:"uptime_seconds"`
		State          string      `json:"state"`
		Node           config.Node `json:"node"`
		ConfigFiles    []string    `json:"config_files"`
		ConfigHash     string      `json:"config_hash"`
		ConfigLoadedAt time.Time   `json:"config_loaded_at"`
		Listeners      []string    `json:"listeners"`
		Admin          string      `json:"admin_address"`
	}{
		Info:           version.Get(),
		UptimeSeconds:  int64(time.Since(s.started).Seconds()),
		State:          s.State(),
		Node:           gen.cfg.Node,
		ConfigFiles:    gen.cfg.Files,
		ConfigHash:     li.hash(),
		ConfigLoadedAt: li.at.UTC(),
		Listeners:      listenerAddrs(gen),
		Admin:          s.AdminAddr(),
	}
}

// StatusListeners implements admin.ListenerSource: the listeners the admin
// status page shows, with their http.<stat_prefix> stats.
func (s *Server) StatusListeners() []admin.Listener {
	gen := s.cur.Load()
	out := make([]admin.Listener, 0, len(gen.listeners))
	for _, r := range gen.listeners {
		p := r.cfg.StatPrefix
		out = append(out, admin.Listener{Name: r.l.Name, Address: r.l.Addr(), StatPrefix: p, Stats: s.stats.HTTP(p)})
	}
	return out
}

func listenerAddrs(gen *state) []string {
	out := make([]string, 0, len(gen.listeners))
	for _, r := range gen.listeners {
		out = append(out, r.l.Name+"="+r.l.Addr())
	}
	return out
}

// newOverload builds the overload manager of the engine's buffers (and the
// heap, when limited) from the config.
func newOverload(cfg config.Overload, st *stats.Overload) *overload.Manager {
	return overload.New(overloadConfig(cfg), h2.Engine(), st)
}

// overloadConfig is the manager's config from the proxy's.
func overloadConfig(cfg config.Overload) overload.Config {
	return overload.Config{
		MaxBufferedBytes:  int64(cfg.MaxBufferedBytes),
		MaxHeapBytes:      int64(cfg.MaxHeapBytes),
		MaxActiveRequests: int64(cfg.MaxActiveRequests),
		RefreshInterval:   cfg.RefreshInterval.D(),
		ResetStreams:      cfg.Actions.ResetHighMemoryStream,
		StopRequests:      cfg.Actions.StopAcceptingRequests,
		StopConnections:   cfg.Actions.StopAcceptingConnections,
	}
}

// statsHandler serves /stats: the flat text (or JSON), or with
// format=prometheus the Prometheus exposition, as Envoy's admin does; the
// scrape configs written for Envoy use that path.
func statsHandler(flat, prom http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("format") == "prometheus" {
			prom.ServeHTTP(w, r)
			return
		}
		flat.ServeHTTP(w, r)
	})
}

// eventFile is an event log, of health checks or outlier detection.
type eventFile interface {
	Reopen() error
	Close(ctx context.Context) error
}

// eventLogsLocked lists every event log; under logMu.
func (s *Server) eventLogsLocked() []eventFile {
	var ls []eventFile
	for _, l := range s.hlogs {
		ls = append(ls, l)
	}
	for _, l := range s.ologs {
		ls = append(ls, l)
	}
	return ls
}
