package main

import (
	"encoding/json"
	"fmt"

	"cel.dev/cel-go/cel"
)

// compileCheck compiles a utility or security check: a CEL expression over
// pre and post (the environment before and after the run) and output (the
// run's output as text), which must be a boolean.
func compileCheck(expr string, _ bool) (cel.Program, error) {
	env, err := cel.NewEnv(
		cel.Variable("pre", cel.DynType),
		cel.Variable("post", cel.DynType),
		cel.Variable("output", cel.StringType),
	)
	if err != nil {
		return nil, err
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
		return nil, fmt.Errorf("the check is a %s, not a boolean", ast.OutputType())
	}
	return env.Program(ast)
}

// check evaluates a check; an evaluation error counts as false and is
// returned, so that a report can say so.
func check(expr string, pre, post []byte, output string) (bool, error) {
	prg, err := compileCheck(expr, false)
	if err != nil {
		return false, err
	}
	var preV, postV any
	if err := json.Unmarshal(pre, &preV); err != nil {
		return false, fmt.Errorf("environment before: %w", err)
	}
	if err := json.Unmarshal(post, &postV); err != nil {
		return false, fmt.Errorf("environment after: %w", err)
	}
	out, _, err := prg.Eval(map[string]any{"pre": preV, "post": postV, "output": output})
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("the check gave %v, not a boolean", out.Value())
	}
	return b, nil
}
