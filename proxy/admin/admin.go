// Package admin serves the admin endpoints: readiness, clusters, the
// running config, server info and the live status page. It binds to
// loopback unless told otherwise, since it can change the proxy's state.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/host"
)

// Source is what the admin server reports on; the proxy's server implements
// it.
type Source interface {
	// Clusters returns the running clusters in config order.
	Clusters() []*cluster.Cluster
	// ConfigJSON returns the running config, defaults applied, secrets
	// redacted.
	ConfigJSON() ([]byte, error)
	// Info returns the body of /server_info.
	Info() any
	// State is "INITIALIZING" (before the listeners are bound), "LIVE",
	// "DRAINING" or "FAILED" (after /healthcheck/fail).
	State() string
	// SetHealthcheckFailed makes /ready fail (true) or pass (false).
	SetHealthcheckFailed(bool)
}

// Server is the admin HTTP server.
type Server struct {
	src  Source
	srv  *http.Server
	ln   net.Listener
	log  zerolog.Logger
	done chan struct{}
	mux  *http.ServeMux

	// sampler keeps the minute of history the status page shows; it runs
	// from Start to Shutdown.
	sampler *sampler
	started atomic.Bool
	pprof   atomic.Bool // see SetPprof
}

// New prepares the admin server on addr. It does no I/O.
func New(addr string, src Source, lg zerolog.Logger) *Server {
	s := &Server{src: src, log: lg.With().Str("component", "admin").Logger(), done: make(chan struct{}), mux: http.NewServeMux(), sampler: newSampler(src)}
	s.mux.HandleFunc("GET /ready", s.ready)
	s.mux.HandleFunc("GET /clusters", s.clusters)
	s.mux.HandleFunc("GET /config_dump", s.configDump)
	s.mux.HandleFunc("GET /server_info", s.serverInfo)
	s.mux.HandleFunc("GET /memory", s.memory)
	s.mountPprof()
	s.mux.HandleFunc("POST /healthcheck/fail", func(w http.ResponseWriter, _ *http.Request) {
		s.src.SetHealthcheckFailed(true)
		fmt.Fprintln(w, "OK")
	})
	s.mux.HandleFunc("POST /healthcheck/ok", func(w http.ResponseWriter, _ *http.Request) {
		s.src.SetHealthcheckFailed(false)
		fmt.Fprintln(w, "OK")
	})
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		if wantsHTML(r) {
			s.statusHTML(w, r)
			return
		}
		s.index(w, r)
	})
	s.mux.HandleFunc("GET /help", s.index)
	s.mux.HandleFunc("GET /status.json", s.statusJSON)
	s.srv = &http.Server{Addr: addr, Handler: s.mux, ReadHeaderTimeout: 10 * time.Second}
	return s
}

// Handle adds an endpoint; later features (stats, logs) register theirs.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Start binds and serves in the background, and starts sampling the
// hosts' counters for the status page.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.srv.Addr)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	s.StartOn(ln)
	return nil
}

// StartOn is Start on a socket already bound: the one a process being
// upgraded passed to its successor.
func (s *Server) StartOn(ln net.Listener) {
	s.ln = ln
	s.started.Store(true)
	s.sampler.start()
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error().Err(err).Msg("admin server stopped")
		}
	}()
	s.log.Info().Str("address", ln.Addr().String()).Msg("admin listening")
}

// Listener returns the socket the server accepts on, nil before Start:
// an upgrade passes it to the new process.
func (s *Server) Listener() net.Listener { return s.ln }

// Addr returns the bound address.
func (s *Server) Addr() string {
	if s.ln == nil {
		return s.srv.Addr
	}
	return s.ln.Addr().String()
}

// Shutdown stops the admin server and its sampler. It is safe to call
// after a failed Start, and more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.sampler.close(s.started.Load())
	err := s.srv.Shutdown(ctx)
	if s.ln != nil {
		<-s.done
	}
	return err
}

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	st := s.src.State()
	if st != "LIVE" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, st)
}

