// Command sightline is an L7 proxy for HTTP/2 and gRPC that balances every
// call on its own and emits the same stats, traces and logs at every hop.
//
//	sightline -c sightline.yaml           run the proxy (also: sightline run -c …);
//	                                      SIGHUP (or a changed file with --watch) reloads it;
//	                                      SIGUSR2 upgrades it (see sightline upgrade)
//	sightline upgrade -c sightline.yaml   start the binary at the same path in place of
//	                                      the running one, which hands over its sockets
//	sightline validate -c sightline.yaml  check a config and print a summary
//	sightline import envoy.yaml           translate an Envoy v3 bootstrap into a Sightline config
//	                                      (run and validate also take one, with --envoy or detected)
//	sightline demo                        proxy + sample backends + traffic
//	sightline version                     version, commit, Go version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/internal/demo"
	"github.com/sightline-proxy/sightline/internal/upgrade"
	"github.com/sightline-proxy/sightline/internal/version"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/config/watch"
	"github.com/sightline-proxy/sightline/proxy/envoyconf"
	"github.com/sightline-proxy/sightline/proxy/server"
)

const usage = `Usage:
  sightline [run] -c FILE [--envoy] [--skip-unsupported] [--watch] [--pid-file FILE] [--log-level LEVEL] [--log-format json|console]
  sightline upgrade (-c FILE | --admin ADDR) [--timeout 1m]
  sightline validate -c FILE [--envoy] [--skip-unsupported]
  sightline import [-o FILE] [--skip-unsupported] ENVOY_BOOTSTRAP
  sightline demo [--listen ADDR] [--admin ADDR]
  sightline version

Flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so that tests can call it.
func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	if cmd == "import" {
		return importCmd(args, stdout, stderr)
	}
	fs := flag.NewFlagSet("sightline "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var (
		cfgPath   string
		logLevel  = fs.String("log-level", "info", "the proxy's own log level: trace, debug, info, warn, error")
		logFormat = fs.String("log-format", "json", "json (to stderr) or console (for people)")
		listen    = fs.String("listen", "127.0.0.1:10000", "demo: the proxy listener's address")
		adminAddr = fs.String("admin", "127.0.0.1:9901", "demo: the admin server's address; upgrade: the admin server of the process to upgrade (default: the config's)")
		pidFile   = fs.String("pid-file", "", "run: write the pid of the process serving the listeners here (rewritten by an upgrade)")
		timeout   = fs.Duration("timeout", upgrade.DefaultTimeout, "upgrade: how long the new process has to be ready")
		watchFlag = fs.Bool("watch", false, "reload when the config file or an included file changes (also server.watch in the config)")
		envoyFlag = fs.Bool("envoy", false, "run, validate: the config file is an Envoy v3 bootstrap, translated as sightline import does (detected without the flag when its top level has static_resources or dynamic_resources)")
		skipFlag  = fs.Bool("skip-unsupported", false, "run, validate: with an Envoy bootstrap, drop the fields whose loss changes what the proxy does to traffic instead of refusing them (see sightline import)")
	)
	fs.StringVar(&cfgPath, "c", "", "config file (.yaml, .yml or .json)")
	fs.StringVar(&cfgPath, "config", "", "config file (same as -c)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sightline %s: unexpected argument %q\n", cmd, fs.Arg(0))
		return 2
	}
	envoyMode.force, envoyMode.opts = *envoyFlag, envoyconf.Options{SkipUnsupported: *skipFlag}
	lg, err := newLogger(*logLevel, *logFormat, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sightline: %v\n", err)
		return 2
	}

	switch cmd {
	case "version":
		v := version.Get()
		fmt.Fprintf(stdout, "sightline %s (commit %s, %s)\n", v.Version, v.Commit, v.GoVersion)
		return 0
	case "validate":
		if cfgPath == "" {
			fmt.Fprint(stderr, noConfig(cmd))
			return 2
		}
		cfg, skipped, err := loadConfig(cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		printSkipped(stderr, cfgPath, skipped)
		if cfg.Dynamic != nil && translate == nil {
			fmt.Fprintf(stderr, "%s: %v\n", cfgPath, errNoTranslation)
			return 1
		}
		for _, w := range cfg.Warnings {
			fmt.Fprintln(stderr, "warning: "+w.String())
		}
		fmt.Fprintf(stdout, "%s: ok\n%s\n", cfgPath, strings.TrimRight(cfg.Summary(), "\n"))
		return 0
	case "run":
		if cfgPath == "" {
			fmt.Fprint(stderr, noConfig(cmd))
			return 2
		}
		up, err := newUpgrades(*pidFile, lg)
		if err != nil {
			lg.Error().Err(err).Msg("starting")
			return 1
		}
		defer up.exit()
		cfg, skipped, err := loadConfig(cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, err)
			up.fail(err)
			return 1
		}
		logSkipped(lg, cfgPath, skipped)
		logWarnings(lg, cfg)
		return serve(cfgPath, cfg, *watchFlag, lg, up)
	case "upgrade":
		adminSet := false
		fs.Visit(func(f *flag.Flag) { adminSet = adminSet || f.Name == "admin" })
		return requestUpgrade(cfgPath, *adminAddr, adminSet, *timeout, stdout, stderr)
	case "demo":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		if err := demo.Run(ctx, demo.Options{Listen: *listen, Admin: *adminAddr, Out: stdout, Log: lg}); err != nil {
			fmt.Fprintf(stderr, "sightline demo: %v\n", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "sightline: unknown command %q\n\n", cmd)
	fs.Usage()
	return 2
}

// noConfig is the message for a command that needs -c and was not given
// it. There is no default location to fall back on: a proxy that starts
// from a file nobody named is a surprise in production.
func noConfig(cmd string) string {
	return fmt.Sprintf(`sightline %[1]s: no config file: -c FILE (or --config FILE) is required
  sightline reads no default location; name the file, .yaml, .yml or .json, e.g.
    sightline %[1]s -c /etc/sightline/sightline.yaml
  for a first look with no config at all, run: sightline demo
