package policy

import (
	_ "embed"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/ifc/internal/lower"
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
	// Endorse, as a rule's action, raises the call's labels to trusted for
	// that call only. A decision is never Endorse.
	Endorse Action = "endorse"
	// Declassify, as a rule's action, drops the secrecy tags the rule
	// names from the call's labels, for that call only. A decision is
	// never Declassify.
	Declassify Action = "declassify"
)

// The built-in clearance check appears in decisions as the rule
// ClearanceRule of file BuiltinFile.
const (
	ClearanceRule = "clearance"
	BuiltinFile   = "builtin"
)

// RuleRef names a rule (or a cap) and where it is written. The built-in
// clearance check is RuleRef{Name: "clearance", File: "builtin"}, without
// a position.
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

// Set is a compiled set of policy files. It is immutable and safe for
// concurrent use.
type Set struct {
	rules    []*rule // load order
	caps     []Cap   // load order
	registry map[string][]string
	regVal   ref.Val

	any    *plan            // the rules of a tool no rule is about
	byTool map[string]*plan // the rules of each tool some rule is about

	toolMu sync.Mutex
	tools  atomic.Pointer[map[string]*toolEntry] // see forTool
}

type rule struct {
	ref    RuleRef
	seq    int // position in load order
	action Action
	reason string
	lower  ifc.Reason // for endorse and declassify rules
	// afterLowering: a deny rule that sees the labels as lowered by the
	// endorse and declassify rules that matched the call.
	afterLowering bool
	src           *schemas.ScalarMap
	generic       *program            // compiled with args dynamic
	targets       []string            // the tools the rule is about; nil: any
	flags         []flagTest          // the tool flags the rule needs
	byTool        map[string]*program // compiled with each target's typed args
}

