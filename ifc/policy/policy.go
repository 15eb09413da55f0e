package policy

import (
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/schemas"
)

// File is one policy file: its name, as diagnostics show it, and its text.
type File struct {
	Name string
	Src  []byte
}

//go:embed default.yaml
var defaultPolicy []byte

// DefaultFileName is the name diagnostics and rule references give the
// default policy.
const DefaultFileName = "builtin/default.yaml"

// DefaultFile returns the default policy shipped with Sluice. Callers load
// it first, before any user policy.
func DefaultFile() File {
	return File{Name: DefaultFileName, Src: slices.Clone(defaultPolicy)}
}

// Action is what a decision or a rule says to do with a call.
type Action string

const (
	// Allow lets the call run.
	Allow Action = "allow"
	// Deny refuses the call. No rule and no human can override a deny.
	Deny Action = "deny"
	// Approve holds the call until a human approves or refuses it.
	Approve Action = "approve"

	// endorse and declassify lower a label for one call. They are part of
	// the design and not available yet.
	endorse    Action = "endorse"
	declassify Action = "declassify"
)

// The built-in clearance check appears in decisions as the rule
// ClearanceRule of file BuiltinFile.
const (
	ClearanceRule = "clearance"
	BuiltinFile   = "builtin"
)

// RuleRef names a rule and where it is written. The built-in clearance
// check is RuleRef{Name: "clearance", File: "builtin"}, without a position.
type RuleRef struct {
	Name string
	File string
	Line int
	Col  int
}

// String formats the reference as "name (file:line:col)", or "name (file)"
// without a position.
func (r RuleRef) String() string {
	if r.Line > 0 {
		return fmt.Sprintf("%s (%s:%d:%d)", r.Name, r.File, r.Line, r.Col)
	}
	return fmt.Sprintf("%s (%s)", r.Name, r.File)
}

// Tool describes the tool being called, from its capability manifest.
type Tool struct {
	Name       string // "payment.charge"
	Worker     string // "payment"
	Privileged bool
	Approvable bool
	Egress     bool
	Clearance  ifc.Clearance
}

// Run identifies the call within a run.
type Run struct {
	ID, Flow, Step string
}

// Input is everything a decision is made on.
type Input struct {
	Tool      Tool
	Label     ifc.Label            // the context label of the call
	ArgLabels map[string]ifc.Label // the label of each argument
	Args      map[string]any       // JSON-form values
	Run       Run
}

// Decision is the outcome for one call.
type Decision struct {
	Action Action
	// Rules are the rules that produced the action, in load order, with
	// the clearance check first when it is one of them. An allow decision
	// names the allow rules that matched, if any.
	Rules []RuleRef
	// Reasons[i] is the reason given by Rules[i]; "" when the rule gives
	// none.
	Reasons []string
	// Errors holds one line per rule whose evaluation failed: the rule
	// and CEL's kind of error, never argument values.
	Errors []string
}

// Set is a compiled set of policy files. It is immutable and safe for
// concurrent use.
type Set struct {
	rules    []*rule
	registry map[string][]string
}

type rule struct {
	ref    RuleRef
	action Action
	reason string
	prg    cel.Program
	src    *scalarMap
	ast    *ast.AST
}

// Rules returns the loaded rules in load order: file by file, in the order
// the files were given, and in file order within each. The built-in
// clearance check is not listed; it always runs.
func (s *Set) Rules() []RuleRef {
	if s == nil {
		return nil
	}
	out := make([]RuleRef, len(s.rules))
	for i, r := range s.rules {
		out[i] = r.ref
	}
	return out
}

// Load parses, validates and compiles policy files. On failure the error
// is a schemas.Diagnostics holding every problem of every file, sorted.
func Load(files ...File) (*Set, error) {
	sch, err := schemas.Load("policy.json")
	if err != nil {
		return nil, fmt.Errorf("load policy schema: %w", err)
	}
	env, err := newEnv()
	if err != nil {
		return nil, err
	}
	l := &loader{
		env:      env,
		set:      &Set{registry: map[string][]string{}},
		names:    map[string]RuleRef{},
		regFirst: map[string]string{},
	}
	// Registries first: every rule may read those of every file, and the
	// cost of a rule depends on their sizes.
	var docs []*schemas.Document
	for _, f := range files {
		if doc := l.file(sch, f); doc != nil {
			docs = append(docs, doc)
		}
	}
	for _, doc := range docs {
		root, _ := doc.Value.(map[string]any)
		rules, _ := root["rules"].([]any)
		for i, v := range rules {
			l.rule(doc, i, v)
		}
	}
	clamp(l.ds, files)
	if err := l.ds.Err(); err != nil {
		return nil, err
	}
	return l.set, nil
}