`, cmd)
}

// logWarnings logs what Load found doubtful in cfg, one line each, placed.
func logWarnings(lg zerolog.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings {
		lg.Warn().Str("warning", w.String()).Msg("config warning")
	}
}

// serve runs the proxy until SIGTERM, SIGINT or POST /drain_listeners,
// then drains; a second signal exits at once. SIGHUP, and a change of the
// config or an included file when watching, reload the config in place.
// SIGUSR2 and POST /upgrade hand the sockets to a new process, then
// retire this one.
func serve(cfgPath string, cfg *config.Config, watchFlag bool, lg zerolog.Logger, up *upgrades) int {
	srv, err := server.New(cfg, lg)
	if err != nil {
		lg.Error().Err(err).Msg("building the proxy")
		up.fail(err)
		return 1
	}
	up.attach(srv)
	r := &reloader{path: cfgPath, srv: srv, flag: watchFlag, log: lg, changed: make(chan struct{}, 1)}
	// A proxy following a control plane is not ready before the first
	// resources run.
	gate := make(chan struct{})
	if cfg.Dynamic != nil {
		if r.dyn, err = newDynamic(cfgPath, srv, lg); err != nil {
			lg.Error().Err(err).Msg("building the proxy")
			up.fail(err)
			return 1
		}
		srv.HoldReady(gate)
	}
	if err := srv.Start(context.Background()); err != nil {
		lg.Error().Err(err).Msg("starting the proxy")
		up.fail(err)
		return 1
	}
	lg.Info().Str("admin", srv.AdminAddr()).Msg("sightline started")
	go releaseLoadGarbage()
	stopped, stopGate := context.WithCancel(context.Background())
	defer stopGate()
	if r.dyn != nil {
		r.dyn.follow(cfg, cfg.Node)
		r.dyn.holdReady(stopped, gate)
	} else {
		close(gate) // ready now
	}
	ready := (<-chan struct{})(gate)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, append([]os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}, upgradeSignals...)...)
	r.watch(cfg)
	defer r.stopWatching()
	var sig os.Signal
wait:
	for {
		select {
		case sig = <-sigs:
			if slices.Contains(upgradeSignals, sig) {
				up.start(upgrade.Trigger{From: "SIGUSR2"})
				continue
			}
			if sig != syscall.SIGHUP {
				break wait
			}
			if up.run != nil {
				lg.Warn().Msg("SIGHUP while upgrading: not reloaded; the new process loads the file as it is")
				continue
			}
			lg.Info().Msg("SIGHUP: reloading the config")
			r.reload()
		case <-ready:
			ready = nil
			up.serving()
		case t := <-up.triggers:
			up.start(t)
		case d := <-up.done():
			if up.finish(d) {
				break wait
			}
		case <-r.changed:
			if up.run != nil {
				lg.Warn().Msg("config file changed while upgrading: not reloaded; the new process loads the file as it is")
				continue
			}
			lg.Info().Msg("config file changed: reloading")
			r.reload()
		case <-srv.DrainRequested():
			sig = nil
			break wait
		}
	}
	switch {
	case up.handedOver:
	case sig != nil:
		lg.Info().Str("signal", sig.String()).Msg("draining")
	default:
		lg.Info().Msg("POST /drain_listeners: draining")
	}
	up.stop()
	r.stopWatching()
	stopGate()
	if r.dyn != nil {
		// No update from the control plane while draining.
		r.dyn.stop()
	}
	done := make(chan error, 1)
	go func() {
		if up.handedOver {
			done <- srv.Retire(context.Background())
			return
		}
		done <- srv.Shutdown(context.Background())
	}()
	for {
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				lg.Warn().Err(err).Msg("shutdown")
			}
			lg.Info().Msg("stopped")
			return 0
		case sig := <-sigs:
			if sig == syscall.SIGHUP || slices.Contains(upgradeSignals, sig) {
				continue // no reload or upgrade while draining
			}
			lg.Warn().Str("signal", sig.String()).Msg("second signal: exiting now")
			return 1
		}
	}
}

// reloader reads the config again and hands it to the server, on SIGHUP
// or, when watching, when a file of the config changes.
type reloader struct {
	path    string
	srv     *server.Server
	flag    bool // --watch
	log     zerolog.Logger
	changed chan struct{}
	w       *watch.Watcher
	// dyn follows the control plane, when the config has a dynamic
	// section (or had one since the start).
	dyn *dynamic
}

// reload loads and applies the config: with the resources the control
// plane sent, when it has a dynamic section. A config that does not load
// is refused, every problem logged with its file:line:column, and the
// running config keeps serving.
func (r *reloader) reload() {
	var ran *config.Config
	run := func(cfg *config.Config) error {
		logWarnings(r.log, cfg)
		if err := r.srv.Reload(cfg); err != nil {
			r.log.Error().Err(err).Msg("config reload failed; the running config keeps serving")
			return nil
		}
		ran = cfg
		return nil
	}
	var err error
	if r.dyn != nil {
		err = r.dyn.applier.ReloadFile(run)
	} else {
		var cfg *config.Config
		var skipped []envoyconf.Skipped
		if cfg, skipped, err = loadConfig(r.path); err == nil {
			logSkipped(r.log, r.path, skipped)
			err = run(cfg)
		}
	}
	if err != nil {
		for _, line := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
			r.log.Error().Str("problem", line).Msg("config reload refused; the running config keeps serving")
		}
		r.srv.ReloadRefused()
		return
	}
	if ran == nil {
		return
	}
	r.watch(ran)
	// After ReloadFile returned: restarting the client waits for an
	// update it may be applying, which waits for ReloadFile.
	r.follow(ran)
	go releaseLoadGarbage()
}

// follow starts, restarts or stops following a control plane as the
// reloaded config's dynamic section says.
func (r *reloader) follow(cfg *config.Config) {
	if r.dyn == nil {
		if cfg.Dynamic == nil {
			return
		}
		d, err := newDynamic(r.path, r.srv, r.log)
		if err != nil {
			r.log.Error().Err(err).Msg("not following the control plane")
			return
		}
		r.dyn = d
	}
	// The node is the running one: a reload does not change it.
	r.dyn.follow(cfg, r.srv.Config().Node)
}

// releaseLoadGarbage gives the memory that loading a config left free
// back to the system at once. Parsing a large config makes several times
// its own size in garbage (a 100,000-host file: about 200 MB, for 30 MB
// kept), which Go's background scavenger returns over minutes; until
// then the RSS shows the parse, not the config. A forced collection costs
// a few milliseconds per 10 MB live, once per start or reload.
func releaseLoadGarbage() { debug.FreeOSMemory() }

// watch starts, updates or stops the file watcher for cfg.
func (r *reloader) watch(cfg *config.Config) {
	if !r.flag && !cfg.Server.Watch {
		r.stopWatching()
		return
	}
	files := watchFiles(cfg)
	if r.w != nil {
		r.w.SetFiles(files, cfg.FileHashes)
		return
	}
	w, err := watch.New(files, func() {
		select {
		case r.changed <- struct{}{}:
		default:
		}
	}, watch.Options{Log: r.log, Seen: cfg.FileHashes})
	if err != nil {
		r.log.Error().Err(err).Msg("watching the config files")
		return
	}
	r.w = w
	r.log.Info().Strs("files", files).Msg("watching the config for changes")
}

func (r *reloader) stopWatching() {
	if r.w != nil {
		r.w.Close()
		r.w = nil
	}
}

// watchFiles is every file the config was read from, and the directories
// of its include globs (a new file there may match them).
func watchFiles(cfg *config.Config) []string {
	files := append([]string(nil), cfg.Files...)
	base := "."
	if len(cfg.Files) > 0 {
		base = filepath.Dir(cfg.Files[0])
	}
	for _, g := range cfg.Include {
		dir := filepath.Dir(g)
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(base, dir)
		}
		files = append(files, dir)
	}
	return files
}

func newLogger(level, format string, w io.Writer) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Nop(), fmt.Errorf("unknown log level %q (want trace, debug, info, warn or error)", level)
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	default:
		return zerolog.Nop(), fmt.Errorf("unknown log format %q (want json or console)", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}
