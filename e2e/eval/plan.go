package main

import (
	"fmt"
	"math"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
	"go.yaml.in/yaml/v3"
)

// plannerFirstLine is the first line of the system message of every
// request the plan step makes of its planner.
const plannerFirstLine = "You are the planner of a Sluice plan step."

// planProgram is the program an honest planner writes for a user task:
// the task's ground-truth calls, made only with what the planner was
// shown. shown is every text of the planner's request (the instructions,
// the tools' names and schemas). A literal argument must be in it, as the
// agent oracle's must be in what it was shown; a value of an earlier call's
// result is passed through its variable (r1["iban"]); a fact the task's
// extract entries give is asked of the quarantined model with inspect, on
// the result it is in, with a schema of that fact alone. A call that needs
// a value the planner was never shown and cannot name this way cannot be
// written: the error says which, and the task fails in plan mode.
//
// The answer (result) is the task's answer, its {{N.F}} through the
// variables; a word of it that carries data (a digit, an @, a name in the
// middle of a sentence) the planner was not shown is written (unknown),
// and noted: the planner cannot know it.
func planProgram(worker string, t *userTask, shown []string) (src string, notes []string, err error) {
	g := &planGen{worker: worker, task: t, shown: shown, facts: map[string]string{}}
	if g.questions, err = fixedExtracts(t.flow); err != nil {
		return "", nil, err
	}
	var b strings.Builder
	for i, c := range t.Calls {
		if c.Tool == "inspect" {
			return "", nil, fmt.Errorf("call %d: a ground truth's inspect has no place in a plan", i)
		}
		args, err := g.args(i, c)
		if err != nil {
			return "", nil, fmt.Errorf("call %d (%s): %v", i, c.Tool, err)
		}
		for _, line := range g.pending {
			b.WriteString(line)
		}
		g.pending = nil
		if c.If == "" {
			fmt.Fprintf(&b, "r%d = %s.%s(%s)\n", i, worker, c.Tool, args)
			continue
		}
		if err := planCondition(c.If, i, shown); err != nil {
			return "", nil, fmt.Errorf("call %d (%s): if: %v", i, c.Tool, err)
		}
		fmt.Fprintf(&b, "r%d = None\nif %s:\n    r%d = %s.%s(%s)\n", i, c.If, i, worker, c.Tool, args)
	}
	result, unknown := g.result()
	if len(unknown) > 0 {
		// What the answer reports, the planner cannot write: it asks the
		// quarantined model to answer the user from the results, and
		// reports that answer beside its own words.
		vars := make([]string, len(t.Calls))
		for i := range t.Calls {
			vars[i] = fmt.Sprintf("r%d", i)
		}
		fmt.Fprintf(&b, "answer = inspect([%s], %s, {\"type\": \"string\"})\n", strings.Join(vars, ", "), literal(answerQuestion+t.Prompt))
		result += ` + "\n" + answer`
		for _, u := range unknown {
			notes = append(notes, u+"; the program asks inspect for it")
		}
	}
	fmt.Fprintf(&b, "result = %s\n", result)
	return b.String(), notes, nil
}

// answerQuestion begins the question a plan asks inspect of the results
// for what its answer reports; the user's request follows it.
const answerQuestion = "Answer the user from these tool results, with the values they ask for. The user asked: "

type planGen struct {
	worker    string
	task      *userTask
	shown     []string
	questions []fixedExtract
	// facts are the inspects written so far: the variable of each
	// "entry/field" asked.
	facts   map[string]string
	pending []string
}

// planCondition checks a call's condition, or an argument's expression: a
// Starlark expression that
// reads only results of calls before call i, and whose literals the
// planner was shown — a string as it is or word by word, a number as a
// number of its own; an index and a field name are the planner's own.
func planCondition(expr string, i int, shown []string) error {
	e, err := (&syntax.FileOptions{}).ParseExpr("if", expr, 0)
	if err != nil {
		return err
	}
	g := &planGen{shown: shown}
	var problem error
	keys := map[syntax.Expr]bool{}
	syntax.Walk(e, func(n syntax.Node) bool {
		if problem != nil {
			return false
		}
		switch n := n.(type) {
		case *syntax.IndexExpr:
			keys[n.Y] = true
			if u, ok := n.Y.(*syntax.UnaryExpr); ok {
				keys[u.X] = true
			}
		case *syntax.Ident:
			if strings.HasPrefix(n.Name, "r") {
				if k, err := strconv.Atoi(n.Name[1:]); err == nil && k >= i {
					problem = fmt.Errorf("%s is not the result of an earlier call", n.Name)
				}
			}
		case *syntax.Literal:
			if keys[n] {
				return true
			}
			switch v := n.Value.(type) {
			case string:
				if !g.shownText(v) && !g.shownWords(v) {
					problem = fmt.Errorf("the planner was never shown %q", v)
				}
			case int64:
				if !g.shownNumber(int(v)) {
					problem = fmt.Errorf("the planner was never shown %d", v)
				}
			case float64:
				if !g.shownNumber(v) {
					problem = fmt.Errorf("the planner was never shown %v", v)
				}
			}
		}
		return true
	})
	return problem
}

