package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v4"
)

// extensions are the config file types Load reads. JSON goes through the
// YAML parser too (JSON is YAML), so that its problems get positions.
var extensions = []string{".yaml", ".yml", ".json"}

// Load reads the config file at path (.yaml, .yml or .json) and the files
// it includes, checks everything, and fills in defaults (see defaults.go).
//
// When the config has problems, Load returns them all as Errors, sorted by
// file and position: syntax errors, unknown keys, wrong types, bad
// durations, and every semantic problem (unknown clusters, bad addresses,
// duplicates, …). If a file cannot be parsed at all, only syntax problems
// are reported, since checks on a partly read config would mostly be noise.
// When path itself cannot be read or has another extension, the error is
// not an Errors but wraps the cause (errors.Is(err, fs.ErrNotExist) works).
//
// Files named by include: are globs relative to the directory of the file
// that names them; each may hold only include, listeners and clusters,
// which are appended in order after the including file's own. A file is
// read once even if several globs match it; including a file from itself,
// directly or not, is an error.
//
// Load does no I/O beyond reading the config files and checking that TLS
// files can be opened; it is safe to call from any goroutine.
func Load(path string) (*Config, error) {
	if err := checkExtension(path); err != nil {
		return nil, fmt.Errorf("loading config %s: %w", path, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading config: %w", err)
	}
	l := &loader{
		cfg:    &Config{},
		main:   path,
		loaded: map[string]bool{},
		at:     map[string]position{},
		failed: map[string]bool{},
	}
	l.load(data, []frame{{abs: absPath(path), name: path}})
	if !l.broken {
		l.check()
	}
	if len(l.problems) > 0 {
		l.problems.sort()
		return nil, l.problems
	}
	l.cfg.Files = l.files
	l.cfg.applyDefaults()
	return l.cfg, nil
}

// loader is the state of one Load call.
type loader struct {
	cfg    *Config // the merged config
	main   string  // the path given to Load
	files  []string
	loaded map[string]bool // absolute paths of the files read so far
	// at maps field paths of the merged config to where they were
	// written; the first file to write a path keeps it.
	at map[string]position
	// failed holds the paths of values reported as unusable while
	// reading, whose zero values semantic checks must not complain about.
	failed   map[string]bool
	problems Errors
	// broken is set when a file could not be read or parsed.
	broken bool
}

// record notes that path was written at p, unless it already was.
func (l *loader) record(path string, p position) {
	if _, ok := l.at[path]; !ok {
		l.at[path] = p
	}
}

// frame is one file on the include stack: its absolute path, to recognise
// it however it is reached, and its name as given, for messages.
type frame struct {
	abs, name string
}

// load reads one file's data into the merged config, then its includes.
// stack holds the files that led here, this one last, to find include
// cycles.
func (l *loader) load(data []byte, stack []frame) {
	file := stack[len(stack)-1].name
	l.files = append(l.files, file)
	l.loaded[stack[len(stack)-1].abs] = true

	doc := l.parse(file, data)
	if doc == nil || len(doc.Content) == 0 {
		return
	}
	root := doc.Content[0]
	w := &walker{
		l:        l,
		file:     file,
		included: len(stack) > 1,
		offsets:  map[string]int{"listeners": len(l.cfg.Listeners), "clusters": len(l.cfg.Clusters)},
	}
	if !w.walk(root, reflect.TypeFor[Config](), "") {
		return
	}

	var fc Config
	if err := doc.Load(&fc, yaml.WithKnownFields()); err != nil {
		// The walker leaves the decoder nothing to refuse, except inside
		// merged ("<<") mappings, which it does not look into.
		l.yamlProblems(file, nil, err)
	}
	if w.included {
		l.cfg.Listeners = append(l.cfg.Listeners, fc.Listeners...)
		l.cfg.Clusters = append(l.cfg.Clusters, fc.Clusters...)
	} else {
		*l.cfg = fc
	}
	l.includes(file, root, fc.Include, stack)
}

// parse parses data into a document node, or reports why it cannot and
// returns nil. An empty file is an empty document: a config of defaults.
func (l *loader) parse(file string, data []byte) *yaml.Node {
	var docs []yaml.Node
	if err := yaml.Load(data, &docs, yaml.WithAllDocuments()); err != nil {
		l.yamlProblems(file, data, err)
		l.broken = true
		return nil
	}
	if len(docs) == 0 {
		return nil
	}
	if len(docs) > 1 {
		l.problems = append(l.problems, Problem{
			File: file, Line: docs[1].Line, Column: docs[1].Column,
			Message: fmt.Sprintf("a config file holds one YAML document, found %d", len(docs)),
			Hint:    "remove the --- separator; use include: to split a config into files",
		})
	}
	return &docs[0]
}

// includes loads the files matched by the include: globs of file. patterns
// are the decoded globs; the nodes under root give their positions.
func (l *loader) includes(file string, root *yaml.Node, patterns []string, stack []frame) {
	var nodes []*yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "include" {
			nodes = resolveAlias(root.Content[i+1]).Content
		}
	}
	dir := filepath.Dir(file)
	for i, pattern := range patterns {
		// An empty glob matches nothing, like any other glob that matches
		// nothing; it is also what a refused entry decodes to.
		if pattern == "" {
			continue
		}
		at := Problem{File: file, Path: fmt.Sprintf("include[%d]", i)}
		if i < len(nodes) {
			at.Line, at.Column = nodes[i].Line, nodes[i].Column
		}
		if !filepath.IsAbs(pattern) {
			pattern = filepath.Join(dir, pattern)
		}
		matches, err := filepath.Glob(pattern)
		if err != nil {
			l.problemAt(at, fmt.Sprintf("invalid glob %q: %v", patterns[i], err),
				"globs use filepath.Match syntax: *, ?, [a-z]")
			continue
		}
		for _, m := range matches {
			l.include(at, m, stack)
		}
	}
}

