package diff

import (
	"reflect"
	"strings"
	"sync"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// changedKeys returns the config keys of the fields of *a and *b that
// differ, in schema order. Fields the config file cannot set (yaml:"-") are
// not compared.
func changedKeys[T any](a, b *T) []string {
	return changedFields(reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), "", nil)
}

// changedPaths is changedKeys for two whole configs, looking one level
// into the sections named by expand: a change of server.drain_time is
// "server.drain_time", one of tracing.sampling is "tracing".
func changedPaths(a, b *config.Config, expand ...string) []string {
	set := map[string]bool{}
	for _, s := range expand {
		set[s] = true
	}
	return changedFields(reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), "", set)
}

// componentKeys are the sections the plan compares entry by entry: the
// whole-config comparison leaves them out (for 10,000 clusters it would
// compare them all once more for nothing).
var componentKeys = map[string]bool{"listeners": true, "clusters": true, "include": true}

func changedFields(a, b reflect.Value, prefix string, expand map[string]bool) []string {
	var keys []string
	t := a.Type()
	for i, key := range keysOf(t) {
		if key == "" || prefix == "" && expand != nil && componentKeys[key] {
			continue
		}
		fa, fb := a.Field(i), b.Field(i)
		if expand[key] && t.Field(i).Type.Kind() == reflect.Struct {
			keys = append(keys, changedFields(fa, fb, prefix+key+".", nil)...)
			continue
		}
		if !equal(fa, fb) {
			keys = append(keys, prefix+key)
		}
	}
	return keys
}

// fieldKeys caches keysOf: a reload of 10,000 clusters compares each
// cluster field by field, and reading the struct tags each time was most
// of that.
var fieldKeys sync.Map // reflect.Type → []string

// keysOf returns the config key of each field of struct type t (yamlKey).
func keysOf(t reflect.Type) []string {
	if k, ok := fieldKeys.Load(t); ok {
		return k.([]string)
	}
	keys := make([]string, t.NumField())
	for i := range keys {
		keys[i] = yamlKey(t.Field(i))
	}
	fieldKeys.Store(t, keys)
	return keys
}

// yamlKey is the config key of a struct field, or "" for a field the
// config file cannot set.
func yamlKey(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	switch name {
	case "-":
		return ""
	case "":
		return strings.ToLower(f.Name)
	}
	return name
}

// equal is reflect.DeepEqual for config values, but for one thing: an empty
// list equals a missing one, since both mean "none" in a config (YAML's
// "domains: []" and no domains key at all), and JSON, the other canonical
// form at hand, tells them apart.
func equal(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		// A cluster a reload reuses shares what it points to with the
		// one it replaces (see config's reuse.go): the same is equal.
		if a.Pointer() == b.Pointer() {
			return true
		}
		return equal(a.Elem(), b.Elem())
	case reflect.Slice, reflect.Array:
		if a.Len() != b.Len() {
			return false
		}
		if a.Kind() == reflect.Slice && a.Len() > 0 && a.Pointer() == b.Pointer() {
			return true
		}
		for i := range a.Len() {
			if !equal(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Struct:
		for i := range a.NumField() {
			if !equal(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Bool, reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return a.Equal(b)
	}
	// Maps and interfaces, which the schema does not use today.
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// clusterRefs returns the names of the clusters a listener's routes send
// to: every "cluster" key under its virtual hosts (a route's cluster, its
// weighted clusters, its mirror), found by walking the schema so that a
// reference added to it later is not missed.
func clusterRefs(l *config.Listener) map[string]bool {
	refs := map[string]bool{}
	collectRefs(reflect.ValueOf(l.VirtualHosts), refs)
	return refs
}

func collectRefs(v reflect.Value, refs map[string]bool) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			collectRefs(v.Elem(), refs)
		}
	case reflect.Slice:
		for i := range v.Len() {
			collectRefs(v.Index(i), refs)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			f, fv := v.Type().Field(i), v.Field(i)
			if yamlKey(f) == "cluster" && fv.Kind() == reflect.String {
				if name := fv.String(); name != "" {
					refs[name] = true
				}
				continue
			}
			collectRefs(fv, refs)
		}
	}
}
