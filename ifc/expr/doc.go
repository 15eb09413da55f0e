// Package expr compiles and evaluates the ${…} expressions of flow files.
//
// A flow string is a [Template]:
//   - a string that is exactly one ${…} evaluates to the value of the CEL
//     expression inside, with its type;
//   - a string with ${…} inside longer text evaluates to a string, each value
//     interpolated as text;
//   - a string without ${ is a literal. "$${" writes a literal "${".
//
// Expressions are CEL (the standard library plus cel-go's strings extension)
// over the variables inputs, steps (steps.<id>.output is a step's output)
// and, inside for_each steps, item and index.
//
// # Reads and labels
//
// [Template.Reads] lists every value an expression reads, derived from the
// checked syntax tree, never from the text. The orchestrator orders steps by
// it and labels each argument with [Template.Label], the join of the labels
// of everything read. A constant key or list index is part of the path
// (steps.a.output.messages[0].subject reads messages.0.subject). Reads is
// conservative: where a path cannot be followed statically (an index with a
// computed key, a field of a function's result) it stops at the longest
// static prefix, so the whole prefix counts as read.
// Both branches of a conditional are read, and so is its condition: a value
// that untrusted data could have chosen carries that data's label. No
// operation launders a label: string functions, arithmetic, comparisons,
// size(), ternaries and comprehensions all keep the paths they read.
//
// # Types
//
// The variables are maps of dyn, so an Env alone accepts 'x' + inputs.n
// whatever inputs.n holds. [Env.WithTypes] returns an Env that also
// checks each expression against the types a flow declares (its inputs',
// and what its tools' output schemas say of their fields), and refuses what
// would fail at run time, such as adding a string to a number. The check
// changes nothing of the compiled program. [Template.Refs] says where each
// path read is written, so that a caller can check the fields read against
// what it declared and point at the one that is missing.
//
// # Limits
//
// Every expression is parsed with at most [MaxExpressionSize] code points
// and [MaxRecursionDepth] levels of nesting, and checked with at most
// [MaxNodes] syntax nodes. Every evaluation is bounded by CEL's runtime cost
// limit [MaxCost], so no expression can stall a run: one that exceeds it
// fails with an error. CEL checks that limit after each operation, so the
// two string functions whose result can be the product of their inputs'
// sizes, replace() and join() with a separator, measure their result
// before building it, and no value, nor the JSON form of a template's
// result, may exceed [MaxValueSize].
package expr
