// Command tracestat reads a Go execution trace (the proxy's
// /debug/pprof/trace?seconds=N on its admin listener) and prints what
// the abuse benchmark's victim waits for: goroutines that ran a long
// time without a break, the collector's phases, and how long goroutines
// of one kind waited to run once runnable.
//
//	tracestat runs [-min 1ms] TRACE       runs of at least min, with the goroutine's stack
//	tracestat waits -func NAME TRACE      runnable-to-running waits of goroutines whose stack names NAME
//
// Times are seconds from the trace's first event. A run is measured
// from the moment the goroutine starts running to the moment it stops
// (blocks, yields, is preempted or ends); a stall of the whole process
// (a thread the kernel did not run) counts in the run it fell in.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "runs":
		fs := flag.NewFlagSet("runs", flag.ExitOnError)
		least := fs.Duration("min", time.Millisecond, "shortest run to print")
		fs.Parse(args)
		err = withTrace(fs, func(r *trace.Reader) error { return printRuns(os.Stdout, r, *least) })
	case "waits":
		fs := flag.NewFlagSet("waits", flag.ExitOnError)
		fn := fs.String("func", "", "a function name (or part of one) in the goroutines' stacks")
		fs.Parse(args)
		if *fn == "" {
			usage()
		}
		err = withTrace(fs, func(r *trace.Reader) error { return printWaits(os.Stdout, r, *fn) })
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tracestat:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: tracestat runs [-min 1ms] TRACE | tracestat waits -func NAME TRACE")
	os.Exit(2)
}

// withTrace opens the flag set's one argument as a trace for f.
func withTrace(fs *flag.FlagSet, f func(*trace.Reader) error) error {
	if fs.NArg() != 1 {
		usage()
	}
	file, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer file.Close()
	r, err := trace.NewReader(file)
	if err != nil {
		return fmt.Errorf("reading %s: %w", fs.Arg(0), err)
	}
	return f(r)
}

// goroutines follows each goroutine's state through a trace: its last
// known stack (where it blocked last, or where it was created to start)
// and when it became runnable or started running.
type goroutines struct {
	t0      trace.Time
	stack   map[trace.GoID]trace.Stack
	since   map[trace.GoID]trace.Time // when it became runnable, or started running
	running map[trace.GoID]trace.Stack
}

func newGoroutines() *goroutines {
	return &goroutines{stack: map[trace.GoID]trace.Stack{}, since: map[trace.GoID]trace.Time{}, running: map[trace.GoID]trace.Stack{}}
}

// at is t in seconds from the trace's start.
func (g *goroutines) at(t trace.Time) float64 { return float64(t-g.t0) / 1e9 }

// each reads r to its end, calling f for every goroutine state change
// after noting its stack.
func (g *goroutines) each(r *trace.Reader, f func(ev *trace.Event, id trace.GoID, from, to trace.GoState)) error {
	for {
		ev, err := r.ReadEvent()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if g.t0 == 0 {
			g.t0 = ev.Time()
		}
		if ev.Kind() != trace.EventStateTransition {
			f(&ev, 0, 0, 0)
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		id := st.Resource.Goroutine()
		from, to := st.Goroutine()
		switch {
		case from == trace.GoNotExist || from == trace.GoUndetermined:
			if st.Stack != trace.NoStack {
				g.stack[id] = st.Stack // where it starts
			}
		case from == trace.GoRunning && ev.Stack() != trace.NoStack:
			// Its own stack, where it stopped. The stack of a change
			// made by another goroutine (an unblock) is that one's.
			g.stack[id] = ev.Stack()
		}
		f(&ev, id, from, to)
	}
}

// frames formats a stack, innermost first, cut after about limit bytes
// (0: whole).
func frames(s trace.Stack, limit int) string {
	var b strings.Builder
	for fr := range s.Frames() {
		if limit > 0 && b.Len() > limit {
			b.WriteString(" …")
			break
		}
		if b.Len() > 0 {
			b.WriteString(" < ")
		}
		b.WriteString(fr.Func)
	}
	return b.String()
}

// printRuns prints every goroutine run of at least least, and the
// collector's mark phases.
func printRuns(w io.Writer, r *trace.Reader, least time.Duration) error {
	g := newGoroutines()
	err := g.each(r, func(ev *trace.Event, id trace.GoID, from, to trace.GoState) {
		switch ev.Kind() {
		case trace.EventRangeBegin, trace.EventRangeEnd:
			if name := ev.Range().Name; strings.HasPrefix(name, "GC concurrent mark") {
				fmt.Fprintf(w, "%8.3f %v %s\n", g.at(ev.Time()), ev.Kind(), name)
			}
			return
		case trace.EventStateTransition:
		default:
			return
		}
		if to == trace.GoRunning {
			g.since[id], g.running[id] = ev.Time(), g.stack[id]
			return
		}
		if from != trace.GoRunning {
			return
		}
		start, ok := g.since[id]
		delete(g.since, id)
		if d := time.Duration(ev.Time() - start); ok && d >= least {
			where := frames(ev.Stack(), 400)
			if where == "" {
				where = "(started at) " + frames(g.running[id], 400)
			}
			fmt.Fprintf(w, "%8.3f run %v g%d, then %v: %s\n", g.at(start), d, id, to, where)
		}
		delete(g.running, id)
	})
	return err
}

// printWaits prints the distribution of the runnable-to-running waits of
// the goroutines whose last stack names fn, and the waits over 2 ms.
func printWaits(w io.Writer, r *trace.Reader, fn string) error {
	g := newGoroutines()
	var waits []time.Duration
	var long []string
	err := g.each(r, func(ev *trace.Event, id trace.GoID, from, to trace.GoState) {
		switch {
		case ev.Kind() != trace.EventStateTransition:
		case to == trace.GoRunnable:
			g.since[id] = ev.Time()
		case to == trace.GoRunning && from == trace.GoRunnable:
			start, ok := g.since[id]
			delete(g.since, id)
			if !ok || !strings.Contains(frames(g.stack[id], 0), fn) {
				return
			}
			d := time.Duration(ev.Time() - start)
			waits = append(waits, d)
			if d > 2*time.Millisecond {
				long = append(long, fmt.Sprintf("%.3f:%v", g.at(start), d))
			}
		}
	})
	if err != nil {
		return err
	}
	if len(waits) == 0 {
		return fmt.Errorf("no goroutine with %q in its stack became runnable", fn)
	}
	slices.Sort(waits)
	q := func(p float64) time.Duration { return waits[min(len(waits)-1, int(float64(len(waits))*p))] }
	fmt.Fprintf(w, "%s: %d waits, p50 %v, p90 %v, p99 %v, max %v\n", fn, len(waits), q(.5), q(.9), q(.99), waits[len(waits)-1])
	if len(long) > 0 {
		fmt.Fprintf(w, "over 2 ms (start:wait): %s\n", strings.Join(long, " "))
	}
	return nil
}
