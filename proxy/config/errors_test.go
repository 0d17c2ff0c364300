package config

import "testing"

func TestProblemString(t *testing.T) {
	tests := []struct {
		name string
		give Problem
		want string
	}{
		{
			name: "everything",
			give: Problem{File: "a.yaml", Line: 3, Column: 14, Path: "clusters[0].type", Message: `must be one of static, strict_dns, got "statc"`, Hint: `did you mean "static"?`},
			want: `a.yaml:3:14: clusters[0].type: must be one of static, strict_dns, got "statc" (did you mean "static"?)`,
		},
		{
			name: "no hint",
			give: Problem{File: "a.yaml", Line: 3, Column: 14, Path: "admin.address", Message: "must not be empty"},
			want: "a.yaml:3:14: admin.address: must not be empty",
		},
		{
			name: "no path",
			give: Problem{File: "a.yaml", Line: 1, Column: 1, Message: `unknown key "listners"`, Hint: `did you mean "listeners"?`},
			want: `a.yaml:1:1: unknown key "listners" (did you mean "listeners"?)`,
		},
		{
			name: "no position",
			give: Problem{File: "a.yaml", Message: "cannot parse"},
			want: "a.yaml: cannot parse",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.give.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestErrorsSortedByFileThenPosition(t *testing.T) {
	give := Errors{
		{File: "b.yaml", Line: 1, Column: 1, Message: "b1"},
		{File: "a.yaml", Line: 10, Column: 2, Message: "a10.2"},
		{File: "a.yaml", Line: 2, Column: 9, Message: "a2.9"},
		{File: "a.yaml", Line: 10, Column: 1, Message: "a10.1"},
	}
	give.sort()
	want := "a.yaml:2:9: a2.9\na.yaml:10:1: a10.1\na.yaml:10:2: a10.2\nb.yaml:1:1: b1"
	if got := give.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant:\n%s", got, want)
	}
}
