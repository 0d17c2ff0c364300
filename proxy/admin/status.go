package admin

import (
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// statusPage is the HTML status page: one file, its CSS and script inline,
// no external assets, so that it works on a machine with no way out. The
// script fetches status.json every two seconds and redraws in place.
//
//go:embed status.html
var statusPage string

// nonceMark is replaced in statusPage by each response's CSP nonce.
const nonceMark = "{{nonce}}"

// Status is the body of /status.json: what the status page shows.
type Status struct {
	Time time.Time `json:"time"`
	// WindowSeconds is the time the rates cover: a minute once the admin
	// server has run that long.
	WindowSeconds   float64          `json:"window_seconds"`
	IntervalSeconds float64          `json:"interval_seconds"`
	State           string           `json:"state"`
	Server          json.RawMessage  `json:"server"` // /server_info's body
	Listeners       []ListenerStatus `json:"listeners"`
	Clusters        []ClusterWindow  `json:"clusters"`
}

// ListenerStatus is one listener in /status.json.
type ListenerStatus struct {
	Name       string  `json:"name"`
	Address    string  `json:"address"`
	StatPrefix string  `json:"stat_prefix"`
	RqActive   int64   `json:"rq_active"`
	CxActive   int64   `json:"cx_active"`
	RqTotal    int64   `json:"rq_total"`
	NoRoute    int64   `json:"no_route"`
	RqPerSec   float64 `json:"rq_per_sec"`
	// History is requests per second in each interval of the window,
	// oldest first.
	History []float64 `json:"history"`
}

// ClusterWindow is one cluster in /status.json: its hosts and the last
// minute of its requests.
type ClusterWindow struct {
	Name         string `json:"name"`
	LBPolicy     string `json:"lb_policy"`
	Protocol     string `json:"protocol"`
	Panic        bool   `json:"panic"`
	HostsTotal   int    `json:"hosts_total"`
	HostsHealthy int    `json:"hosts_healthy"`
	RqActive     int64  `json:"rq_active"`
	rates
	// History is requests per second in each interval of the window,
	// oldest first.
	History []float64    `json:"history"`
	Hosts   []HostWindow `json:"hosts"`
}

// HostWindow is one host in /status.json: its /clusters fields and the
// last minute of its requests.
type HostWindow struct {
	HostStatus
	rates
}

// status builds the body of /status.json.
func (s *Server) status() Status {
	out := Status{
		Time:            time.Now().UTC(),
		IntervalSeconds: sampleEvery.Seconds(),
		State:           s.src.State(),
		Listeners:       []ListenerStatus{},
		Clusters:        []ClusterWindow{},
	}
	if b, err := json.Marshal(s.src.Info()); err == nil {
		out.Server = b
	} else {
		out.Server = json.RawMessage("null")
	}
	var listeners []Listener
	if ls, ok := s.src.(ListenerSource); ok {
		listeners = ls.StatusListeners()
	}
	clusters := s.src.Clusters()

	sm := s.sampler
	sm.mu.Lock()
	defer sm.mu.Unlock()
	out.WindowSeconds = round(sm.windowSecondsLocked(), 3)
	for _, l := range listeners {
		ls := ListenerStatus{Name: l.Name, Address: l.Address, StatPrefix: l.StatPrefix, History: []float64{}}
		if st := l.Stats; st != nil {
			ls.RqActive, ls.CxActive = st.DownstreamRqActive.Value(), st.DownstreamCxActive.Value()
			ls.RqTotal, ls.NoRoute = st.DownstreamRqTotal.Value(), st.NoRoute.Value()
		}
		if lh := sm.listeners[l.Name]; lh != nil {
			w := sm.windowLocked(&lh.history)
			ls.RqPerSec, ls.History = w.rates().RqPerSec, roundAll(w.perSecond)
		}
		out.Listeners = append(out.Listeners, ls)
	}
	for _, c := range clusters {
		cw := ClusterWindow{Name: c.Name, LBPolicy: c.Config.LBPolicy, Protocol: c.Config.Protocol, Panic: c.Panic(), History: []float64{}, Hosts: []HostWindow{}}
		for _, h := range c.Hosts() {
			hw := HostWindow{HostStatus: hostStatus(h)}
			if hh := sm.hosts[h]; hh != nil {
				w := sm.windowLocked(&hh.history)
				hw.rates = w.rates()
			}
			cw.HostsTotal++
			if hw.Healthy {
				cw.HostsHealthy++
			}
			cw.RqActive += hw.RqActive
			cw.Hosts = append(cw.Hosts, hw)
		}
		if ch := sm.clusters[c.Name]; ch != nil {
			w := sm.windowLocked(ch)
			cw.rates, cw.History = w.rates(), roundAll(w.perSecond)
		}
		out.Clusters = append(out.Clusters, cw)
	}
	return out
}

func roundAll(v []float64) []float64 {
	for i := range v {
		v[i] = round(v[i], 3)
	}
	return v
}

func (s *Server) statusJSON(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, s.status())
}

// wantsHTML reports whether a request to / comes from a browser: one that
// lists text/html in Accept. curl and scripts get the plain-text index.
func wantsHTML(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), "text/html") {
				return true
			}
		}
	}
	return false
}

// statusHTML serves the status page. Its Content-Security-Policy lets it
// load nothing but status.json: no other origin, and no script or style
// but its own inline ones, marked with a nonce made for this response.
func (s *Server) statusHTML(w http.ResponseWriter, _ *http.Request) {
	var b [18]byte
	_, _ = rand.Read(b[:])
	nonce := base64.StdEncoding.EncodeToString(b[:])
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; connect-src 'self'; img-src data:; "+
		"script-src 'nonce-"+nonce+"'; style-src 'nonce-"+nonce+"'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	_, _ = w.Write([]byte(strings.ReplaceAll(statusPage, nonceMark, nonce)))
}