func (s *Server) index(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, `Sightline admin
  /                       the live status page in a browser; this index otherwise (also at /help)
  /status.json            what the status page shows: hosts, clusters, listeners over the last minute
  /ready                  200 LIVE when serving; 503 while starting, draining or failed
  /stats                  every stat, flat names (?filter=REGEX, ?format=json, ?usedonly; ?format=prometheus as /stats/prometheus)
  /stats/prometheus       every stat in the Prometheus text format (?filter=REGEX, ?usedonly)
  /clusters               hosts with zone, weight, health and request counts (?format=json)
  /config_dump            the running config as JSON
  /server_info            version, uptime, node, state
  /memory                 heap, stacks, goroutines and RSS (Envoy's /memory fields)
  /debug/pprof/           Go's profiles (CPU, heap, goroutines; admin.pprof: false turns them off)
  POST /healthcheck/fail  make /ready fail
  POST /healthcheck/ok    make /ready pass again
  POST /reopen_logs       reopen the access and health-check event logs (log rotation)
  POST /upgrade           start the binary at the same path with the same arguments, hand it the sockets, drain (?timeout=1m)
`)
}

// HostStatus is one host in /clusters?format=json.
type HostStatus struct {
	Address     string `json:"address"`
	Zone        string `json:"zone"`
	Weight      uint32 `json:"weight"`
	HealthFlags string `json:"health_flags"`
	Healthy     bool   `json:"healthy"`
	RqActive    int64  `json:"rq_active"`
	RqTotal     uint64 `json:"rq_total"`
	RqError     uint64 `json:"rq_error"`
}

// ClusterStatus is one cluster in /clusters?format=json.
type ClusterStatus struct {
	Name     string `json:"name"`
	LBPolicy string `json:"lb_policy"`
	Protocol string `json:"protocol"`
	Panic    bool   `json:"panic"`
	// ZoneRouting says whether zone-aware routing is active and, if not,
	// why (cluster too small, no local zone, panic, ...).
	ZoneRouting ZoneRouting  `json:"zone_routing"`
	Hosts       []HostStatus `json:"host_statuses"`
}

// ZoneRouting is a cluster's zone-aware routing state in /clusters.
type ZoneRouting struct {
	Active bool   `json:"active"`
	State  string `json:"state"` // "all_directly", "sampled (62.50% local)", or "off: <reason>"
	Reason string `json:"reason,omitempty"`
}

func hostStatus(h *host.Host) HostStatus {
	f := h.Flags()
	return HostStatus{
		Address: h.Address, Zone: h.Zone, Weight: h.Weight,
		HealthFlags: host.FlagString(f), Healthy: f == 0,
		RqActive: h.Active.Load(), RqTotal: h.RqTotal.Load(), RqError: h.RqError.Load(),
	}
}

func (s *Server) clusters(w http.ResponseWriter, r *http.Request) {
	var out []ClusterStatus
	for _, c := range s.src.Clusters() {
		zr := c.ZoneRouting()
		cs := ClusterStatus{Name: c.Name, LBPolicy: c.Config.LBPolicy, Protocol: c.Config.Protocol, Panic: c.Panic(), Hosts: []HostStatus{},
			ZoneRouting: ZoneRouting{Active: zr.Active, State: zr.String(), Reason: zr.Reason}}
		for _, h := range c.Hosts() {
			cs.Hosts = append(cs.Hosts, hostStatus(h))
		}
		out = append(out, cs)
	}
	if r.URL.Query().Get("format") == "json" {
		writeJSON(w, map[string]any{"cluster_statuses": out})
		return
	}
	// Envoy's text form: cluster::address::field::value, one a line.
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	var b strings.Builder
	for _, c := range out {
		fmt.Fprintf(&b, "%s::lb_policy::%s\n", c.Name, c.LBPolicy)
		fmt.Fprintf(&b, "%s::panic::%t\n", c.Name, c.Panic)
		fmt.Fprintf(&b, "%s::zone_routing::%s\n", c.Name, c.ZoneRouting.State)
		for _, h := range c.Hosts {
			p := c.Name + "::" + h.Address + "::"
			b.WriteString(p + "zone::" + h.Zone + "\n")
			b.WriteString(p + "weight::" + strconv.FormatUint(uint64(h.Weight), 10) + "\n")
			b.WriteString(p + "health_flags::" + h.HealthFlags + "\n")
			b.WriteString(p + "rq_active::" + strconv.FormatInt(h.RqActive, 10) + "\n")
			b.WriteString(p + "rq_total::" + strconv.FormatUint(h.RqTotal, 10) + "\n")
			b.WriteString(p + "rq_error::" + strconv.FormatUint(h.RqError, 10) + "\n")
		}
	}
	fmt.Fprint(w, b.String())
}

func (s *Server) configDump(w http.ResponseWriter, _ *http.Request) {
	b, err := s.src.ConfigJSON()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func (s *Server) serverInfo(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, s.src.Info())
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
