package stats_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestEveryStatIsWritten checks that every stat of the catalog is written
// on some path: each exported *Counter, *Gauge, *Histogram and Responses
// field of the handle structs in handles.go must be written (Inc, Dec, Add,
// Set, RecordDuration, RecordTraced, RqCompleted, or GRPCMethod.Completed for the fields
// it writes) by the module's non-test code outside this package, or by the
// Store itself for the runtime stats it sets at each flush.
//
// The module is type-checked from source (go/parser and go/types, with the
// export data `go list -export` gives for the packages outside the module),
// so that a write is credited to the field it writes, not to any field of
// the same name. A handle field's value may be handed on before it is
// written, as a picker keeps the counters it will increment: it is
// followed through assignments, struct fields, call arguments, returns,
// slices and ranges, to whatever object the write names.
func TestEveryStatIsWritten(t *testing.T) {
	if testing.Short() {
		t.Skip("type-checks the whole module")
	}
	m := loadModule(t, "..")
	statsPkg := m.pkgs[m.path+"/stats"]
	if statsPkg == nil {
		t.Fatalf("package %s/stats not loaded", m.path)
	}
	fields := handleFields(t, m, statsPkg)
	if len(fields) < 50 {
		t.Fatalf("found only %d handle fields in handles.go: the test no longer reads it right", len(fields))
	}
	written := m.writtenFields(statsPkg)

	var unwritten []string
	for _, f := range fields {
		if !written[f.obj] {
			unwritten = append(unwritten, fmt.Sprintf("%s (%s)", f.key, f.flat))
		}
	}
	slices.Sort(unwritten)
	if len(unwritten) > 0 {
		t.Errorf("%d stats are declared but never written outside the stats package: write each on the path Envoy counts it, "+
			"or take it out of the catalog and the dashboards:\n\t%s", len(unwritten), strings.Join(unwritten, "\n\t"))
	}
	t.Logf("%d handle fields, %d written", len(fields), len(fields)-len(unwritten))
}

// module is the module's packages, type-checked from source.
type module struct {
	path  string
	fset  *token.FileSet
	pkgs  map[string]*types.Package // by import path
	files map[string][]*ast.File
	info  map[string]*types.Info
	order []string // import paths, dependencies first
}

// listedPackage is what `go list -json` says of a package.
type listedPackage struct {
	ImportPath string
	Dir        string
	Export     string
	GoFiles    []string
	CgoFiles   []string
	Module     *struct {
		Path string
		Main bool
	}
	Error *struct{ Err string }
}

// loadModule type-checks the module at root: its packages from source, in
// dependency order, and everything else they import from export data.
func loadModule(t *testing.T, root string) *module {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-export", "-deps", "-json=ImportPath,Dir,Export,GoFiles,CgoFiles,Module,Error", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	m := &module{fset: token.NewFileSet(), pkgs: map[string]*types.Package{}, files: map[string][]*ast.File{}, info: map[string]*types.Info{}}
	exports := map[string]string{}
	var local []listedPackage
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Error != nil {
			t.Fatalf("go list: package %s: %s", p.ImportPath, p.Error.Err)
		}
		if p.Module != nil && p.Module.Main {
			m.path = p.Module.Path
			if len(p.GoFiles)+len(p.CgoFiles) > 0 {
				local = append(local, p)
			}
			continue
		}
		exports[p.ImportPath] = p.Export
	}
	gc := importer.ForCompiler(m.fset, "gc", func(path string) (io.ReadCloser, error) {
		f := exports[path]
		if f == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(f)
	})
	imp := importerFunc(func(path string) (*types.Package, error) {
		if p := m.pkgs[path]; p != nil {
			return p, nil
		}
		return gc.Import(path)
	})
	for _, p := range local {
		if len(p.CgoFiles) > 0 {
			t.Fatalf("package %s uses cgo, which this test cannot type-check", p.ImportPath)
		}
		var files []*ast.File
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(m.fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
		info := &types.Info{
			Types:      map[ast.Expr]types.TypeAndValue{},
			Defs:       map[*ast.Ident]types.Object{},
			Uses:       map[*ast.Ident]types.Object{},
			Selections: map[*ast.SelectorExpr]*types.Selection{},
		}
		var typeErrs []error
		conf := types.Config{Importer: imp, Error: func(err error) { typeErrs = append(typeErrs, err) }}
		pkg, _ := conf.Check(p.ImportPath, m.fset, files, info)
		if len(typeErrs) > 0 {
			t.Fatalf("type-checking %s: %v", p.ImportPath, errors.Join(typeErrs[:min(len(typeErrs), 5)]...))
		}
		m.pkgs[p.ImportPath], m.files[p.ImportPath], m.info[p.ImportPath] = pkg, files, info
		m.order = append(m.order, p.ImportPath)
	}
	return m
}

