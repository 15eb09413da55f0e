package policy

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"

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

// Names of the variables and functions rules see.
const (
	varLabel     = "label"
	varArgLabels = "arg_labels"
	varArgs      = "args"
	varTool      = "tool"
	varRun       = "run"
	varRegistry  = "registry"
)

// The CEL object types of the variables rules see: policy.label,
// policy.clearance, policy.tool and policy.run. Their fields are declared,
// so that a misspelled field (label.integrty) is a load error, not a rule
// that never matches; and each value carries its fields as CEL values,
// built once per decision, so that reading one costs an index, not
// reflection.
var (
	labelType     = newObjType("policy.label", "integrity", types.StringType, "secrecy", strListType, "sources", strListType)
	clearanceType = newObjType("policy.clearance", "integrity", types.StringType, "secrecy", strListType)
	toolType      = newObjType("policy.tool", "name", types.StringType, "worker", types.StringType,
		"privileged", types.BoolType, "approvable", types.BoolType, "egress", types.BoolType, "clearance", clearanceType.t)
	runType = newObjType("policy.run", "id", types.StringType, "flow", types.StringType, "step", types.StringType)

	strListType = types.NewListType(types.StringType)
	objTypes    = map[string]*objType{}
)

// objType is one object type: its CEL type and its fields, in order.
type objType struct {
	t      *types.Type
	names  []string
	ftypes []*types.Type
	fields map[string]*types.FieldType
}

func newObjType(name string, fields ...any) *objType {
	o := &objType{t: types.NewObjectType(name), fields: map[string]*types.FieldType{}}
	for i := 0; i < len(fields); i += 2 {
		n, t := fields[i].(string), fields[i+1].(*types.Type)
		at := len(o.names)
		o.names = append(o.names, n)
		o.ftypes = append(o.ftypes, t)
		o.fields[n] = &types.FieldType{
			Type:    t,
			IsSet:   func(any) bool { return true },
			GetFrom: func(target any) (any, error) { return getField(target, at) },
		}
	}
	objTypes[name] = o
	return o
}

func getField(target any, at int) (any, error) {
	o, ok := target.(*object)
	if !ok || at >= len(o.fields) {
		return nil, errors.New("no such field")
	}
	if o.fields[at] == nil {
		o.fields[at] = o.lazy(at)
	}
	return o.fields[at], nil
}

// object is a value of one of the object types. Labels and clearances
// keep their parts as Go values too, for flows_to and from_source.
//
// A label built for a decision (labelVal) converts its secrecy and
// sources only when a rule reads them: most rules read integrity only.
// Such a label is used by one goroutine. Every other object is built whole
// and never changes, so it may be shared.
type object struct {
	typ    *objType
	fields []ref.Val // nil entries are built on first read (labels only)

	label         ifc.Label // the label a labelVal object is of
	fromLabel     bool
	clr           ifc.Clearance // the clearance a clearanceVal object is of
	fromClearance bool
	integrity     string
	secrecy       []string
	sources       []string
	got           uint8 // which of secrecy (1) and sources (2) are set, for labelVal objects
}

func (o *object) lazy(at int) ref.Val {
	switch o.typ.names[at] {
	case "secrecy":
		return strList(o.secrecyOf())
	case "sources":
		return strList(o.sourcesOf())
	}
	return types.String("")
}

func (o *object) secrecyOf() []string {
	if o.fromLabel && o.got&1 == 0 {
		o.secrecy, o.got = o.label.Secrecy(), o.got|1
	}
	return o.secrecy
}

func (o *object) sourcesOf() []string {
	if o.fromLabel && o.got&2 == 0 {
		o.sources, o.got = o.label.Sources(), o.got|2
	}
	return o.sources
}

func (o *object) ConvertToNative(t reflect.Type) (any, error) {
	return nil, fmt.Errorf("%s cannot be converted to %v", o.typ.t.TypeName(), t)
}

func (o *object) ConvertToType(t ref.Type) ref.Val {
	if t == types.TypeType {
		return o.typ.t
	}
	return types.NewErr("type conversion error from %s to %s", o.typ.t.TypeName(), t.TypeName())
}

