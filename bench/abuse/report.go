package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// runReport prints the markdown table of a run directory written by
// bench/abuse.sh: for each attack and proxy, ATTACK.PROXY.attack.json and
// the victim's ATTACK.PROXY.idle.json and ATTACK.PROXY.victim.json.
func runReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	dir := fs.String("dir", ".", "the run directory")
	proxies := fs.String("proxies", "sightline haproxy", "proxies, in column order")
	only := fs.String("attacks", "", "attacks to list (default: every attack that has results)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var names []string
	if *only != "" {
		names = strings.Fields(*only)
	} else {
		for _, a := range attacks {
			names = append(names, a.name)
		}
	}
	return writeReport(os.Stdout, *dir, names, strings.Fields(*proxies))
}

func writeReport(w io.Writer, dir string, names, proxies []string) error {
	fmt.Fprintln(w, "| attack | proxy | peak RSS MiB (before → peak) | proxy CPU s | cut off? (upstream-*: the malicious upstream) | victim p99 ms idle / attack | victim failures | what the attacker saw |")
	fmt.Fprintln(w, "|---|---|---:|---:|---|---:|---|---|")
	listed := map[string]bool{}
	upstream := map[string]bool{}
	for _, a := range attacks {
		upstream[a.name] = a.upstream
	}
	for _, name := range names {
		for _, px := range proxies {
			if px == "direct" && upstream[name] {
				continue // nothing between to attack from behind
			}
			base := filepath.Join(dir, name+"."+px)
			var r result
			if err := readJSON(base+".attack.json", &r); err != nil {
				if os.IsNotExist(err) {
					err = fmt.Errorf("no result (see the attack's log)")
				}
				fmt.Fprintf(w, "| %s | %s | — | — | run failed: %s | — | — | — |\n", name, px, cell(err.Error()))
				continue
			}
			listed[name] = true
			var idle, load victimResult
			idleErr := readJSON(base+".idle.json", &idle)
			loadErr := readJSON(base+".victim.json", &load)
			p99 := "—"
			if idleErr == nil && loadErr == nil {
				p99 = fmt.Sprintf("%s / %s", ms(idle), ms(load))
			}
			fails := "—"
			if loadErr == nil {
				fails = failures(load)
			}
			s := r.Attacker
			if r.Upstream {
				s = r.Evil
			}
			label := px
			if px == "direct" {
				label = "direct (no proxy; RSS and CPU: the backend's)"
			}
			fmt.Fprintf(w, "| %s | %s | %.0f → %s | %.1f | %s | %s | %s | %s |\n",
				name, label,
				float64(r.Proc.RSSStartKB)/1024, peak(r.Proc),
				r.Proc.CPUSeconds, cell(cutOff(r, s)), p99, cell(fails), cell(saw(r)))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Attacks:")
	fmt.Fprintln(w)
	for _, a := range attacks {
		if listed[a.name] {
			fmt.Fprintf(w, "- **%s**: %s.\n", a.name, a.desc)
		}
	}
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func peak(p procStats) string {
	s := fmt.Sprintf("**%.0f**", float64(p.RSSPeakKB)/1024)
	if p.CapHitAt != nil {
		s += " (cap)"
	}
	return s
}

func ms(v victimResult) string {
	if v.OK == 0 {
		return "no calls ok"
	}
	return fmt.Sprintf("%.2f", v.P99Ms)
}

func failures(v victimResult) string {
	n := 0
	for _, c := range v.Failures {
		n += c
	}
	if n == 0 {
		return fmt.Sprintf("0 of %d", v.Calls)
	}
	return fmt.Sprintf("**%d** of %d (%s)", n, v.Calls, countsString(v.Failures))
}

// cutOff says whether and when the proxy cut the attacker (or the
// malicious upstream) off: a GOAWAY, a closed connection, reset streams.
func cutOff(r result, s *side) string {
	if s == nil {
		return "—"
	}
	// The attacks that never read notice a GOAWAY or a close only when
	// they read, after the attack.
	at := func(t float64) string {
		if t >= r.Seconds-0.1 {
			return "seen after the attack"
		}
		return fmt.Sprintf("at %.1f s", t)
	}
	var parts []string
	if s.GoAway != nil {
		p := fmt.Sprintf("GOAWAY %s %s", s.GoAway.Code, at(s.GoAway.T))
		if s.Conns > 1 {
			p += fmt.Sprintf(" (%d of %d conns)", s.GoAwayConns, s.Conns)
		}
		if s.GoAway.Detail != "" {
			p += fmt.Sprintf(" %q", s.GoAway.Detail)
		}
		parts = append(parts, p)
	}
	if s.Closed != nil {
		p := fmt.Sprintf("closed (%s) %s", s.Closed.Code, at(s.Closed.T))
		if s.Conns > 1 {
			p += fmt.Sprintf(" (%d of %d conns)", s.ClosedConns, s.Conns)
		}
		parts = append(parts, p)
	}
	if s.FirstReset != nil {
		parts = append(parts, fmt.Sprintf("streams reset from %.1f s: %s", s.FirstReset.T, countsString(s.Resets)))
	}
	if len(parts) == 0 {
		return "no"
	}
	return strings.Join(parts, "; ")
}

// saw summarizes the attacker's side: connections, streams, what it sent
// and got, and the attack's notes.
func saw(r result) string {
	a := r.Attacker
	var parts []string
	if a != nil {
		p := fmt.Sprintf("%d conns", a.Conns)
		if a.DialFailures > 0 {
			p += fmt.Sprintf(" (+%d failed: %s)", a.DialFailures, a.DialError)
		}
		parts = append(parts, p, fmt.Sprintf("%s streams", human(int64(a.Streams))))
		parts = append(parts, fmt.Sprintf("sent %s frames", human(a.FramesSent)))
		if a.DataReceived > 0 {
			parts = append(parts, fmt.Sprintf("got %s B of DATA", human(a.DataReceived)))
		}
		if len(a.Responses) > 0 {
			parts = append(parts, "responses: "+countsString(a.Responses))
		}
		if r.Upstream && a.Resets != nil {
			parts = append(parts, "client streams reset: "+countsString(a.Resets))
		}
	}
	if e := r.Evil; e != nil {
		parts = append(parts, fmt.Sprintf("upstream: %d conns, %s calls, sent %s frames", e.Conns, human(int64(e.Streams)), human(e.FramesSent)))
	}
	parts = append(parts, fmt.Sprintf("backend CPU %.1f s", r.BackendCPUSeconds))
	parts = append(parts, r.Notes...)
	if r.Error != "" {
		parts = append(parts, "error: "+r.Error)
	}
	return strings.Join(parts, "; ")
}

// cell makes s safe inside a markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}
