package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/accesslog"
	"github.com/sightline-proxy/sightline/internal/logfield"
	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/forward"
	"github.com/sightline-proxy/sightline/proxy/h2"
	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/listener"
	"github.com/sightline-proxy/sightline/proxy/observe"
	"github.com/sightline-proxy/sightline/proxy/route"
	"github.com/sightline-proxy/sightline/proxy/server/certs"
	"github.com/sightline-proxy/sightline/proxy/upstream"
	"github.com/sightline-proxy/sightline/stats"
)

// state is one generation of the running config: what a reload swaps as
// a whole. Clusters and listeners that a reload keeps are shared between
// generations.
type state struct {
	cfg       *config.Config
	clusters  []*cluster.Cluster
	byName    map[string]*cluster.Cluster
	listeners []*running
}

// running is a listener with the request paths that serve it.
type running struct {
	cfg  config.Listener
	l    *listener.Listener
	h1   *forward.Handler
	h2   *h2.Server
	logs []*accesslog.Logger
	// conns is the listener's limits.max_connections, which the listeners
	// replacing it in reloads share.
	conns *listener.ConnLimit
}

func (r *running) setRoutes(t *route.Table) {
	r.h1.SetRoutes(t)
	r.h2.SetRoutes(t)
}

// buildCluster makes one cluster with its pools' factory, stats, health
// checking and zone shares. It does no I/O but opening the event log.
func (s *Server) buildCluster(cfg *config.Config, cc config.Cluster) (*cluster.Cluster, error) {
	opts, err := s.upstreamOptions(cc)
	if err != nil {
		return nil, err
	}
	outlierEvents, err := s.outlierLog(cc)
	if err != nil {
		return nil, err
	}
	events, err := s.healthLog(cc)
	if err != nil {
		return nil, err
	}
	cs := s.stats.Cluster(cc.Name)
	tc := opts.TLS
	return cluster.New(cc, cluster.Options{
		// Each host gets the frame-level HTTP/2 pool, for every HTTP/2
		// upstream call (from HTTP/2 and HTTP/1.1 clients and mirrors),
		// and the net/http pool, for HTTP/1.1 upstream calls (http1
		// clusters, and auto ones for HTTP/1.1 clients). Both count
		// their connections in the cluster's upstream_cx_* stats and
		// claim its max_connections and max_connection_pools; the
		// engine's pool also takes max_pending_requests and counts its
		// pending requests. The pools' options are made with the pools,
		// from the cluster's config: kept for each of 10,000 clusters
		// they cost some 400 bytes a cluster, mostly never used.
		NewUpstream:   func(c *cluster.Cluster, h *host.Host) host.Upstream { return s.newUpstream(c, h, tc) },
		UpstreamIdle:  upstreamIdle,
		Stats:         cs,
		Log:           s.log,
		LocalZone:     cfg.Node.Zone,
		LocalShares:   localShares(cfg, cc.ZoneAware.LocalCluster),
		TLS:           opts.TLS,
		HealthEvents:  events,
		OutlierEvents: outlierEvents,
	})
}

// buildListener makes a listener and its request paths over table, its
// connections counted under conns. It loads its key pair (once per pair
// of files) and opens its access logs; Start binds it.
func (s *Server) buildListener(lc config.Listener, table *route.Table, conns *listener.ConnLimit) (*running, error) {
	httpStats := s.stats.HTTP(lc.StatPrefix)
	llog := s.log.With().Str("listener", lc.Name).Logger()
	lopts := listener.Options{Conns: conns, Global: s.global, Overload: s.overload}
	if lc.TLS != nil {
		pair, err := s.listenerPair(lc)
		if err != nil {
			return nil, fmt.Errorf("listener %s: tls: %w", lc.Name, err)
		}
		lopts.Certificate = pair.GetCertificate
	}
	logs, err := s.accessLogs(lc, llog)
	if err != nil {
		return nil, err
	}
	obs := observe.New(lc.RequestID, s.tracer, logs)
	r := &running{cfg: lc, logs: logs, conns: conns}
	r.h1 = &forward.Handler{
		Routes:              table,
		TrustRequestHeaders: lc.TrustRequestHeaders,
		TLS:                 lc.TLS != nil,
		Stats:               httpStats,
		Observer:            obs,
		Overload:            s.overload,
		Log:                 llog,
	}
	r.h2 = h2.NewServer(h2.ServerOptions{
		Routes:              table,
		TrustRequestHeaders: lc.TrustRequestHeaders,
		TLS:                 lc.TLS != nil,
		Limits:              lc.Limits,
		Stats:               httpStats,
		Observer:            obs,
		Overload:            s.overload,
		Log:                 llog,
	})
	r.l, err = listener.New(lc, r.h1, r.h2, listener.Stats{Listener: s.stats.Listener(lc.Address), HTTP: httpStats}, s.log, lopts)
	if err != nil {
		closeLoggers(logs)
		return nil, err
	}
	return r, nil
}

