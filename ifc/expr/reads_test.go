package expr

import (
	"reflect"
	"strings"
	"testing"
)

func paths(ss ...string) []Path {
	out := []Path{}
	for _, s := range ss {
		out = append(out, Path(strings.Split(s, ".")))
	}
	return out
}

func TestReads(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	tests := []struct {
		name string
		src  string
		want []Path
	}{
		{name: "literal", src: "just text", want: paths()},
		{name: "escaped", src: "$${steps.a.output}", want: paths()},
		{name: "constant", src: "${1 + 2}", want: paths()},
		{name: "input", src: "${inputs.budget}", want: paths("inputs.budget")},
		{name: "step field", src: "${steps.pick.output.price}", want: paths("steps.pick.output.price")},
		{name: "constant indexes", src: `${steps["pick"].output['price']}`, want: paths("steps.pick.output.price")},
		{name: "mixed select and index", src: `${steps.pick["output"].price}`, want: paths("steps.pick.output.price")},
		{name: "computed index stops the path", src: "${steps.pick.output[inputs.field]}", want: paths("inputs.field", "steps.pick.output")},
		{name: "select after computed index", src: "${steps[inputs.step].output.price}", want: paths("inputs.step", "steps")},
		{name: "list index extends the path", src: "${steps.pick.output.seats[0]}", want: paths("steps.pick.output.seats.0")},
		{name: "unsigned list index", src: "${steps.pick.output.seats[2u]}", want: paths("steps.pick.output.seats.2")},
		{name: "select after list index", src: "${steps.pick.output.items[1].name}", want: paths("steps.pick.output.items.1.name")},
		{name: "computed list index stops the path", src: "${steps.pick.output.items[size(inputs.l)].name}", want: paths("inputs.l", "steps.pick.output.items")},
		{name: "has", src: "${has(steps.a.output.x)}", want: paths("steps.a.output.x")},
		{name: "has on index", src: "${has(steps.a.output[inputs.k].x)}", want: paths("inputs.k", "steps.a.output")},
		{name: "bare steps", src: "${steps}", want: paths("steps")},
		{name: "bare inputs", src: "${size(inputs)}", want: paths("inputs")},
		{name: "ternary reads all three", src: "${steps.a.output.ok ? inputs.x : steps.b.output.y}",
			want: paths("inputs.x", "steps.a.output.ok", "steps.b.output.y")},
		{name: "constant ternary still reads both", src: "${true ? inputs.x : inputs.y}", want: paths("inputs.x", "inputs.y")},
		{name: "logical operators", src: "${inputs.a || steps.b.output.c && !inputs.d}", want: paths("inputs.a", "inputs.d", "steps.b.output.c")},
		{name: "string concat", src: "${'Flight ' + steps.pick.output.flight + ' ' + inputs.who}", want: paths("inputs.who", "steps.pick.output.flight")},
		{name: "size", src: "${size(steps.a.output.text) > inputs.max}", want: paths("inputs.max", "steps.a.output.text")},
		{name: "member function", src: "${steps.a.output.text.lowerAscii().contains(inputs.word)}", want: paths("inputs.word", "steps.a.output.text")},
		{name: "nested calls", src: "${string(int(steps.a.output.n) + size(inputs.s.split(',')))}", want: paths("inputs.s", "steps.a.output.n")},
		{name: "field of a call result", src: "${dyn(steps.a.output).x}", want: paths("steps.a.output")},
		{name: "index of a call result", src: "${steps.a.output.text.split(',')[0]}", want: paths("steps.a.output.text")},
		{name: "map literal", src: "${ {'k': inputs.v, inputs.key: 1} }", want: paths("inputs.key", "inputs.v")},
		{name: "list literal", src: "${[inputs.a, [steps.b.output]]}", want: paths("inputs.a", "steps.b.output")},
		{name: "comprehension range and body", src: "${steps.a.output.items.map(i, i.price * inputs.rate)}",
			want: paths("inputs.rate", "steps.a.output.items")},
		{name: "comprehension variable is not a root", src: "${steps.a.output.items.exists(x, x.ok)}", want: paths("steps.a.output.items")},
		{name: "iteration variable shadows a root", src: "${[1, 2].map(inputs, inputs + 1)}", want: paths()},
		{name: "shadow ends with the loop", src: "${[1].map(steps, steps) + [inputs.a] + [steps.b.output]}", want: paths("inputs.a", "steps.b.output")},
		{name: "nested comprehensions", src: "${steps.a.output.rows.all(r, r.cells.exists(c, c == inputs.v))}", want: paths("inputs.v", "steps.a.output.rows")},
		{name: "filter", src: "${steps.a.output.items.filter(i, i.price < inputs.budget).size()}", want: paths("inputs.budget", "steps.a.output.items")},
		{name: "in operator", src: "${steps.a.output.payee in inputs.payees}", want: paths("inputs.payees", "steps.a.output.payee")},
		{name: "item and index", src: "${item.name + string(index)}", want: paths("index", "item.name")},
		{name: "bare item", src: "${item}", want: paths("item")},
		{name: "dedup and sort across parts", src: "${steps.b.output} ${inputs.a} ${steps.b.output} ${inputs.a}", want: paths("inputs.a", "steps.b.output")},
		{name: "format arguments", src: "${'%s'.format([steps.a.output.x])}", want: paths("steps.a.output.x")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := compile(t, env, tt.src).Reads()
			if got == nil {
				got = []Path{}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Reads(%s) = %v, want %v", tt.src, got, tt.want)
			}
		})
	}
}

