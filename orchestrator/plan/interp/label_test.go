package interp

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/sluicehq/sluice/ifc"
)

// randomLabel draws a label from integrity × secrecy tags × sources.
func randomLabel(rng *rand.Rand) ifc.Label {
	in := ifc.Trusted
	if rng.IntN(2) == 0 {
		in = ifc.Untrusted
	}
	var sec, src []string
	for _, t := range []string{"pii", "finance", "health"} {
		if rng.IntN(3) == 0 {
			sec = append(sec, t)
		}
	}
	for _, s := range []string{"user", "web:a.example", "tool:crm.lookup"} {
		if rng.IntN(3) == 0 {
			src = append(src, s)
		}
	}
	return ifc.New(in, sec, src)
}

// dataCase is an expression over x and y whose result must be labelled
// with the join of their labels, and leave the program counter label
// alone unless pc says so.
type dataCase struct {
	expr string
	x, y any
	pc   bool // the operation decides: the pc rises by both labels
}

func dataCases() []dataCase {
	xs := []any{int64(3), int64(1), int64(2)}
	d := map[string]any{"a": int64(1), "b": int64(2)}
	cs := []dataCase{
		{expr: "-x", x: int64(3)}, {expr: "+x", x: int64(3)}, {expr: "~x", x: int64(3)}, {expr: "not x", x: true},
		{expr: "x in y", x: int64(1), y: xs}, {expr: "x not in y", x: "c", y: d},
		{expr: "x + y", x: "ab", y: "cd"}, {expr: "x + y", x: xs, y: xs}, {expr: "x * y", x: "ab", y: int64(3)},
		{expr: "x % y", x: "a%sb", y: "c"}, {expr: "x | y", x: d, y: d},
		{expr: "x[y]", x: xs, y: int64(1), pc: true}, {expr: "x[y]", x: d, y: "a", pc: true}, {expr: "x[y]", x: "abc", y: int64(2), pc: true},
		{expr: "x[y:]", x: xs, y: int64(1)}, {expr: "x[:y]", x: "abcdef", y: int64(2)}, {expr: "x[::y]", x: xs, y: int64(-1)},
		{expr: "[x, y]", x: int64(1), y: "a"}, {expr: "(x, y)", x: int64(1), y: "a"}, {expr: "{x: y}", x: "k", y: int64(1)},
		{expr: "[e for e in x if e != y]", x: xs, y: int64(2), pc: true}, {expr: "{str(e): y for e in x}", x: xs, y: "v", pc: true},
		{expr: "len(x)", x: xs}, {expr: "len(x)", x: "abcd"}, {expr: "str(x)", x: int64(12)}, {expr: "repr(x)", x: "a"},
		{expr: "int(x)", x: "42"}, {expr: "int(x, y)", x: "ff", y: int64(16)}, {expr: "float(x)", x: int64(2)}, {expr: "bool(x)", x: xs},
		{expr: "abs(x)", x: int64(-2)}, {expr: "type(x)", x: xs}, {expr: "list(x)", x: xs}, {expr: "tuple(x)", x: xs},
		{expr: "dict(x)", x: d}, {expr: "{y: x}", x: xs, y: "k"}, {expr: "dict(x, c=y)", x: d, y: int64(3)}, {expr: "reversed(x)", x: xs}, {expr: "range(x)", x: int64(4)},
		{expr: "range(x, y)", x: int64(1), y: int64(4)}, {expr: "enumerate(x)", x: xs}, {expr: "zip(x, y)", x: xs, y: xs},
		{expr: "chr(x)", x: int64(65)}, {expr: "ord(x)", x: "A"}, {expr: "hasattr(x, y)", x: "s", y: "upper"},
		{expr: "sorted(x)", x: xs, pc: true}, {expr: "sorted(x, reverse=y)", x: xs, y: true, pc: true},
		{expr: "sorted(x, key=lambda e: -e)", x: xs, pc: true}, {expr: "min(x)", x: xs, pc: true}, {expr: "max(x, y)", x: int64(1), y: int64(2), pc: true},
		{expr: "any(x)", x: xs, pc: true}, {expr: "all(x)", x: xs, pc: true},
		{expr: "x.upper()", x: "ab"}, {expr: "x.split(y)", x: "a,b", y: ","}, {expr: "y.join(x)", x: []any{"a", "b"}, y: "-"},
		{expr: "x.replace(y, 'z')", x: "abab", y: "a"}, {expr: "x.format(y)", x: "<{}>", y: int64(1)},
		{expr: "x.startswith(y)", x: "abc", y: "a"}, {expr: "x.find(y)", x: "abc", y: "c"}, {expr: "x.strip()", x: " a "},
		{expr: "x.get(y)", x: d, y: "a"}, {expr: "x.get(y, 0)", x: d, y: "zz"}, {expr: "x.keys()", x: d}, {expr: "x.values()", x: d},
		{expr: "x.items()", x: d}, {expr: "x.index(y)", x: xs, y: int64(2)}, {expr: "x.count(y)", x: "abca", y: "a"},
		{expr: "getattr(x, 'upper')()", x: "ab"},
	}
	for _, op := range []string{"+", "-", "*", "/", "//", "%", "&", "|", "^", "<<", ">>", "==", "!=", "<", "<=", ">", ">="} {
		cs = append(cs, dataCase{expr: "x " + op + " y", x: int64(12), y: int64(3)})
	}
	return cs
}