// accessLogs opens a listener's access logs. The first access log of a
// listener is named after it in the stats (accesslog.<listener>.*), the
// others get their index (accesslog.<listener>_1.*).
func (s *Server) accessLogs(lc config.Listener, lg zerolog.Logger) ([]*accesslog.Logger, error) {
	logs := make([]*accesslog.Logger, 0, len(lc.AccessLog))
	for i, ac := range lc.AccessLog {
		name := lc.Name
		if i > 0 {
			name = fmt.Sprintf("%s_%d", lc.Name, i)
		}
		dest := ac.Path
		if ac.OTLP != nil {
			dest = "otlp " + ac.OTLP.Endpoint
		}
		l, err := accesslog.New(ac, s.stats.AccessLog(name), lg.With().Str("access_log", dest).Logger(), accesslog.WithResource(s.res))
		if err != nil {
			closeLoggers(logs)
			return nil, fmt.Errorf("listener %s: access_log[%d]: %w", lc.Name, i, err)
		}
		logs = append(logs, l)
	}
	return logs, nil
}

// healthLog returns the health-check event log of a cluster, or nil. The
// first file's stats are accesslog.healthcheck.*, the others'
// accesslog.healthcheck_<n>.*.
func (s *Server) healthLog(cc config.Cluster) (*accesslog.HealthLog, error) {
	if cc.HealthCheck == nil || cc.HealthCheck.EventLogPath == "" {
		return nil, nil
	}
	l, err := openShared(s, &s.hlogs, cc.HealthCheck.EventLogPath, "healthcheck",
		func(path string, st *stats.AccessLog, log zerolog.Logger) (*accesslog.HealthLog, error) {
			return accesslog.NewHealthLog(path, cc.HealthCheck.EventLogFormat, st, log)
		})
	if err != nil {
		return nil, fmt.Errorf("cluster %s: health_check.event_log_path: %w", cc.Name, err)
	}
	return l, nil
}

// outlierLog returns the outlier-detection event log of a cluster, or nil;
// its stats are accesslog.outlier_detection[_<n>].*.
func (s *Server) outlierLog(cc config.Cluster) (*accesslog.OutlierLog, error) {
	if cc.OutlierDetection == nil || cc.OutlierDetection.EventLogPath == "" {
		return nil, nil
	}
	l, err := openShared(s, &s.ologs, cc.OutlierDetection.EventLogPath, "outlier_detection", accesslog.NewOutlierLog)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: outlier_detection.event_log_path: %w", cc.Name, err)
	}
	return l, nil
}

// openShared returns the event log at path in *logs, opening it the first
// time its path is seen (clusters may share one file, and a reload keeps
// it open). Its stats are accesslog.<name>.*, or accesslog.<name>_<n>.*
// for the n-th file of its kind.
func openShared[L any](s *Server, logs *map[string]L, path, name string,
	open func(path string, st *stats.AccessLog, log zerolog.Logger) (L, error)) (L, error) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if l, ok := (*logs)[path]; ok {
		return l, nil
	}
	if *logs == nil {
		*logs = map[string]L{}
	}
	if n := len(*logs); n > 0 {
		name = fmt.Sprintf("%s_%d", name, n)
	}
	l, err := open(path, s.stats.AccessLog(name), s.log.With().Str("event_log", path).Logger())
	if err != nil {
		return l, err
	}
	(*logs)[path] = l
	return l, nil
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

// newUpstream makes host h's pools, the first time a request needs them,
// with the cluster's settings; tc is its upstream TLS, nil for plaintext.
func (s *Server) newUpstream(c *cluster.Cluster, h *host.Host, tc *tls.Config) host.Upstream {
	cc := &c.Config
	po := h2.PoolOptions{
		ConnectTimeout: cc.ConnectTimeout.D(), TLS: tc,
		MaxConcurrentStreams: cc.MaxConcurrentStreams, MaxRequestsPerConn: cc.MaxRequestsPerConnection,
		PingTimeout: cc.KeepaliveTimeout.D(),
		IdleTimeout: cc.UpstreamIdleTimeout(),
		Log:         logfield.With(s.log, "cluster", cc.Name),
		Breakers:    c.Breakers,
		Stats:       c.Stats,
	}
	if ka := cc.KeepaliveInterval; ka != nil {
		po.SendPingTimeout = ka.D()
		if *ka == 0 {
			po.SendPingTimeout = -1 // keepalive_interval: 0s turns the PINGs off
		}
	}
	uo := upstream.Options{ConnectTimeout: cc.ConnectTimeout.D(), IdleTimeout: cc.UpstreamIdleTimeout(), TLS: tc,
		Stats: c.Stats, Breakers: c.Breakers}
	return h2.NewUpstream(h.Address, po, upstream.New(h.Address, uo))
}

