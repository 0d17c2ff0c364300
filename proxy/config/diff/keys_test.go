package diff

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// perturb changes v, settable, to another value of its type and reports
// whether it could.
func perturb(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(v.Float() + 1)
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
			return true
		}
		return perturb(v.Elem())
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() && perturb(v.Field(i)) {
				return true
			}
		}
		return false
	default:
		return false
	}
	return true
}

// fields calls f with the config key and a settable value of each field
// of the struct *p that the config file can set.
func fields(t *testing.T, p any, f func(key string, v reflect.Value)) {
	t.Helper()
	v := reflect.ValueOf(p).Elem()
	for i := range v.NumField() {
		if key := yamlKey(v.Type().Field(i)); key != "" {
			f(key, v.Field(i))
		}
	}
}

// TestEveryClusterKeyRebuilds changes each key of a cluster in turn: each
// must rebuild the cluster, and name itself as the reason, so that a key
// added to the schema cannot be missed.
func TestEveryClusterKeyRebuilds(t *testing.T) {
	keys := 0
	fields(t, &config.Cluster{}, func(key string, _ reflect.Value) {
		if key == "name" {
			return
		}
		keys++
		t.Run(key, func(t *testing.T) {
			to := base()
			fields(t, &to.Clusters[2], func(k string, v reflect.Value) {
				if k == key && !perturb(v) {
					t.Fatalf("cannot change %s", key)
				}
			})
			p := Compute(base(), to)
			if !slices.Equal(p.Clusters.Changed, []string{"shadow"}) || !slices.Equal(p.Clusters.Why["shadow"], []string{key}) {
				t.Errorf("changed %v, why %v; want [shadow], [%s]", p.Clusters.Changed, p.Clusters.Why, key)
			}
			if !slices.Equal(p.Listeners.RoutesChanged, []string{"ingress"}) {
				t.Errorf("listeners with routes changed: %v, want [ingress]", p.Listeners.RoutesChanged)
			}
		})
	})
	if keys < 10 {
		t.Fatalf("found %d cluster keys: the walk over the schema is broken", keys)
	}
}

// TestEveryListenerKey changes each key of a listener in turn: only the
// route keys (virtual_hosts and the rate limits) keep the socket.
func TestEveryListenerKey(t *testing.T) {
	keys := 0
	fields(t, &config.Listener{}, func(key string, _ reflect.Value) {
		if key == "name" {
			return
		}
		keys++
		t.Run(key, func(t *testing.T) {
			to := base()
			fields(t, &to.Listeners[1], func(k string, v reflect.Value) {
				if k == key && !perturb(v) {
					t.Fatalf("cannot change %s", key)
				}
			})
			p := Compute(base(), to)
			l := p.Listeners
			got := l.Changed
			if routeKeys[key] {
				got = l.RoutesChanged
			}
			if !slices.Equal(got, []string{"internal"}) || !slices.Equal(l.Why["internal"], []string{key}) {
				t.Errorf("routes changed %v, changed %v, why %v; want internal in one, for %s", l.RoutesChanged, l.Changed, l.Why, key)
			}
			if !slices.Equal(l.Kept, []string{"ingress"}) {
				t.Errorf("kept %v, want [ingress]", l.Kept)
			}
			if len(p.Clusters.Changed) > 0 {
				t.Errorf("clusters changed: %v", p.Clusters.Changed)
			}
		})
	})
	if keys < 8 {
		t.Fatalf("found %d listener keys: the walk over the schema is broken", keys)
	}
}

// TestEveryProcessKey changes each process-wide key in turn: each must be
// classified, and raise its part and no warning (but the admin address).
func TestEveryProcessKey(t *testing.T) {
	expand := map[string]bool{"node": true, "admin": true, "server": true, "stats": true}
	var paths []string
	fields(t, &config.Config{}, func(key string, v reflect.Value) {
		switch {
		case key == "listeners" || key == "clusters" || key == "include":
		case expand[key]:
			fields(t, v.Addr().Interface(), func(sub string, _ reflect.Value) { paths = append(paths, key+"."+sub) })
		default:
			paths = append(paths, key)
		}
	})
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			want, ok := processParts[path]
			if !ok {
				t.Fatalf("%s is not in processParts: say what a reload does when it changes", path)
			}
			to := base()
			v := reflect.ValueOf(to).Elem()
			for key := range strings.SplitSeq(path, ".") {
				i := slices.IndexFunc(reflect.VisibleFields(v.Type()), func(f reflect.StructField) bool { return yamlKey(f) == key })
				v = v.Field(i)
			}
			if !perturb(v) {
				t.Fatalf("cannot change %s", path)
			}
			p := Compute(base(), to)
			if p.Process != want {
				t.Errorf("Process = %v, want %v", p.Process, want)
			}
			if wantWarnings := want == AdminAddress; (len(p.Warnings) > 0) != wantWarnings {
				t.Errorf("warnings %q", p.Warnings)
			}
		})
	}
	if len(paths) != len(processParts) {
		t.Errorf("the schema has %d process-wide keys, processParts %d: %v", len(paths), len(processParts), paths)
	}
}
