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
// types.go) and decodes it, in one pass:
//
//   - it finds shape problems (unknown keys, a mapping where a list is due,
//     a bad scalar) with the field path and in our words instead of Go type
//     names;
//   - it keeps list indexes true: an entry that cannot be decoded (or an
//     empty "-") becomes a zero value in place, so that later entries, and
//     the problems found on them, keep the index they were written at;
//   - it leaves the node tree, where the loader finds where each field
//     path was written (loader.find), for problems found later on the
//     typed structs.
//
// It removes the mapping entries it refused, and replaces the list entries
// it refused with zero values, so that yaml v4, which decodes what the
// walker does not (aliases and merged "<<" mappings), finds nothing to
// refuse either.
type walker struct {
	l    *loader
	file string
	// included is set for files reached through include:, which may only
	// hold include, listeners and clusters.
	included bool
	// offsets are the merged indexes of this file's first listener and
	// cluster, so that paths index into the merged config.
	offsets map[string]int
	// reused are the list entries taken as they were decoded before,
	// rather than parsed (reuse.go).
	reused map[*yaml.Node]placeholder
}

// includedKeys are the top-level keys an included file may hold.
var includedKeys = []string{"include", "listeners", "clusters"}

// fieldPath is a field path ("clusters[3].endpoints[0].address") as the
// walker descends, made into a string only when a problem names it: a
// config of 10,000 clusters has some 100,000 of them.
type fieldPath struct {
	parent *fieldPath
	key    string // a key, or "" for an index
	index  int
}

// String formats p; nil is the root, "".
func (p *fieldPath) String() string {
	if p == nil {
		return ""
	}
	if p.key == "" {
		return p.parent.String() + "[" + strconv.Itoa(p.index) + "]"
	}
	return joinPath(p.parent.String(), p.key)
}

// walk checks n against the type of dst at path, decodes it into dst, and
// reports whether n may stay in its parent; when it may not, dst is left
// zero. It may rewrite n's subtree (see walker).
func (w *walker) walk(n *yaml.Node, dst reflect.Value, path *fieldPath) bool {
	t := dst.Type()
	// An alias is checked for its shape where it is used, and decoded by
	// yaml v4, but not descended into: the anchor was checked where it was
	// written, and not descending keeps the walk linear in the file size
	// whatever the aliases expand to.
	alias, v := n.Kind == yaml.AliasNode, resolveAlias(n)
	if isNull(v) {
		if !alias && t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
			// "tcp:" or "retry_policy:" with nothing after it asks for the
			// feature with its defaults, as "{}" does; decoding null would
			// leave the pointer nil and the key silently ignored. The node
			// becomes the mapping it stands for, for yaml v4 too.
			n.Kind, n.Tag, n.Value = yaml.MappingNode, "!!map", ""
			dst.Set(reflect.New(t.Elem()))
		}
		return true
	}
	et := t
	if et.Kind() == reflect.Pointer {
		et = et.Elem()
	}
	switch et.Kind() {
	case reflect.Struct, reflect.Map, reflect.Slice:
		want, what := yaml.MappingNode, "must be "+describeType(et)
		if et.Kind() == reflect.Slice {
			want = yaml.SequenceNode
		} else if et.Kind() == reflect.Map {
			what = "must be a mapping"
		}
		if v.Kind != want {
			w.fail(n, path, what+", got "+describeNode(v), "")
			return false
		}
	default:
		return w.scalar(n, v, dst, path)
	}
	target := dst
	if t.Kind() == reflect.Pointer {
		target = reflect.New(et).Elem()
	}
	switch {
	case alias:
		w.decodeYAML(n, target)
	case et.Kind() == reflect.Struct:
		w.mapping(n, target, path)
	case et.Kind() == reflect.Map:
		w.dictionary(v, target, path)
	default:
		w.sequence(n, target, path)
	}
	if t.Kind() == reflect.Pointer {
		dst.Set(target.Addr())
	}
	return true
}

// decodeYAML decodes n into dst with yaml v4, for what the walker does not
// descend into; what it refuses is reported as its errors.
func (w *walker) decodeYAML(n *yaml.Node, dst reflect.Value) {
	if err := n.Load(dst.Addr().Interface(), yaml.WithKnownFields()); err != nil {
		w.l.yamlProblems(w.file, nil, err)
	}
}