// TestOperatorsJoinLabels: for every operator, builtin and common method,
// with random labels on the operands, the result is labelled with exactly
// ifc.Join of them, whether the operands are elements of an input (a
// record) or values the program made from them.
func TestOperatorsJoinLabels(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range dataCases() {
		for _, form := range []string{"x = inputs['x']", "x = [inputs['x']][0]"} {
			for range 4 {
				lx, ly := randomLabel(rng), randomLabel(rng)
				src := lines(form, "y = inputs['y']", "result = "+c.expr)
				in := map[string]Input{"x": input(c.x, lx), "y": input(c.y, ly)}
				res := runPlan(t, src, &recorder{}, in, Completed)
				want := ifc.Join(lx, ly)
				if c.y == nil {
					want = lx
				}
				if !res.Base.Join(fieldsJoin(res.Fields)).Equal(want) {
					t.Fatalf("%s (%s): label %v, want %v (x %v, y %v)", c.expr, form, res.Base, want, lx, ly)
				}
				wantPC := bottom()
				if c.pc {
					wantPC = want
				}
				if !res.PC.Equal(wantPC) && !(c.pc && hasAll(want, res.PC)) {
					t.Fatalf("%s: pc %v, want %v", c.expr, res.PC, wantPC)
				}
			}
		}
	}
}

func fieldsJoin(fs map[string]ifc.Label) ifc.Label {
	l := bottom()
	for _, f := range fs {
		l = l.Join(f)
	}
	return l
}

// TestControlRaisesPC: each control construct raises the program counter
// label by the label of what it depends on, and a call after it carries
// that label though its arguments are constants. The control programs,
// with the same construct over a constant, leave it at the bottom.
func TestControlRaisesPC(t *testing.T) {
	cases := []struct{ name, src string }{
		{"if", "if X > 1:\n    pass"},
		{"elif", "if False:\n    pass\nelif X > 1:\n    pass"},
		{"conditional expression", "z = 1 if X > 1 else 2"},
		{"for over a list", "for e in L:\n    pass"},
		{"comprehension condition", "z = [e for e in [1, 2] if e == X]"},
		{"comprehension over a list", "z = [e for e in L]"},
		{"and", "z = X and 1"},
		{"or", "z = X or 1"},
		{"not in a condition", "if not X:\n    pass"},
		{"in inside a condition", "if 2 in L:\n    pass"},
		{"index by a key", "z = {'a': 1, 2: 3}[X]"},
		{"any", "z = any(L)"},
		{"all", "z = all(L)"},
		{"sorted", "z = sorted(L)"},
		{"min", "z = min(L)"},
		{"max", "z = max(L)"},
		{"tuple unpacking", "a, b = P"},
		{"break in a loop", "for e in [1, 2, 3]:\n    if e == X:\n        break"},
		{"return in a function", "def f():\n    if X:\n        return 1\n    return 2\nz = f()"},
		{"truth of a list", "if L:\n    pass"},
		{"length of a list", "z = [e for e in range(len(L))]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, attack := range []bool{false, true} {
				pre := "X = 2\nL = [1, 2]\nP = (1, 2)\n"
				if attack {
					pre = "X = inputs['x']\nL = inputs['l']\nP = inputs['p']\n"
				}
				h := &recorder{}
				in := map[string]Input{"x": input(int64(2), lWeb), "l": input([]any{int64(1), int64(2)}, lWeb), "p": input([]any{int64(1), int64(2)}, lWeb)}
				runPlan(t, pre+c.src+"\nweb.fetch(url='https://a.example/')\n", h, in, Completed)
				pc := h.calls[len(h.calls)-1].PC
				if attack && !hasAll(pc, lWeb) {
					t.Fatalf("pc %v after %s over an untrusted value, want it to carry %v", pc, c.name, lWeb)
				}
				if !attack && !pc.Equal(bottom()) {
					t.Fatalf("pc %v after %s over constants, want the bottom", pc, c.name)
				}
			}
		})
	}
}

