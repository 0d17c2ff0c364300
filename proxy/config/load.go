package config

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
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
// directly or not, is an error. An entry without glob characters names a
// file that must exist; a glob that matches nothing is only a warning.
//
// A .json file must be strict JSON (no trailing comma, no comment), though
// the YAML parser, which reads it for the positions, would take more.
//
// What is doubtful but not wrong (no listener, a glob matching nothing)
// is in the returned config's Warnings.
//
// Load does no I/O beyond reading the config files and checking that TLS
// files can be opened; it is safe to call from any goroutine.
func Load(path string) (*Config, error) {
	return LoadWith(path)
}

// Source is a config document that is not a file of its own, such as the
// listeners and clusters a control plane sent, translated: LoadWith reads
// it as if the config file had included it.
type Source struct {
	// Name stands for the document in problems and warnings, where a file
	// name would be ("xds"); it names no file.
	Name string
	// Data is the document, YAML or JSON; it may hold only listeners and
	// clusters.
	Data []byte
}

// LoadWith is Load, with the listeners and clusters of each extra source
// appended, in order, after those of the file and its includes, as an
// include would append them: every check runs on the whole (a source's
// route may name a cluster of the file, and a name used twice is a
// duplicate wherever each was written). A problem in a source is placed
// in it by its Name, line and column, and its path names listeners and
// clusters by name rather than by index ("clusters[backend].lb_policy"),
// since the index in the merged config means nothing to whoever wrote the
// source. Files holds the files only, not the sources.
func LoadWith(path string, extra ...Source) (*Config, error) {
	if err := checkExtension(path); err != nil {
		return nil, fmt.Errorf("loading config %s: %w", path, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading config: %w", err)
	}
	cfg, err := loadData(path, data, extra)
	if err == nil {
		cfg.FileHashes[path] = sha256.Sum256(data)
	}
	return cfg, err
}

// LoadData is LoadWith of data, a document standing for the file at path
// (the translation of an Envoy bootstrap, which run --envoy reads):
// problems name path, relative paths and includes resolve from its
// directory, and Files holds path, so that watching it follows the file.
func LoadData(path string, data []byte, extra ...Source) (*Config, error) {
	return loadData(path, data, extra)
}

// loadData is LoadWith after reading the file.
func loadData(path string, data []byte, extra []Source) (*Config, error) {
	l := &loader{
		cfg:    &Config{},
		hashes: map[string][sha256.Size]byte{},
		main:   path,
		loaded: map[string]bool{},
		failed: map[string]bool{},
	}
	main := frame{abs: absPath(path), name: path}
	l.load(data, []frame{main})
	for _, src := range extra {
		l.loadSource(src, main)
	}
	if !l.broken {
		l.check()
	}
	if len(l.problems) > 0 {
		l.nameSourcePaths(extra)
		l.problems.sort()
		return nil, l.problems
	}
	l.cfg.Files, l.cfg.FileHashes = l.files, l.hashes
	l.cfg.at = l.runtimePositions()
	// Defaults are not applied yet: no resources means both.
	dynamicListeners := l.cfg.Dynamic != nil && (len(l.cfg.Dynamic.Resources) == 0 || l.cfg.Dynamic.Wants(DynamicListeners))
	if len(l.cfg.Listeners) == 0 && !dynamicListeners {
		// An admin-only proxy is legitimate (Envoy runs with no listener
		// too), so this is no error; but a config that lost its listeners
		// to a wrong include or a typo must not start silently deaf.
		p := l.cfg.Locate("listeners")
		p.Message = "no listeners: the proxy serves only its admin endpoints"
		p.Hint = "add a listeners: section, e.g. listeners: [{name: ingress, address: 127.0.0.1:10000, virtual_hosts: [...]}]"
		l.warnings = append(l.warnings, p)
	}
	l.warnings.sort()
	l.cfg.Warnings = l.warnings
	l.cfg.applyDefaults()
	remember(l.cfg, l.lists)
	return l.cfg, nil
}

// Locate returns a Problem placed where the field at path (such as
// "listeners[2].address", indexes into the merged config) was written, or
// where its nearest written parent was: a key left to its default is
// placed at the mapping that lacks it, or at the main file. The caller
// fills in Message and Hint. For a config that Load did not return, only
// the main file is known.
func (c *Config) Locate(path string) Problem {
	pr := Problem{Path: path}
	if len(c.Files) > 0 {
		pr.File = c.Files[0]
	}
	for p := path; ; p = parentPath(p) {
		if at, ok := c.at[p]; ok {
			pr.File, pr.Line, pr.Column = at.file, at.line, at.column
			return pr
		}
		if p == "" {
			return pr
		}
	}
}

// runtimePositions keeps, of the positions Load read, those that a
// problem found after loading can need: the top-level sections, each
// listener and its address (a bind fails at start or reload), and
// admin.address. Locate places any other path at the nearest of these. A
// config of 10,000 clusters writes some 100,000 paths; keeping them all
// would cost about 1.5 KB per cluster for as long as the config runs.
func (l *loader) runtimePositions() map[string]position {
	keep := make(map[string]position)
	add := func(path string) {
		if _, ok := keep[path]; !ok {
			if p, ok := l.find(path); ok {
				keep[path] = p
			}
		}
	}
	add("")
	for _, d := range l.docs {
		if d.root.Kind != yaml.MappingNode {
			continue
		}
		for i := 0; i+1 < len(d.root.Content); i += 2 {
			if k := d.root.Content[i]; k.Kind == yaml.ScalarNode && !isMergeKey(k) {
				add(k.Value)
			}
		}
	}
	add("admin.address")
	for i := range l.cfg.Listeners {
		add("listeners[" + strconv.Itoa(i) + "]")
		add("listeners[" + strconv.Itoa(i) + "].address")
	}
	return keep
}

// loader is the state of one Load call.
type loader struct {
	cfg    *Config // the merged config
	main   string  // the path given to Load
	files  []string
	hashes map[string][sha256.Size]byte // of the included files, by name
	loaded map[string]bool              // absolute paths of the files read so far
	// docs are the documents read, in order, each walked and decoded:
	// where a field path was written is found in them (find).
	docs []walkedDoc
	// lists are the files' clusters: lists to remember once the config
	// is loaded (reuse.go).
	lists []*listEntries
	// failed holds the paths of values reported as unusable while
	// reading, whose zero values semantic checks must not complain about.
	failed   map[string]bool
	problems Errors
	// warnings are doubts that do not stop the config from loading.
	warnings Errors
	// broken is set when a file could not be read or parsed.
	broken bool
}

// walkedDoc is one document the loader read: its file, its node tree as
// the walker left it, and the merged indexes of its first listener and
// cluster.
type walkedDoc struct {
	file    string
	root    *yaml.Node
	offsets map[string]int
	// places are the entries reused rather than parsed (reuse.go),
	// parsed when a path leads into them.
	places map[*yaml.Node]placeholder
}

// find returns where path was written: in the first document that wrote
// it, which is what a problem about it points at.
func (l *loader) find(path string) (position, bool) {
	for i := range l.docs {
		d := &l.docs[i]
		if n := d.find(path); n != nil {
			return position{file: d.file, line: n.Line, column: n.Column}, true
		}
	}
	return position{}, false
}

// find returns the node path was written at in d, or nil: a key the
// walker refused, or one under an alias or a merged mapping, which the
// walker does not descend into (a problem there is placed at the nearest
// parent written). A key may hold dots (json_format's): the longest key
// the path goes on from is taken.
func (d *walkedDoc) find(path string) *yaml.Node {
	n, rest, section := d.root, path, ""
	for first := true; rest != ""; first = false {
		if n.Kind == yaml.AliasNode {
			return nil
		}
		if rest[0] == '[' {
			end := strings.IndexByte(rest, ']')
			i, err := strconv.Atoi(rest[1:max(end, 1)])
			if end < 0 || err != nil || n.Kind != yaml.SequenceNode {
				return nil
			}
			i -= d.offsets[section] // merged index, in this document's list
			if i < 0 || i >= len(n.Content) {
				return nil
			}
			if ph, ok := d.places[n.Content[i]]; ok {
				if e := parseEntry(ph.text, ph.line); e != nil {
					delete(d.places, n.Content[i])
					n.Content[i] = e
				}
			}
			n, rest, section = n.Content[i], rest[end+1:], ""
			continue
		}
		if !first {
			if rest[0] != '.' {
				return nil
			}
			rest = rest[1:]
		}
		if n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		key := ""
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || isMergeKey(k) || len(k.Value) <= len(key) || !strings.HasPrefix(rest, k.Value) {
				continue
			}
			if after := rest[len(k.Value):]; after == "" || after[0] == '.' || after[0] == '[' {
				if next == nil || len(k.Value) > len(key) {
					next, key = n.Content[i+1], k.Value
				}
			}
		}
		if next == nil {
			return nil
		}
		if first {
			section = key
		}
		n, rest = next, rest[len(key):]
	}
	return n
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

	var doc *yaml.Node
	var places map[*yaml.Node]placeholder
	var list *listEntries
	if !strings.EqualFold(filepath.Ext(file), ".json") {
		doc, places, list = parseReusing(stack[len(stack)-1].abs, data)
	}
	if doc == nil {
		doc = l.parse(file, data)
	}
	if doc == nil || len(doc.Content) == 0 {
		return
	}
	offset := len(l.cfg.Clusters)
	l.loadDoc(doc, stack, places)
	if list != nil && aligned(doc.Content[0], list, data) {
		list.offset = offset
		l.lists = append(l.lists, list)
	}
}

