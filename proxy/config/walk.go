package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"go.yaml.in/yaml/v4"
)

// position is where a node was written.
type position struct {
	file         string
	line, column int
}

// String formats p as "file:line:column", or just the file when the line
// is unknown.
func (p position) String() string {
	if p.line == 0 {
		return p.file
	}
	return p.file + ":" + strconv.Itoa(p.line) + ":" + strconv.Itoa(p.column)
}

// walker checks one file's node tree against the schema (the Go types in
// types.go) before yaml v4 decodes it, for three reasons:
//
//   - it records where every field path was written, so that problems found
//     later on the typed structs can be given a line and column;
//   - it finds shape problems (unknown keys, a mapping where a list is due,
//     a bad scalar) with the field path and in our words instead of Go type
//     names;
//   - it keeps list indexes true: yaml v4 silently drops a list entry it
//     cannot decode (or an empty "-"), which would shift every later index
//     and point later problems at the wrong entry. The walker replaces such
//     entries with a zero value instead, and removes bad mapping entries, so
//     the decoder has nothing left to drop.
type walker struct {
	l    *loader
	file string
	// included is set for files reached through include:, which may only
	// hold include, listeners and clusters.
	included bool
	// offsets are the merged indexes of this file's first listener and
	// cluster, so that recorded paths index into the merged config.
	offsets map[string]int
}

// includedKeys are the top-level keys an included file may hold.
var includedKeys = []string{"include", "listeners", "clusters"}

// walk checks n against type t at path and reports whether n may stay in
// its parent. It may rewrite n's subtree (see walker).
func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) bool {
	w.l.record(path, w.at(n))
	// An alias is checked for its shape where it is used, but not
	// descended into: the anchor was checked where it was written, and not
	// descending keeps the walk linear in the file size whatever the
	// aliases expand to.
	alias, v := n.Kind == yaml.AliasNode, resolveAlias(n)
	if isNull(v) {
		if !alias && t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
			// "tcp:" or "retry_policy:" with nothing after it asks for the
			// feature with its defaults, as "{}" does; decoding null would
			// leave the pointer nil and the key silently ignored.
			n.Kind, n.Tag, n.Value = yaml.MappingNode, "!!map", ""
		}
		return true
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct:
		if v.Kind != yaml.MappingNode {
			w.fail(n, path, "must be "+describeType(t)+", got "+describeNode(v), "")
			return false
		}
		if !alias {
			w.mapping(n, t, path)
		}
	case t.Kind() == reflect.Map:
		if v.Kind != yaml.MappingNode {
			w.fail(n, path, "must be a mapping, got "+describeNode(v), "")
			return false
		}
		if !alias {
			w.dictionary(v, t.Elem(), path)
		}
	case t.Kind() == reflect.Slice:
		if v.Kind != yaml.SequenceNode {
			w.fail(n, path, "must be "+describeType(t)+", got "+describeNode(v), "")
			return false
		}
		if !alias {
			w.sequence(n, t.Elem(), path)
		}
	default:
		return w.scalar(n, v, t, path)
	}
	return true
}

// mapping checks the keys of a mapping decoded into struct type t, and
// removes those the decoder must not see.
func (w *walker) mapping(n *yaml.Node, t reflect.Type, path string) {
	fields, names := schemaOf(t)
	kept := n.Content[:0]
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if isMergeKey(k) {
			// Merged mappings are checked by the decoder alone (unknown
			// keys included); their fields get the parent's position.
			kept = append(kept, k, v)
			continue
		}
		f := slices.Index(names, k.Value)
		switch {
		case k.Kind != yaml.ScalarNode:
			w.report(k, path, "keys must be plain names, got "+describeNode(k), "")
		case f < 0:
			w.report(k, path, fmt.Sprintf("unknown key %q", k.Value), suggest(k.Value, names, "known keys"))
		case seen[k.Value] != nil:
			w.report(k, path, fmt.Sprintf("duplicate key %q", k.Value), "first at "+w.at(seen[k.Value]).String())
		case path == "" && w.included && !slices.Contains(includedKeys, k.Value):
			w.report(k, path, fmt.Sprintf("%q is not allowed in an included file", k.Value),
				"an included file may only hold "+strings.Join(includedKeys, ", "))
		default:
			seen[k.Value] = k
			if w.walk(v, fields[f].typ, joinPath(path, k.Value)) {
				kept = append(kept, k, v)
			}
		}
	}
	n.Content = kept
}

// dictionary checks a mapping decoded into a Go map (json_format): keys
// are the user's own names, each value of type et is recorded at
// path.key so that problems with it are given its position.
func (w *walker) dictionary(n *yaml.Node, et reflect.Type, path string) {
	kept := n.Content[:0]
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Kind != yaml.ScalarNode || isMergeKey(k):
			w.report(k, path, "keys must be plain names, got "+describeNode(k), "")
		case seen[k.Value] != nil:
			w.report(k, path, fmt.Sprintf("duplicate key %q", k.Value), "first at "+w.at(seen[k.Value]).String())
		default:
			seen[k.Value] = k
			if w.walk(v, et, joinPath(path, k.Value)) {
				kept = append(kept, k, v)
			}
		}
	}
	n.Content = kept
}