type importerFunc func(path string) (*types.Package, error)

func (f importerFunc) Import(path string) (*types.Package, error) { return f(path) }

// handleField is one stat-bearing field of a handle struct.
type handleField struct {
	obj  *types.Var
	key  string // Type.Field
	flat string // the flat names of its stats, from the constructors
}

// handleFields returns the exported *Counter, *Gauge, *Histogram and
// Responses fields of the exported structs declared in handles.go, with
// the flat names their constructors give them.
func handleFields(t *testing.T, m *module, stats *types.Package) []handleField {
	t.Helper()
	instrument := map[types.Type]bool{}
	for _, name := range []string{"Counter", "Gauge", "Histogram"} {
		instrument[types.NewPointer(stats.Scope().Lookup(name).Type())] = true
	}
	responses := stats.Scope().Lookup("Responses").Type()
	isStat := func(ty types.Type) bool {
		if types.Identical(ty, responses) {
			return true
		}
		for it := range instrument {
			if types.Identical(ty, it) {
				return true
			}
		}
		return false
	}
	flats := m.flatNames(t, stats)
	var out []handleField
	for _, name := range stats.Scope().Names() {
		tn, ok := stats.Scope().Lookup(name).(*types.TypeName)
		if !ok || !tn.Exported() || filepath.Base(m.fset.Position(tn.Pos()).Filename) != "handles.go" {
			continue
		}
		st, ok := tn.Type().Underlying().(*types.Struct)
		if !ok {
			continue
		}
		for f := range st.Fields() {
			if f.Exported() && isStat(f.Type()) {
				flat := strings.Join(flats[f], " and ")
				if flat == "" {
					flat = "no constructor found"
				}
				out = append(out, handleField{obj: f, key: tn.Name() + "." + f.Name(), flat: flat})
			}
		}
	}
	return out
}

// flatNames maps each handle field to the flat names of the catalog
// entries its constructors build it from: the catalog variables named in
// the field's value in every composite literal of the stats package.
func (m *module) flatNames(t *testing.T, stats *types.Package) map[*types.Var][]string {
	t.Helper()
	path := stats.Path()
	info := m.info[path]
	// The catalog: variable = define(Def{flat: "..."}).
	defs := map[types.Object]string{}
	for _, f := range m.files[path] {
		ast.Inspect(f, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, v := range vs.Values {
				call, ok := v.(*ast.CallExpr)
				if !ok || len(call.Args) != 1 {
					continue
				}
				if id, ok := call.Fun.(*ast.Ident); !ok || id.Name != "define" {
					continue
				}
				lit, ok := call.Args[0].(*ast.CompositeLit)
				if !ok {
					continue
				}
				for _, e := range lit.Elts {
					if kv, ok := e.(*ast.KeyValueExpr); ok {
						if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "flat" {
							if b, ok := kv.Value.(*ast.BasicLit); ok {
								if s, err := strconv.Unquote(b.Value); err == nil {
									defs[info.Defs[vs.Names[i]]] = s
								}
							}
						}
					}
				}
			}
			return true
		})
	}
	if len(defs) < 50 {
		t.Fatalf("found only %d catalog entries: the test no longer reads catalog.go right", len(defs))
	}
	out := map[*types.Var][]string{}
	for _, f := range m.files[path] {
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			for _, e := range lit.Elts {
				kv, ok := e.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				k, ok := kv.Key.(*ast.Ident)
				if !ok {
					continue
				}
				field, ok := info.Uses[k].(*types.Var)
				if !ok || !field.IsField() {
					continue
				}
				ast.Inspect(kv.Value, func(n ast.Node) bool {
					if id, ok := n.(*ast.Ident); ok {
						if flat, ok := defs[info.Uses[id]]; ok && !slices.Contains(out[field], flat) {
							out[field] = append(out[field], flat)
						}
					}
					return true
				})
			}
			return true
		})
	}
	return out
}

