package policy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/ifc/internal/lower"
)

// Decision is the outcome for one call.
type Decision struct {
	// Action is Allow, Deny or Approve.
	Action Action
	// Rules are the rules that produced the action, in load order, with
	// the clearance check first when it is one of them: for a deny, the
	// deny rules that matched (and the clearance check when it failed on a
	// tool that is not approvable); for a hold, the clearance check when it
	// failed and the approve rules that matched; for an allow, the endorse,
	// declassify and allow rules that matched.
	Rules []RuleRef
	// Reasons[i] is the reason given by Rules[i]; "" when the rule gives
	// none.
	Reasons []string
	// Lowered names the endorse and declassify rules that lowered the
	// call's labels for this call, in load order; empty for a deny. The
	// approve and allow rules saw the lowered labels.
	Lowered []RuleRef
	// Label is the context label the call goes ahead with: the input's,
	// lowered by the rules in Lowered. For a deny it is the input's.
	Label ifc.Label
	// Errors holds one line per rule whose evaluation failed: the rule
	// and CEL's kind of error, never argument values.
	Errors []string

	held *held // set on a decision to hold, by Decide only
}

// held makes an approval of one held call usable once, and keeps the
// clearance of the tool it was held for.
type held struct {
	used      atomic.Bool
	clearance ifc.Clearance
}

// Approve returns the label the held call d goes ahead with once a person
// approves it: d.Label endorsed, and declassified of every secrecy tag the
// tool is not cleared for, each recorded as approved:<who>. Declassified
// lists the tags the approval dropped, for the record. It is the only way
// a person lowers a label. It fails with [ErrNotHeld] unless d is a
// decision to hold made by [Set.Decide], who is not empty, and d was not
// approved before: a deny cannot be approved, and one approval lets one
// call through.
func (d Decision) Approve(who string) (l ifc.Label, declassified []string, err error) {
	if d.Action != Approve || d.held == nil {
		return d.Label, nil, fmt.Errorf("%w: the decision is %s", ErrNotHeld, d.Action)
	}
	r := lower.ApprovedBy(who)
	if r.Kind() == lower.None {
		return d.Label, nil, fmt.Errorf("%w: an approval needs the name of who gave it", ErrNotHeld)
	}
	if d.held.used.Swap(true) {
		return d.Label, nil, fmt.Errorf("%w: it was approved already", ErrNotHeld)
	}
	if l, err = ifc.Endorse(d.Label, r); err != nil {
		return d.Label, nil, err
	}
	cleared := d.held.clearance.Secrecy()
	for _, t := range l.Secrecy() {
		if !slices.Contains(cleared, t) {
			declassified = append(declassified, t)
		}
	}
	if len(declassified) > 0 {
		if l, err = ifc.Declassify(l, lower.ApprovedDeclassifies(who, declassified)); err != nil {
			return d.Label, nil, err
		}
	}
	return l, declassified, nil
}

// plan is what Decide evaluates for one tool, in three phases, each in
// load order.
type plan struct {
	deny     []step // deny rules, on the labels as they came
	lower    []step // endorse and declassify rules, on the labels as they came
	lateDeny []step // deny rules marked after_lowering, on the lowered labels
	late     []step // approve and allow rules, on the lowered labels
}

type step struct {
	r *rule
	p *program
}

// add puts st in the part of p its rule's action runs in.
func (p *plan) add(st step) {
	switch r := st.r; {
	case r.action == Deny && r.afterLowering:
		p.lateDeny = append(p.lateDeny, st)
	case r.action == Deny:
		p.deny = append(p.deny, st)
	case r.action == Endorse || r.action == Declassify:
		p.lower = append(p.lower, st)
	default:
		p.late = append(p.late, st)
	}
}

// index builds the plan of every tool some rule is about, and the plan of
// every other tool: each holds only the rules that can match it.
func (s *Set) index() {
	build := func(tool string) *plan {
		p := &plan{}
		for _, r := range s.rules {
			prg := r.generic
			if r.targets != nil {
				if !slices.Contains(r.targets, tool) {
					continue
				}
				if tp := r.byTool[tool]; tp != nil {
					prg = tp
				}
			}
			p.add(step{r: r, p: prg})
		}
		return p
	}
	s.any = build("")
	s.byTool = map[string]*plan{}
	for _, r := range s.rules {
		for _, t := range r.targets {
			if _, ok := s.byTool[t]; !ok {
				s.byTool[t] = build(t)
			}
		}
	}
}

