package policy

import (
	"fmt"
	"reflect"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"

	"github.com/sluicehq/sluice/ifc"
)

// Limits applied to every rule.
const (
	// MaxRuleSize is the largest when expression, in code points
	// (cel.ParserExpressionSizeLimit).
	MaxRuleSize = 4096
	// MaxRecursionDepth is the deepest nesting the parser accepts
	// (cel.ParserRecursionLimit).
	MaxRecursionDepth = 64
	// MaxNodes is the largest syntax tree after macro expansion
	// (cel.ExpressionNodeLimit).
	MaxNodes = 2048
	// StaticCostLimit: a rule whose worst-case cost, estimated at load,
	// stays under this runs without run-time cost tracking, which makes
	// every evaluation several times slower.
	StaticCostLimit = 10_000
	// MaxCost is the run-time cost limit (cel.CostLimit) of every other
	// rule: those that iterate over arguments, labels or registries, whose
	// sizes are known only at run time. A rule that exceeds it fails
	// closed, like any rule whose evaluation fails.
	MaxCost = 1_000_000
)

// The CEL types of the variables rules see. CEL reads their fields by the
// cel tags, so that a misspelled field (label.integrty) is a load error,
// not a rule that never matches. Their CEL names are policy.label,
// policy.clearance, policy.tool and policy.run.
type (
	label struct {
		Integrity string   `cel:"integrity"`
		Secrecy   []string `cel:"secrecy"`
		Sources   []string `cel:"sources"`
	}
	clearance struct {
		Integrity string   `cel:"integrity"`
		Secrecy   []string `cel:"secrecy"`
	}
	tool struct {
		Name       string    `cel:"name"`
		Worker     string    `cel:"worker"`
		Privileged bool      `cel:"privileged"`
		Approvable bool      `cel:"approvable"`
		Egress     bool      `cel:"egress"`
		Clearance  clearance `cel:"clearance"`
	}
	run struct {
		ID   string `cel:"id"`
		Flow string `cel:"flow"`
		Step string `cel:"step"`
	}
)

// Names of the variables and functions rules see.
const (
	varLabel     = "label"
	varArgLabels = "arg_labels"
	varArgs      = "args"
	varTool      = "tool"
	varRun       = "run"
	varRegistry  = "registry"
)

func newEnv() (*cel.Env, error) {
	labelType := cel.ObjectType("policy.label")
	clearanceType := cel.ObjectType("policy.clearance")
	env, err := cel.NewEnv(
		ext.NativeTypes(
			reflect.TypeFor[*label](),
			reflect.TypeFor[*clearance](),
			reflect.TypeFor[*tool](),
			reflect.TypeFor[*run](),
			ext.ParseStructTags(true),
		),
		cel.Variable(varLabel, labelType),
		cel.Variable(varArgLabels, cel.MapType(cel.StringType, labelType)),
		cel.Variable(varArgs, cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable(varTool, cel.ObjectType("policy.tool")),
		cel.Variable(varRun, cel.ObjectType("policy.run")),
		cel.Variable(varRegistry, cel.MapType(cel.StringType, cel.ListType(cel.StringType))),
		cel.Function("flows_to",
			cel.Overload("flows_to_label_clearance", []*cel.Type{labelType, clearanceType}, cel.BoolType,
				cel.BinaryBinding(flowsTo))),
		cel.Function("from_source",
			cel.Overload("from_source_label_string", []*cel.Type{labelType, cel.StringType}, cel.BoolType,
				cel.BinaryBinding(fromSource))),
		cel.ParserExpressionSizeLimit(MaxRuleSize),
		cel.ParserRecursionLimit(MaxRecursionDepth),
		cel.ExpressionNodeLimit(MaxNodes),
	)
	if err != nil {
		return nil, fmt.Errorf("build policy environment: %w", err)
	}
	return env, nil
}

// flowsTo implements flows_to(label, clearance) with ifc's semantics:
// secrecy a subset of the clearance's, integrity at least the clearance's.
func flowsTo(l, c ref.Val) ref.Val {
	lv, ok1 := asLabel(l)
	cv, ok2 := asClearance(c)
	if !ok1 || !ok2 {
		return types.NoSuchOverloadErr()
	}
	li, err := ifc.ParseIntegrity(lv.Integrity)
	if err != nil {
		return types.NewErr("flows_to: label integrity must be trusted or untrusted")
	}
	ci, err := ifc.ParseIntegrity(cv.Integrity)
	if err != nil {
		return types.NewErr("flows_to: clearance integrity must be trusted or untrusted")
	}
	return types.Bool(ifc.New(li, lv.Secrecy, nil).FlowsTo(ifc.NewClearance(ci, cv.Secrecy...)))
}

// fromSource implements from_source(label, prefix): some source of the
// label starts with prefix.
func fromSource(l, prefix ref.Val) ref.Val {
	lv, ok1 := asLabel(l)
	p, ok2 := prefix.(types.String)
	if !ok1 || !ok2 {
		return types.NoSuchOverloadErr()
	}
	for _, s := range lv.Sources {
		if strings.HasPrefix(s, string(p)) {
			return types.True
		}
	}
	return types.False
}

func asLabel(v ref.Val) (*label, bool) {
	switch x := v.Value().(type) {
	case *label:
		return x, x != nil
	case label:
		return &x, true
	}
	return nil, false
}

func asClearance(v ref.Val) (*clearance, bool) {
	switch x := v.Value().(type) {
	case *clearance:
		return x, x != nil
	case clearance:
		return &x, true
	}
	return nil, false
}

func labelVal(l ifc.Label) *label {
	return &label{Integrity: l.Integrity().String(), Secrecy: nonNil(l.Secrecy()), Sources: nonNil(l.Sources())}
}

func clearanceVal(c ifc.Clearance) clearance {
	return clearance{Integrity: c.Integrity().String(), Secrecy: nonNil(c.Secrecy())}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