func TestPathString(t *testing.T) {
	t.Parallel()
	if got := (Path{"steps", "pick", "output", "price"}).String(); got != "steps.pick.output.price" {
		t.Errorf("String() = %q", got)
	}
}

func TestSplit(t *testing.T) {
	t.Parallel()
	type seg struct {
		lit  string
		expr string
	}
	tests := []struct {
		name string
		src  string
		want []seg
		bad  bool
	}{
		{name: "text", src: "abc", want: []seg{{lit: "abc"}}},
		{name: "one", src: "${a}", want: []seg{{expr: "a"}}},
		{name: "around", src: "x${a}y${b}z", want: []seg{{lit: "x"}, {expr: "a"}, {lit: "y"}, {expr: "b"}, {lit: "z"}}},
		{name: "nested braces", src: "${ {'a': {'b': 1}} }", want: []seg{{expr: " {'a': {'b': 1}} "}}},
		{name: "brace in single quotes", src: "${'}'}", want: []seg{{expr: "'}'"}}},
		{name: "brace in double quotes", src: `${"}"}`, want: []seg{{expr: `"}"`}}},
		{name: "escaped quote", src: `${'\'}'}`, want: []seg{{expr: `'\'}'`}}},
		{name: "raw string", src: `${r'\'}`, want: []seg{{expr: `r'\'`}}},
		{name: "triple quotes", src: "${'''a'}'''}", want: []seg{{expr: "'''a'}'''"}}},
		{name: "comment", src: "${a // }\n}", want: []seg{{expr: "a // }\n"}}},
		{name: "url is not a comment in a string", src: "${'http://x/}'}", want: []seg{{expr: "'http://x/}'"}}},
		{name: "escape", src: "$${a}", want: []seg{{lit: "${a}"}}},
		{name: "unterminated", src: "x ${a", want: []seg{{lit: "x "}}, bad: true},
		{name: "unterminated string", src: "${'a}", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			segs, err := split(tt.src)
			if (err != nil) != tt.bad {
				t.Fatalf("split error = %v, want error %v", err, tt.bad)
			}
			var got []seg
			for _, s := range segs {
				if s.isExpr {
					got = append(got, seg{expr: tt.src[s.start:s.end]})
				} else {
					got = append(got, seg{lit: s.lit})
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("split = %q, want %q", got, tt.want)
			}
		})
	}
}
