package config

import (
	"bytes"
	"hash/maphash"
	"sync"

	"go.yaml.in/yaml/v4"
)

// A reload reads the whole config file again, and a config of 10,000
// clusters costs some 150 ms to parse, check and decode, though a reload
// usually changes a line or two of it. So Load remembers, per file, the
// clusters and listeners it decoded, by the text each was written with:
// when the file is read again, an entry of its clusters: or listeners:
// list whose text is byte for byte one Load decoded before is taken as it
// was decoded (its defaults applied: applying them again changes nothing),
// and only the other entries and the rest of the file are parsed. Every
// check still runs on the whole config; a problem, or a check, that needs
// to know where something in a reused entry was written parses that entry
// then. An entry with an anchor, an alias or a merge ('&', '*', "<<" in
// its text) is never reused: it may depend on text outside it.

// reusedKey is the top-level list whose entries are remembered: the one
// that makes a config large. (A listener's defaults are not all as plain
// to apply twice.)
const reusedKey = "clusters"

var reuseSeed = maphash.MakeSeed()

// remembered holds what the last Load of each file decoded.
var remembered struct {
	mu    sync.Mutex
	files map[string]*fileEntries // by absolute path
}

// fileEntries are one file's remembered entries: by the hash of their
// text, a pointer to the decoded entry in the config Load returned, which
// nothing modifies once returned. It is never modified once made.
type fileEntries struct {
	key     string
	entries map[uint64]*Cluster
}

// listEntries is what the loader knows of a file's clusters: list.
type listEntries struct {
	abs    string
	key    string
	hashes []uint64 // per entry; 0: not reusable
	offset int      // the merged index of the list's first entry
}

// placeholder stands, in a parsed tree, for an entry reused rather than
// parsed: its decoded value, and its text and first line, to parse it
// should a problem or a check need to know where something in it was
// written.
type placeholder struct {
	value *Cluster
	text  []byte
	line  int // of its first line, from 0
}

// parseReusing parses data, the file at abs, reusing the remembered
// entries of its longest top-level list when it is clusters:. It returns the document, with a placeholder node for each
// entry reused, and what to remember of the list once the load succeeds;
// a nil document when it did not apply (the caller parses data as usual),
// still with the list to remember when the file has one.
func parseReusing(abs string, data []byte) (*yaml.Node, map[*yaml.Node]placeholder, *listEntries) {
	key, first, end, indent, ok := longestList(data)
	if !ok || key != reusedKey {
		return nil, nil, nil
	}
	list := data[first:end]
	starts := entryStarts(list, indent)
	if len(starts) == 0 {
		return nil, nil, nil
	}
	le := &listEntries{abs: abs, key: key, hashes: make([]uint64, len(starts))}
	texts := make([][]byte, len(starts))
	for i, s := range starts {
		e := len(list)
		if i+1 < len(starts) {
			e = starts[i+1]
		}
		texts[i] = list[s:e]
		if !bytes.ContainsAny(texts[i], "&*") && !bytes.Contains(texts[i], []byte("<<")) {
			le.hashes[i] = maphash.Bytes(reuseSeed, texts[i]) | 1
		}
	}
	remembered.mu.Lock()
	fe := remembered.files[abs]
	remembered.mu.Unlock()
	if fe == nil || fe.key != key {
		return nil, nil, le
	}
	hits := 0
	for _, h := range le.hashes {
		if _, ok := fe.entries[h]; ok && h != 0 {
			hits++
		}
	}
	if hits == 0 {
		return nil, nil, le
	}

	// The rest of the file, parsed, with the list's key left with no
	// value; the list made of placeholders and the entries parsed.
	head := listTakenOut(data, first, end)
	var heads []yaml.Node
	if err := yaml.Load(head, &heads, yaml.WithAllDocuments()); err != nil || len(heads) != 1 ||
		len(heads[0].Content) != 1 || heads[0].Content[0].Kind != yaml.MappingNode {
		return nil, nil, le
	}
	lines := entryLines(data[:first], list, starts)
	seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: lines[0] + 1, Column: indent + 1}
	places := make(map[*yaml.Node]placeholder, hits)
	for i, t := range texts {
		line := lines[i]
		if v, ok := fe.entries[le.hashes[i]]; ok && le.hashes[i] != 0 {
			ph := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: line + 1, Column: indent + 3}
			places[ph] = placeholder{value: v, text: t, line: line}
			seq.Content = append(seq.Content, ph)
			continue
		}
		n := parseEntry(t, line)
		if n == nil {
			return nil, nil, le // parsed whole, so that the problem is reported as usual
		}
		seq.Content = append(seq.Content, n)
	}
	root := heads[0].Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == key && isNull(v) && v.Value == "" {
			root.Content[i+1] = seq
			return &heads[0], places, le
		}
	}
	return nil, nil, le
}

// parseEntry parses the text of one list entry, whose first line is line
// (from 0) in its file, into its node; nil if it does not parse alone.
func parseEntry(text []byte, line int) *yaml.Node {
	t := make([]byte, 0, line+len(text))
	t = append(t, bytes.Repeat([]byte{'\n'}, line)...)
	t = append(t, text...)
	var n yaml.Node
	if err := yaml.Load(t, &n); err != nil || len(n.Content) != 1 || n.Content[0].Kind != yaml.SequenceNode ||
		len(n.Content[0].Content) != 1 {
		return nil
	}
	return n.Content[0].Content[0]
}

// remember keeps the entries of the lists the load read, as cfg holds
// them, for the next Load of their files.
func remember(cfg *Config, lists []*listEntries) {
	remembered.mu.Lock()
	defer remembered.mu.Unlock()
	if remembered.files == nil {
		remembered.files = map[string]*fileEntries{}
	}
	for _, le := range lists {
		fe := &fileEntries{key: le.key, entries: make(map[uint64]*Cluster, len(le.hashes))}
		for i, h := range le.hashes {
			if j := le.offset + i; h != 0 && j < len(cfg.Clusters) {
				fe.entries[h] = &cfg.Clusters[j]
			}
		}
		remembered.files[le.abs] = fe
	}
}

// aligned reports whether the clusters: list of root, the document parsed
// from data, has the entries list found in its text, each at the line its
// text begins: only then can they be remembered by their text.
func aligned(root *yaml.Node, list *listEntries, data []byte) bool {
	if root.Kind != yaml.MappingNode {
		return false
	}
	var seq *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := root.Content[i]; k.Kind == yaml.ScalarNode && k.Value == list.key {
			seq = root.Content[i+1]
		}
	}
	if seq == nil || seq.Kind != yaml.SequenceNode || len(seq.Content) != len(list.hashes) {
		return false
	}
	_, first, end, indent, _ := longestList(data)
	list2 := data[first:end]
	starts := entryStarts(list2, indent)
	if len(starts) != len(seq.Content) {
		return false
	}
	lines := entryLines(data[:first], list2, starts)
	for i, e := range seq.Content {
		to := lines[len(lines)-1]
		if i+1 < len(starts) {
			to = lines[i+1]
		}
		if e.Line < lines[i]+1 || e.Line >= to+1 {
			return false
		}
	}
	return true
}

// entryLines returns the line (from 0) each entry of list begins at, the
// list following before in the file, and last the line after the list.
func entryLines(before, list []byte, starts []int) []int {
	lines := make([]int, len(starts)+1)
	n, at := bytes.Count(before, []byte{'\n'}), 0
	for i, s := range starts {
		n += bytes.Count(list[at:s], []byte{'\n'})
		at = s
		lines[i] = n
	}
	lines[len(starts)] = n + bytes.Count(list[at:], []byte{'\n'})
	return lines
}