// writtenFields returns the objects (handle fields among them) that some
// write reaches: directly, or through the objects their values are handed
// to.
func (m *module) writtenFields(stats *types.Package) map[types.Object]bool {
	// The write methods: every method that changes an instrument, and by
	// name and signature the interface methods a handle may be called
	// through (the breakers keep their gauges as a one-method interface).
	writers := map[types.Object]bool{}
	writerSigs := map[string][]*types.Signature{}
	for typ, methods := range map[string][]string{
		"Counter":    {"Inc"},
		"Gauge":      {"Inc", "Dec", "Add", "Set"},
		"Histogram":  {"RecordDuration", "RecordTraced", "record"},
		"Responses":  {"RqCompleted"},
		"GRPCMethod": {"Completed"},
	} {
		named := stats.Scope().Lookup(typ).Type()
		for _, name := range methods {
			obj, _, _ := types.LookupFieldOrMethod(types.NewPointer(named), true, stats, name)
			if obj == nil {
				panic(fmt.Sprintf("no method %s.%s", typ, name))
			}
			writers[obj] = true
			writerSigs[name] = append(writerSigs[name], obj.(*types.Func).Signature())
		}
	}
	isWriter := func(method types.Object) bool {
		if writers[method] {
			return true
		}
		fn, ok := method.(*types.Func)
		if !ok || fn.Signature().Recv() == nil || !types.IsInterface(fn.Signature().Recv().Type()) {
			return false
		}
		for _, sig := range writerSigs[fn.Name()] {
			if types.Identical(sig, fn.Signature()) {
				return true
			}
		}
		return false
	}
	// handleMethod reports whether fn is a method of an exported struct of
	// the stats package: its writes count only if code outside the package
	// calls it (GRPCMethod.Completed writes Total, Success and Failure).
	handleMethod := func(fn *types.Func) bool {
		recv := fn.Signature().Recv()
		if recv == nil || fn.Pkg() != stats {
			return false
		}
		ty := recv.Type()
		if p, ok := ty.(*types.Pointer); ok {
			ty = p.Elem()
		}
		n, ok := ty.(*types.Named)
		return ok && n.Obj().Exported()
	}

	g := &flowGraph{edges: map[types.Object][]types.Object{}, written: map[types.Object]bool{}}
	calledOutside := map[types.Object]bool{}
	type deferred struct {
		method types.Object
		target types.Object
	}
	var inHandleMethods []deferred
	for _, path := range m.order {
		info := m.info[path]
		inStats := path == stats.Path()
		for _, f := range m.files[path] {
			for _, decl := range f.Decls {
				var fn *types.Func
				if fd, ok := decl.(*ast.FuncDecl); ok {
					fn, _ = info.Defs[fd.Name].(*types.Func)
				}
				g.walk(info, decl, func(sel *ast.SelectorExpr, s *types.Selection) {
					method := origin(s.Obj())
					if !inStats {
						calledOutside[method] = true
					}
					if !isWriter(method) {
						return
					}
					target := g.receiver(info, sel, s)
					if target == nil {
						return
					}
					if inStats && fn != nil && handleMethod(fn) {
						inHandleMethods = append(inHandleMethods, deferred{fn, target})
						return
					}
					g.written[target] = true
				})
			}
		}
	}
	for _, d := range inHandleMethods {
		if calledOutside[d.method] {
			g.written[d.target] = true
		}
	}
	return g.reached()
}

// flowGraph follows values: an edge from a to b says a's value is handed
// to b; written holds the objects a write method is called on.
type flowGraph struct {
	edges   map[types.Object][]types.Object
	written map[types.Object]bool
}

