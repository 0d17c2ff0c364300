// Package server wires a loaded config into a running proxy: clusters and
// their pools, route tables, listeners and the admin server, with one
// lifecycle (New does no I/O, Start binds, Shutdown drains).
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/accesslog"
	"github.com/sightline-proxy/sightline/internal/version"
	"github.com/sightline-proxy/sightline/proxy/admin"
	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/forward"
	"github.com/sightline-proxy/sightline/proxy/h2"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/listener"
	"github.com/sightline-proxy/sightline/proxy/observe"
	"github.com/sightline-proxy/sightline/proxy/route"
	"github.com/sightline-proxy/sightline/proxy/upstream"
	"github.com/sightline-proxy/sightline/sinks"
	"github.com/sightline-proxy/sightline/stats"
	"github.com/sightline-proxy/sightline/tracing"
)

// Server is a running proxy.
type Server struct {
	cfg       *config.Config
	log       zerolog.Logger
	clusters  []*cluster.Cluster
	listeners []*listener.Listener
	admin     *admin.Server
	stats     *stats.Store
	sinks     *sinks.Set
	tracer    *tracing.Tracer
	logs      []*accesslog.Logger
	hlogs     map[string]*accesslog.HealthLog // health-check event logs by path
	started   time.Time

	hcFailed atomic.Bool
	draining atomic.Bool
	stop     context.CancelFunc

	shutdownOnce sync.Once
	shutdownErr  error
}

