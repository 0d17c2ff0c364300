package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/config/diff"
	"github.com/sightline-proxy/sightline/proxy/listener"
	"github.com/sightline-proxy/sightline/proxy/procs"
	"github.com/sightline-proxy/sightline/proxy/route"
)

// retireGrace is how long a cluster a reload replaced stays open: a request
// that matched a route of the old table just before the swap still finds
// its pools. Streams in flight on them finish whatever the grace.
const retireGrace = 2 * time.Second

// ErrShuttingDown is returned by Reload once Shutdown has begun.
var ErrShuttingDown = errors.New("server is shutting down")

// Reload applies cfg in place, as Envoy applies a new config without a
// restart: unchanged clusters keep their pools, health and outlier state;
// static clusters whose endpoints alone changed update their hosts in
// place (cluster.SetEndpoints); other changed and added clusters are built
// and started, and health-checked
// before any traffic goes to them; every listener's route table is swapped
// atomically; listeners whose own settings changed are rebuilt on the same
// socket; removed listeners drain and removed or replaced clusters close
// once their calls are done. Stats keep counting across the swap.
//
// What a running process cannot change (the admin address, node identity,
// stats sinks and filters, tracing) is kept as it runs and reported as a
// warning. On error nothing changes and the old config keeps serving.
func (s *Server) Reload(cfg *config.Config) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	select {
	case <-s.quit:
		return ErrShuttingDown
	default:
	}
	if s.handedOff.Load() {
		return ErrShuttingDown
	}
	// New certificates at unchanged paths: the config does not show
	// them, their files do. A pair that does not load keeps the old one
	// serving (logged, counted) and does not hold the reload back.
	s.certs.Refresh()
	old := s.cur.Load()
	plan := diff.Compute(old.cfg, cfg)
	if plan.Unchanged() {
		s.log.Info().Msg("config reloaded: nothing changed")
		s.setLoaded(cfg)
		s.cur.Store(&state{cfg: cfg, clusters: old.clusters, byName: old.byName, listeners: old.listeners})
		s.stats.Server().ConfigReload.Inc(1)
		return nil
	}
	for _, w := range plan.Warnings {
		s.log.Warn().Msg(w)
	}
	kept := keepProcessWide(cfg, old.cfg, plan.Process)
	if kept != "" {
		s.log.Warn().Str("kept", kept).Msg("these settings need a restart to change; the running ones are kept")
		// The process-wide parts now equal the old ones: compute again,
		// so that nothing is rebuilt for a change that is not applied.
		plan = diff.Compute(old.cfg, cfg)
	}

	gen := &state{cfg: cfg, byName: make(map[string]*cluster.Cluster, len(cfg.Clusters))}
	var fresh []*cluster.Cluster
	var built []*running
	fail := func(err error) error {
		for _, r := range built {
			closeLoggers(r.logs)
		}
		for _, c := range fresh {
			c.Close()
		}
		s.retainCerts(old.cfg)
		s.stats.Server().ConfigReloadFailed.Inc(1)
		return err
	}
	keep := make(map[string]bool, len(plan.Clusters.Kept))
	for _, name := range plan.Clusters.Kept {
		keep[name] = true
	}
	// Static clusters whose endpoints alone changed are updated in place
	// once nothing can fail, as an EDS update would be.
	var setEndpoints []func()
	for _, cc := range cfg.Clusters {
		c, ok := old.byName[cc.Name]
		if ok && keep[cc.Name] {
			gen.clusters = append(gen.clusters, c)
			gen.byName[cc.Name] = c
			continue
		}
		if ok && endpointsOnly(plan.Clusters.Why[cc.Name]) && cc.Type != "strict_dns" {
			gen.clusters = append(gen.clusters, c)
			gen.byName[cc.Name] = c
			setEndpoints = append(setEndpoints, func() { c.SetEndpoints(cc.Endpoints) })
			continue
		}
		c, err := s.buildCluster(cfg, cc)
		if err != nil {
			return fail(err)
		}
		fresh = append(fresh, c)
		gen.clusters = append(gen.clusters, c)
		gen.byName[cc.Name] = c
	}

	cluster.LinkLocal(gen.byName)
	oldListeners := make(map[string]*running, len(old.listeners))
	for _, r := range old.listeners {
		oldListeners[r.cfg.Name] = r
	}
	tables := make(map[*running]*route.Table)
	for _, lc := range cfg.Listeners {
		table, err := s.routeTable(&lc, gen.byName)
		if err != nil {
			return fail(fmt.Errorf("listener %s: %w", lc.Name, err))
		}
		if r, ok := oldListeners[lc.Name]; ok && (slices.Contains(plan.Listeners.Kept, lc.Name) || slices.Contains(plan.Listeners.RoutesChanged, lc.Name)) {
			tables[r] = table
			gen.listeners = append(gen.listeners, r)
			continue
		}
		// A rebuilt listener counts its connections with the one it
		// replaces, which drains: its cap covers them both.
		conns := s.connLimits[lc.Name]
		if conns == nil {
			conns = listener.NewConnLimit(lc.Limits.MaxConnections)
		}
		r, err := s.buildListener(lc, table, conns)
		if err != nil {
			return fail(err)
		}
		built = append(built, r)
		gen.listeners = append(gen.listeners, r)
	}

	// Start what is new: clusters first, health-checked before traffic.
	for _, c := range fresh {
		c.Start(s.ctx)
	}
	s.waitHealthChecked(cfg, fresh)
	// New listeners on new addresses bind now; a bind error undoes the
	// reload before anything else changed.
	var started []*running
	for _, r := range built {
		if from, ok := plan.Listeners.Handoffs[r.cfg.Name]; ok && oldListeners[from] != nil {
			continue
		}
		if err := s.startListener(r); err != nil {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			for _, sr := range started {
				sr.l.Shutdown(ctx)
			}
			return fail(bindError(cfg, listenerPath(cfg, r.cfg.Name), "listener "+r.cfg.Name, r.cfg.Address, err))
		}
		started = append(started, r)
	}
	// Past this point nothing fails. Rebuilt listeners take over their
	// predecessors' sockets, so no connection is refused in between.
	for _, set := range setEndpoints {
		set()
	}
	s.swapInlinePairs(cfg)
	for _, r := range built {
		if from, ok := plan.Listeners.Handoffs[r.cfg.Name]; ok {
			if prev := oldListeners[from]; prev != nil {
				if ln := prev.l.Release(); ln != nil {
					r.l.StartOn(ln)
					continue
				}
				// The old socket could not be handed over: bind anew
				// once it is closed below.
				defer s.startLate(r)
			}
		}
	}
	for r, t := range tables {
		r.setRoutes(t)
	}
	s.cur.Store(gen)
	s.setLoaded(cfg)
	s.global.SetMax(cfg.Server.MaxConnections)
	s.overload.Reconfigure(overloadConfig(cfg.Overload))
	s.admin.SetPprof(cfg.Admin.PprofOn())
	procs.Process().SetEnabled(cfg.Server.AdaptiveConcurrencyOn())
	limits := make(map[string]*listener.ConnLimit, len(gen.listeners))
	for _, r := range gen.listeners {
		r.conns.SetMax(r.cfg.Limits.MaxConnections)
		limits[r.cfg.Name] = r.conns
	}
	s.connLimits = limits
	s.retainCerts(cfg)

	// Retire what the new generation does not use.
	inUse := make(map[*running]bool, len(gen.listeners))
	for _, r := range gen.listeners {
		inUse[r] = true
	}
	for _, r := range old.listeners {
		if !inUse[r] {
			s.retireListener(r, cfg.Server.DrainTimeout.D())
		}
	}
	live := make(map[*cluster.Cluster]bool, len(gen.clusters))
	for _, c := range gen.clusters {
		live[c] = true
	}
	for _, c := range old.clusters {
		if !live[c] {
			s.retireCluster(c)
		}
	}
	s.stats.Server().ConfigReload.Inc(1)
	s.log.Info().Str("changes", plan.String()).Msg("config reloaded")
	return nil
}

