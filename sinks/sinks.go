// Package sinks builds the stats sinks a config asks for: the Prometheus
// exposition, always, and each push sink of stats.sinks. Each sink lives in
// a package of its own (sinks/prometheus, sinks/statsd, sinks/otlp) with a
// constructor taking its own config; adding one is a package and a case
// here.
package sinks

import (
	"context"
	"errors"
	"fmt"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/sinks/otlp"
	"github.com/sightline-proxy/sightline/sinks/prometheus"
	"github.com/sightline-proxy/sightline/sinks/statsd"
	"github.com/sightline-proxy/sightline/stats"
)

// Set is the sinks of one config.
type Set struct {
	// Prometheus serves GET /stats/prometheus.
	Prometheus *prometheus.Sink
	// All is every sink, Prometheus first: stats.Options.Sinks.
	All []stats.Sink
}

// Build makes the sinks of cfg (defaults applied). o says who this proxy
// is; its EmitZeros is taken from cfg. Build does no I/O: push sinks
// connect when they first send.
func Build(cfg config.Stats, o stats.SinkOptions) (*Set, error) {
	o.EmitZeros = cfg.EmitZeros
	set := &Set{Prometheus: prometheus.New(cfg.Prometheus)}
	set.All = append(set.All, set.Prometheus)
	seen := map[string]int{}
	name := func(kind string) string {
		n := seen[kind]
		seen[kind]++
		if n == 0 {
			return kind
		}
		return fmt.Sprintf("%s_%d", kind, n)
	}
	for i, sc := range cfg.Sinks {
		var (
			sink stats.Sink
			err  error
		)
		switch {
		case sc.Statsd != nil:
			o.Name = name("statsd")
			sink, err = statsd.New(*sc.Statsd, o)
		case sc.OTLP != nil:
			o.Name = name("otlp")
			sink, err = otlp.New(*sc.OTLP, o)
		default:
			err = errors.New("no sink set")
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("stats.sinks[%d]: %w", i, err), set.Close(context.Background()))
		}
		set.All = append(set.All, sink)
	}
	return set, nil
}

// Close releases sinks no Store was built with (stats.New failed, say): a
// Store closes its sinks itself.
func (s *Set) Close(ctx context.Context) error {
	var errs []error
	for _, sink := range s.All {
		if c, ok := sink.(interface{ Close(context.Context) error }); ok {
			errs = append(errs, c.Close(ctx))
		}
	}
	return errors.Join(errs...)
}