// loadDoc reads one parsed document into the merged config, then its
// includes. stack is as for load.
func (l *loader) loadDoc(doc *yaml.Node, stack []frame, places map[*yaml.Node]placeholder) {
	file := stack[len(stack)-1].name
	root := doc.Content[0]
	w := &walker{
		l:        l,
		file:     file,
		included: len(stack) > 1,
		offsets:  map[string]int{"listeners": len(l.cfg.Listeners), "clusters": len(l.cfg.Clusters)},
		reused:   places,
	}
	l.docs = append(l.docs, walkedDoc{file: file, root: root, offsets: w.offsets, places: places})
	var fc Config
	if !w.walk(root, reflect.ValueOf(&fc).Elem(), nil) {
		return
	}
	if w.included {
		l.cfg.Listeners = append(l.cfg.Listeners, fc.Listeners...)
		l.cfg.Clusters = append(l.cfg.Clusters, fc.Clusters...)
	} else {
		*l.cfg = fc
	}
	l.includes(file, root, fc.Include, stack)
}

// loadSource reads an extra source as a file that main included. It may
// hold listeners and clusters only: an include in it would be read
// relative to no directory.
func (l *loader) loadSource(src Source, main frame) {
	stack := []frame{main, {abs: "\x00source:" + src.Name, name: src.Name}}
	doc := l.parse(src.Name, src.Data)
	if doc == nil || len(doc.Content) == 0 {
		return
	}
	root := doc.Content[0]
	if root.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(root.Content); i += 2 {
			if k := root.Content[i]; k.Value == "include" {
				l.problems = append(l.problems, Problem{File: src.Name, Line: k.Line, Column: k.Column, Path: "include",
					Message: `"include" is not allowed in a generated document`, Hint: "it may hold listeners and clusters only"})
				root.Content = append(root.Content[:i:i], root.Content[i+2:]...)
				break
			}
		}
	}
	l.loadDoc(doc, stack, nil)
}