// upstreamOptions turns a cluster's connect settings into pool options.
// A client certificate is presented through the certificate manager, so
// that new connections present a renewed one.
func (s *Server) upstreamOptions(cc config.Cluster) (upstream.Options, error) {
	opts := upstream.Options{ConnectTimeout: cc.ConnectTimeout.D(), IdleTimeout: cc.UpstreamIdleTimeout()}
	if cc.TLS == nil {
		return opts, nil
	}
	tc := &tls.Config{ServerName: cc.TLS.SNI, InsecureSkipVerify: cc.TLS.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	switch {
	case cc.TLS.CAFile != "":
		pem, err := os.ReadFile(cc.TLS.CAFile)
		if err != nil {
			return opts, fmt.Errorf("cluster %s: reading ca_file: %w", cc.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return opts, fmt.Errorf("cluster %s: ca_file %s holds no PEM certificate", cc.Name, cc.TLS.CAFile)
		}
		tc.RootCAs = pool
	case cc.TLS.CAPEM != "":
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(cc.TLS.CAPEM)) {
			return opts, fmt.Errorf("cluster %s: ca_pem holds no PEM certificate", cc.Name)
		}
		tc.RootCAs = pool
	}
	if cc.TLS.CertFile != "" || cc.TLS.CertPEM != "" {
		pair, err := s.clusterPair(cc)
		if err != nil {
			return opts, fmt.Errorf("cluster %s: tls client certificate: %w", cc.Name, err)
		}
		tc.GetClientCertificate = pair.GetClientCertificate
	}
	opts.TLS = tc
	return opts, nil
}

// listenerPair is the key pair a TLS listener serves: from its files, or
// inline, held under the listener's name so that a new inline pair is
// swapped into the running listener (see swapInlinePairs).
func (s *Server) listenerPair(lc config.Listener) (*certs.Pair, error) {
	if t := lc.TLS; t.CertPEM != "" {
		return s.certs.Inline("listener "+lc.Name, t.CertPEM, t.KeyPEM)
	}
	return s.certs.Pair(lc.TLS.CertFile, lc.TLS.KeyFile)
}

// clusterPair is the client certificate a TLS cluster presents, as
// listenerPair.
func (s *Server) clusterPair(cc config.Cluster) (*certs.Pair, error) {
	if t := cc.TLS; t.CertPEM != "" {
		return s.certs.Inline("cluster "+cc.Name, t.CertPEM, t.KeyPEM)
	}
	return s.certs.Pair(cc.TLS.CertFile, cc.TLS.KeyFile)
}

// swapInlinePairs swaps the inline key pairs of cfg into the pairs its
// listeners and clusters hold, when they changed: new handshakes get the
// new pair, no listener or cluster is rebuilt and no connection is
// touched. Reload calls it once nothing can fail.
func (s *Server) swapInlinePairs(cfg *config.Config) {
	for _, lc := range cfg.Listeners {
		if t := lc.TLS; t != nil && t.CertPEM != "" {
			s.certs.SetInline("listener "+lc.Name, t.CertPEM, t.KeyPEM)
		}
	}
	for _, cc := range cfg.Clusters {
		if t := cc.TLS; t != nil && t.CertPEM != "" {
			s.certs.SetInline("cluster "+cc.Name, t.CertPEM, t.KeyPEM)
		}
	}
}

// retainCerts keeps the key pairs cfg names held and watched, and drops
// the others.
func (s *Server) retainCerts(cfg *config.Config) {
	var keep []*certs.Pair
	add := func(p *certs.Pair, err error) {
		// Held already, by the build of cfg: no I/O.
		if err == nil {
			keep = append(keep, p)
		}
	}
	for _, lc := range cfg.Listeners {
		if lc.TLS != nil {
			add(s.listenerPair(lc))
		}
	}
	for _, cc := range cfg.Clusters {
		if cc.TLS != nil && (cc.TLS.CertFile != "" || cc.TLS.CertPEM != "") {
			add(s.clusterPair(cc))
		}
	}
	s.certs.Retain(keep)
}