// mapping checks the keys of a mapping decoded into struct dst, decodes
// their values, and removes the entries it refused.
func (w *walker) mapping(n *yaml.Node, dst reflect.Value, path *fieldPath) {
	fields, names := schemaOf(dst.Type())
	kept := n.Content[:0]
	var seen []*yaml.Node // by field
	merged := false
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if isMergeKey(k) {
			// Merged mappings are decoded by yaml v4 alone (unknown keys
			// checked there); their fields get the parent's position.
			kept = append(kept, k, v)
			merged = true
			continue
		}
		f := -1
		if k.Kind == yaml.ScalarNode {
			f = slices.Index(names, k.Value)
		}
		switch {
		case k.Kind != yaml.ScalarNode:
			w.report(k, path, "keys must be plain names, got "+describeNode(k), "")
		case f < 0:
			w.report(k, path, fmt.Sprintf("unknown key %q", k.Value), suggest(k.Value, names, "known keys"))
		case seen != nil && seen[f] != nil:
			w.report(k, path, fmt.Sprintf("duplicate key %q", k.Value), "first at "+w.at(seen[f]).String())
		case path == nil && w.included && !slices.Contains(includedKeys, k.Value):
			w.report(k, path, fmt.Sprintf("%q is not allowed in an included file", k.Value),
				"an included file may only hold "+strings.Join(includedKeys, ", "))
		default:
			if seen == nil {
				seen = make([]*yaml.Node, len(fields))
			}
			seen[f] = k
			fv := dst.Field(fields[f].index)
			if w.walk(v, fv, &fieldPath{parent: path, key: k.Value}) {
				kept = append(kept, k, v)
			} else {
				fv.SetZero()
			}
		}
	}
	n.Content = kept
	if merged {
		w.decodeYAML(n, dst)
	}
}

// dictionary checks a mapping decoded into Go map dst (json_format): keys
// are the user's own names.
func (w *walker) dictionary(n *yaml.Node, dst reflect.Value, path *fieldPath) {
	kept := n.Content[:0]
	seen := map[string]*yaml.Node{}
	m := reflect.MakeMapWithSize(dst.Type(), len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Kind != yaml.ScalarNode || isMergeKey(k):
			w.report(k, path, "keys must be plain names, got "+describeNode(k), "")
		case seen[k.Value] != nil:
			w.report(k, path, fmt.Sprintf("duplicate key %q", k.Value), "first at "+w.at(seen[k.Value]).String())
		default:
			seen[k.Value] = k
			ev := reflect.New(dst.Type().Elem()).Elem()
			if w.walk(v, ev, &fieldPath{parent: path, key: k.Value}) {
				kept = append(kept, k, v)
				m.SetMapIndex(reflect.ValueOf(k.Value).Convert(dst.Type().Key()), ev)
			}
		}
	}
	n.Content = kept
	dst.Set(m)
}

// sequence checks and decodes the entries of a list into slice dst,
// replacing those it refuses with zero values so that indexes stay as
// written.
func (w *walker) sequence(n *yaml.Node, dst reflect.Value, path *fieldPath) {
	base := 0
	if path != nil && path.parent == nil {
		base = w.offsets[path.key]
	}
	et := dst.Type().Elem()
	list := reflect.MakeSlice(dst.Type(), len(n.Content), len(n.Content))
	for i, e := range n.Content {
		if ph, ok := w.reused[e]; ok {
			list.Index(i).Set(reflect.ValueOf(ph.value).Elem())
			continue
		}
		child := &fieldPath{parent: path, index: base + i}
		if isNull(resolveAlias(e)) {
			w.fail(e, child, "empty list entry", "remove the lone \"-\" or give it a value")
			n.Content[i] = zeroNode(et, e)
			continue
		}
		if !w.walk(e, list.Index(i), child) {
			n.Content[i] = zeroNode(et, e)
		}
	}
	dst.Set(list)
}

