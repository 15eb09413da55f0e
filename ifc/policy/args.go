package policy

import (
	"fmt"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"

	"github.com/sluicehq/sluice/schemas"
)

// Tools is the catalog [Load] checks rules and caps against: the input
// schema of each tool, by full name ("payment.charge"). A nil Tools means
// the catalog is not known: tool names are not checked and args stays
// dynamic in every rule.
type Tools map[string]*schemas.Schema

// workerTools returns the tools of worker w, sorted.
func (t Tools) workerTools(w string) []string {
	var out []string
	for name := range t {
		if strings.HasPrefix(name, w+".") {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// arguments returns the names of the arguments tool declares, sorted, and
// whether its schema declares any. A schema without properties leaves args
// dynamic.
func (t Tools) arguments(tool string) ([]string, bool) {
	sch := t[tool]
	if sch == nil {
		return nil, false
	}
	props, _ := sch.Shape()
	return props, len(props) > 0
}

// argType is the CEL type of one argument. Numbers stay dyn: JSON integers
// arrive as int and other numbers as double, so no one CEL type fits both,
// and `args.amount <= 50` must hold for 50 and for 49.5.
func argType(sch *schemas.Schema) *types.Type {
	switch sch.Type() {
	case "string":
		return types.StringType
	case "boolean":
		return types.BoolType
	case "array":
		return types.NewListType(types.DynType)
	case "object":
		return types.NewMapType(types.StringType, types.DynType)
	}
	return types.DynType
}

func argsTypeName(tool string) string      { return "policy.args." + tool }
func argLabelsTypeName(tool string) string { return "policy.arg_labels." + tool }

// envs holds the environments rules compile in: dynamic for rules that
// may match any tool, and one per tool for rules about that tool. For each
// tool with typed rules, the provider declares two object types:
// policy.args.<tool>, with one field per argument of the tool, and
// policy.arg_labels.<tool>, with one label per argument. The checker
// rejects a field the tool does not have. At run time the values are the
// maps Decide is given: the fields carry no accessor, so CEL reads them as
// map keys.
type envs struct {
	base    *cel.Env
	dynamic *cel.Env
	tools   Tools
	prov    *provider
	typed   map[string]*cel.Env // by tool; nil entry: the tool's args stay dynamic
}

func newEnvs(tools Tools) (*envs, error) {
	reg, err := types.NewRegistry()
	if err != nil {
		return nil, fmt.Errorf("build policy environment: %w", err)
	}
	prov := &provider{Provider: reg, args: map[string]map[string]*types.Type{}}
	base, err := newBaseEnv(prov)
	if err != nil {
		return nil, err
	}
	dyn, err := newDynamicEnv(base)
	if err != nil {
		return nil, err
	}
	return &envs{base: base, dynamic: dyn, tools: tools, typed: map[string]*cel.Env{}, prov: prov}, nil
}

// forTool returns the environment of rules about tool, or nil when the
// tool's schema declares no arguments (or the catalog is not known).
func (e *envs) forTool(tool string) (*cel.Env, error) {
	if env, ok := e.typed[tool]; ok {
		return env, nil
	}
	names, ok := e.tools.arguments(tool)
	if !ok {
		e.typed[tool] = nil
		return nil, nil
	}
	sch := e.tools[tool]
	args := map[string]*types.Type{}
	labels := map[string]*types.Type{}
	for _, n := range names {
		args[n] = types.DynType
		if p, err := sch.Property(n); err == nil && p != nil {
			args[n] = argType(p)
		}
		labels[n] = labelType.t
	}
	e.prov.args[argsTypeName(tool)] = args
	e.prov.args[argLabelsTypeName(tool)] = labels
	env, err := e.base.Extend(
		cel.Variable(varArgs, cel.ObjectType(argsTypeName(tool))),
		cel.Variable(varArgLabels, cel.ObjectType(argLabelsTypeName(tool))),
	)
	if err != nil {
		return nil, fmt.Errorf("build policy environment for %s: %w", tool, err)
	}
	e.typed[tool] = env
	return env, nil
}