// sequence checks the entries of a list of et, replacing those yaml v4
// would drop with a zero value so that indexes stay as written.
func (w *walker) sequence(n *yaml.Node, et reflect.Type, path string) {
	base := w.offsets[path]
	for i, e := range n.Content {
		child := path + "[" + strconv.Itoa(base+i) + "]"
		if isNull(resolveAlias(e)) {
			w.fail(e, child, "empty list entry", "remove the lone \"-\" or give it a value")
			n.Content[i] = zeroNode(et, e)
			continue
		}
		if !w.walk(e, et, child) {
			n.Content[i] = zeroNode(et, e)
		}
	}
}

// scalar checks that v, written as n (itself, or an alias to it), decodes
// into t by decoding it, so that the checks are exactly yaml v4's.
func (w *walker) scalar(n, v *yaml.Node, t reflect.Type, path string) bool {
	if v.Kind != yaml.ScalarNode {
		w.fail(n, path, "must be "+describeType(t)+", got "+describeNode(v), "")
		return false
	}
	err := v.Load(reflect.New(t).Interface())
	if err == nil {
		return true
	}
	// *yaml.LoadErrors does not unwrap to its causes: look at each.
	var list *yaml.LoadErrors
	var de *durationError
	if errors.As(err, &list) && len(list.Errors) > 0 && errors.As(list.Errors[0], &de) {
		w.fail(n, path, de.msg, de.hint)
		return false
	}
	hint := ""
	if plain := (yaml.Node{Kind: yaml.ScalarNode, Value: v.Value}); v.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != 0 &&
		plain.Load(reflect.New(t).Interface()) == nil {
		hint = "quoted values are strings; remove the quotes"
	}
	w.fail(n, path, "must be "+describeType(t)+", got "+describeNode(v), hint)
	return false
}

// at is where n was written.
func (w *walker) at(n *yaml.Node) position {
	return position{file: w.file, line: n.Line, column: n.Column}
}

// fail reports a problem at n that leaves the value at path unusable, so
// that checks on the typed config stay quiet about it.
func (w *walker) fail(n *yaml.Node, path, msg, hint string) {
	w.report(n, path, msg, hint)
	w.l.failed[path] = true
}

// report reports a problem at n.
func (w *walker) report(n *yaml.Node, path, msg, hint string) {
	w.l.problems = append(w.l.problems, Problem{
		File: w.file, Line: n.Line, Column: n.Column, Path: path, Message: msg, Hint: hint,
	})
}

// yamlField is one key of a struct type.
type yamlField struct {
	name string
	typ  reflect.Type
}

// yamlFields lists the YAML keys of struct type t in declaration order, so
// that hints list keys in the order the schema (and the docs) present them.
func yamlFields(t reflect.Type) []yamlField {
	fields := make([]yamlField, 0, t.NumField())
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			fields = append(fields, yamlField{name: name, typ: t.Field(i).Type})
		}
	}
	return fields
}

// schemas caches schemaOf: a config of 10,000 clusters has some 100,000
// mappings of a dozen types.
var schemas sync.Map // reflect.Type → *schema

type schema struct {
	fields []yamlField
	names  []string
}

// schemaOf is yamlFields(t) and their names, computed once per type.
func schemaOf(t reflect.Type) ([]yamlField, []string) {
	if sc, ok := schemas.Load(t); ok {
		return sc.(*schema).fields, sc.(*schema).names
	}
	sc := &schema{fields: yamlFields(t)}
	for _, f := range sc.fields {
		sc.names = append(sc.names, f.name)
	}
	schemas.Store(t, sc)
	return sc.fields, sc.names
}

// yamlName is the key of field f, or "" when f is not in YAML.
func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

var durationType = reflect.TypeFor[Duration]()

// describeType says what a value of t looks like in YAML.
func describeType(t reflect.Type) string {
	if t == durationType {
		return "a duration such as 15s"
	}
	switch t.Kind() {
	case reflect.Struct:
		return "a mapping"
	case reflect.Slice:
		return "a list"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Uint32:
		return "an integer from 0 to 4294967295"
	case reflect.Float64:
		return "a number"
	}
	return t.String()
}

// describeNode says what n is, quoting scalars (shortened when long).
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	const most = 40
	v := n.Value
	if len(v) > most {
		cut := most
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		v = v[:cut] + "…"
	}
	return strconv.Quote(v)
}

// zeroNode is a node that decodes into the zero value of t, placed at n.
func zeroNode(t reflect.Type, n *yaml.Node) *yaml.Node {
	z := &yaml.Node{Kind: yaml.ScalarNode, Line: n.Line, Column: n.Column}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		z.Tag, z.Value = "!!str", "0s"
	case t.Kind() == reflect.Struct:
		z.Kind, z.Tag = yaml.MappingNode, "!!map"
	case t.Kind() == reflect.Slice:
		z.Kind, z.Tag = yaml.SequenceNode, "!!seq"
	case t.Kind() == reflect.String:
		z.Tag = "!!str"
	case t.Kind() == reflect.Bool:
		z.Tag, z.Value = "!!bool", "false"
	default:
		z.Tag, z.Value = "!!int", "0"
	}
	return z
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func isMergeKey(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!merge"
}

// resolveAlias follows n to the node it stands for.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// joinPath appends key to a field path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// parentPath strips the last key or index from a field path.
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}