// reached returns every object from which a written object can be
// reached.
func (g *flowGraph) reached() map[types.Object]bool {
	memo := map[types.Object]bool{}
	var visit func(o types.Object, seen map[types.Object]bool) bool
	visit = func(o types.Object, seen map[types.Object]bool) bool {
		if v, ok := memo[o]; ok {
			return v
		}
		if g.written[o] {
			return true
		}
		if seen[o] {
			return false
		}
		seen[o] = true
		for _, next := range g.edges[o] {
			if visit(next, seen) {
				return true
			}
		}
		return false
	}
	out := map[types.Object]bool{}
	for o := range g.edges {
		if visit(o, map[types.Object]bool{}) {
			out[o], memo[o] = true, true
		}
	}
	for o := range g.written {
		out[o] = true
	}
	return out
}

func origin(o types.Object) types.Object {
	switch o := o.(type) {
	case *types.Var:
		return o.Origin()
	case *types.Func:
		return o.Origin()
	}
	return o
}

// receiver returns the object a method selection is called on: the field
// or variable sel.X names, or, for a method promoted from an embedded
// field (Upstream's RqCompleted, promoted from its Responses), that
// embedded field.
func (g *flowGraph) receiver(info *types.Info, sel *ast.SelectorExpr, s *types.Selection) types.Object {
	if idx := s.Index(); len(idx) > 1 {
		ty := s.Recv()
		var field *types.Var
		for _, i := range idx[:len(idx)-1] {
			st, ok := deref(ty).Underlying().(*types.Struct)
			if !ok {
				return nil
			}
			field = st.Field(i)
			ty = field.Type()
		}
		return origin(field)
	}
	return target(info, sel.X)
}

func deref(t types.Type) types.Type {
	if p, ok := t.Underlying().(*types.Pointer); ok {
		return p.Elem()
	}
	return t
}

// target returns the variable or field an expression names, seeing
// through parentheses, &, * and indexing (an element of a slice or map
// stands for the slice or map).
func target(info *types.Info, e ast.Expr) types.Object {
	switch e := e.(type) {
	case *ast.ParenExpr:
		return target(info, e.X)
	case *ast.StarExpr:
		return target(info, e.X)
	case *ast.UnaryExpr:
		if e.Op == token.AND {
			return target(info, e.X)
		}
	case *ast.IndexExpr:
		return target(info, e.X)
	case *ast.Ident:
		if o, ok := info.Uses[e].(*types.Var); ok {
			return origin(o)
		}
		if o, ok := info.Defs[e].(*types.Var); ok {
			return origin(o)
		}
	case *ast.SelectorExpr:
		if s := info.Selections[e]; s != nil {
			if s.Kind() == types.FieldVal {
				return origin(s.Obj())
			}
			return nil
		}
		if o, ok := info.Uses[e.Sel].(*types.Var); ok { // pkg.Var
			return origin(o)
		}
	}
	return nil
}

// sources returns the objects whose values an expression may carry.
func sources(info *types.Info, e ast.Expr) []types.Object {
	switch e := e.(type) {
	case *ast.ParenExpr:
		return sources(info, e.X)
	case *ast.UnaryExpr:
		if e.Op == token.AND {
			return sources(info, e.X)
		}
		return nil
	case *ast.CompositeLit:
		// The elements of a slice, array or map literal travel with it;
		// a struct literal's fields get their own edges.
		if _, ok := info.Types[e].Type.Underlying().(*types.Struct); ok {
			return nil
		}
		var out []types.Object
		for _, el := range e.Elts {
			if kv, ok := el.(*ast.KeyValueExpr); ok {
				el = kv.Value
			}
			out = append(out, sources(info, el)...)
		}
		return out
	case *ast.CallExpr:
		if tv := info.Types[e.Fun]; tv.IsType() && len(e.Args) == 1 { // a conversion
			return sources(info, e.Args[0])
		}
		if sig, ok := info.Types[e.Fun].Type.(*types.Signature); ok && sig.Results().Len() > 0 {
			return []types.Object{origin(sig.Results().At(0))}
		}
		return nil
	}
	if o := target(info, e); o != nil {
		return []types.Object{o}
	}
	return nil
}

