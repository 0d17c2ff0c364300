package envoyconf

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"
)

// obj is a mapping of the output document, keys in the order written,
// with the notes about what was not carried there.
type obj struct {
	keys []string
	vals []any // *obj, []any, string, bool, int64, uint64, float64, time.Duration
	// notes become comments above the mapping's first key; a mapping
	// left empty hands them to its parent.
	notes []string
	// keep writes the mapping even when empty ({}), for keys whose
	// presence is the setting (tcp: {}).
	keep bool
	// flow writes the mapping on one line, when it has no notes.
	flow bool
}

// set sets key k to v, replacing an earlier value.
func (o *obj) set(k string, v any) {
	for i, key := range o.keys {
		if key == k {
			o.vals[i] = v
			return
		}
	}
	o.keys = append(o.keys, k)
	o.vals = append(o.vals, v)
}

// get returns the value of key k, or nil.
func (o *obj) get(k string) any {
	for i, key := range o.keys {
		if key == k {
			return o.vals[i]
		}
	}
	return nil
}

// child returns the mapping at key k, making it when absent.
func (o *obj) child(k string) *obj {
	if c, ok := o.get(k).(*obj); ok {
		return c
	}
	c := &obj{}
	o.set(k, c)
	return c
}

func (o *obj) note(n string) { o.notes = append(o.notes, n) }

// render writes root as a YAML document.
func render(root *obj) ([]byte, error) {
	n, notes := root.node()
	if n == nil {
		n = &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	}
	if len(notes) > 0 {
		// A root with no key: the notes are all there is.
		var b bytes.Buffer
		b.WriteString(comment(notes))
		b.WriteString("\n{}\n")
		return b.Bytes(), nil
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{n}}); err != nil {
		return nil, fmt.Errorf("writing the document: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("writing the document: %w", err)
	}
	return b.Bytes(), nil
}

// comment makes the comment lines of notes.
func comment(notes []string) string {
	lines := make([]string, len(notes))
	for i, n := range notes {
		lines[i] = "# not carried: " + strings.ReplaceAll(n, "\n", " ")
	}
	return strings.Join(lines, "\n")
}

// node renders o. An empty mapping that is not kept renders as nil, and
// its notes are returned for the parent to place.
func (o *obj) node() (*yaml.Node, []string) {
	n := &yaml.Node{Kind: yaml.MappingNode}
	notes := append([]string(nil), o.notes...)
	for i, k := range o.keys {
		v, up := value(o.vals[i])
		notes = append(notes, up...)
		if v == nil {
			continue
		}
		n.Content = append(n.Content, str(k), v)
	}
	if len(n.Content) == 0 {
		if !o.keep {
			return nil, notes
		}
		n.Style = yaml.FlowStyle
		if len(notes) > 0 {
			n.LineComment = comment(notes)
		}
		return n, nil
	}
	if len(notes) > 0 {
		n.Content[0].HeadComment = comment(notes)
	} else if o.flow && flat(n) {
		n.Style = yaml.FlowStyle
	}
	return n, nil
}

// flat reports whether n holds only scalars and flow collections, short
// enough for one line (the encoder folds longer flow mappings).
func flat(n *yaml.Node) bool {
	width := 0
	for _, c := range n.Content {
		width += len(c.Value) + 2
		if c.Kind != yaml.ScalarNode {
			width += 40 // a nested flow collection: rarely short
		}
		if c.Kind != yaml.ScalarNode && c.Style != yaml.FlowStyle || c.Style == yaml.LiteralStyle {
			return false
		}
		if c.HeadComment != "" || c.LineComment != "" {
			return false
		}
	}
	return width <= 64
}

// value renders one value; nil for an empty mapping or list, with the
// notes found in it.
func value(v any) (*yaml.Node, []string) {
	switch v := v.(type) {
	case *obj:
		return v.node()
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		var notes []string
		scalars := true
		for _, e := range v {
			c, up := value(e)
			notes = append(notes, up...)
			if c == nil {
				continue
			}
			if c.Kind != yaml.ScalarNode {
				scalars = false
			}
			n.Content = append(n.Content, c)
		}
		if len(n.Content) == 0 {
			return nil, notes
		}
		if scalars {
			n.Style = yaml.FlowStyle
		}
		return n, notes
	case string:
		return str(v), nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v)}, nil
	case int64:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(v, 10)}, nil
	case uint64:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatUint(v, 10)}, nil
	case float64:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: strconv.FormatFloat(v, 'g', -1, 64)}, nil
	case time.Duration:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: dur(v)}, nil
	}
	panic(fmt.Sprintf("envoyconf: cannot render %T", v))
}

// str renders a string; one with line breaks (a PEM block, a direct
// response body) as a literal block, as a person would write it.
func str(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	if strings.Contains(s, "\n") {
		n.Style = yaml.LiteralStyle
	}
	return n
}

// dur writes d as a person would: 90s, 5m, 1h, 250ms.
func dur(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d%time.Millisecond == 0:
		return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
	}
	return d.String()
}
