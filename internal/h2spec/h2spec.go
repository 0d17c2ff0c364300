// Package h2spec reads the JUnit report of the h2spec conformance tool,
// for the tests that run it against the HTTP/2 engine and against the real
// binary.
package h2spec

import (
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"sort"
)

// Result is a parsed h2spec report.
type Result struct {
	Total, Passed int
	Failed        []string          // ids ("http2/3.5/2") of failed or errored cases, sorted
	Skipped       []string          // ids of skipped cases
	Names         map[string]string // id → description
}

// Parse reads h2spec's JUnit report. A case's id is its suite's package
// ("http2/3.5") and its 1-based position in the suite, which is how h2spec
// itself numbers cases ("3.5/2").
func Parse(path string) (Result, error) {
	var doc struct {
		Suites []struct {
			Package string `xml:"package,attr"`
			Cases   []struct {
				Name    string    `xml:"classname,attr"`
				Failure *struct{} `xml:"failure"`
				Error   *struct{} `xml:"error"`
				Skipped *struct{} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	res := Result{Names: map[string]string{}}
	b, err := os.ReadFile(path)
	if err != nil {
		return res, fmt.Errorf("reading the report: %w", err)
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		return res, fmt.Errorf("parsing the report: %w", err)
	}
	for _, s := range doc.Suites {
		for i, c := range s.Cases {
			id := fmt.Sprintf("%s/%d", s.Package, i+1)
			res.Names[id] = c.Name
			res.Total++
			switch {
			case c.Failure != nil || c.Error != nil:
				res.Failed = append(res.Failed, id)
			case c.Skipped != nil:
				res.Skipped = append(res.Skipped, id)
			default:
				res.Passed++
			}
		}
	}
	sort.Strings(res.Failed)
	if res.Total == 0 {
		return res, errors.New("the report lists no test case")
	}
	return res, nil
}
