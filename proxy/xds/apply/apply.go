// Package apply makes what a control plane sends the running config, by
// the same path as a reload of the config file: the resources are
// translated into a config document (listeners: and clusters:, as a user
// would write them), loaded with the bootstrap file as if it included the
// document, so that every check of the file applies to them too, and
// handed to the server's Reload, which rebuilds only what changed (an
// endpoints-only change updates the cluster's hosts in place).
package apply

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/xds"
)

// SourceName names the generated document in problems and logs.
const SourceName = "xds"

// Skipped is an Envoy field the translation did not carry.
type Skipped struct {
	Path string // the Envoy field
	Why  string // what Sightline does instead
}

// Translator renders resources as a config document holding listeners
// and clusters. Its error names the Envoy field that cannot be carried;
// the control plane gets it as the NACK's error_detail.
type Translator func(*xds.Snapshot) (doc []byte, skipped []Skipped, err error)

// Reloader runs a config: the server's Reload.
type Reloader interface {
	Reload(*config.Config) error
}

// Applier is an xds.Applier that loads each set of resources with the
// bootstrap file at Path and runs it. It also loads the file for a reload
// of the file itself (SIGHUP, a watched change), with the last set of
// resources that ran, so that the file and the resources are always
// loaded together. Its methods are safe to call from any goroutine; one
// runs at a time.
type Applier struct {
	path      string
	translate Translator
	srv       Reloader
	log       zerolog.Logger

	// read gives the bootstrap's document (ReadWith); nil: the file at
	// path is one.
	read func(path string) ([]byte, error)

	mu  sync.Mutex
	doc []byte // the document of the last set that ran; nil before one did
	// skipped is what the last set that ran did not carry, to log only
	// what changed.
	skipped map[string]string
}

// New returns an Applier of the bootstrap file at path.
func New(path string, translate Translator, srv Reloader, lg zerolog.Logger) *Applier {
	return &Applier{path: path, translate: translate, srv: srv, log: lg.With().Str("component", "xds").Logger()}
}

// ReadWith makes the Applier load the document read gives for the
// bootstrap file instead of the file itself: the translation of an Envoy
// bootstrap. Call it before the first Apply.
func (a *Applier) ReadWith(read func(path string) ([]byte, error)) { a.read = read }

// load loads the bootstrap with extra, as if it included them.
func (a *Applier) load(extra ...config.Source) (*config.Config, error) {
	if a.read == nil {
		return config.LoadWith(a.path, extra...)
	}
	data, err := a.read(a.path)
	if err != nil {
		return nil, err
	}
	return config.LoadData(a.path, data, extra...)
}

// Apply implements xds.Applier: translate, load with the bootstrap, run.
// On error nothing changes and the error says why, as the control plane
// will read it: the resource and field at fault.
func (a *Applier) Apply(s *xds.Snapshot) error {
	doc, skipped, err := a.translate(s)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	cfg, err := a.load(config.Source{Name: SourceName, Data: doc})
	if err != nil {
		return refusal(err)
	}
	if cfg.Dynamic == nil {
		return fmt.Errorf("%s has no dynamic section any more: the resources are not used", a.path)
	}
	logWarnings(a.log, cfg)
	if err := a.srv.Reload(cfg); err != nil {
		return err
	}
	a.doc = doc
	a.logSkipped(skipped)
	return nil
}

// ReloadFile is a reload of the bootstrap file itself (SIGHUP, a watched
// change): it loads the file with the resources that run, when it still
// has a dynamic section, and hands the config to run (which reloads the
// server), holding Apply off meanwhile, so that the file and the
// resources are always loaded together. A config that does not load is
// returned as the loader's error, and run is not called; run's error is
// returned as it is.
func (a *Applier) ReloadFile(run func(*config.Config) error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var extra []config.Source
	if a.doc != nil {
		extra = append(extra, config.Source{Name: SourceName, Data: a.doc})
	}
	cfg, err := a.load(extra...)
	drop := false
	if err == nil && cfg.Dynamic == nil && extra != nil {
		// The file no longer follows a control plane: its own listeners
		// and clusters are the whole config.
		cfg, err = a.load()
		drop = true
	}
	if err != nil {
		return err
	}
	if err := run(cfg); err != nil {
		return err
	}
	if drop {
		a.doc = nil
	}
	return nil
}

// refusal turns the loader's problems into one line for a control
// plane: each problem's path (which names listeners and clusters by
// name), message and hint, without the line and column of a document the
// control plane never saw. Problems in the bootstrap file keep their
// place, since an operator fixes them there.
func refusal(err error) error {
	var problems config.Errors
	if !errors.As(err, &problems) {
		return err
	}
	lines := make([]string, 0, len(problems))
	for _, p := range problems {
		if p.File == SourceName {
			p.File, p.Line, p.Column = "", 0, 0
			s := strings.TrimPrefix(p.String(), ": ")
			lines = append(lines, s)
			continue
		}
		lines = append(lines, p.String())
	}
	return errors.New(strings.Join(lines, "; "))
}

// logSkipped logs the Envoy fields the translation did not carry, when
// they differ from the last set's: once per change, not on every update.
func (a *Applier) logSkipped(skipped []Skipped) {
	now := make(map[string]string, len(skipped))
	for _, s := range skipped {
		now[s.Path] = s.Why
	}
	for path, why := range now {
		if prev, ok := a.skipped[path]; !ok || prev != why {
			a.log.Info().Str("field", path).Str("why", why).Msg("an Envoy field is not carried")
		}
	}
	a.skipped = now
}

// logWarnings logs what the loader found doubtful.
func logWarnings(lg zerolog.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings {
		lg.Warn().Str("warning", w.String()).Msg("config warning")
	}
}
