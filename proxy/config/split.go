package config

import (
	"bytes"
	"runtime"
	"sync"

	"go.yaml.in/yaml/v4"
)

// Parsing is most of what loading a large config costs (yaml v4 reads
// about 10 MB/s: 110 ms for a file of 10,000 clusters), and a reload reads
// the whole file again. A large config is large because of one long list
// at the top level (clusters, most often), whose entries stand alone: so
// splitParse parses that list's entries in pieces, one per CPU, at the same
// time, and puts the pieces back into the document. It gives the tree one
// parse of the whole file gives, positions included, and gives up (the
// caller parses the whole file) on anything it is not sure of.

// splitMin is the smallest list worth parsing in pieces.
const splitMin = 256 << 10

// splitParse parses data, one YAML document, with its longest top-level
// block list parsed in pieces at once. ok is false when it did not try
// (a small file, one CPU, a list written in a way it does not split) or
// a piece did not parse alone (an alias to an anchor in another piece, a
// syntax error): the caller then parses data whole, which also reports the
// errors.
func splitParse(data []byte) (doc *yaml.Node, ok bool) {
	return splitParseAt(data, splitMin, runtime.GOMAXPROCS(0))
}

// splitParseAt is splitParse for files of least bytes at least, in procs
// pieces.
func splitParseAt(data []byte, least, procs int) (doc *yaml.Node, ok bool) {
	if len(data) < least || procs < 2 {
		return nil, false
	}
	key, first, end, indent, ok := longestList(data)
	if !ok || end-first < least/2 {
		return nil, false
	}
	starts := entryStarts(data[first:end], indent)
	if len(starts) < 2*procs {
		return nil, false
	}
	// The document with the list taken out: its key is left with no
	// value, which the pieces' entries become.
	head := listTakenOut(data, first, end)

	pieces := min(procs, len(starts))
	texts := make([][]byte, pieces)
	lines := bytes.Count(data[:first], []byte{'\n'})
	for i := range pieces {
		from, to := starts[i*len(starts)/pieces], end-first
		if i+1 < pieces {
			to = starts[(i+1)*len(starts)/pieces]
		}
		// Blank lines first, so that each piece's lines are the file's.
		n := lines + bytes.Count(data[first:first+from], []byte{'\n'})
		t := make([]byte, 0, n+to-from)
		t = append(t, bytes.Repeat([]byte{'\n'}, n)...)
		texts[i] = append(t, data[first+from:first+to]...)
	}

	var wg sync.WaitGroup
	var heads []yaml.Node
	var headErr error
	parsed := make([]yaml.Node, pieces)
	errs := make([]error, pieces)
	wg.Go(func() { headErr = yaml.Load(head, &heads, yaml.WithAllDocuments()) })
	for i := range pieces {
		wg.Go(func() { errs[i] = yaml.Load(texts[i], &parsed[i]) })
	}
	wg.Wait()
	if headErr != nil || len(heads) != 1 || len(heads[0].Content) != 1 || heads[0].Content[0].Kind != yaml.MappingNode {
		return nil, false
	}
	list := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	for i := range parsed {
		p := parsed[i]
		if errs[i] != nil || len(p.Content) != 1 || p.Content[0].Kind != yaml.SequenceNode {
			return nil, false
		}
		list.Content = append(list.Content, p.Content[0].Content...)
		if i == 0 {
			list.Line, list.Column = p.Content[0].Line, p.Content[0].Column
		}
	}
	root := heads[0].Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == key && isNull(v) && v.Tag == "!!null" && v.Value == "" {
			root.Content[i+1] = list
			return &heads[0], true
		}
	}
	return nil, false
}

// longestList finds the longest block list that is the value of a
// top-level key written plainly ("clusters:" alone on its line): the key,
// where the list's first line starts and where its last line ends, and
// the indentation of its dashes. ok is false when there is none, or the
// file has what makes splitting unsure: a tab at the start of a line, a
// document marker or a directive.
func longestList(data []byte) (key string, first, end, indent int, ok bool) {
	best := -1
	for off := 0; off < len(data); {
		line, next := lineAt(data, off)
		switch {
		case len(line) > 0 && line[0] == '\t',
			bytes.HasPrefix(line, []byte("---")), bytes.HasPrefix(line, []byte("...")), bytes.HasPrefix(line, []byte("%")):
			return "", 0, 0, 0, false
		}
		k, isKey := bareKey(line)
		if !isKey {
			off = next
			continue
		}
		// The list: the lines after the key that are indented, blank or
		// comments, of which the first that holds something is "- ".
		listStart, listEnd, dashes := next, next, -1
		for o := next; o < len(data); {
			l, n := lineAt(data, o)
			trimmed := bytes.TrimLeft(l, " ")
			switch {
			case len(trimmed) == 0 || trimmed[0] == '#':
			case len(l) > 0 && l[0] != ' ':
				n = len(data) + 1 // a new top-level line: the list ended
			case dashes < 0:
				dashes = len(l) - len(trimmed)
				if !bytes.HasPrefix(trimmed, []byte("- ")) && !bytes.Equal(trimmed, []byte("-")) {
					dashes = -2
				}
			}
			if n > len(data) || dashes == -2 {
				break
			}
			if len(trimmed) > 0 && trimmed[0] != '#' {
				listEnd = n
			}
			o = n
		}
		if dashes >= 0 && listEnd-listStart > best {
			best = listEnd - listStart
			key, first, end, indent = k, listStart, listEnd, dashes
		}
		off = max(listEnd, next)
	}
	return key, first, end, indent, best > 0
}

// bareKey reports whether line is a top-level key with nothing after its
// colon but spaces or a comment, and returns the key.
func bareKey(line []byte) (string, bool) {
	if len(line) == 0 || line[0] == ' ' || line[0] == '#' || line[0] == '-' {
		return "", false
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return "", false
	}
	k := line[:colon]
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return "", false
		}
	}
	rest := bytes.TrimLeft(line[colon+1:], " ")
	if len(rest) > 0 && rest[0] != '#' {
		return "", false
	}
	return string(k), true
}

// entryStarts returns the offsets in list of the lines that begin an
// entry: "- " at indentation indent.
func entryStarts(list []byte, indent int) []int {
	var starts []int
	for off := 0; off < len(list); {
		line, next := lineAt(list, off)
		if len(line) > indent && line[indent] == '-' && (len(line) == indent+1 || line[indent+1] == ' ') &&
			len(bytes.TrimLeft(line[:indent], " ")) == 0 {
			starts = append(starts, off)
		}
		off = next
	}
	return starts
}

// lineAt returns the line at off, without its end ("\n" or "\r\n"), and
// where the next line starts.
func lineAt(data []byte, off int) ([]byte, int) {
	i := bytes.IndexByte(data[off:], '\n')
	if i < 0 {
		return data[off:], len(data)
	}
	line := data[off : off+i]
	return bytes.TrimSuffix(line, []byte{'\r'}), off + i + 1
}

// listTakenOut is data with data[first:end] replaced by its line ends, so
// that what follows keeps its line numbers.
func listTakenOut(data []byte, first, end int) []byte {
	n := bytes.Count(data[first:end], []byte{'\n'})
	head := make([]byte, 0, len(data)-(end-first)+n)
	head = append(head, data[:first]...)
	head = append(head, bytes.Repeat([]byte{'\n'}, n)...)
	return append(head, data[end:]...)
}