// clamp moves a diagnostic that points past the end of its line or file
// (the YAML decoder places the implicit null of a document such as "---"
// on the line after it) to the last place in the file.
func clamp(ds schemas.Diagnostics, files []File) {
	lines := map[string][]string{}
	for _, f := range files {
		lines[f.Name] = splitLines(string(f.Src))
	}
	for i, d := range ds {
		ls, ok := lines[d.File]
		if !ok || d.Line < 1 {
			continue
		}
		if d.Line > len(ls) {
			ds[i].Line, ds[i].Col = len(ls), utf8.RuneCountInString(ls[len(ls)-1])+1
			continue
		}
		if n := utf8.RuneCountInString(ls[d.Line-1]); d.Col > n+1 {
			ds[i].Col = n + 1
		}
		if d.Col < 1 {
			ds[i].Col = 1
		}
	}
}

type loader struct {
	env      *cel.Env
	set      *Set
	ds       schemas.Diagnostics
	names    map[string]RuleRef // rule name -> first definition
	regFirst map[string]string  // registry name -> where first defined
}

// file parses and validates one file and collects its registries.
func (l *loader) file(sch *schemas.Schema, f File) *schemas.Document {
	doc, ds := schemas.ParseYAML(f.Name, f.Src)
	l.ds = append(l.ds, ds...)
	if doc == nil {
		return nil
	}
	l.ds = append(l.ds, doc.Validate(sch)...)
	root, _ := doc.Value.(map[string]any)
	if regs, ok := root["registries"].(map[string]any); ok {
		for _, name := range slices.Sorted(maps.Keys(regs)) {
			// A list that is not of strings was reported by the schema
			// check; its name is kept so rules reading it load quietly.
			items, _ := stringList(regs[name])
			ptr := schemas.Pointer("registries", name)
			if first, dup := l.regFirst[name]; dup {
				l.ds.Add(f.Name, doc.KeyPos(ptr), CodeDuplicateRegistry, "registry %q is already defined at %s", name, first)
				continue
			}
			pos := doc.KeyPos(ptr)
			l.regFirst[name] = fmt.Sprintf("%s:%d:%d", f.Name, pos.Line, pos.Col)
			l.set.registry[name] = items
		}
	}
	return doc
}