// include loads the included file m, reporting problems in reaching it at
// the include entry that matched it.
func (l *loader) include(at Problem, m string, stack []frame) {
	abs := absPath(m)
	if i := slices.IndexFunc(stack, func(f frame) bool { return f.abs == abs }); i >= 0 {
		var cycle []string
		for _, f := range stack[i:] {
			cycle = append(cycle, f.name)
		}
		cycle = append(cycle, m)
		l.problemAt(at, "include cycle: "+strings.Join(cycle, " -> "),
			"a file must not include itself, directly or through other files")
		return
	}
	if l.loaded[abs] {
		return
	}
	if err := checkExtension(m); err != nil {
		l.problemAt(at, fmt.Sprintf("cannot include %s: %v", m, err), "narrow the glob to config files")
		l.broken = true
		return
	}
	data, err := os.ReadFile(m)
	if err != nil {
		l.problemAt(at, fmt.Sprintf("cannot include %s: %v", m, unwrapPath(err)), "")
		l.broken = true
		return
	}
	l.load(data, append(slices.Clone(stack), frame{abs: abs, name: m}))
}

// problemAt reports a problem at the position of at.
func (l *loader) problemAt(at Problem, msg, hint string) {
	at.Message, at.Hint = msg, hint
	l.problems = append(l.problems, at)
}

// yamlProblems turns yaml v4's errors about file into problems. data is
// the file's text, when the errors are about its syntax.
func (l *loader) yamlProblems(file string, data []byte, err error) {
	var list *yaml.LoadErrors
	var one *yaml.LoadError
	switch {
	case errors.As(err, &list):
		for _, e := range list.Errors {
			l.problems = append(l.problems, yamlProblem(file, data, e))
		}
	case errors.As(err, &one):
		l.problems = append(l.problems, yamlProblem(file, data, one))
	default:
		l.problems = append(l.problems, Problem{File: file, Message: err.Error()})
	}
}

// yamlProblem turns one yaml v4 error into a problem, keeping a Duration's
// hint apart from its message, and explaining the most common syntax
// error: a tab in the indentation.
func yamlProblem(file string, data []byte, e *yaml.LoadError) Problem {
	p := Problem{File: file, Line: e.Mark.Line, Column: e.Mark.Column, Message: e.Message}
	var de *durationError
	if errors.As(e, &de) {
		p.Message, p.Hint = de.msg, de.hint
		return p
	}
	if e.ContextMsg != "" {
		p.Message += " " + e.ContextMsg
	}
	if i := e.Mark.Index; i >= 0 && i < len(data) && data[i] == '\t' {
		p.Hint = "YAML indents with spaces, not tabs"
	}
	return p
}

// checkExtension refuses files Load cannot read.
func checkExtension(path string) error {
	ext := strings.ToLower(filepath.Ext(path))
	if !slices.Contains(extensions, ext) {
		return fmt.Errorf("unsupported file extension %q, want one of %s", ext, strings.Join(extensions, ", "))
	}
	return nil
}

// absPath is path made absolute, to recognise a file reached by two
// spellings. If the working directory is gone, the cleaned path will do.
func absPath(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return filepath.Clean(path)
	}
	return abs
}

// unwrapPath drops the operation and path from a *fs.PathError, for
// messages that name the file already.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
