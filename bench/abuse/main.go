// Command abuse is the attack side of the abuse benchmark (bench/abuse.sh):
// HTTP/2 attacks written on golang.org/x/net/http2's Framer over raw TCP,
// the backend they need, a victim gRPC client and the report.
//
//	abuse backend -addr 127.0.0.1:50061
//	abuse attack  -name zero-window -addr 127.0.0.1:18100 -pid PID -d 20s -out a.json
//	abuse victim  -addr 127.0.0.1:18100 -rate 100 -d 20s -out v.json
//	abuse report  -dir RUNDIR
//	abuse burst   -addr 127.0.0.1:18180 -clusters 10000   (bench/scale.sh)
//	abuse floor   -addr 127.0.0.1:18100 [-loop]   (a Go server's least work for idle-conns)
//
// Everything talks to 127.0.0.1 only. It is a benchmark, not a test: it has
// no _test files, so `go test ./...` only vets it.
package main

import (
	"fmt"
	"os"
	"sort"
)

var commands = map[string]func(args []string) error{
	"backend": runBackend,
	"attack":  runAttack,
	"victim":  runVictim,
	"report":  runReport,
	"list":    runList,
	"burst":   runBurst,
	"floor":   runFloor,
}

func main() {
	if len(os.Args) < 2 || commands[os.Args[1]] == nil {
		names := make([]string, 0, len(commands))
		for n := range commands {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: abuse %v [flags]\n", names)
		os.Exit(2)
	}
	if err := commands[os.Args[1]](os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "abuse %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