func stringList(v any) ([]string, bool) {
	list, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, ok := x.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func (l *loader) rule(doc *schemas.Document, i int, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		return
	}
	ptr := schemas.Pointer("rules", i)
	name, _ := m["name"].(string)
	when, okWhen := m["when"].(string)
	action, _ := m["action"].(string)
	reason, _ := m["reason"].(string)
	pos := doc.Pos(ptr)
	ref := RuleRef{Name: name, File: doc.File, Line: pos.Line, Col: pos.Col}
	keep := validName(name)
	switch {
	case !keep:
		// The schema check reported a missing or malformed name.
	case name == ClearanceRule:
		l.ds.Add(doc.File, doc.Pos(ptr+"/name"), CodeReservedRule, "rule name %q is reserved for the built-in clearance check", name)
		keep = false
	default:
		if first, dup := l.names[name]; dup {
			l.ds.Add(doc.File, doc.Pos(ptr+"/name"), CodeDuplicateRule, "rule %q is already defined at %s:%d:%d", name, first.File, first.Line, first.Col)
			keep = false
		} else {
			l.names[name] = ref
		}
	}
	switch Action(action) {
	case Allow, Deny, Approve:
	case endorse, declassify:
		l.ds.Add(doc.File, doc.Pos(ptr+"/action"), CodeUnsupportedAction,
			"rule %q: action %q is not available yet (lowering labels comes later); use approve to hold the call for a human", name, action)
		keep = false
	default:
		keep = false // the schema check reported it
	}
	if !okWhen || when == "" {
		return
	}
	src := newScalarMap(doc, ptr+"/when", when)
	prg, checked, ok := l.compile(doc.File, name, when, src)
	if !ok || !keep {
		return
	}
	l.set.rules = append(l.set.rules, &rule{ref: ref, action: Action(action), reason: reason, prg: prg, src: src, ast: checked})
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func (l *loader) compile(file, name, when string, src *scalarMap) (cel.Program, *ast.AST, bool) {
	checked, iss := l.env.CompileSource(common.NewStringSource(when, file))
	if iss != nil && iss.Err() != nil {
		for _, e := range iss.Errors() {
			l.ds.Add(file, src.at(e.Location.Line(), e.Location.Column()), CodeCompile, "rule %q: %s", name, e.Message)
		}
		return nil, nil, false
	}
	if !checked.OutputType().IsExactType(cel.BoolType) {
		l.ds.Add(file, src.at(1, 0), CodeNotBoolean, "rule %q: when must be a boolean expression, not %s", name, checked.OutputType())
		return nil, nil, false
	}
	native := checked.NativeRep()
	known := true
	for _, u := range registryReads(native) {
		if _, ok := l.set.registry[u.name]; !ok {
			l.unknownRegistry(file, src.at(u.line, u.col), u.name)
			known = false
		}
	}
	if !known {
		return nil, nil, false
	}
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	est, err := l.env.EstimateCost(checked, registrySizes(l.set.registry))
	if err != nil || est.Max > StaticCostLimit {
		opts = append(opts, cel.CostLimit(MaxCost))
	}
	prg, err := l.env.Program(checked, opts...)
	if err != nil {
		l.ds.Add(file, src.at(1, 0), CodeCompile, "rule %q: %s", name, err)
		return nil, nil, false
	}
	return prg, native, true
}

// registrySizes tells the cost estimator the sizes of the registries,
// which are known at load; every other value may be of any size. (A nil
// estimator makes EstimateCost panic.)
type registrySizes map[string][]string

func (r registrySizes) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	p := n.Path()
	if len(p) == 2 && p[0] == varRegistry {
		if list, ok := r[p[1]]; ok {
			size := uint64(len(list))
			return &cost.SizeEstimate{Min: size, Max: size}
		}
	}
	return nil
}

func (registrySizes) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

type registryRead struct {
	name      string
	line, col int
}

// registryReads finds registry.<name> and registry["name"] in a rule.
// has(registry.x) is a test, not a read.
func registryReads(a *ast.AST) []registryRead {
	var out []registryRead
	info := a.SourceInfo()
	ast.PreOrderVisit(a.Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		var operand ast.Expr
		var key string
		switch e.Kind() {
		case ast.SelectKind:
			s := e.AsSelect()
			if s.IsTestOnly() {
				return
			}
			operand, key = s.Operand(), s.FieldName()
		case ast.CallKind:
			c := e.AsCall()
			if c.FunctionName() != "_[_]" || len(c.Args()) != 2 || c.Args()[1].Kind() != ast.LiteralKind {
				return
			}
			k, ok := c.Args()[1].AsLiteral().(types.String)
			if !ok {
				return
			}
			operand, key = c.Args()[0], string(k)
		default:
			return
		}
		if operand.Kind() != ast.IdentKind || operand.AsIdent() != varRegistry {
			return
		}
		loc := info.GetStartLocation(e.ID())
		out = append(out, registryRead{name: key, line: loc.Line(), col: loc.Column()})
	}))
	return out
}

func (l *loader) unknownRegistry(file string, pos schemas.Pos, name string) {
	names := slices.Sorted(maps.Keys(l.set.registry))
	if len(names) == 0 {
		l.ds.Add(file, pos, CodeUnknownRegistry, "no registry %q: no policy file defines registries", name)
		return
	}
	l.ds.Add(file, pos, CodeUnknownRegistry, "no registry %q (registries are: %s)", name, strings.Join(names, ", "))
}