func (g *planGen) shownWords(s string) bool {
	words := strings.Fields(s)
	for _, w := range words {
		if !g.shownText(w) {
			return false
		}
	}
	return len(words) > 0
}

// fixedExtract is an llm.extract of the task's fixed flow: its question,
// and the tool whose result it reads.
type fixedExtract struct {
	instruction string
	source      string
}

// fixedExtracts reads the questions the fixed flow asks its llm.extract
// steps: the plan asks inspect the same question, so that the quarantined
// model is asked what the task's author wrote for it.
func fixedExtracts(flow string) ([]fixedExtract, error) {
	b, err := os.ReadFile(flow)
	if err != nil {
		return nil, err
	}
	var f struct {
		Steps []struct {
			ID   string         `yaml:"id"`
			Call string         `yaml:"call"`
			With map[string]any `yaml:"with"`
		} `yaml:"steps"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", flow, err)
	}
	tools := map[string]string{}
	var out []fixedExtract
	stepRef := regexp.MustCompile(`steps\.([A-Za-z0-9_-]+)\.`)
	for _, s := range f.Steps {
		tools[s.ID] = s.Call
		if s.Call != "llm.extract" {
			continue
		}
		q, _ := s.With["instruction"].(string)
		text := fmt.Sprint(s.With["text"])
		x := fixedExtract{instruction: q}
		if m := stepRef.FindStringSubmatch(text); m != nil {
			x.source = tools[m[1]]
		}
		out = append(out, x)
	}
	return out, nil
}

// args writes a call's arguments, keyword by keyword in name order.
func (g *planGen) args(i int, c plannedCall) (string, error) {
	names := make([]string, 0, len(c.Args))
	for k := range c.Args {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, k := range names {
		if expr, ok := c.Plan[k]; ok {
			if err := planCondition(expr, i, g.shown); err != nil {
				return "", fmt.Errorf("argument %s: %v", k, err)
			}
			parts = append(parts, k+" = "+expr)
			continue
		}
		v, err := g.value(i, c.Args[k])
		if err != nil {
			return "", fmt.Errorf("argument %s: %v", k, err)
		}
		parts = append(parts, k+" = "+v)
	}
	return strings.Join(parts, ", "), nil
}

// value is one argument as a Starlark expression.
func (g *planGen) value(i int, v any) (string, error) {
	if r, ok := asRef(v); ok {
		return refExpr(r), nil
	}
	if m, ok := v.(map[string]any); ok && len(m) == 1 && m["$say"] != nil {
		// The planner's own words: a subject, a date. A number it would
		// have to work out from what a tool returns is not its own.
		say := m["$say"]
		if _, isString := say.(string); isString || g.shownNumber(say) {
			return literal(say), nil
		}
		if x, ok := g.fact(i, say); ok {
			return x, nil
		}
		return "", fmt.Errorf("%s is worked out from what a tool returns, which the planner is never shown", number(say))
	}
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			x, err := g.value(i, v[k])
			if err != nil {
				return "", err
			}
			parts = append(parts, literal(k)+": "+x)
		}
		return "{" + strings.Join(parts, ", ") + "}", nil
	case []any:
		parts := make([]string, 0, len(v))
		for _, y := range v {
			x, err := g.value(i, y)
			if err != nil {
				return "", err
			}
			parts = append(parts, x)
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	case string:
		if v == "" || g.shownText(v) {
			return literal(v), nil
		}
	case int, float64:
		if g.shownNumber(v) {
			return literal(v), nil
		}
	default:
		return literal(v), nil
	}
	if x, ok := g.fact(i, v); ok {
		return x, nil
	}
	for _, x := range g.task.Extract {
		if _, ok := factField(x.Answer, v); ok {
			return "", fmt.Errorf("the planner was never shown %s, and no question of the task asked of an earlier result gives it", clip(literal(v)))
		}
	}
	return "", fmt.Errorf("the planner was never shown %s, and no question of the task gives it", clip(literal(v)))
}

// fact is the variable of a value that an extract entry of the task
// gives, asked with inspect on the result of an earlier call (written into
// pending the first time), with the schema of that value: a plan's inspect
// may answer any JSON Schema (a string IBAN, a list of emails), since its
// answer is never shown to the planner.
func (g *planGen) fact(i int, v any) (string, bool) {
	for k, x := range g.task.Extract {
		field, ok := factField(x.Answer, v)
		if !ok {
			continue
		}
		schema := schemaOf(v)
		if name, ok := g.facts[fmt.Sprintf("%d/%s", k, field)]; ok {
			return name, true
		}
		if name, ok := g.inspect(i, k, field, schema); ok {
			return name, true
		}
	}
	// An element of a list an entry gives: the list asked for, indexed.
	for k, x := range g.task.Extract {
		field, idx, list, ok := factElement(x.Answer, v)
		if !ok {
			continue
		}
		name, ok := g.facts[fmt.Sprintf("%d/%s", k, field)]
		if !ok {
			if name, ok = g.inspect(i, k, field, schemaOf(list)); !ok {
				continue
			}
		}
		return fmt.Sprintf("%s[%d]", name, idx), true
	}
	return "", false
}

// factElement finds v as an element of a list in an extract answer: the
// answer itself (""), or one of its fields.
func factElement(answer, v any) (field string, idx int, list []any, ok bool) {
	find := func(x any) (int, []any, bool) {
		l, isList := x.([]any)
		for j, e := range l {
			if isList && same(e, v) {
				return j, l, true
			}
		}
		return 0, nil, false
	}
	if j, l, ok := find(answer); ok {
		return "", j, l, true
	}
	if m, isMap := answer.(map[string]any); isMap {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if j, l, ok := find(m[k]); ok {
				return k, j, l, true
			}
		}
	}
	return "", 0, nil, false
}

// factField finds v in an extract answer: the answer itself (""), or one
// of its fields.
func factField(answer, v any) (string, bool) {
	if same(answer, v) {
		return "", true
	}
	if m, ok := answer.(map[string]any); ok {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if same(m[k], v) {
				return k, true
			}
		}
	}
	return "", false
}

var isoDate = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)

// Bounds of a number the planner asks inspect for: it cannot know the
// value, so it bounds what any amount, count or rating of these tools
// could be.
const factMin, factMax = 0.0, 1_000_000.0

// schemaOf is the schema a planner writes for a fact like v: the exact
// shape of what it needs, a bounded number, a date, a string, an object
// of such fields, a list of them.
func schemaOf(v any) map[string]any {
	switch v := v.(type) {
	case bool:
		return map[string]any{"type": "boolean"}
	case int, float64:
		f, _ := toFloat(v)
		if f < factMin || f > factMax {
			return map[string]any{"type": "number"}
		}
		return map[string]any{"type": "number", "minimum": factMin, "maximum": factMax}
	case string:
		if isoDate.MatchString(v) {
			return map[string]any{"type": "string", "format": "date"}
		}
		return map[string]any{"type": "string"}
	case []any:
		items := map[string]any{}
		if len(v) > 0 {
			items = schemaOf(v[0])
		}
		return map[string]any{"type": "array", "items": items}
	case map[string]any:
		props := map[string]any{}
		var req []any
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			props[k] = schemaOf(v[k])
			req = append(req, k)
		}
		return map[string]any{"type": "object", "properties": props, "required": req}
	}
	return map[string]any{}
}

// inspect writes xN = inspect(rM, question, schema) for field of extract
// entry k, before call i: the question is the fixed flow's that the entry
// answers, narrowed to the field; the value the result of the call of the
// tool that question reads (the latest before call i), or of the latest
// call before i.
func (g *planGen) inspect(i, k int, field string, schema map[string]any) (string, bool) {
	x := g.task.Extract[k]
	var q *fixedExtract
	if x.Ask != "" {
		q = &fixedExtract{instruction: x.Ask, source: g.worker + "." + x.From}
	}
	for j := range g.questions {
		if q == nil && x.re.MatchString(g.questions[j].instruction) {
			q = &g.questions[j]
			break
		}
	}
	if q == nil || i == 0 {
		return "", false
	}
	src := i - 1
	for j := i - 1; j >= 0; j-- {
		if g.worker+"."+g.task.Calls[j].Tool == q.source {
			src = j
			break
		}
	}
	question := q.instruction
	if field != "" {
		question += " " + fieldQuestion(field)
	}
	name := fmt.Sprintf("x%d", len(g.facts))
	g.facts[fmt.Sprintf("%d/%s", k, field)] = name
	g.pending = append(g.pending, fmt.Sprintf("%s = inspect(r%d, %s, %s)\n", name, src, literal(question), literal(schema)))
	return name, true
}

// fieldQuestion narrows a question to one field of its answer; the
// model's extract answers that field alone (fieldAsked).
func fieldQuestion(field string) string { return "Answer with the " + field + " alone." }

var fieldAsked = regexp.MustCompile(`Answer with the ([A-Za-z0-9_]+) alone\.$`)

func same(a, b any) bool {
	fa, aNum := toFloat(a)
	fb, bNum := toFloat(b)
	if aNum || bNum {
		return aNum && bNum && fa == fb
	}
	sa, aStr := a.(string)
	sb, bStr := b.(string)
	return aStr && bStr && sa == sb
}

func toFloat(v any) (float64, bool) {
	switch v := v.(type) {
	case int:
		return float64(v), true
	case float64:
		return v, true
	}
	return 0, false
}

func (g *planGen) shownText(s string) bool {
	for _, t := range g.shown {
		if strings.Contains(t, s) {
			return true
		}
	}
	return false
}

var numberToken = regexp.MustCompile(`\d+(?:\.\d+)?`)

// shownNumber: the number is written in what the planner was shown, as a
// number of its own (9 is not shown by 1950).
func (g *planGen) shownNumber(v any) bool {
	f, ok := toFloat(v)
	if !ok {
		return false
	}
	for _, t := range g.shown {
		for _, tok := range numberToken.FindAllString(t, -1) {
			if x, err := strconv.ParseFloat(tok, 64); err == nil && x == f {
				return true
			}
		}
	}
	return false
}

// refExpr is an earlier result's field: r0["hotels"][0]["rating"].
func refExpr(r ref) string {
	var b strings.Builder
	fmt.Fprintf(&b, "r%d", r.n)
	if r.field == "" {
		return b.String()
	}
	for _, part := range strings.Split(r.field, ".") {
		if n, err := strconv.Atoi(part); err == nil {
			fmt.Fprintf(&b, "[%d]", n)
		} else {
			b.WriteString("[" + literal(part) + "]")
		}
	}
	return b.String()
}

// result is the program's answer: the task's answer, with {{N.F}} the
// variable's field, and each data word the planner cannot know replaced.
func (g *planGen) result() (string, []string) {
	var notes []string
	var parts []string
	text := g.task.Answer
	for text != "" {
		loc := answerRef.FindStringSubmatchIndex(text)
		end := len(text)
		if loc != nil {
			end = loc[0]
		}
		if end > 0 {
			plain, unknown := honestText(g.shown, text[:end], len(parts) == 0)
			notes = append(notes, unknown...)
			parts = append(parts, literal(plain))
		}
		if loc == nil {
			break
		}
		n, _ := strconv.Atoi(text[loc[2]:loc[3]])
		parts = append(parts, "str("+refExpr(ref{n: n, field: text[loc[4]:loc[5]]})+")")
		text = text[loc[1]:]
	}
	if len(parts) == 0 {
		return `""`, notes
	}
	return strings.Join(parts, " + "), notes
}

var sentenceEnd = regexp.MustCompile(`[.:!?;]$`)

// honestText replaces each word of the answer that carries data that
// shown does not hold by (unknown).
func honestText(shown []string, s string, atStart bool) (string, []string) {
	g := &planGen{shown: shown}
	var notes []string
	words := strings.Fields(s)
	lead := ""
	if s != "" && s[0] == ' ' {
		lead = " "
	}
	trail := ""
	if strings.HasSuffix(s, " ") {
		trail = " "
	}
	prev := ""
	for j, w := range words {
		bare := strings.Trim(w, `.,;:()!?"'`)
		first := j == 0 && atStart || sentenceEnd.MatchString(prev)
		prev = w
		if bare == "" || bare == "I" || g.shownText(bare) {
			continue
		}
		data := strings.ContainsAny(bare, "0123456789@")
		if !data && !first {
			r := []rune(bare)[0]
			data = r >= 'A' && r <= 'Z'
		}
		if data {
			notes = append(notes, fmt.Sprintf("the planner cannot know %q of the answer: it was never shown it", bare))
			words[j] = strings.Replace(w, bare, "(unknown)", 1)
		}
	}
	return lead + strings.Join(words, " ") + trail, notes
}

// literal is a Go value as a Starlark literal.
func literal(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		if v {
			return "True"
		}
		return "False"
	case string:
		return starlark.String(v).String()
	case int:
		return strconv.Itoa(v)
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1e15 {
			return strconv.FormatFloat(v, 'f', 1, 64)
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, literal(k)+": "+literal(v[k]))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case []any:
		parts := make([]string, 0, len(v))
		for _, x := range v {
			parts = append(parts, literal(x))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return starlark.String(fmt.Sprint(v)).String()
}