func (o *object) Equal(other ref.Val) ref.Val {
	x, ok := other.(*object)
	if !ok || x.typ != o.typ {
		return types.False
	}
	for i := range o.fields {
		a, _ := getField(o, i)
		b, _ := getField(x, i)
		if a.(ref.Val).Equal(b.(ref.Val)) != types.True {
			return types.False
		}
	}
	return types.True
}

func (o *object) Type() ref.Type { return o.typ.t }
func (o *object) Value() any     { return o }

func strList(s []string) ref.Val {
	return types.NewStringList(types.DefaultTypeAdapter, nonNil(s))
}

// The two integrities as CEL values, boxed once.
var (
	trustedVal   ref.Val = types.String(ifc.Trusted.String())
	untrustedVal ref.Val = types.String(ifc.Untrusted.String())
)

func integrityVal(i ifc.Integrity) ref.Val {
	if i == ifc.Trusted {
		return trustedVal
	}
	return untrustedVal
}

// labelVal is l as rules see it, for one decision.
func labelVal(l ifc.Label) *object {
	return &object{typ: labelType, label: l, fromLabel: true, integrity: l.Integrity().String(),
		fields: []ref.Val{integrityVal(l.Integrity()), nil, nil}}
}

func clearanceVal(c ifc.Clearance) *object {
	sec := c.Secrecy()
	return &object{typ: clearanceType, integrity: c.Integrity().String(), secrecy: sec, clr: c, fromClearance: true,
		fields: []ref.Val{integrityVal(c.Integrity()), strList(sec)}}
}

func toolVal(t Tool) *object {
	return &object{typ: toolType, fields: []ref.Val{types.String(t.Name), types.String(t.Worker),
		types.Bool(t.Privileged), types.Bool(t.Approvable), types.Bool(t.Egress), clearanceVal(t.Clearance)}}
}

func runVal(r Run) *object {
	return &object{typ: runType, fields: []ref.Val{types.String(r.ID), types.String(r.Flow), types.String(r.Step)}}
}

// newObject builds policy.label{…} or policy.clearance{…} written in a
// rule; a field left out is empty. The other types cannot be built.
func newObject(o *objType, fields map[string]ref.Val) ref.Val {
	if o != labelType && o != clearanceType {
		return types.NewErr("%s cannot be built in a rule", o.t.TypeName())
	}
	out := &object{typ: o, fields: make([]ref.Val, len(o.names))}
	for i, n := range o.names {
		v, ok := fields[n]
		switch {
		case !ok && o.ftypes[i] == strListType:
			v = strList(nil)
		case !ok:
			v = types.String("")
		}
		out.fields[i] = v
		switch n {
		case "integrity":
			s, ok := v.(types.String)
			if !ok {
				return types.NewErr("%s: integrity must be a string", o.t.TypeName())
			}
			out.integrity = string(s)
		case "secrecy", "sources":
			native, err := v.ConvertToNative(reflect.TypeFor[[]string]())
			if err != nil {
				return types.NewErr("%s: %s must be a list of strings", o.t.TypeName(), n)
			}
			if n == "secrecy" {
				out.secrecy = native.([]string)
			} else {
				out.sources = native.([]string)
			}
		}
	}
	return out
}

// provider declares the object types above and the argument types of
// args.go to CEL, on top of CEL's own.
type provider struct {
	types.Provider
	args map[string]map[string]*types.Type // type name -> argument -> type
}

func (p *provider) FindStructType(name string) (*types.Type, bool) {
	if o, ok := objTypes[name]; ok {
		return types.NewTypeTypeWithParam(o.t), true
	}
	if _, ok := p.args[name]; ok {
		return types.NewTypeTypeWithParam(types.NewObjectType(name)), true
	}
	return p.Provider.FindStructType(name)
}

func (p *provider) FindStructFieldNames(name string) ([]string, bool) {
	if o, ok := objTypes[name]; ok {
		return slices.Clone(o.names), true
	}
	if f, ok := p.args[name]; ok {
		return slices.Sorted(maps.Keys(f)), true
	}
	return p.Provider.FindStructFieldNames(name)
}

