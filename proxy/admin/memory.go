package admin

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
)

// memorySamples are the runtime/metrics /memory reads; reading them stops
// no goroutine, unlike runtime.ReadMemStats.
var memorySamples = []string{
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/stacks:bytes",
	"/memory/classes/metadata/mcache/inuse:bytes",
	"/memory/classes/total:bytes",
	"/sched/goroutines:goroutines",
	"/gc/cycles/total:gc-cycles",
}

// Memory is the body of /memory: Envoy's fields (byte counts as decimal
// strings, as Envoy writes them), each from the Go runtime's nearest
// figure, then Sightline's own.
type Memory struct {
	// Allocated is the heap held by live and not yet swept objects.
	Allocated string `json:"allocated"`
	// HeapSize is the heap the runtime has mapped: objects, fragments,
	// free spans and spans given back to the OS.
	HeapSize string `json:"heap_size"`
	// PageheapUnmapped is heap given back to the OS (released).
	PageheapUnmapped string `json:"pageheap_unmapped"`
	// PageheapFree is free heap the runtime keeps, not given back.
	PageheapFree string `json:"pageheap_free"`
	// TotalThreadCache is the per-P allocation caches (mcache).
	TotalThreadCache string `json:"total_thread_cache"`
	// TotalPhysicalBytes is what the runtime has mapped and not given back.
	TotalPhysicalBytes string `json:"total_physical_bytes"`

	Stacks     string `json:"stacks"`
	Goroutines uint64 `json:"goroutines"`
	GCCycles   uint64 `json:"gc_cycles"`
	// RSS is the process's resident set from /proc/self/statm; empty
	// where there is none.
	RSS string `json:"rss,omitempty"`
}

// readMemory reads Memory now.
func readMemory() Memory {
	s := make([]metrics.Sample, len(memorySamples))
	for i, n := range memorySamples {
		s[i].Name = n
	}
	metrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	objects, unused, free, released := v(0), v(1), v(2), v(3)
	str := func(n uint64) string { return strconv.FormatUint(n, 10) }
	m := Memory{
		Allocated:          str(objects),
		HeapSize:           str(objects + unused + free + released),
		PageheapUnmapped:   str(released),
		PageheapFree:       str(free),
		TotalThreadCache:   str(v(5)),
		TotalPhysicalBytes: str(v(6) - released),
		Stacks:             str(v(4)),
		Goroutines:         v(7),
		GCCycles:           v(8),
	}
	if rss, ok := processRSS(); ok {
		m.RSS = str(rss)
	}
	return m
}

// processRSS reads the resident set from /proc/self/statm (pages).
func processRSS() (uint64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * uint64(os.Getpagesize()), true
}

func (s *Server) memory(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(readMemory())
}

// mountPprof serves Go's profiles under /debug/pprof/ (index, profile,
// heap, goroutine, allocs, block, mutex, trace, cmdline, symbol) while
// SetPprof has them on. They show the program's internals and a CPU
// profile costs CPU while it runs: keep the admin address on loopback, or
// turn them off with admin.pprof: false.
func (s *Server) mountPprof() {
	on := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !s.pprof.Load() {
				http.NotFound(w, r)
				return
			}
			h(w, r)
		}
	}
	s.mux.HandleFunc("GET /debug/pprof/", on(pprof.Index))
	s.mux.HandleFunc("GET /debug/pprof/cmdline", on(pprof.Cmdline))
	s.mux.HandleFunc("GET /debug/pprof/profile", on(pprof.Profile))
	s.mux.HandleFunc("GET /debug/pprof/symbol", on(pprof.Symbol))
	s.mux.HandleFunc("POST /debug/pprof/symbol", on(pprof.Symbol))
	s.mux.HandleFunc("GET /debug/pprof/trace", on(pprof.Trace))
}

// SetPprof turns the profiles at /debug/pprof/ on or off (admin.pprof);
// a reload may change it. A profile already running finishes.
func (s *Server) SetPprof(on bool) { s.pprof.Store(on) }