// Decide decides one call. It never fails: a rule whose evaluation fails
// is recorded in Decision.Errors and fails closed. A nil Set denies.
//
// Deny rules and endorse and declassify rules see the call's labels as
// they came, except deny rules marked after_lowering, which see them as
// lowered. When endorse or declassify rules match, the call's labels are
// lowered by each of them (for this call only), and the clearance check,
// the approve rules and the allow rules see the lowered labels. Then:
//   - a matching deny rule denies, whatever else matched;
//   - a failing clearance check denies a tool that is not approvable;
//   - a failing clearance check holds an approvable tool, and so does a
//     matching approve rule, even when the labels were lowered;
//   - otherwise the call is allowed, with the lowered labels.
//
// So a clearance check that fails on the labels as they came is cured only
// when endorse or declassify rules matched whose lowering makes the label
// flow to the clearance.
func (s *Set) Decide(in Input) Decision {
	if s == nil {
		return Decision{Action: Deny, Label: in.Label, Errors: []string{"no policy loaded"}}
	}
	return s.decide(in, s.forTool(in.Tool))
}

// decide decides one call with the rules of te's plan: the rules that can
// match the tool, each compiled for it (the fast paths), or, for the
// differential test, every rule as written (plainEntry).
func (s *Set) decide(in Input, te *toolEntry) Decision {
	p := te.plan
	act := newActivation(s, te, in.Args, in.Run, in.Label, in.ArgLabels)
	defer act.release()
	var errs []string
	var approve, allow []*rule
	// A rule that fails to evaluate counts as matched where that is the
	// stricter reading (deny), and as not matched where it is (lowering).
	matching := func(sts []step, onError bool) (out []*rule) {
		for _, st := range sts {
			matched, err := st.eval(act)
			if err != nil {
				errs = append(errs, err.Error())
				matched = onError
			}
			if matched {
				out = append(out, st.r)
			}
		}
		return out
	}
	deny := matching(p.deny, true)
	lowered := matching(p.lower, false)
	label := in.Label
	if len(lowered) > 0 {
		label = lowerLabel(lowered, label)
		act.lower(label, lowered)
	}
	// A deny rule marked after_lowering (the default no-secrets-to-egress)
	// sees the lowered labels: a declassify rule the user wrote for one
	// recipient lets exactly that call's secrecy go, and no other.
	deny = append(deny, matching(p.lateDeny, true)...)
	slices.SortStableFunc(deny, func(a, b *rule) int { return a.seq - b.seq })
	clearanceOK := label.FlowsTo(in.Tool.Clearance)
	d := Decision{Label: label}
	add := func(rs []*rule) {
		if len(rs) == 0 {
			return
		}
		if d.Rules == nil {
			d.Rules = make([]RuleRef, 0, len(rs)+1)
			d.Reasons = make([]string, 0, len(rs)+1)
		}
		for _, r := range rs {
			d.Rules = append(d.Rules, r.ref)
			d.Reasons = append(d.Reasons, r.reason)
		}
	}
	addClearance := func() {
		d.Rules = make([]RuleRef, 0, 1+len(deny)+len(approve))
		d.Reasons = make([]string, 0, cap(d.Rules))
		d.Rules = append(d.Rules, RuleRef{Name: ClearanceRule, File: BuiltinFile})
		d.Reasons = append(d.Reasons, clearanceReason(label, te.clearance))
	}
	if len(deny) > 0 || !clearanceOK && !in.Tool.Approvable {
		d.Action, d.Label = Deny, in.Label
		if !clearanceOK && !in.Tool.Approvable {
			addClearance()
		}
		add(deny)
		d.Errors = errs
		return d
	}
	for _, st := range p.late {
		matched, err := st.eval(act)
		if err != nil {
			errs = append(errs, err.Error())
			matched = st.r.action != Allow
		}
		if !matched {
			continue
		}
		if st.r.action == Approve {
			approve = append(approve, st.r)
		} else {
			allow = append(allow, st.r)
		}
	}
	d.Errors = errs
	for _, r := range lowered {
		d.Lowered = append(d.Lowered, r.ref)
	}
	if len(approve) > 0 || !clearanceOK {
		d.Action, d.held = Approve, &held{clearance: in.Tool.Clearance}
		if !clearanceOK {
			addClearance()
		}
		add(approve)
		return d
	}
	d.Action = Allow
	rs := append(slices.Clip(lowered), allow...)
	slices.SortStableFunc(rs, func(a, b *rule) int { return a.seq - b.seq })
	add(rs)
	return d
}

