package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v4"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/config/watch"
	"github.com/sightline-proxy/sightline/proxy/envoyconf"
)

const importUsage = `Usage:
  sightline import [-o FILE] [--skip-unsupported] ENVOY_BOOTSTRAP

Translates an Envoy v3 bootstrap (YAML or JSON) into a Sightline config:
the config on stdout (or in -o FILE), the Envoy fields not carried on
stderr. Exit status 0 when it translated (with warnings when fields were
skipped), 1 when it cannot be translated, 2 on a usage error.

Flags:
`

// envoyMode is how run and validate read their config file: --envoy
// says it is an Envoy bootstrap; without it, a file is one when its top
// level has static_resources or dynamic_resources and no Sightline
// section. Set by run from its flags before any load.
var envoyMode struct {
	force bool // --envoy
	opts  envoyconf.Options
}

// importCmd is sightline import.
func importCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sightline import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, importUsage)
		fs.PrintDefaults()
	}
	out := fs.String("o", "", "write the Sightline config to this file instead of stdout")
	skip := fs.Bool("skip-unsupported", false, "drop, with a warning, the Envoy fields whose loss changes what the proxy does to traffic (auth filters, host rewrites, client certificate checks) instead of refusing them")
	// Flags may come before or after the file name.
	var files []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(files) != 1 {
		fmt.Fprintf(stderr, "sightline import: want one Envoy bootstrap file, got %d\n\n", len(files))
		fs.Usage()
		return 2
	}
	path := files[0]
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "sightline import: %v\n", err)
		return 1
	}
	doc, skipped, err := envoyconf.ImportWith(data, isJSONPath(path), envoyconf.Options{SkipUnsupported: *skip})
	if err != nil {
		fmt.Fprintf(stderr, "sightline import: %s: cannot translate:\n", path)
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "  %s\n", line)
		}
		return 1
	}
	doc = append([]byte("# Translated from the Envoy bootstrap "+filepath.Base(path)+" by sightline import.\n"), doc...)
	if *out != "" {
		if err := os.WriteFile(*out, doc, 0o644); err != nil {
			fmt.Fprintf(stderr, "sightline import: %v\n", err)
			return 1
		}
	} else if _, err := stdout.Write(doc); err != nil {
		fmt.Fprintf(stderr, "sightline import: %v\n", err)
		return 1
	}
	printSkipped(stderr, path, skipped)
	return 0
}

// printSkipped writes the summary of the fields not carried.
func printSkipped(w io.Writer, path string, skipped []envoyconf.Skipped) {
	if len(skipped) == 0 {
		return
	}
	fmt.Fprintf(w, "warning: %s: %d Envoy fields not carried:\n", path, len(skipped))
	for _, s := range skipped {
		fmt.Fprintf(w, "  %s: %s\n", s.Path, s.Why)
	}
}

// loadConfig loads the config file at path, as run, validate and a
// reload read it: an Envoy bootstrap (by --envoy, or detected) is
// translated and its translation loaded in its place; skipped holds the
// Envoy fields not carried then.
func loadConfig(path string) (cfg *config.Config, skipped []envoyconf.Skipped, err error) {
	if !isEnvoy(path) {
		cfg, err = config.Load(path)
		return cfg, nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("loading config: %w", err)
	}
	doc, skipped, err := translateEnvoy(path, data)
	if err != nil {
		return nil, nil, err
	}
	cfg, err = config.LoadData(path, doc)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: its translation (sightline import %s shows it) does not load:\n%w", path, path, err)
	}
	// What a watcher compares is the bootstrap, not its translation.
	cfg.FileHashes[path] = watch.Hash(data)
	return cfg, skipped, nil
}

// isEnvoy reports whether the config file at path is read as an Envoy
// bootstrap.
func isEnvoy(path string) bool { return envoyMode.force || envoyFile(path) }

// envoyDocument reads the Envoy bootstrap at path and returns its
// translation, the document loaded in its place.
func envoyDocument(path string) (doc []byte, skipped []envoyconf.Skipped, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("loading config: %w", err)
	}
	return translateEnvoy(path, data)
}

// translateEnvoy is envoyDocument of data, the content of the file at path.
func translateEnvoy(path string, data []byte) (doc []byte, skipped []envoyconf.Skipped, err error) {
	doc, skipped, err = envoyconf.ImportWith(data, isJSONPath(path), envoyMode.opts)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: translating the Envoy bootstrap:\n%w", path, err)
	}
	if isJSONPath(path) {
		if doc, err = yamlToJSON(doc); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return doc, skipped, nil
}

// logSkipped logs the Envoy fields a load did not carry.
func logSkipped(lg zerolog.Logger, path string, skipped []envoyconf.Skipped) {
	for _, s := range skipped {
		lg.Warn().Str("file", path).Str("field", s.Path).Str("why", s.Why).Msg("Envoy field not carried")
	}
}

// envoyFile reports whether the file at path is an Envoy bootstrap: its
// top level has static_resources or dynamic_resources, and none of
// Sightline's own sections. A file that cannot be read is not: the
// loader reports it.
func envoyFile(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var keys []string
	if isJSONPath(path) {
		var top map[string]json.RawMessage
		if json.NewDecoder(f).Decode(&top) != nil {
			return false
		}
		for k := range top {
			keys = append(keys, k)
		}
	} else {
		// The top-level keys of a YAML mapping start at column 0; reading
		// them line by line spares parsing a large file twice.
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			line := sc.Text()
			if line == "" || line[0] == ' ' || line[0] == '#' || line[0] == '-' || line[0] == '\t' {
				continue
			}
			if i := strings.IndexByte(line, ':'); i > 0 {
				keys = append(keys, strings.Trim(line[:i], `"' `))
			}
		}
	}
	envoy := false
	for _, k := range keys {
		switch k {
		case "static_resources", "dynamic_resources":
			envoy = true
		case "listeners", "clusters", "dynamic", "include", "server", "overload", "stats", "tracing":
			return false
		}
	}
	return envoy
}

// isJSONPath reports whether path names a JSON file.
func isJSONPath(path string) bool { return strings.EqualFold(filepath.Ext(path), ".json") }

// yamlToJSON rewrites a translated document as JSON, for a loader that
// reads a .json path as JSON only.
func yamlToJSON(doc []byte) ([]byte, error) {
	var v any
	if err := yaml.Unmarshal(doc, &v); err != nil {
		return nil, fmt.Errorf("rewriting the translation as JSON: %w", err)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("rewriting the translation as JSON: %w", err)
	}
	return b.Bytes(), nil
}
