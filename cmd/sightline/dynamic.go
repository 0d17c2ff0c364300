package main

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/server"
	"github.com/sightline-proxy/sightline/proxy/xds"
	"github.com/sightline-proxy/sightline/proxy/xds/apply"
	"github.com/sightline-proxy/sightline/stats"
)

// errNoTranslation refuses a dynamic section in a build that cannot
// translate Envoy resources.
var errNoTranslation = errors.New("dynamic: this build cannot translate Envoy resources")

// dynamic runs the stream to the control plane of a config with a
// dynamic section, and restarts it when a reload of the file changes the
// section. Its methods are called from the binary's main goroutine.
type dynamic struct {
	srv     *server.Server
	applier *apply.Applier
	st      *stats.XDS
	log     zerolog.Logger

	cur *config.Dynamic // the section the client runs with; nil: none
	// client is read by the admin server's /config_dump too.
	client atomic.Pointer[xds.Client]
	cancel context.CancelFunc
	done   chan struct{}
}

// newDynamic prepares the control plane's client for the bootstrap file
// at path; follow starts it.
func newDynamic(path string, srv *server.Server, lg zerolog.Logger) (*dynamic, error) {
	if translate == nil {
		return nil, errNoTranslation
	}
	d := &dynamic{srv: srv, log: lg}
	d.applier = apply.New(path, translate, srv, lg)
	if isEnvoy(path) {
		// An Envoy bootstrap with ADS: the control plane's resources
		// are loaded with its translation.
		d.applier.ReadWith(func(p string) ([]byte, error) {
			doc, _, err := envoyDocument(p)
			return doc, err
		})
	}
	d.srv.SetDynamicDump(func() json.Marshaler {
		if c := d.client.Load(); c != nil {
			return c.Dump()
		}
		return (*xds.Dump)(nil)
	})
	return d, nil
}

// follow starts, restarts or stops the client as cfg's dynamic section
// says: a changed section opens a new stream with it, the resources that
// run serving until the new stream brings its own.
func (d *dynamic) follow(cfg *config.Config, node config.Node) {
	if reflect.DeepEqual(d.cur, cfg.Dynamic) {
		return
	}
	d.stop()
	d.cur = cfg.Dynamic
	if d.cur == nil {
		return
	}
	if d.st == nil {
		d.st = d.srv.Stats().XDS()
	}
	tc, err := xds.TLSConfig(d.cur.ADS.TLS)
	if err != nil {
		// Checked by the loader: a file that went away since.
		d.log.Error().Err(err).Msg("not following the control plane")
		return
	}
	c := xds.New(xds.Options{Dynamic: *d.cur, Node: node, TLS: tc, Apply: d.applier, Stats: d.st, Log: d.log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	d.client.Store(c)
	d.cancel, d.done = cancel, done
}

// holdReady keeps /ready at INITIALIZING until the client's first
// complete set runs, its initial fetch timeout passes, or ctx ends. gate
// is the channel the server was told to wait for.
func (d *dynamic) holdReady(ctx context.Context, gate chan struct{}) {
	c := d.client.Load()
	if c == nil {
		close(gate)
		return
	}
	go func() {
		select {
		case <-c.Ready():
		case <-ctx.Done():
		}
		close(gate)
	}()
}

// stop ends the stream, if any, and waits for the client to return.
func (d *dynamic) stop() {
	if d.cancel == nil {
		return
	}
	d.cancel()
	<-d.done
	d.cancel, d.done = nil, nil
}