// endpointsOnly reports whether a cluster's changed keys are its
// endpoints alone.
func endpointsOnly(why []string) bool { return len(why) == 1 && why[0] == "endpoints" }

// ReloadRefused counts a reload whose config did not load
// (server.config_reload_failed); the caller logs the problems.
func (s *Server) ReloadRefused() { s.stats.Server().ConfigReloadFailed.Inc(1) }

// startLate binds a rebuilt listener whose predecessor's socket could not
// be handed over, once that socket is closed.
func (s *Server) startLate(r *running) {
	if err := s.startListener(r); err != nil {
		s.log.Error().Err(err).Str("listener", r.cfg.Name).Msg("rebuilt listener could not bind")
	}
}

// retireListener drains a listener the running config no longer has, then
// closes its access logs.
func (s *Server) retireListener(r *running, timeout time.Duration) {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := r.l.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			s.log.Warn().Err(err).Str("listener", r.cfg.Name).Msg("retired listener")
		}
		closeLoggers(r.logs)
	}()
}

// retireCluster closes a cluster the running config no longer has, after
// retireGrace (at once when the proxy shuts down).
func (s *Server) retireCluster(c *cluster.Cluster) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		t := time.NewTimer(retireGrace)
		select {
		case <-t.C:
		case <-s.quit:
			t.Stop()
		}
		c.Close()
	}()
}

// keepProcessWide puts back into cfg the running values of what a running
// process cannot change, and names them ("" when none).
func keepProcessWide(cfg, old *config.Config, changed diff.Part) string {
	var kept diff.Part
	if changed.Has(diff.AdminAddress) {
		cfg.Admin.Address = old.Admin.Address
		kept |= diff.AdminAddress
	}
	if changed.Has(diff.Node) {
		cfg.Node = old.Node
		kept |= diff.Node
	}
	if changed.Has(diff.StatsSinks) || changed.Has(diff.StatsFilter) {
		cfg.Stats = old.Stats
		kept |= diff.StatsSinks | diff.StatsFilter
	}
	if changed.Has(diff.Tracing) {
		cfg.Tracing = old.Tracing
		kept |= diff.Tracing
	}
	if kept == 0 {
		return ""
	}
	return kept.String()
}