// TestPCNeverFalls: over random sequences of control constructs on values
// of random labels, the program counter label of each call includes that
// of every call before it.
func TestPCNeverFalls(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	stmts := []string{
		"if inputs['%s'] > 0:\n    web.fetch(url='u')",
		"for e in [inputs['%s']]:\n    web.fetch(url='u')",
		"z = 1 if inputs['%s'] else 2\nweb.fetch(url='u')",
		"web.fetch(url=str(inputs['%s']))",
		"z = [inputs['%s']][0] or 1\nweb.fetch(url='u')",
	}
	for range 50 {
		in := map[string]Input{}
		src := ""
		for i := range 6 {
			name := fmt.Sprintf("v%d", i)
			in[name] = input(int64(rng.IntN(3)), randomLabel(rng))
			src += fmt.Sprintf(stmts[rng.IntN(len(stmts))], name) + "\n"
		}
		h := &recorder{}
		res := runPlan(t, src, h, in, Completed)
		prev := bottom()
		for _, c := range h.calls {
			if !hasAll(c.PC, prev) {
				t.Fatalf("pc fell from %v to %v\n%s", prev, c.PC, src)
			}
			prev = c.PC
		}
		if !hasAll(res.PC, prev) {
			t.Fatalf("pc fell at the end from %v to %v", prev, res.PC)
		}
	}
}

// TestRecordKeepsLabelsPerPath: an element of a tool's output carries
// the labels on its path only, the output joined with the program counter
// label carries them all.
func TestRecordKeepsLabelsPerPath(t *testing.T) {
	name0 := ifc.UntrustedFrom("web:a.example")
	name1 := ifc.New(ifc.Trusted, []string{"pii"}, nil)
	h := &recorder{answer: func(c Call) Outcome {
		return Outcome{Status: Completed, Base: lUser,
			Output: map[string]any{"items": []any{map[string]any{"name": "a", "n": int64(1)}, map[string]any{"name": "b", "n": int64(2)}}},
			Fields: map[string]ifc.Label{"items.0.name": name0, "items.1.name": name1}}
	}}
	res := runPlan(t, lines(
		`out = calendar.list()`,
		`email.send(to="a", subject=out["items"][0]["n"], body=out["items"][1]["name"])`,
		`email.send(to=[i["n"] for i in out["items"]][0], subject=out["items"][0].get("name"), body=len(out["items"]))`,
		`email.send(to=out.values()[0][1]["name"], subject=out.items()[0][0], body=out.keys())`,
		`result = out["items"]`,
	), h, nil, Completed)
	want := []map[string]ifc.Label{
		{"subject": lUser, "body": ifc.Join(lUser, name1)},
		{"to": lUser, "subject": ifc.Join(lUser, name0), "body": lUser},
		{"to": ifc.Join(lUser, name1), "subject": lUser, "body": lUser},
	}
	for i, w := range want {
		for k, l := range w {
			if got := h.calls[i+1].ArgLabels[k]; !got.Equal(l) {
				t.Errorf("call %d %s: label %v, want %v", i+2, k, got, l)
			}
		}
	}
	if !res.Base.Equal(lUser) || !res.Fields["0.name"].Equal(name0) || !res.Fields["1.name"].Equal(name1) {
		t.Errorf("result labels %v %v", res.Base, res.Fields)
	}
	if len(h.calls) != 4 || !h.calls[3].PC.Equal(lUser) {
		t.Errorf("the comprehension over the items should raise the pc by their list's label: %+v", h.calls[len(h.calls)-1])
	}
}