// Decide decides one call. It never fails: a rule whose evaluation fails
// is recorded in Decision.Errors and fails closed. A nil Set denies.
func (s *Set) Decide(in Input) Decision {
	if s == nil {
		return Decision{Action: Deny, Errors: []string{"no policy loaded"}}
	}
	vars := s.activation(in)
	var deny, approve, allow []*rule
	var errs []string
	for _, r := range s.rules {
		matched, err := r.eval(vars)
		if err != nil {
			errs = append(errs, err.Error())
			matched = r.action != Allow
		}
		if !matched {
			continue
		}
		switch r.action {
		case Deny:
			deny = append(deny, r)
		case Approve:
			approve = append(approve, r)
		case Allow:
			allow = append(allow, r)
		}
	}
	d := Decision{Errors: errs}
	clearanceOK := in.Label.FlowsTo(in.Tool.Clearance)
	add := func(rs []*rule) {
		for _, r := range rs {
			d.Rules = append(d.Rules, r.ref)
			d.Reasons = append(d.Reasons, r.reason)
		}
	}
	addClearance := func() {
		d.Rules = append(d.Rules, RuleRef{Name: ClearanceRule, File: BuiltinFile})
		d.Reasons = append(d.Reasons, fmt.Sprintf("context label %s does not flow to clearance %s",
			short(in.Label.Integrity(), in.Label.Secrecy()), short(in.Tool.Clearance.Integrity(), in.Tool.Clearance.Secrecy())))
	}
	switch {
	case len(deny) > 0 || !clearanceOK && !in.Tool.Approvable:
		d.Action = Deny
		if !clearanceOK && !in.Tool.Approvable {
			addClearance()
		}
		add(deny)
	case len(approve) > 0 || !clearanceOK:
		d.Action = Approve
		if !clearanceOK {
			addClearance()
		}
		add(approve)
	default:
		d.Action = Allow
		add(allow)
	}
	return d
}

// short renders integrity and secrecy as "untrusted{pii,payment}".
func short(i ifc.Integrity, secrecy []string) string {
	return i.String() + "{" + strings.Join(secrecy, ",") + "}"
}

func (s *Set) activation(in Input) map[string]any {
	argLabels := make(map[string]*label, len(in.ArgLabels))
	for k, l := range in.ArgLabels {
		argLabels[k] = labelVal(l)
	}
	args := in.Args
	if args == nil {
		args = map[string]any{}
	}
	return map[string]any{
		varLabel:     labelVal(in.Label),
		varArgLabels: argLabels,
		varArgs:      args,
		varTool: &tool{
			Name: in.Tool.Name, Worker: in.Tool.Worker,
			Privileged: in.Tool.Privileged, Approvable: in.Tool.Approvable, Egress: in.Tool.Egress,
			Clearance: clearanceVal(in.Tool.Clearance),
		},
		varRun:      &run{ID: in.Run.ID, Flow: in.Run.Flow, Step: in.Run.Step},
		varRegistry: s.registry,
	}
}

// eval runs the rule. A result that is not a boolean is an error.
func (r *rule) eval(vars map[string]any) (matched bool, err error) {
	defer func() {
		// cel-go recovers its own panics; this guards a binding or an
		// adapter that does not, so that one rule cannot stop a decision.
		if p := recover(); p != nil {
			matched, err = false, fmt.Errorf("rule %s: internal error", r.ref)
		}
	}()
	out, _, err := r.prg.Eval(vars)
	if err != nil {
		var node int64
		var ce *types.Err
		if errors.As(err, &ce) {
			node = ce.NodeID()
		}
		where := ""
		if node != 0 {
			if loc := r.ast.SourceInfo().GetStartLocation(node); loc.Line() >= 1 {
				p := r.src.at(loc.Line(), loc.Column())
				where = fmt.Sprintf(" at %s:%d:%d", r.ref.File, p.Line, p.Col)
			}
		}
		return false, fmt.Errorf("rule %s: %s%s", r.ref, runtimeKind(err.Error()), where)
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("rule %s: result is not a boolean", r.ref)
	}
	return bool(b), nil
}

// runtimeKind reduces CEL's message to the kind of failure. CEL puts
// values in some of its messages (a computed key, a string that failed to
// convert), so only the kinds below are kept and any other message becomes
// a generic one.
func runtimeKind(msg string) string {
	if strings.Contains(msg, "cost limit exceeded") {
		return fmt.Sprintf("cost limit of %d exceeded", MaxCost)
	}
	kinds := []string{
		"no such key",
		"no such attribute",
		"no such overload",
		"division by zero",
		"modulus by zero",
		"unsigned integer overflow",
		"integer overflow",
		"index out of range",
		"index out of bounds",
		"type conversion error",
	}
	for _, k := range kinds {
		if strings.HasPrefix(msg, k) {
			return k
		}
	}
	return "evaluation failed"
}