func (g *flowGraph) flow(info *types.Info, value ast.Expr, dst types.Object) {
	if dst == nil {
		return
	}
	for _, src := range sources(info, value) {
		if src != dst {
			g.edges[src] = append(g.edges[src], dst)
		}
	}
}

// walk adds the edges of one declaration to g and calls onMethod for every
// method selection in it.
func (g *flowGraph) walk(info *types.Info, decl ast.Decl, onMethod func(*ast.SelectorExpr, *types.Selection)) {
	var results []*types.Tuple // of the enclosing functions, innermost last
	var visit func(n ast.Node) bool
	visit = func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncDecl:
			if fn, ok := info.Defs[n.Name].(*types.Func); ok {
				results = append(results, fn.Signature().Results())
				if n.Body != nil {
					ast.Inspect(n.Body, visit)
				}
				results = results[:len(results)-1]
			}
			return false
		case *ast.FuncLit:
			if sig, ok := info.Types[n].Type.(*types.Signature); ok {
				results = append(results, sig.Results())
				ast.Inspect(n.Body, visit)
				results = results[:len(results)-1]
			}
			return false
		case *ast.ReturnStmt:
			if len(results) > 0 && results[len(results)-1].Len() == len(n.Results) {
				for i, r := range n.Results {
					g.flow(info, r, origin(results[len(results)-1].At(i)))
				}
			}
		case *ast.SelectorExpr:
			if s := info.Selections[n]; s != nil && s.Kind() != types.FieldVal {
				onMethod(n, s)
			}
		case *ast.AssignStmt:
			if len(n.Lhs) == len(n.Rhs) {
				for i := range n.Lhs {
					g.flow(info, n.Rhs[i], target(info, n.Lhs[i]))
				}
			}
		case *ast.ValueSpec:
			if len(n.Names) == len(n.Values) {
				for i := range n.Names {
					g.flow(info, n.Values[i], target(info, n.Names[i]))
				}
			}
		case *ast.RangeStmt:
			if n.Value != nil {
				g.flow(info, n.X, target(info, n.Value))
			}
		case *ast.CompositeLit:
			st, ok := info.Types[n].Type.Underlying().(*types.Struct)
			if !ok {
				if p, isPtr := info.Types[n].Type.Underlying().(*types.Pointer); isPtr {
					st, ok = p.Elem().Underlying().(*types.Struct)
				}
			}
			if ok {
				for i, el := range n.Elts {
					if kv, isKV := el.(*ast.KeyValueExpr); isKV {
						if k, isIdent := kv.Key.(*ast.Ident); isIdent {
							g.flow(info, kv.Value, target(info, k))
						}
					} else if i < st.NumFields() {
						g.flow(info, el, origin(st.Field(i)))
					}
				}
			}
		case *ast.CallExpr:
			g.call(info, n)
		}
		return true
	}
	ast.Inspect(decl, visit)
}

// call adds the edges of a call: each argument to its parameter, and
// append's elements to its slice.
func (g *flowGraph) call(info *types.Info, call *ast.CallExpr) {
	if id, ok := ast.Unparen(call.Fun).(*ast.Ident); ok {
		if b, ok := info.Uses[id].(*types.Builtin); ok {
			if b.Name() == "append" && len(call.Args) > 1 {
				dst := target(info, call.Args[0])
				for _, a := range call.Args[1:] {
					g.flow(info, a, dst)
				}
			}
			return
		}
	}
	sig, ok := info.Types[call.Fun].Type.(*types.Signature)
	if !ok {
		return
	}
	params := sig.Params()
	for i, a := range call.Args {
		switch {
		case i < params.Len()-1 || (i < params.Len() && !sig.Variadic()):
			g.flow(info, a, origin(params.At(i)))
		case sig.Variadic() && params.Len() > 0:
			g.flow(info, a, origin(params.At(params.Len()-1)))
		}
	}
}