// scalar checks that v, written as n (itself, or an alias to it), decodes
// into dst, and decodes it: the plain cases itself, the others with yaml
// v4, so that the checks are exactly yaml v4's.
func (w *walker) scalar(n, v *yaml.Node, dst reflect.Value, path *fieldPath) bool {
	t := dst.Type()
	if v.Kind != yaml.ScalarNode {
		w.fail(n, path, "must be "+describeType(t)+", got "+describeNode(v), "")
		return false
	}
	if t.Kind() == reflect.Pointer {
		p := reflect.New(t.Elem())
		if !w.scalar(n, v, p.Elem(), path) {
			return false
		}
		dst.Set(p)
		return true
	}
	if k := t.Kind(); k >= reflect.Int && k <= reflect.Float64 && t != durationType && leadingZero(v) {
		// yaml v4 reads 024 as octal 20, where whoever wrote it most
		// likely meant 24: neither reading is taken silently.
		sign, digits := "", strings.TrimPrefix(v.Value, "-")
		if len(digits) < len(v.Value) {
			sign = "-"
		}
		digits = strings.TrimLeft(digits, "0")
		w.fail(n, path, "must be "+describeType(t)+", got "+v.Value+", a number with a leading zero, which YAML reads as octal",
			"write "+sign+digits+" for the decimal number, or "+sign+"0o"+digits+" for octal")
		return false
	}
	if decodePlain(v, dst) {
		return true
	}
	target := reflect.New(t)
	err := v.Load(target.Interface())
	if err == nil {
		dst.Set(target.Elem())
		return true
	}
	// *yaml.LoadErrors does not unwrap to its causes: look at each.
	var list *yaml.LoadErrors
	var de *durationError
	if errors.As(err, &de) || errors.As(err, &list) && len(list.Errors) > 0 && errors.As(list.Errors[0], &de) {
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

// decodePlain decodes the common scalars into dst without yaml v4's
// decoder, which costs a dozen allocations a call: a string written as
// one, a decimal integer or number, true or false, and a duration (what
// yaml v4 would do: call its UnmarshalYAML). It reports false, having
// written nothing, for anything else.
func decodePlain(v *yaml.Node, dst reflect.Value) bool {
	if dst.Type() == durationType {
		var d Duration
		if d.UnmarshalYAML(v) != nil {
			return false
		}
		dst.SetInt(int64(d))
		return true
	}
	switch dst.Kind() {
	case reflect.String:
		if v.ShortTag() != "!!str" {
			return false
		}
		dst.SetString(v.Value)
		return true
	case reflect.Bool:
		if v.ShortTag() != "!!bool" || v.Value != "true" && v.Value != "false" {
			return false
		}
		dst.SetBool(v.Value == "true")
		return true
	case reflect.Int, reflect.Int64, reflect.Int32:
		if v.ShortTag() != "!!int" || !decimal(v.Value) {
			return false
		}
		i, err := strconv.ParseInt(v.Value, 10, 64)
		if err != nil || dst.OverflowInt(i) {
			return false
		}
		dst.SetInt(i)
		return true
	case reflect.Uint32, reflect.Uint64, reflect.Uint:
		if v.ShortTag() != "!!int" || !decimal(v.Value) || v.Value[0] == '-' {
			return false
		}
		u, err := strconv.ParseUint(v.Value, 10, 64)
		if err != nil || dst.OverflowUint(u) {
			return false
		}
		dst.SetUint(u)
		return true
	case reflect.Float64:
		if tag := v.ShortTag(); tag != "!!int" && tag != "!!float" || !decimal(strings.Replace(v.Value, ".", "", 1)) {
			return false
		}
		f, err := strconv.ParseFloat(v.Value, 64)
		if err != nil {
			return false
		}
		dst.SetFloat(f)
		return true
	}
	return false
}

// leadingZero reports whether v is a plain integer written with a leading
// zero, as 024 or -007.
func leadingZero(v *yaml.Node) bool {
	s := strings.TrimPrefix(v.Value, "-")
	return v.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 &&
		v.ShortTag() == "!!int" && len(s) > 1 && s[0] == '0' && decimal(s)
}

// decimal reports whether s is an optional minus and decimal digits.
func decimal(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// at is where n was written.
func (w *walker) at(n *yaml.Node) position {
	return position{file: w.file, line: n.Line, column: n.Column}
}

// fail reports a problem at n that leaves the value at path unusable, so
// that checks on the typed config stay quiet about it.
func (w *walker) fail(n *yaml.Node, path *fieldPath, msg, hint string) {
	p := path.String()
	w.report(n, path, msg, hint)
	w.l.failed[p] = true
}

// report reports a problem at n.
func (w *walker) report(n *yaml.Node, path *fieldPath, msg, hint string) {
	w.l.problems = append(w.l.problems, Problem{
		File: w.file, Line: n.Line, Column: n.Column, Path: path.String(), Message: msg, Hint: hint,
	})
}

// yamlField is one key of a struct type: its name, its type and the index
// of its field.
type yamlField struct {
	name  string
	typ   reflect.Type
	index int
}

// yamlFields lists the YAML keys of struct type t in declaration order, so
// that hints list keys in the order the schema (and the docs) present them.
func yamlFields(t reflect.Type) []yamlField {
	fields := make([]yamlField, 0, t.NumField())
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			fields = append(fields, yamlField{name: name, typ: t.Field(i).Type, index: i})
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
