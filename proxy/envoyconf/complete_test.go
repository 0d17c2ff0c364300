package envoyconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestEveryFieldAccounted walks every field set in each golden input
// with protoreflect and checks that the translation carried it, reported
// it as skipped, or looked into it and accounted for each of its own
// fields: nothing is dropped silently.
func TestEveryFieldAccounted(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", tc.name+".envoy.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			b, err := ParseBootstrap(in, false)
			if err != nil {
				t.Fatal(err)
			}
			tr, _ := importBootstrap(b, tc.opts)
			if err := tr.err(); err != nil {
				t.Fatal(err)
			}
			a := &accounting{errorf: t.Errorf, tr: tr}
			sr := b.GetStaticResources()
			for i, l := range sr.GetListeners() {
				a.message(l.ProtoReflect(), "listeners["+ElemKey(l.ProtoReflect(), i)+"]")
			}
			for i, c := range sr.GetClusters() {
				a.message(c.ProtoReflect(), "clusters["+ElemKey(c.ProtoReflect(), i)+"]")
			}
			for _, s := range sr.GetSecrets() {
				a.message(s.ProtoReflect(), "secrets["+s.GetName()+"]")
			}
			b.StaticResources = nil
			a.fields(b.ProtoReflect(), "")
			if a.checked == 0 {
				t.Fatal("no field checked")
			}
		})
	}
}

// TestAccountingFails checks that the walk finds a field nobody
// accounted for: a translator that saw nothing.
func TestAccountingFails(t *testing.T) {
	in, err := os.ReadFile(filepath.Join("testdata", "front-proxy.envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseBootstrap(in, false)
	if err != nil {
		t.Fatal(err)
	}
	var missed []string
	a := &accounting{errorf: func(f string, args ...any) { missed = append(missed, f) }, tr: newTranslator(&Resources{}, Options{})}
	a.fields(b.ProtoReflect(), "")
	if len(missed) == 0 {
		t.Error("an empty translation accounted for every field of the bootstrap")
	}
}

// accounting walks a message against what a translation recorded.
type accounting struct {
	errorf  func(format string, args ...any)
	tr      *translator
	checked int
}

// covered reports whether the field at path was carried or skipped
// whole, itself or through a parent.
func (a *accounting) covered(path string) bool {
	for p := path; p != ""; p = parent(p) {
		if a.tr.carried[p] {
			return true
		}
	}
	for _, s := range a.tr.skipped {
		sp := s.Path
		if i := strings.Index(sp, "("); i >= 0 && strings.HasSuffix(sp, ")") {
			sp = sp[:i] // retry_on(words): the field itself
		}
		if path == sp || strings.HasPrefix(path, sp+".") || strings.HasPrefix(path, sp+"[") {
			return true
		}
	}
	return false
}

// parent is the path of the message holding the field at p.
func parent(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// message checks a message at path: covered whole, or entered and every
// field of it accounted for.
func (a *accounting) message(m protoreflect.Message, path string) {
	a.checked++
	if a.covered(path) {
		return
	}
	if any, ok := m.Interface().(*anypb.Any); ok {
		inner, err := any.UnmarshalNew()
		if err != nil {
			a.miss(path, "an Any of an unknown type")
			return
		}
		m = inner.ProtoReflect()
	}
	if !a.tr.entered[path] {
		a.miss(path, "neither carried, skipped nor looked into")
		return
	}
	a.fields(m, path)
}

// fields checks each set field of m.
func (a *accounting) fields(m protoreflect.Message, path string) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		q := string(fd.Name())
		if path != "" {
			q = path + "." + q
		}
		switch {
		case a.covered(q):
			a.checked++
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := range l.Len() {
				e := l.Get(i).Message()
				a.message(e, q+"["+ElemKey(e, i)+"]")
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				a.message(mv.Message(), q+"["+k.String()+"]")
				return true
			})
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			a.message(v.Message(), q)
		default:
			a.miss(q, "neither carried nor skipped")
		}
		return true
	})
}

func (a *accounting) miss(path, why string) {
	a.errorf("%s: %s", path, why)
}
