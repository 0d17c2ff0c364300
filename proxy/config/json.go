package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"
)

// checkJSON reports the first syntax error of a .json config file, placed
// at its line and column and explained, or nil when data is JSON. A file
// of nothing but white space passes: like an empty YAML file, it is a
// config of defaults.
func checkJSON(file string, data []byte) *Problem {
	if len(bytes.TrimSpace(data)) == 0 || json.Valid(data) {
		return nil
	}
	var v any
	err := json.Unmarshal(data, &v)
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		// json.Valid refused it, so Unmarshal fails with a syntax error;
		// this is for safety only.
		return &Problem{File: file, Message: "invalid JSON", Hint: "check the file with a JSON linter"}
	}
	// The error is about the byte before Offset, or the end of the input.
	at := max(int(se.Offset)-1, 0)
	if at > len(data) {
		at = len(data)
	}
	msg, hint := "invalid JSON: "+se.Error(), ""
	var c byte
	if at < len(data) {
		c = data[at]
	}
	switch {
	case int(se.Offset) >= len(data) && strings.Contains(se.Error(), "end of JSON input"):
		hint = `the file ends inside a value: look for an unclosed {, [ or "`
		at = len(bytes.TrimRight(data, " \t\r\n"))
	case c == '}' || c == ']':
		if prev := lastNonSpace(data[:at]); prev >= 0 && data[prev] == ',' {
			at, msg = prev, "invalid JSON: trailing comma"
			hint = "JSON allows no comma before } or ]: remove it"
		}
	case c == '/' || c == '#':
		hint = "JSON has no comments: remove it, or write the config as YAML (.yaml), which has # comments"
	case c == '\'':
		hint = `JSON strings are in double quotes`
	case strings.Contains(se.Error(), "after top-level value"):
		hint = "a JSON config is one object: remove what follows it"
	case strings.Contains(se.Error(), "looking for beginning of object key string"):
		hint = `JSON keys are strings in double quotes, e.g. "listeners"`
	case strings.Contains(se.Error(), "looking for beginning of value"):
		hint = `JSON values are numbers, true, false, null, or strings in double quotes`
	}
	line, col := lineColumn(data, at)
	return &Problem{File: file, Line: line, Column: col, Message: msg, Hint: hint}
}

// lastNonSpace is the index of the last byte of data that is not JSON
// white space, or -1.
func lastNonSpace(data []byte) int {
	for i := len(data) - 1; i >= 0; i-- {
		switch data[i] {
		case ' ', '\t', '\r', '\n':
		default:
			return i
		}
	}
	return -1
}

// lineColumn turns a byte offset of data into a 1-based line and column,
// the column counted in characters as the YAML parser counts it.
func lineColumn(data []byte, off int) (line, col int) {
	before := data[:off]
	line = 1 + bytes.Count(before, []byte("\n"))
	start := bytes.LastIndexByte(before, '\n') + 1
	return line, 1 + utf8.RuneCount(before[start:])
}
