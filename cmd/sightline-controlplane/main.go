// Command sightline-controlplane serves a directory of Envoy resources
// (clusters, endpoints, listeners, route configurations, secrets; one
// YAML or JSON file per kind or as you like) to a fleet of proxies over
// xDS (the aggregated discovery service, state of the world), and serves
// them anew when the files change. Proxies with a dynamic section in
// their config follow it: Sightline, or Envoy.
//
//	sightline-controlplane --dir configs/xds [--listen 127.0.0.1:18000]
//
// A subdirectory named after a proxy's node id holds resources for that
// proxy alone. SIGHUP reads the directory again; a proxy's refusal of
// the resources (a NACK) is logged with what it said.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/internal/controlplane"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run is main without the exit, so that tests can call it.
func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("sightline-controlplane", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		dir       = fs.String("dir", "", "the directory of resource files (required)")
		listen    = fs.String("listen", "127.0.0.1:18000", "the address to serve xDS on")
		watch     = fs.Bool("watch", true, "serve the files anew when they change")
		logLevel  = fs.String("log-level", "info", "trace, debug, info, warn, error")
		logFormat = fs.String("log-format", "json", "json (to stderr) or console (for people)")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *dir == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: sightline-controlplane --dir DIR [--listen ADDR] [--watch=false] [--log-level LEVEL] [--log-format json|console]")
		return 2
	}
	lvl, err := zerolog.ParseLevel(*logLevel)
	if err != nil || *logLevel == "" {
		fmt.Fprintf(stderr, "sightline-controlplane: unknown log level %q\n", *logLevel)
		return 2
	}
	var w io.Writer = stderr
	switch *logFormat {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: stderr, TimeFormat: "15:04:05.000"}
	default:
		fmt.Fprintf(stderr, "sightline-controlplane: unknown log format %q\n", *logFormat)
		return 2
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	lg := zerolog.New(w).Level(lvl).With().Timestamp().Logger()

	cp, err := controlplane.New(controlplane.Options{Dir: *dir, Log: lg})
	if err != nil {
		lg.Error().Err(err).Msg("loading the resources")
		return 1
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		lg.Error().Err(err).Msg("listening")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *watch {
		go func() {
			if err := cp.Watch(ctx); err != nil {
				lg.Error().Err(err).Msg("not watching the resources; SIGHUP reloads them")
			}
		}()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if _, err := cp.Reload(); err != nil {
				lg.Error().Err(err).Msg("resources not reloaded; the last ones keep being served")
			}
		}
	}()
	if err := cp.Serve(ctx, ln); err != nil {
		lg.Error().Err(err).Msg("serving")
		return 1
	}
	return 0
}