// lowerLabel applies each rule's reason to l, in load order.
func lowerLabel(rules []*rule, l ifc.Label) ifc.Label {
	for _, r := range rules {
		var out ifc.Label
		var err error
		if r.action == Endorse {
			out, err = ifc.Endorse(l, r.lower)
		} else {
			out, err = ifc.Declassify(l, r.lower)
		}
		if err == nil { // always: Load builds a reason for every such rule
			l = out
		}
	}
	return l
}

// short renders integrity and secrecy as "untrusted{pii,payment}".
func short(i ifc.Integrity, secrecy []string) string {
	return i.String() + "{" + strings.Join(secrecy, ",") + "}"
}

// clearanceReason is the reason of a failed clearance check. clearance is
// short() of the tool's clearance.
func clearanceReason(l ifc.Label, clearance string) string {
	const (
		prefix = "context label "
		middle = " does not flow to clearance "
	)
	var b strings.Builder
	b.Grow(len(prefix) + len(middle) + 32 + len(clearance))
	b.WriteString(prefix)
	b.WriteString(l.Integrity().String())
	b.WriteByte('{')
	for i, t := range l.Secrecy() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(t)
	}
	b.WriteByte('}')
	b.WriteString(middle)
	b.WriteString(clearance)
	return b.String()
}

// activation gives rules their variables. Each is converted to what CEL
// reads the first time a rule asks for it, and kept for the next rule of
// the same decision: no map is built per call unless a rule reads
// arg_labels, and the context label is converted in place.
type activation struct {
	s         *Set
	te        *toolEntry
	rawArgs   map[string]any
	run       Run
	label     ifc.Label
	argLabels map[string]ifc.Label
	lowered   []*rule // applied to each argument label when arg_labels is read

	lbl       object
	lblFields [3]ref.Val
	args      ref.Val
	alb       ref.Val
	rn        *object
}

// activations are reused across decisions: nothing a rule computes keeps
// a reference to one after its decision.
var activations = sync.Pool{New: func() any { return new(activation) }}

func newActivation(s *Set, te *toolEntry, args map[string]any, r Run, l ifc.Label, argLabels map[string]ifc.Label) *activation {
	a := activations.Get().(*activation)
	*a = activation{s: s, te: te, rawArgs: args, run: r, label: l, argLabels: argLabels}
	return a
}

// release returns a to the pool, holding nothing of its decision.
func (a *activation) release() {
	*a = activation{}
	activations.Put(a)
}

// lower makes the activation show the labels lowered by rules: the
// context label l, and each argument label lowered the same way.
func (a *activation) lower(l ifc.Label, rules []*rule) {
	a.label, a.lowered = l, rules
	a.lbl, a.lblFields, a.alb = object{}, [3]ref.Val{}, nil
}

var emptyArgs = map[string]any{}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case varLabel:
		if a.lbl.typ == nil {
			a.lblFields[0] = integrityVal(a.label.Integrity())
			a.lbl = object{typ: labelType, label: a.label, fromLabel: true, integrity: a.label.Integrity().String(), fields: a.lblFields[:]}
		}
		return &a.lbl, true
	case varArgs:
		if a.args == nil {
			args := a.rawArgs
			if args == nil {
				args = emptyArgs
			}
			a.args = types.NewStringInterfaceMap(types.DefaultTypeAdapter, args)
		}
		return a.args, true
	case varArgLabels:
		if a.alb == nil {
			m := make(map[ref.Val]ref.Val, len(a.argLabels))
			for k, l := range a.argLabels {
				if len(a.lowered) > 0 {
					l = lowerLabel(a.lowered, l)
				}
				m[types.String(k)] = labelVal(l)
			}
			a.alb = types.NewRefValMap(types.DefaultTypeAdapter, m)
		}
		return a.alb, true
	case varTool:
		return a.te.obj, true
	case varRun:
		if a.rn == nil {
			a.rn = runVal(a.run)
		}
		return a.rn, true
	case varRegistry:
		return a.s.regVal, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

