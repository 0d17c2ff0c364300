package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/internal/upgrade"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/server"
)

// upgrades replaces this process with the binary at its path, on
// SIGUSR2 or POST /upgrade, and, in a process an upgrade started, takes
// over the old one's sockets and tells it when this one serves. Its
// methods are called from serve's goroutine; the upgrade itself runs on
// its own, so that signals are still heard while the new process starts.
type upgrades struct {
	in      *upgrade.Inherited
	pidFile string // --pid-file; "" for none
	log     zerolog.Logger
	srv     *server.Server
	dir     string // the working directory, for a relative config path

	triggers chan upgrade.Trigger
	stopped  chan struct{} // closed when the process takes no more upgrades
	ready    bool          // the process serves: it may upgrade
	run      *upgradeRun   // the upgrade under way, or nil
	// handedOver is set once a new process serves on the sockets: this
	// one retires instead of draining, and leaves the pid file alone.
	handedOver bool
}

// upgradeRun is one upgrade under way.
type upgradeRun struct {
	trig   upgrade.Trigger
	start  time.Time
	cancel context.CancelFunc
	done   chan upgradeDone
}

type upgradeDone struct {
	child upgrade.Child
	err   error
}

// newUpgrades takes the sockets the process being upgraded passed, if an
// upgrade started this one.
func newUpgrades(pidFile string, lg zerolog.Logger) (*upgrades, error) {
	in, err := upgrade.Inherit()
	if err != nil {
		return nil, fmt.Errorf("taking over from the old process: %w", err)
	}
	dir, err := os.Getwd()
	if err != nil {
		in.Fail(err)
		return nil, fmt.Errorf("working directory: %w", err)
	}
	return &upgrades{in: in, pidFile: pidFile, log: lg, dir: dir, triggers: make(chan upgrade.Trigger), stopped: make(chan struct{})}, nil
}

// fail tells the process being upgraded, if any, why this one will not
// serve: it keeps serving, and answers the upgrade with err.
func (u *upgrades) fail(err error) { u.in.Fail(err) }

// attach makes srv start on the inherited sockets and serve POST
// /upgrade, and sets the generation gauges. Call it before srv.Start.
func (u *upgrades) attach(srv *server.Server) {
	u.srv = srv
	srv.SetSockets(u.in)
	srv.HandleAdmin("POST "+upgrade.Path, upgrade.Handler(u.triggers, u.stopped))
	st := srv.Stats().Server()
	st.HotRestartEpoch.Set(int64(u.in.Generation()))
	st.HotRestartGeneration.Set(int64(u.in.Generation()))
}

// serving is called once the process is ready (listeners bound, first
// health checks done, a control plane's first resources applied). A new
// process tells the old one, which then writes the pid file and tells
// systemd; a process started afresh does both itself.
func (u *upgrades) serving() {
	u.ready = true
	rep, err := u.in.Ready()
	if err != nil {
		// The old process gives up on this one when its timeout passes,
		// and kills it.
		u.log.Error().Err(err).Msg("upgrade: cannot tell the old process this one is ready")
		return
	}
	if rep.Parent != 0 {
		u.log.Info().Str("event", "upgrade").Int("pid", os.Getpid()).Int("old_pid", rep.Parent).
			Int("generation", rep.Generation).Strs("inherited", rep.Inherited).Strs("bound", rep.Bound).
			Strs("closed", rep.Closed).Msg("upgrade: this process serves in place of the old one")
		return
	}
	u.announce(os.Getpid(), "READY=1")
}

// announce writes pid to the pid file and state to systemd.
func (u *upgrades) announce(pid int, state string) {
	if u.pidFile != "" {
		if err := upgrade.WritePIDFile(u.pidFile, pid); err != nil {
			u.log.Error().Err(err).Str("path", u.pidFile).Msg("writing the pid file")
		}
	}
	if err := upgrade.Notify(state); err != nil {
		u.log.Warn().Err(err).Msg("telling systemd")
	}
}

