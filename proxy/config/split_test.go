package config

import (
	"fmt"
	"testing"

	"go.yaml.in/yaml/v4"
)

// sameTree reports where a and b, two parses of one text, differ: in kind,
// tag, value, style or position, anywhere in them.
func sameTree(a, b *yaml.Node, at string) error {
	if a.Kind != b.Kind || a.Tag != b.Tag || a.Value != b.Value || a.Style != b.Style || a.Anchor != b.Anchor ||
		a.Line != b.Line || a.Column != b.Column || len(a.Content) != len(b.Content) {
		return fmt.Errorf("%s: %v %q %q line %d col %d (%d children), want %v %q %q line %d col %d (%d children)", at,
			a.Kind, a.Tag, a.Value, a.Line, a.Column, len(a.Content), b.Kind, b.Tag, b.Value, b.Line, b.Column, len(b.Content))
	}
	if a.Kind == yaml.AliasNode && (a.Alias.Line != b.Alias.Line || a.Alias.Column != b.Alias.Column) {
		return fmt.Errorf("%s: an alias to line %d, want %d", at, a.Alias.Line, b.Alias.Line)
	}
	for i := range a.Content {
		if err := sameTree(a.Content[i], b.Content[i], fmt.Sprintf("%s/%d", at, i)); err != nil {
			return err
		}
	}
	return nil
}

// splitsAsWhole checks that parsing data in pieces, when it is done, gives
// the tree parsing it whole gives.
func splitsAsWhole(t *testing.T, data []byte, least int) bool {
	t.Helper()
	split, ok := splitParseAt(data, least, 2)
	if !ok {
		return false
	}
	var whole yaml.Node
	if err := yaml.Load(data, &whole); err != nil {
		t.Fatalf("parsed in pieces what does not parse whole: %v", err)
	}
	if err := sameTree(split, &whole, ""); err != nil {
		t.Fatalf("parsed in pieces, it differs: %v", err)
	}
	return true
}

// TestSplitParse: a long clusters list, written plainly or with comments,
// flow entries, block scalars and blank lines between entries, parses in
// pieces to the tree it parses to whole; what it cannot be sure of it
// does not split.
func TestSplitParse(t *testing.T) {
	fancy := "# a config\nadmin: {address: 127.0.0.1:9901}\nclusters:\n  # first\n"
	for i := range 50 {
		switch i % 4 {
		case 0:
			fancy += fmt.Sprintf("  - {name: f%d, endpoints: [{address: 127.0.0.1:%d}]}\n", i, 2000+i)
		case 1:
			fancy += fmt.Sprintf("\n  - name: f%d # the %dth\n    endpoints:\n    - address: 127.0.0.1:%d\n", i, i, 2000+i)
		case 2:
			fancy += fmt.Sprintf("  -\n    name: f%d\n    endpoints: [\n      {address: '127.0.0.1:%d'}]\n", i, 2000+i)
		default:
			fancy += fmt.Sprintf("  - name: f%d\n    tls:\n      ca_pem: |\n        line one\n\n        line three\n    endpoints: [{address: 127.0.0.1:%d}]\n", i, 2000+i)
		}
	}
	fancy += "# after\nlisteners: []\n"
	for _, tt := range []struct {
		name  string
		data  string
		split bool
	}{
		{"plain", clustersConfig(3000), true},
		{"fancy", fancy, true},
		{"windows line ends", clustersConfig(100) + "\r\n", true},
		{"small", clustersConfig(3), false},
		{"document marker", "---\n" + clustersConfig(100), false},
		{"tab", "clusters:\n\t- name: a\n" + clustersConfig(100)[len("clusters:\n"):], false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			least := 1
			if tt.name == "plain" {
				least = splitMin
			}
			if got := splitsAsWhole(t, []byte(tt.data), least); got != tt.split {
				t.Errorf("split %v, want %v", got, tt.split)
			}
		})
	}
}
