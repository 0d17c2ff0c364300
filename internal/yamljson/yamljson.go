// Package yamljson encodes what a YAML decoder gives as JSON, for
// protojson, which reads Envoy's resources only as JSON: a YAML mapping
// may have keys of any type (a number, a boolean), JSON's keys are
// strings.
package yamljson

import (
	"encoding/json"
	"fmt"
)

// Marshal encodes v, a value decoded from YAML into an any, as JSON.
func Marshal(v any) ([]byte, error) { return json.Marshal(normalize(v)) }

// normalize makes every mapping in v one with string keys, in place where
// it can.
func normalize(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = normalize(e)
		}
		return v
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = normalize(e)
		}
		return m
	case []any:
		for i, e := range v {
			v[i] = normalize(e)
		}
		return v
	}
	return v
}
