package expr

import (
	"fmt"
	"strings"
)

// Codes of the problems [Env.Compile] and [Template.Eval] report. They are
// stable: tests and tools match on them, never on the message.
const (
	// CodeSyntax: the text inside ${…} is not a CEL expression.
	CodeSyntax = "expr_syntax"
	// CodeUnterminated: a "${" has no matching "}".
	CodeUnterminated = "expr_unterminated"
	// CodeType: the expression parses but does not type-check (an unknown
	// variable or function, arguments of the wrong type).
	CodeType = "expr_type"
	// CodeEval: evaluation failed at run time (a missing key, a division by
	// zero, the cost limit).
	CodeEval = "expr_eval"
)

// Error is one problem with a template.
//
// Offset is the byte offset in the template source where the problem is;
// callers that know where the source sits in a file turn it into a line and
// column. Message never contains data the expression was evaluated on, only
// names and text of the expression itself.
type Error struct {
	Offset  int
	Code    string
	Message string
}

// Error formats the problem as "offset N: message".
func (e *Error) Error() string {
	return fmt.Sprintf("offset %d: %s", e.Offset, e.Message)
}

// ErrorList is every problem found in one template, sorted by offset. It is
// what [Env.Compile] returns on failure; errors.As finds each *Error in it.
type ErrorList []*Error

// Error joins the problems, one per line.
func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.Is and errors.As see each problem.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}