func (p *provider) FindStructFieldType(name, field string) (*types.FieldType, bool) {
	if o, ok := objTypes[name]; ok {
		f, ok := o.fields[field]
		return f, ok
	}
	if f, ok := p.args[name]; ok {
		t, ok := f[field]
		if !ok {
			return nil, false
		}
		// No accessor: at run time args and arg_labels are maps, which
		// CEL reads by key.
		return &types.FieldType{Type: t}, true
	}
	return p.Provider.FindStructFieldType(name, field)
}

func (p *provider) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if o, ok := objTypes[name]; ok {
		return newObject(o, fields)
	}
	if _, ok := p.args[name]; ok {
		return types.NewErr("%s cannot be built in a rule", name)
	}
	return p.Provider.NewValue(name, fields)
}

// newBaseEnv builds what every rule sees except args and arg_labels,
// whose types depend on the tool a rule is about (see args.go).
func newBaseEnv(prov *provider) (*cel.Env, error) {
	env, err := cel.NewEnv(
		cel.CustomTypeProvider(prov),
		cel.Variable(varLabel, labelType.t),
		cel.Variable(varTool, toolType.t),
		cel.Variable(varRun, runType.t),
		cel.Variable(varRegistry, cel.MapType(cel.StringType, cel.ListType(cel.StringType))),
		cel.Function("flows_to",
			cel.Overload("flows_to_label_clearance", []*cel.Type{labelType.t, clearanceType.t}, cel.BoolType,
				cel.BinaryBinding(flowsTo))),
		cel.Function("from_source",
			cel.Overload("from_source_label_string", []*cel.Type{labelType.t, cel.StringType}, cel.BoolType,
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

// newDynamicEnv extends base with args and arg_labels as maps: what rules
// that may match any tool see.
func newDynamicEnv(base *cel.Env) (*cel.Env, error) {
	env, err := base.Extend(
		cel.Variable(varArgLabels, cel.MapType(cel.StringType, labelType.t)),
		cel.Variable(varArgs, cel.MapType(cel.StringType, cel.DynType)),
	)
	if err != nil {
		return nil, fmt.Errorf("build policy environment: %w", err)
	}
	return env, nil
}

// flowsTo implements flows_to(label, clearance) with ifc's semantics:
// secrecy a subset of the clearance's, integrity at least the clearance's.
func flowsTo(lval, cval ref.Val) ref.Val {
	lv, ok1 := asObject(lval, labelType)
	cv, ok2 := asObject(cval, clearanceType)
	if !ok1 || !ok2 {
		return types.NoSuchOverloadErr()
	}
	li, err := ifc.ParseIntegrity(lv.integrity)
	if err != nil {
		return types.NewErr("flows_to: label integrity must be trusted or untrusted")
	}
	ci, err := ifc.ParseIntegrity(cv.integrity)
	if err != nil {
		return types.NewErr("flows_to: clearance integrity must be trusted or untrusted")
	}
	c := cv.clr
	if !cv.fromClearance {
		c = ifc.NewClearance(ci, cv.secrecy...) // built in the rule
	}
	if lv.fromLabel {
		return types.Bool(lv.label.FlowsTo(c))
	}
	return types.Bool(ifc.New(li, lv.secrecy, nil).FlowsTo(c))
}

// fromSource implements from_source(label, prefix): some source of the
// label starts with prefix.
func fromSource(l, prefix ref.Val) ref.Val {
	lv, ok1 := asObject(l, labelType)
	p, ok2 := prefix.(types.String)
	if !ok1 || !ok2 {
		return types.NoSuchOverloadErr()
	}
	for _, s := range lv.sourcesOf() {
		if strings.HasPrefix(s, string(p)) {
			return types.True
		}
	}
	return types.False
}

func asObject(v ref.Val, t *objType) (*object, bool) {
	o, ok := v.(*object)
	return o, ok && o != nil && o.typ == t
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