// start begins the upgrade t asks for, unless one is under way or the
// process does not serve yet.
func (u *upgrades) start(t upgrade.Trigger) {
	var err error
	switch {
	case u.run != nil:
		err = upgrade.ErrInProgress
	case !u.ready:
		err = upgrade.ErrNotReady
	}
	exe, xerr := os.Executable()
	if err == nil && xerr != nil {
		err = fmt.Errorf("finding this binary's path: %w", xerr)
	}
	if err != nil {
		u.log.Warn().Err(err).Str("from", t.From).Msg("upgrade refused")
		reply(t, upgrade.Outcome{Err: err})
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &upgradeRun{trig: t, start: time.Now(), cancel: cancel, done: make(chan upgradeDone, 1)}
	u.run = run
	u.log.Info().Str("from", t.From).Str("binary", exe).Msg("upgrade: starting the new process")
	go func() {
		var child upgrade.Child
		err := u.srv.Handoff(func(socks []upgrade.Socket) error {
			var err error
			child, err = upgrade.Start(ctx, upgrade.Options{
				Executable: exe, Args: os.Args[1:], Dir: u.dir,
				Generation: u.in.Generation(), Sockets: socks, Timeout: t.Timeout,
			})
			return err
		})
		run.done <- upgradeDone{child, err}
	}()
}

// done is the channel the upgrade under way ends on; nil when none runs.
func (u *upgrades) done() <-chan upgradeDone {
	if u.run == nil {
		return nil
	}
	return u.run.done
}

// finish ends the upgrade under way with d, answers its asker, and
// reports whether the new process took over (the caller then retires).
func (u *upgrades) finish(d upgradeDone) bool {
	run := u.run
	u.run = nil
	run.cancel()
	if d.err != nil {
		u.log.Error().Err(d.err).Str("from", run.trig.From).Msg("upgrade failed; this process keeps serving")
		reply(run.trig, upgrade.Outcome{Err: d.err})
		return false
	}
	u.handedOver = true
	u.announce(d.child.PID, "MAINPID="+strconv.Itoa(d.child.PID))
	u.log.Info().Str("event", "upgrade").Int("pid", os.Getpid()).Int("new_pid", d.child.PID).
		Int("generation", d.child.Generation).Str("from", run.trig.From).
		Dur("took", time.Since(run.start)).Msg("upgrade: the new process serves; this one drains and exits")
	reply(run.trig, upgrade.Outcome{Result: upgrade.Result{OldPID: os.Getpid(), NewPID: d.child.PID, Generation: d.child.Generation}})
	return true
}

// stop takes no more upgrades: the process drains. An upgrade under way
// is called off, its new process killed; one whose new process said it
// was ready at that very moment has that process stopped too, with
// SIGTERM, since the proxy is being stopped.
func (u *upgrades) stop() {
	close(u.stopped)
	if u.run == nil {
		return
	}
	run := u.run
	u.run = nil
	run.cancel()
	d := <-run.done
	if d.err == nil {
		u.log.Warn().Int("new_pid", d.child.PID).Msg("stopping while upgrading: the new process is stopped too")
		stopProcess(d.child.PID)
		d.err = upgrade.ErrStopping
	}
	u.log.Warn().Err(d.err).Str("from", run.trig.From).Msg("upgrade called off: the process is stopping")
	reply(run.trig, upgrade.Outcome{Err: d.err})
}

// exit removes the pid file on the way out, unless it names the new
// process.
func (u *upgrades) exit() {
	if u.pidFile == "" || u.handedOver {
		return
	}
	if err := upgrade.RemovePIDFile(u.pidFile, os.Getpid()); err != nil {
		u.log.Warn().Err(err).Msg("removing the pid file")
	}
}

func reply(t upgrade.Trigger, o upgrade.Outcome) {
	if t.Reply != nil {
		t.Reply <- o
	}
}

// requestUpgrade is `sightline upgrade`: it asks the running process,
// through its admin server, to upgrade, and prints the outcome. The
// admin address is --admin's when given, or else the config's.
func requestUpgrade(cfgPath, admin string, adminSet bool, timeout time.Duration, stdout, stderr io.Writer) int {
	if !adminSet && cfgPath != "" {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			fmt.Fprintf(stderr, "sightline upgrade: reading the admin address: %v\n(the new process would refuse this config too)\n", err)
			return 1
		}
		admin = cfg.Admin.Address
	}
	res, err := upgrade.Request(context.Background(), admin, timeout)
	if err != nil {
		fmt.Fprintf(stderr, "sightline upgrade: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "upgraded: pid %d serves (generation %d); pid %d drains and exits\n", res.NewPID, res.Generation, res.OldPID)
	return 0
}