// toolEntry is what Decide needs of one tool: the tool as rules see it,
// and the rules that can match it — those about any tool or about this
// one, less those that need a flag (tool.egress, !tool.privileged, …) the
// tool does not have.
type toolEntry struct {
	t         Tool
	obj       *object
	plan      *plan
	clearance string // short() of the tool's clearance
}

// forTool returns the entry of a tool. It is built on the tool's first
// call and kept: the next calls of the same tool (the same manifest entry)
// read it without building anything.
func (s *Set) forTool(t Tool) *toolEntry {
	if m := s.tools.Load(); m != nil {
		if e, ok := (*m)[t.Name]; ok && sameTool(e.t, t) {
			return e
		}
	}
	base := s.any
	if p, ok := s.byTool[t.Name]; ok {
		base = p
	}
	e := &toolEntry{t: t, obj: toolVal(t), plan: base.only(t),
		clearance: short(t.Clearance.Integrity(), t.Clearance.Secrecy())}
	s.toolMu.Lock()
	defer s.toolMu.Unlock()
	next := map[string]*toolEntry{}
	if m := s.tools.Load(); m != nil {
		if len(*m) >= maxTools {
			return e // a caller making up tools: do not grow without bound
		}
		maps.Copy(next, *m)
	}
	next[t.Name] = e
	s.tools.Store(&next)
	return e
}

// maxTools bounds the tools whose entries a Set keeps.
const maxTools = 1024

func sameTool(a, b Tool) bool {
	return a.Name == b.Name && a.Worker == b.Worker && a.Privileged == b.Privileged &&
		a.Approvable == b.Approvable && a.Egress == b.Egress && a.Clearance.Equal(b.Clearance)
}

// plainEntry is the entry of a tool with no fast path: every rule, in
// load order, compiled with args dynamic and nothing folded, whatever it
// is about. Decide must agree with deciding on it (FuzzFastPathsArePlain):
// the targets, the programs typed for one tool and the flag tests only
// skip work.
func (s *Set) plainEntry(t Tool) *toolEntry {
	p := &plan{}
	for _, r := range s.rules {
		p.add(step{r: r, p: r.generic})
	}
	return &toolEntry{t: t, obj: toolVal(t), plan: p, clearance: short(t.Clearance.Integrity(), t.Clearance.Secrecy())}
}

// only returns the steps of p whose rules can match a tool with t's flags.
func (p *plan) only(t Tool) *plan {
	keep := func(steps []step) []step {
		var out []step
		for _, st := range steps {
			if canMatch(st.r.flags, t) {
				out = append(out, st)
			}
		}
		return out
	}
	return &plan{deny: keep(p.deny), lower: keep(p.lower), lateDeny: keep(p.lateDeny), late: keep(p.late)}
}

// registryValue converts the registries once, at load.
func registryValue(reg map[string][]string) ref.Val {
	m := make(map[ref.Val]ref.Val, len(reg))
	for k, v := range reg {
		m[types.String(k)] = types.NewStringList(types.DefaultTypeAdapter, nonNil(v))
	}
	return types.NewRefValMap(types.DefaultTypeAdapter, m)
}

// eval runs the rule. A result that is not a boolean is an error.
func (st step) eval(act *activation) (matched bool, err error) {
	r := st.r
	defer func() {
		// cel-go recovers its own panics; this guards a binding or an
		// adapter that does not, so that one rule cannot stop a decision.
		if p := recover(); p != nil {
			matched, err = false, fmt.Errorf("rule %s: internal error", r.ref)
		}
	}()
	out, _, err := st.p.prg.Eval(act)
	if err != nil {
		var node int64
		var ce *types.Err
		if errors.As(err, &ce) {
			node = ce.NodeID()
		}
		where := ""
		if node != 0 {
			if loc := st.p.ast.SourceInfo().GetStartLocation(node); loc.Line() >= 1 {
				p := r.src.At(loc.Line(), loc.Column())
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
	for _, k := range runtimeKinds {
		if strings.HasPrefix(msg, k) {
			return k
		}
	}
	return "evaluation failed"
}

var runtimeKinds = []string{
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
