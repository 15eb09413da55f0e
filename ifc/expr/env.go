package expr

import (
	"fmt"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"
)

// Limits applied to every expression. They bound what a flow file can ask
// of the orchestrator; a flow that needs more is doing work that belongs in
// a tool.
const (
	// MaxExpressionSize is the largest expression, in code points, that the
	// parser accepts (cel.ParserExpressionSizeLimit).
	MaxExpressionSize = 8192
	// MaxRecursionDepth is the deepest nesting the parser accepts
	// (cel.ParserRecursionLimit).
	MaxRecursionDepth = 100
	// MaxNodes is the largest syntax tree, after macro expansion, that the
	// parser and checker accept (cel.ExpressionNodeLimit).
	MaxNodes = 4096
	// MaxCost is CEL's runtime cost limit for one evaluation of one
	// expression (cel.CostLimit). A unit is roughly one operation; string
	// and list functions cost in proportion to their sizes. It allows a
	// comprehension over a few hundred thousand elements, or a handful of
	// passes over a tool output of a few MiB.
	MaxCost = 10_000_000
)

// Env compiles templates. It declares the variables
//   - inputs: map(string, dyn), the flow's inputs;
//   - steps: map(string, dyn), where steps.<id>.output is a step's output;
//   - item: dyn, the current element inside a for_each step;
//   - index: int, the position of item.
//
// with standard CEL and cel-go's strings extension (ext.Strings). An Env is
// built once and shared; it is safe for concurrent use.
type Env struct {
	cel *cel.Env
	// typed, when set, checks each expression again with the types a
	// flow declares; see [Env.WithTypes].
	typed *cel.Env
}

// Names of the variables expressions see.
const (
	varInputs = "inputs"
	varSteps  = "steps"
	varItem   = "item"
	varIndex  = "index"
)

// NewEnv builds the environment.
func NewEnv() (*Env, error) {
	dynMap := cel.MapType(cel.StringType, cel.DynType)
	opts := []cel.EnvOption{
		cel.Variable(varInputs, dynMap),
		cel.Variable(varSteps, dynMap),
		cel.Variable(varItem, cel.DynType),
		cel.Variable(varIndex, cel.IntType),
		ext.Strings(),
		cel.ParserExpressionSizeLimit(MaxExpressionSize),
		cel.ParserRecursionLimit(MaxRecursionDepth),
		cel.ExpressionNodeLimit(MaxNodes),
	}
	// After ext.Strings, so that these bindings replace its own.
	opts = append(opts, guardedFunctions()...)
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("build expression environment: %w", err)
	}
	return &Env{cel: env}, nil
}
