package schemas

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Severity of a diagnostic.
type Severity string

const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Pos is a 1-based line and column in a file; the zero Pos means "unknown".
type Pos struct {
	Line int `json:"line"`
	Col  int `json:"col"`
}

// Diagnostic is one problem found in a file, with a stable code.
type Diagnostic struct {
	File     string   `json:"file"`
	Line     int      `json:"line"`
	Col      int      `json:"col"`
	Code     string   `json:"code"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
}

// Error formats the diagnostic as file:line:col: message, with
// "warning: " before the message of a warning.
func (d Diagnostic) Error() string {
	if d.Severity == SeverityWarning {
		d.Message = "warning: " + d.Message
	}
	switch {
	case d.Line > 0:
		return fmt.Sprintf("%s:%d:%d: %s", d.File, d.Line, d.Col, d.Message)
	case d.File != "":
		return d.File + ": " + d.Message
	}
	return d.Message
}

// Diagnostics is a list of problems; it is one error value.
type Diagnostics []Diagnostic

// Add appends an error diagnostic at pos.
func (ds *Diagnostics) Add(file string, pos Pos, code, format string, args ...any) {
	*ds = append(*ds, Diagnostic{File: file, Line: pos.Line, Col: pos.Col, Code: code,
		Severity: SeverityError, Message: fmt.Sprintf(format, args...)})
}

// Err returns nil when ds holds no error, else ds sorted by position.
func (ds Diagnostics) Err() error {
	if !slices.ContainsFunc(ds, func(d Diagnostic) bool { return d.Severity != SeverityWarning }) {
		return nil
	}
	ds.Sort()
	return ds
}

// Sort orders diagnostics by file, line and column.
func (ds Diagnostics) Sort() {
	slices.SortStableFunc(ds, func(a, b Diagnostic) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
}

func (ds Diagnostics) Error() string {
	var b strings.Builder
	for i, d := range ds {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(d.Error())
	}
	return b.String()
}

// Unwrap lets errors.Is and errors.As see each diagnostic.
func (ds Diagnostics) Unwrap() []error {
	out := make([]error, len(ds))
	for i, d := range ds {
		out[i] = d
	}
	return out
}

// AsDiagnostics extracts the diagnostics inside err, if any.
func AsDiagnostics(err error) (Diagnostics, bool) {
	var ds Diagnostics
	if errors.As(err, &ds) {
		return ds, true
	}
	var d Diagnostic
	if errors.As(err, &d) {
		return Diagnostics{d}, true
	}
	return nil, false
}

// Render formats diagnostics for a terminal: each one followed by its source
// line and a caret under the column.
func Render(ds Diagnostics, sources map[string][]byte) string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(d.Error())
		b.WriteByte('\n')
		src, ok := sources[d.File]
		if !ok || d.Line <= 0 {
			continue
		}
		lines := SplitLines(string(src))
		if d.Line > len(lines) {
			continue
		}
		line := lines[d.Line-1]
		fmt.Fprintf(&b, " | %s\n", line)
		pad := []rune(line)
		var caret strings.Builder
		for i := 0; i < d.Col-1 && i < len(pad); i++ {
			if pad[i] == '\t' {
				caret.WriteByte('\t')
			} else {
				caret.WriteByte('.')
			}
		}
		fmt.Fprintf(&b, " | %s^\n", caret.String())
	}
	n, shape := 0, false
	for _, d := range ds {
		if d.Severity != SeverityWarning {
			n++
			shape = shape || strings.HasPrefix(d.Code, "yaml_") || strings.HasPrefix(d.Code, "schema_")
		}
	}
	if n == 1 {
		b.WriteString("1 error\n")
	} else if n > 1 {
		fmt.Fprintf(&b, "%d errors\n", n)
	}
	if shape {
		// The checks of references, expressions and types need a file of
		// the right shape: they have not run yet.
		b.WriteString("fix these, then more checks run (references, expressions, types)\n")
	}
	return b.String()
}