// New builds every component of cfg. It does no network I/O; it opens the
// access-log files.
func New(cfg *config.Config, lg zerolog.Logger) (_ *Server, err error) {
	s := &Server{cfg: cfg, log: lg}
	defer func() {
		if err != nil {
			s.closeLogs(context.Background())
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
	dropped := st.Server().SpansDropped
	s.tracer, err = tracing.New(cfg.Tracing, cfg.Node, tracing.WithDropHook(func() { dropped.Inc(1) }))
	if err != nil {
		return nil, err
	}
	byName := make(map[string]*cluster.Cluster, len(cfg.Clusters))
	for _, cc := range cfg.Clusters {
		opts, err := upstreamOptions(cc)
		if err != nil {
			return nil, err
		}
		events, err := s.healthLog(cc)
		if err != nil {
			return nil, err
		}
		cs := st.Cluster(cc.Name)
		cx := cs.Connections()
		opts.OnConnect = func() { cx.CxTotal.Inc(1); cx.CxActive.Inc() }
		opts.OnClose = func() { cx.CxDestroy.Inc(1); cx.CxActive.Dec() }
		h2opts := h2.PoolOptions{
			ConnectTimeout: opts.ConnectTimeout, TLS: opts.TLS,
			OnConnect: opts.OnConnect, OnClose: opts.OnClose,
			Log: lg.With().Str("cluster", cc.Name).Logger(),
		}
		c, err := cluster.New(cc, cluster.Options{
			// Each host gets the frame-level HTTP/2 pool, for HTTP/2
			// downstreams, and the net/http pool, for HTTP/1.1 ones and
			// for http1 clusters.
			NewUpstream: func(_ *cluster.Cluster, h *host.Host) host.Upstream {
				return h2.NewUpstream(h.Address, h2opts, upstream.New(h.Address, opts))
			},
			Stats:        cs,
			Log:          lg,
			LocalZone:    cfg.Node.Zone,
			LocalShares:  localShares(cfg, cc.ZoneAware.LocalCluster),
			TLS:          opts.TLS,
			HealthEvents: events,
		})
		if err != nil {
			return nil, err
		}
		s.clusters = append(s.clusters, c)
		byName[c.Name] = c
	}
	for _, lc := range cfg.Listeners {
		table, err := route.New(lc.VirtualHosts, byName)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", lc.Name, err)
		}
		httpStats := st.HTTP(lc.StatPrefix)
		llog := lg.With().Str("listener", lc.Name).Logger()
		obs, err := s.observer(lc, llog)
		if err != nil {
			return nil, err
		}
		h1 := &forward.Handler{
			Routes:              table,
			TrustRequestHeaders: lc.TrustRequestHeaders,
			TLS:                 lc.TLS != nil,
			Stats:               httpStats,
			Observer:            obs,
			Log:                 llog,
		}
		h2srv := h2.NewServer(h2.ServerOptions{
			Routes:              table,
			TrustRequestHeaders: lc.TrustRequestHeaders,
			TLS:                 lc.TLS != nil,
			Limits:              lc.Limits,
			Stats:               httpStats,
			Observer:            obs,
			Log:                 llog,
		})
		l, err := listener.New(lc, h1, h2srv, listener.Stats{Listener: st.Listener(lc.Address), HTTP: httpStats}, lg)
		if err != nil {
			return nil, err
		}
		s.listeners = append(s.listeners, l)
	}
	s.admin = admin.New(cfg.Admin.Address, s, lg)
	s.admin.Handle("GET /stats", st.Handler())
	s.admin.Handle("GET /stats/prometheus", set.Prometheus)
	s.admin.Handle("POST /reopen_logs", http.HandlerFunc(s.reopenLogs))
	return s, nil
}

// healthLog returns the health-check event log of a cluster, opening it
// the first time its path is seen (clusters may share one file), or nil.
// The first file's stats are accesslog.healthcheck.*, the others'
// accesslog.healthcheck_<n>.*.
func (s *Server) healthLog(cc config.Cluster) (*accesslog.HealthLog, error) {
	if cc.HealthCheck == nil || cc.HealthCheck.EventLogPath == "" {
		return nil, nil
	}
	path := cc.HealthCheck.EventLogPath
	if l, ok := s.hlogs[path]; ok {
		return l, nil
	}
	if s.hlogs == nil {
		s.hlogs = map[string]*accesslog.HealthLog{}
	}
	name := "healthcheck"
	if n := len(s.hlogs); n > 0 {
		name = fmt.Sprintf("healthcheck_%d", n)
	}
	l, err := accesslog.NewHealthLog(path, s.stats.AccessLog(name), s.log.With().Str("event_log", path).Logger())
	if err != nil {
		return nil, fmt.Errorf("cluster %s: health_check.event_log_path: %w", cc.Name, err)
	}
	s.hlogs[path] = l
	return l, nil
}

// observer opens a listener's access logs and returns what its request
// paths identify, trace and log requests with. The first access log of a
// listener is named after it in the stats (accesslog.<listener>.*), the
// others get their index (accesslog.<listener>_1.*).
func (s *Server) observer(lc config.Listener, lg zerolog.Logger) (*observe.Observer, error) {
	logs := make([]*accesslog.Logger, 0, len(lc.AccessLog))
	for i, ac := range lc.AccessLog {
		name := lc.Name
		if i > 0 {
			name = fmt.Sprintf("%s_%d", lc.Name, i)
		}
		l, err := accesslog.New(ac, s.stats.AccessLog(name), lg.With().Str("access_log", ac.Path).Logger())
		if err != nil {
			return nil, fmt.Errorf("listener %s: access_log[%d]: %w", lc.Name, i, err)
		}
		logs = append(logs, l)
		s.logs = append(s.logs, l)
	}
	return observe.New(lc.RequestID, s.tracer, logs), nil
}

// reopenLogs is POST /reopen_logs: every access log reopens its file, for
// log rotation (rename, then reopen: no line is lost).
func (s *Server) reopenLogs(w http.ResponseWriter, _ *http.Request) {
	var errs []error
	for _, l := range s.logs {
		if err := l.Reopen(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, l := range s.hlogs {
		if err := l.Reopen(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		s.log.Error().Err(err).Msg("reopening logs")
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.log.Info().Int("files", len(s.logs)+len(s.hlogs)).Msg("logs reopened")
	io.WriteString(w, "OK\n")
}

// closeLogs writes every buffered access-log line and exports the queued
// spans, bounded by ctx.
func (s *Server) closeLogs(ctx context.Context) error {
	errs := make([]error, 0, len(s.logs)+len(s.hlogs)+1)
	for _, l := range s.logs {
		errs = append(errs, l.Close(ctx))
	}
	for _, l := range s.hlogs {
		errs = append(errs, l.Close(ctx))
	}
	errs = append(errs, s.tracer.Shutdown(ctx))
	return errors.Join(errs...)
}

// localShares is the share of traffic each zone originates for zone-aware
// routing: the zones of the local_cluster's endpoints, one share per
// endpoint (a proxy of the fleet), or nil when no local_cluster is named.
func localShares(cfg *config.Config, localCluster string) map[string]float64 {
	if localCluster == "" {
		return nil
	}
	shares := map[string]float64{}
	for _, cc := range cfg.Clusters {
		if cc.Name != localCluster {
			continue
		}
		for _, ep := range cc.Endpoints {
			shares[ep.Zone]++
		}
	}
	return shares
}

// upstreamOptions turns a cluster's connect settings into pool options.
func upstreamOptions(cc config.Cluster) (upstream.Options, error) {
	opts := upstream.Options{ConnectTimeout: cc.ConnectTimeout.D()}
	if cc.TLS == nil {
		return opts, nil
	}
	tc := &tls.Config{ServerName: cc.TLS.SNI, InsecureSkipVerify: cc.TLS.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if cc.TLS.CAFile != "" {
		pem, err := os.ReadFile(cc.TLS.CAFile)
		if err != nil {
			return opts, fmt.Errorf("cluster %s: reading ca_file: %w", cc.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return opts, fmt.Errorf("cluster %s: ca_file %s holds no PEM certificate", cc.Name, cc.TLS.CAFile)
		}
		tc.RootCAs = pool
	}
	opts.TLS = tc
	return opts, nil
}

// Start starts discovery, binds the admin server and every listener. On
// error everything already started is stopped.
func (s *Server) Start(ctx context.Context) error {
	ctx, s.stop = context.WithCancel(ctx)
	s.started = time.Now()
	s.stats.Server().Live.Set(1)
	s.stats.Start(ctx)
	for _, c := range s.clusters {
		c.Start(ctx)
	}
	s.waitHealthChecked(ctx)
	if err := s.admin.Start(); err != nil {
		s.closeAll()
		return err
	}
	for _, l := range s.listeners {
		if err := l.Start(); err != nil {
			s.closeAll()
			return err
		}
	}
	return nil
}

// waitHealthChecked gives every health-checked cluster's first checks up
// to their timeout (and a second) to finish, so that the listeners open
// with health known; past that the proxy serves anyway, and the panic
// threshold decides where requests go.
func (s *Server) waitHealthChecked(ctx context.Context) {
	var wait time.Duration
	for _, cc := range s.cfg.Clusters {
		if cc.HealthCheck != nil {
			wait = max(wait, cc.HealthCheck.Timeout.D()+time.Second)
		}
	}
	if wait == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for _, c := range s.clusters {
		if err := c.WaitHealthChecked(ctx); err != nil {
			s.log.Warn().Err(err).Str("cluster", c.Name).Msg("first health checks not done; serving anyway")
		}
	}
}

func (s *Server) closeAll() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, l := range s.listeners {
		l.Shutdown(ctx)
	}
	s.admin.Shutdown(ctx)
	for _, c := range s.clusters {
		c.Close()
	}
	s.closeLogs(ctx)
	s.stats.Close(ctx)
	if s.stop != nil {
		s.stop()
	}
}

// Shutdown drains: /ready fails at once while the listeners go on serving
// for drain_time; then they stop accepting and send GOAWAY, in-flight
// requests get until drain_timeout (or ctx) to finish, and upstream pools
// and the admin server close. It is idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		s.draining.Store(true)
		s.stats.Server().Live.Set(0)
		// Keep serving for drain_time with /ready failing, so that an outer
		// balancer sees the proxy leave before its connections do.
		if d := s.cfg.Server.DrainTime.D(); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		timeout := s.cfg.Server.DrainTimeout.D()
		if timeout <= 0 {
			timeout = 10 * time.Second
		}
		dctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		var wg sync.WaitGroup
		errs := make([]error, len(s.listeners))
		for i, l := range s.listeners {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = l.Shutdown(dctx)
			}()
		}
		wg.Wait()
		for _, c := range s.clusters {
			c.Close()
		}
		actx, acancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer acancel()
		// Every line of every finished request reaches its file, and the
		// last interval the push sinks, before the process ends.
		errs = append(errs, s.closeLogs(actx), s.stats.Close(actx), s.admin.Shutdown(actx))
		if s.stop != nil {
			s.stop()
		}
		s.shutdownErr = errors.Join(errs...)
	})
	return s.shutdownErr
}

// ListenerAddr returns the bound address of the named listener, or "".
func (s *Server) ListenerAddr(name string) string {
	for _, l := range s.listeners {
		if l.Name == name {
			return l.Addr()
		}
	}
	return ""
}

// AdminAddr returns the admin server's bound address.
func (s *Server) AdminAddr() string { return s.admin.Addr() }

// Clusters implements admin.Source.
func (s *Server) Clusters() []*cluster.Cluster { return s.clusters }

// ConfigJSON implements admin.Source.
func (s *Server) ConfigJSON() ([]byte, error) { return s.cfg.JSON() }

// State implements admin.Source.
func (s *Server) State() string {
	switch {
	case s.draining.Load():
		return "DRAINING"
	case s.hcFailed.Load():
		return "FAILED"
	}
	return "LIVE"
}

// SetHealthcheckFailed implements admin.Source.
func (s *Server) SetHealthcheckFailed(v bool) { s.hcFailed.Store(v) }

// Info implements admin.Source.
func (s *Server) Info() any {
	return struct {
		version.Info
		UptimeSeconds int64       `json:"uptime_seconds"`
		State         string      `json:"state"`
		Node          config.Node `json:"node"`
		ConfigFiles   []string    `json:"config_files"`
		Listeners     []string    `json:"listeners"`
		Admin         string      `json:"admin_address"`
	}{
		Info:          version.Get(),
		UptimeSeconds: int64(time.Since(s.started).Seconds()),
		State:         s.State(),
		Node:          s.cfg.Node,
		ConfigFiles:   s.cfg.Files,
		Listeners:     s.listenerAddrs(),
		Admin:         s.AdminAddr(),
	}
}

// StatusListeners implements admin.ListenerSource: the listeners the admin
// status page shows, with their http.<stat_prefix> stats.
func (s *Server) StatusListeners() []admin.Listener {
	out := make([]admin.Listener, 0, len(s.listeners))
	for i, l := range s.listeners {
		p := s.cfg.Listeners[i].StatPrefix
		out = append(out, admin.Listener{Name: l.Name, Address: l.Addr(), StatPrefix: p, Stats: s.stats.HTTP(p)})
	}
	return out
}

func (s *Server) listenerAddrs() []string {
	out := make([]string, 0, len(s.listeners))
	for _, l := range s.listeners {
		out = append(out, l.Name+"="+l.Addr())
	}
	return out
}
