package interp

import (
	"strings"
	"testing"
)

// TestCompileErrors: what a plan may not do is refused at compile time,
// at the line:col of the offence, with a message that says what to write
// instead or what exists.
func TestCompileErrors(t *testing.T) {
	cases := []struct{ src, want string }{
		{"load('x.star', 'y')\n", `plan.star:1:1: load is not allowed in plans`},
		{"x = 0\nwhile x < 3:\n    x += 1\n", `plan.star:2:1: while loops are not allowed`},
		{"xs = [1]\nxs[0] = 2\n", `plan.star:2:3: an assignment to an element would change a container after it is made; build a new one instead: xs = xs[:i] + [v] + xs[i+1:], d = dict(d, k=v) or d = d | {k: v}`},
		{"d = {}\nd['k'] += 1\n", `plan.star:2:8: += on an element would change a container after it is made`},
		{"x = inputs\nx.y = 1\n", `plan.star:2:2: an assignment to an attribute is not allowed`},
		{"xs = []\nxs.append(1)\n", `plan.star:2:4: .append would change a container after it is made; make a new one instead: xs = xs + [x], a comprehension, d = dict(d, k=v) or d = d | {k: v}`},
		{"d = {}\nd.update(a=1)\n", `plan.star:2:3: .update would change a container`},
		{"d = {}\nd.setdefault('a', 1)\n", `plan.star:2:3: .setdefault would change`},
		{"xs = [1]\nx = xs.pop()\n", `plan.star:2:8: .pop would change`},
		{"for xs[0] in [1]:\n    pass\n", `plan.star:1:7: a for loop's variables to an element would change`},
		{"web.fecth(url='u')\n", `plan.star:1:5: unknown tool "web.fecth"; the tools are: calendar.list, email.send, payment.charge, web.fetch`},
		{"shell.run(cmd='ls')\n", `plan.star:1:1: unknown tool "shell.run"; the tools are: calendar.list, email.send, payment.charge, web.fetch`},
		{"web.fetch('u')\n", `plan.star:1:11: web.fetch takes keyword arguments only, as web.fetch(url=...)`},
		{"web.fetch(uri='u')\n", `plan.star:1:11: web.fetch has no parameter "uri"; its parameters are: url`},
		{"def f(*args):\n    pass\n", `plan.star:1:7: *args parameters are not allowed`},
		{"f = lambda **kw: 1\n", `plan.star:1:12: **kw parameters are not allowed`},
		{"print('x')\n", `plan.star:1:1: print is not available in plans`},
		{"x = set([1])\n", `plan.star:1:5: set is not available in plans`},
		{"x = = 1\n", `plan.star:1:5: got '=', want primary expression`},
		{"x = y\n", `plan.star:1:5: undefined: y`},
	}
	for _, c := range cases {
		_, err := Compile("plan.star", c.src, testTools)
		if err == nil {
			t.Errorf("%q compiled", c.src)
			continue
		}
		if !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%q:\n got %s\nwant %s", c.src, err, c.want)
		}
	}
}

// TestRecursionRefused: a function that calls itself fails when it does.
func TestRecursionRefused(t *testing.T) {
	res := runPlan(t, "def f(n):\n    return f(n - 1)\nf(3)\n", &recorder{}, nil, Failed)
	if !strings.Contains(res.Error, "called recursively") || res.Line != 2 {
		t.Fatalf("%+v", res)
	}
}

// TestCompileListsAllProblems: every problem is reported, in order.
func TestCompileListsAllProblems(t *testing.T) {
	_, err := Compile("p.star", "xs = []\nxs.append(1)\nweb.nope()\nxs[0] = 1\n", testTools)
	if err == nil {
		t.Fatal("compiled")
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != 3 || !strings.HasPrefix(got[0], "p.star:2:4:") || !strings.HasPrefix(got[1], "p.star:3:5:") || !strings.HasPrefix(got[2], "p.star:4:3:") {
		t.Fatalf("%s", err)
	}
}

// TestCompileAllowsPlans: what plans may do compiles: top-level if and
// for, reassignment, functions, lambdas, comprehensions, and tool calls
// when a worker's name is not bound by the program.
func TestCompileAllowsPlans(t *testing.T) {
	src := lines(
		`xs = []`,
		`for i in range(3):`,
		`    if i % 2 == 0:`,
		`        xs = xs + [i]`,
		`    elif i > 5:`,
		`        break`,
		`n = 0`,
		`n += len(xs)`,
		`def double(x, k=2):`,
		`    return x * k`,
		`ys = [double(x) for x in xs]`,
		`d = dict({"a": 1}, b=2) | {"c": 3}`,
		`page = web.fetch(url="https://a.example/")`,
		`result = {"ys": ys, "n": n, "d": d, "ok": page["ok"]}`,
	)
	res := runPlan(t, src, &recorder{}, nil, Completed)
	if res.Output.(map[string]any)["n"] != int64(2) {
		t.Fatalf("%v", res.Output)
	}
}

// TestUniverseIsShadowed: every universe builtin of Starlark is either a
// constant or shadowed by a plan builtin, so no universe function ever
// sees a labelled value as a value of its own (a newer Starlark with a new
// builtin fails here).
func TestUniverseIsShadowed(t *testing.T) {
	b := builtins()
	for name := range starlarkUniverse() {
		if _, ok := b[name]; !ok && !isConstant(name) {
			t.Errorf("universe builtin %s is not shadowed", name)
		}
	}
}