// nameSourcePaths rewrites the paths of the problems found in the extra
// sources so that they name listeners and clusters ("listeners[ingress]")
// rather than index them in the merged config.
func (l *loader) nameSourcePaths(extra []Source) {
	sources := map[string]bool{}
	for _, src := range extra {
		sources[src.Name] = true
	}
	for i := range l.problems {
		p := &l.problems[i]
		if !sources[p.File] {
			continue
		}
		p.Path = namedPath(p.Path, "listeners", func(n int) string {
			if n < len(l.cfg.Listeners) {
				return l.cfg.Listeners[n].Name
			}
			return ""
		})
		p.Path = namedPath(p.Path, "clusters", func(n int) string {
			if n < len(l.cfg.Clusters) {
				return l.cfg.Clusters[n].Name
			}
			return ""
		})
	}
}

// namedPath turns a path starting with section[N] into one starting with
// section[NAME], when name knows the name of the Nth entry.
func namedPath(path, section string, name func(int) string) string {
	rest, ok := strings.CutPrefix(path, section+"[")
	if !ok {
		return path
	}
	idx, rest, ok := strings.Cut(rest, "]")
	if !ok {
		return path
	}
	n, err := strconv.Atoi(idx)
	if err != nil {
		return path
	}
	if nm := name(n); nm != "" {
		return section + "[" + nm + "]" + rest
	}
	return path
}

// parse parses data into a document node, or reports why it cannot and
// returns nil. An empty file is an empty document: a config of defaults.
func (l *loader) parse(file string, data []byte) *yaml.Node {
	if strings.EqualFold(filepath.Ext(file), ".json") {
		// The YAML parser reads JSON, and more: trailing commas, comments,
		// single quotes, bare words. A .json file must be JSON, so that
		// what validates here is what other JSON tools read.
		if p := checkJSON(file, data); p != nil {
			l.problems = append(l.problems, *p)
			l.broken = true
			return nil
		}
	}
	if doc, ok := splitParse(data); ok {
		return doc
	}
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
		if len(matches) == 0 {
			l.noMatch(at, file, patterns[i], pattern)
			continue
		}
		for _, m := range matches {
			l.include(at, m, stack)
		}
	}
}

// noMatch handles an include entry of file, written as given and
// resolved to pattern, that matched no file. A plain path names a file
// that must exist: that it does not is an error, since its listeners and
// clusters are surely wanted. A glob may match nothing, as a conf.d
// directory before anything is dropped into it: a warning.
func (l *loader) noMatch(at Problem, file, given, pattern string) {
	if strings.ContainsAny(given, `*?[\`) {
		at.Message = fmt.Sprintf("include glob %q matches no file", given)
		at.Hint = "files that appear later are read on the next reload"
		l.warnings = append(l.warnings, at)
		return
	}
	msg := fmt.Sprintf("included file %s does not exist", pattern)
	if _, err := os.Lstat(pattern); err != nil && !errors.Is(err, fs.ErrNotExist) {
		msg = fmt.Sprintf("cannot include %s: %v", pattern, unwrapPath(err))
	}
	hint := "check the name"
	if !filepath.IsAbs(given) {
		hint = fmt.Sprintf("relative paths are from the directory of %s (%s)", file, filepath.Dir(file))
	}
	l.problemAt(at, msg, hint+`; to allow a file that may be missing, use a glob such as "conf.d/*.yaml"`)
	// Its listeners and clusters are missing: checks of the rest (routes
	// naming its clusters) would mostly be noise.
	l.broken = true
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
	l.hashes[m] = sha256.Sum256(data)
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