type program struct {
	prg cel.Program
	ast *ast.AST
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

// Registries returns a copy of the user-kept lists of the policy files
// (payees, contacts, self, …) by name; nil for a nil Set. They are shown
// beside held calls: a value that looks like an entry but is not one is
// flagged there.
func (s *Set) Registries() map[string][]string {
	if s == nil {
		return nil
	}
	out := make(map[string][]string, len(s.registry))
	for name, items := range s.registry {
		out[name] = slices.Clone(items)
	}
	return out
}

// Load parses, validates and compiles policy files against the catalog of
// tools (nil when it is not known; see [Tools]). On failure the error is a
// schemas.Diagnostics holding every problem of every file, sorted.
func Load(tools Tools, files ...File) (*Set, error) {
	sch, err := schemas.Load("policy.json")
	if err != nil {
		return nil, fmt.Errorf("load policy schema: %w", err)
	}
	envs, err := newEnvs(tools)
	if err != nil {
		return nil, err
	}
	l := &loader{
		envs:     envs,
		tools:    tools,
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
		caps, _ := root["caps"].([]any)
		for i, v := range caps {
			l.cap(doc, i, v)
		}
	}
	clamp(l.ds, files)
	if err := l.ds.Err(); err != nil {
		return nil, err
	}
	l.set.regVal = registryValue(l.set.registry)
	l.set.index()
	return l.set, nil
}

// clamp moves a diagnostic that points past the end of its line or file
// (the YAML decoder places the implicit null of a document such as "---"
// on the line after it) to the last place in the file.
func clamp(ds schemas.Diagnostics, files []File) {
	lines := map[string][]string{}
	for _, f := range files {
		lines[f.Name] = schemas.SplitLines(string(f.Src))
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
	envs     *envs
	tools    Tools
	set      *Set
	ds       schemas.Diagnostics
	names    map[string]RuleRef // rule or cap name -> first definition
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

// claim records name as defined at ref, or reports it as a duplicate of
// a rule or cap already loaded. Rules and caps share one namespace, since
// decisions name both.
func (l *loader) claim(doc *schemas.Document, ptr, name, code string, ref RuleRef) bool {
	switch {
	case !validName(name):
		return false // the schema check reported it
	case name == ClearanceRule:
		l.ds.Add(doc.File, doc.Pos(ptr+"/name"), CodeReservedRule, "name %q is reserved for the built-in clearance check", name)
		return false
	}
	if first, dup := l.names[name]; dup {
		l.ds.Add(doc.File, doc.Pos(ptr+"/name"), code, "%q is already defined at %s:%d:%d", name, first.File, first.Line, first.Col)
		return false
	}
	l.names[name] = ref
	return true
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
	tagsVal, hasTags := m["tags"]
	tags, _ := stringList(tagsVal)
	afterLowering, _ := m["after_lowering"].(bool)
	pos := doc.Pos(ptr)
	ref := RuleRef{Name: name, File: doc.File, Line: pos.Line, Col: pos.Col}
	keep := l.claim(doc, ptr, name, CodeDuplicateRule, ref)
	r := &rule{ref: ref, seq: len(l.set.rules), action: Action(action), reason: reason, afterLowering: afterLowering}
	if afterLowering && Action(action) != Deny {
		l.ds.Add(doc.File, doc.KeyPos(ptr+"/after_lowering"), CodeAfterLowering, "rule %q: after_lowering is only for deny rules, not %s", name, action)
		keep = false
	}
	switch Action(action) {
	case Allow, Deny, Approve, Endorse:
		if hasTags {
			l.ds.Add(doc.File, doc.KeyPos(ptr+"/tags"), CodeTags, "rule %q: tags are only for declassify rules, not %s", name, action)
			keep = false
		}
		if Action(action) == Endorse {
			r.lower = lower.EndorsedBy(name)
			if r.reason == "" {
				r.reason = "endorses this call"
			}
		}
	case Declassify:
		if !hasTags {
			l.ds.Add(doc.File, doc.Pos(ptr+"/action"), CodeTags, "rule %q: a declassify rule needs tags: the secrecy tags it drops", name)
			keep = false
		}
		r.lower = lower.DeclassifiedBy(name, tags)
		if r.reason == "" {
			r.reason = "declassifies " + strings.Join(r.lower.Tags(), ", ") + " for this call"
		}
	default:
		keep = false // the schema check reported it
	}
	if !okWhen || when == "" {
		return
	}
	r.src = schemas.NewScalarMap(doc, ptr+"/when", when)
	if !l.compile(doc.File, r, when) || !keep {
		return
	}
	l.set.rules = append(l.set.rules, r)
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

// compile compiles a rule with args dynamic, finds the tools it is about,
// checks the tools it names, and compiles it again for each tool it is
// about, with that tool's arguments typed.
func (l *loader) compile(file string, r *rule, when string) bool {
	name := r.ref.Name
	p, ok := l.program(file, r, l.envs.dynamic, when, "", "")
	if !ok {
		return false
	}
	r.generic = p
	known := true
	if l.tools != nil {
		for _, t := range nameTests(p.ast) {
			for i, n := range t.names {
				_, tool := l.tools[n]
				if t.field == "name" && !tool || t.field == "worker" && len(l.tools.workerTools(n)) == 0 {
					loc := p.ast.SourceInfo().GetStartLocation(t.ids[i])
					l.unknownTool(file, r.src.At(loc.Line(), loc.Column()), name, t.field, n)
					known = false
				}
			}
		}
	}
	if !known {
		return false
	}
	r.flags = flagTests(p.ast)
	targets, narrowed := targets(p.ast, l.tools)
	if !narrowed {
		return true
	}
	if targets == nil {
		targets = []string{} // about no tool: it can never match
	}
	r.targets = targets
	r.byTool = map[string]*program{}
	for _, t := range targets {
		env, err := l.envs.forTool(t)
		if err != nil {
			l.ds.Add(file, r.src.At(1, 0), CodeCompile, "rule %q: %s", name, err)
			return false
		}
		typed := t
		if env == nil {
			// The tool's arguments are not known: args stays dynamic,
			// and the program is only specialized for the tool.
			env, typed = l.envs.dynamic, ""
		}
		tp, ok := l.program(file, r, env, when, typed, t)
		if !ok {
			return false
		}
		r.byTool[t] = tp
	}
	return true
}

// program compiles when in env. tool names the tool whose arguments env
// types, or is "" for the dynamic environment. forTool names the tool the
// program is used for only, or is "" for a program used for any tool: a
// program for one tool has its tests for that tool folded to true.
func (l *loader) program(file string, r *rule, env *cel.Env, when, tool, forTool string) (*program, bool) {
	name := r.ref.Name
	checked, iss := env.CompileSource(common.NewStringSource(when, file))
	if iss != nil && iss.Err() != nil {
		for _, e := range iss.Errors() {
			pos := r.src.At(e.Location.Line(), e.Location.Column())
			if field, ok := strings.CutPrefix(e.Message, "undefined field '"); ok && tool != "" {
				field = strings.TrimSuffix(field, "'")
				args, _ := l.tools.arguments(tool)
				l.ds.Add(file, pos, CodeUnknownArgument, "rule %q: %s has no argument %q (its arguments: %s)", name, tool, field, strings.Join(args, ", "))
				continue
			}
			if tool != "" {
				l.ds.Add(file, pos, CodeCompile, "rule %q, for tool %s: %s", name, tool, e.Message)
				continue
			}
			l.ds.Add(file, pos, CodeCompile, "rule %q: %s", name, e.Message)
		}
		return nil, false
	}
	if !checked.OutputType().IsExactType(cel.BoolType) {
		l.ds.Add(file, r.src.At(1, 0), CodeNotBoolean, "rule %q: when must be a boolean expression, not %s", name, checked.OutputType())
		return nil, false
	}
	native := checked.NativeRep()
	if forTool != "" {
		worker, _, _ := strings.Cut(forTool, ".")
		fold, err := cel.NewConstantFoldingOptimizer()
		if err == nil {
			var opt *cel.StaticOptimizer
			if opt, err = cel.NewStaticOptimizer(targetFolder{tool: forTool, worker: worker}, fold); err == nil {
				if optimized, iss := opt.Optimize(env, checked); iss == nil || iss.Err() == nil {
					checked = optimized
				}
			}
		}
	}
	if tool == "" && forTool == "" {
		known := true
		for _, u := range registryReads(native) {
			if _, ok := l.set.registry[u.name]; !ok {
				l.unknownRegistry(file, r.src.At(u.line, u.col), u.name)
				known = false
			}
		}
		if !known {
			return nil, false
		}
	}
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	est, err := env.EstimateCost(checked, registrySizes(l.set.registry))
	if err != nil || est.Max > StaticCostLimit {
		opts = append(opts, cel.CostLimit(MaxCost))
	}
	prg, err := env.Program(checked, opts...)
	if err != nil {
		l.ds.Add(file, r.src.At(1, 0), CodeCompile, "rule %q: %s", name, err)
		return nil, false
	}
	return &program{prg: prg, ast: checked.NativeRep()}, true
}

func (l *loader) unknownTool(file string, pos schemas.Pos, rule, field, name string) {
	if field == "worker" {
		var workers []string
		for t := range l.tools {
			w, _, _ := strings.Cut(t, ".")
			workers = append(workers, w)
		}
		slices.Sort(workers)
		l.ds.Add(file, pos, CodeUnknownTool, "rule %q: no worker %q (workers are: %s)", rule, name, strings.Join(slices.Compact(workers), ", "))
		return
	}
	l.ds.Add(file, pos, CodeUnknownTool, "rule %q: no tool %q (tools are: %s)", rule, name, strings.Join(slices.Sorted(maps.Keys(l.tools)), ", "))
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
