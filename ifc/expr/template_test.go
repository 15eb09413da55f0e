package expr

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types/ref"

	"github.com/sluicehq/sluice/ifc"
)

func newEnv(t testing.TB) *Env {
	t.Helper()
	env, err := NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func compile(t testing.TB, env *Env, s string) *Template {
	t.Helper()
	tp, err := env.Compile(s)
	if err != nil {
		t.Fatalf("Compile(%q): %v", s, err)
	}
	return tp
}

// vars is a run's state as the orchestrator passes it to Eval.
func vars() map[string]any {
	return map[string]any{
		"inputs": map[string]any{
			"destination": "Lisbon",
			"budget":      int64(300),
			"ratio":       0.5,
			"flag":        true,
			"nothing":     nil,
			"tags":        []any{"a", "b"},
		},
		"steps": map[string]any{
			"pick": map[string]any{"output": map[string]any{
				"price":  12.5,
				"flight": "TP123",
				"payee":  "acct_hotel_1",
				"seats":  []any{int64(3), int64(4)},
				"extra":  map[string]any{"meal": "veg", "bags": int64(1)},
			}},
			"pay": map[string]any{"output": map[string]any{"status": "succeeded"}},
		},
	}
}

func TestTemplateKinds(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	tests := []struct {
		name    string
		src     string
		literal bool
		want    any
	}{
		{name: "empty", src: "", literal: true, want: ""},
		{name: "plain text", src: "Pick the cheapest flight.", literal: true, want: "Pick the cheapest flight."},
		{name: "dollar without brace", src: "costs $12 or $$", literal: true, want: "costs $12 or $$"},
		{name: "escape", src: "write $${inputs.x} to show it", literal: true, want: "write ${inputs.x} to show it"},
		{name: "escape only", src: "$${", literal: true, want: "${"},
		{name: "dollar then escape", src: "$$${x}", literal: true, want: "$${x}"},
		{name: "whole int", src: "${inputs.budget}", want: int64(300)},
		{name: "whole double", src: "${steps.pick.output.price}", want: 12.5},
		{name: "whole string", src: "${inputs.destination}", want: "Lisbon"},
		{name: "whole bool", src: "${steps.pay.output.status == 'succeeded'}", want: true},
		{name: "whole null", src: "${inputs.nothing}", want: nil},
		{name: "whole list", src: "${steps.pick.output.seats}", want: []any{int64(3), int64(4)}},
		{name: "whole map", src: "${steps.pick.output.extra}", want: map[string]any{"meal": "veg", "bags": int64(1)}},
		{name: "whole with spaces", src: "${  inputs.budget * 2 }", want: int64(600)},
		{name: "whole map literal", src: "${ {'a': [1, 2u, 'x']} }", want: map[string]any{"a": []any{int64(1), int64(2), "x"}}},
		{name: "space outside is text", src: " ${inputs.budget}", want: " 300"},
		{name: "two expressions", src: "${inputs.budget}${inputs.budget}", want: "300300"},
		{name: "interpolated string", src: "Flight ${steps.pick.output.flight}", want: "Flight TP123"},
		{name: "interpolated int", src: "budget: ${inputs.budget} EUR", want: "budget: 300 EUR"},
		{name: "interpolated double", src: "${steps.pick.output.price} EUR", want: "12.5 EUR"},
		{name: "interpolated whole double", src: "${12.0} EUR", want: "12 EUR"},
		{name: "interpolated bool", src: "ok=${inputs.flag}", want: "ok=true"},
		{name: "interpolated null", src: "n=${inputs.nothing}", want: "n=null"},
		{name: "interpolated list", src: "tags=${inputs.tags}", want: `tags=["a","b"]`},
		{name: "interpolated map", src: "x=${steps.pick.output.extra}", want: `x={"bags":1,"meal":"veg"}`},
		{name: "interpolated no html escaping", src: "x=${['<a&b>']}", want: `x=["<a&b>"]`},
		{name: "escape beside expression", src: "$${a} ${inputs.budget}", want: "${a} 300"},
		{name: "brace in string", src: "${'}'} and ${\"{\"}", want: "} and {"},
		{name: "map literal inside", src: "v=${ {'k': '}'}['k'] }", want: "v=}"},
		{name: "strings extension", src: "${inputs.destination.upperAscii()}", want: "LISBON"},
		{name: "format", src: "${'%s costs %.1f'.format([steps.pick.output.flight, steps.pick.output.price])}", want: "TP123 costs 12.5"},
		{name: "url", src: "${'http://127.0.0.1:8088/search?to=' + inputs.destination}", want: "http://127.0.0.1:8088/search?to=Lisbon"},
		{name: "comment", src: "${inputs.budget // the budget\n}", want: int64(300)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tp := compile(t, env, tt.src)
			if got := tp.IsLiteral(); got != tt.literal {
				t.Errorf("IsLiteral() = %v, want %v", got, tt.literal)
			}
			if tp.Source() != tt.src {
				t.Errorf("Source() = %q, want %q", tp.Source(), tt.src)
			}
			got, err := tp.Eval(vars())
			if err != nil {
				t.Fatalf("Eval: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Eval = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestForEachVariables(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	tp := compile(t, env, "${string(index) + ':' + item.name}")
	got, err := tp.Eval(map[string]any{"item": map[string]any{"name": "x"}, "index": 2})
	if err != nil {
		t.Fatal(err)
	}
	if got != "2:x" {
		t.Errorf("Eval = %#v, want %q", got, "2:x")
	}
	want := []Path{{"index"}, {"item", "name"}}
	if !reflect.DeepEqual(tp.Reads(), want) {
		t.Errorf("Reads = %v, want %v", tp.Reads(), want)
	}
}

func TestEvalConversions(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	tests := []struct {
		name string
		src  string
		vars map[string]any
		want any
	}{
		{name: "uint", src: "${7u}", want: int64(7)},
		{name: "uint from input", src: "${inputs.u}", vars: map[string]any{"inputs": map[string]any{"u": uint64(9)}}, want: int64(9)},
		{name: "go int input", src: "${inputs.n + 1}", vars: map[string]any{"inputs": map[string]any{"n": 41}}, want: int64(42)},
		{name: "nested", src: "${ {'a': {'b': [1u, 2.5, null, true, {'c': 'd'}]}} }",
			want: map[string]any{"a": map[string]any{"b": []any{int64(1), 2.5, nil, true, map[string]any{"c": "d"}}}}},
		{name: "int keys", src: "${ {1: 'a', 2u: 'b', true: 'c'} }", want: map[string]any{"1": "a", "2": "b", "true": "c"}},
		{name: "bytes", src: "${b'hi'}", want: "aGk="},
		{name: "timestamp", src: "${timestamp('2024-05-01T10:00:00+02:00')}", want: "2024-05-01T08:00:00Z"},
		{name: "duration", src: "${duration('90s')}", want: "90s"},
		{name: "empty list", src: "${[]}", want: []any{}},
		{name: "empty map", src: "${{}}", want: map[string]any{}},
		{name: "list from input map", src: "${inputs.m.map(k, inputs.m[k])}", vars: map[string]any{"inputs": map[string]any{"m": map[string]any{"x": []any{"y"}}}}, want: []any{[]any{"y"}}},
		{name: "typed go slice", src: "${inputs.s}", vars: map[string]any{"inputs": map[string]any{"s": []string{"a"}}}, want: []any{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := compile(t, env, tt.src).Eval(tt.vars)
			if err != nil {
				t.Fatalf("Eval: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Eval = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestEvalErrors(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	const secret = "s3cr3t-value"
	v := map[string]any{
		"inputs": map[string]any{"k": secret, "n": "12x" + secret, "big": uint64(math.MaxUint64), "s": strings.Repeat("a", 5000)},
		"steps":  map[string]any{"pick": map[string]any{"output": map[string]any{"price": 1.5}}},
	}
	tests := []struct {
		name       string
		src        string
		wantOffset int
		wantMsg    string
	}{
		{name: "missing key", src: "${steps.pick.output.prise}", wantOffset: 19, wantMsg: `no such key "prise"`},
		{name: "missing step", src: "x ${steps.pik.output}", wantOffset: 9, wantMsg: `no such key "pik"`},
		{name: "computed key", src: "${steps.pick.output[inputs.k]}", wantOffset: 19, wantMsg: "no such key"},
		{name: "conversion", src: "${int(inputs.n)}", wantOffset: 5, wantMsg: "type conversion error"},
		{name: "division", src: "${1 / (size(inputs.k) - 12)}", wantOffset: 4, wantMsg: "division by zero"},
		{name: "uint overflow", src: "${inputs.big}", wantOffset: 2, wantMsg: "int64 range"},
		{name: "nan", src: "${0.0 / 0.0}", wantOffset: 2, wantMsg: "NaN"},
		{name: "missing item", src: "${item}", wantOffset: 2, wantMsg: "no such attribute"},
		{name: "replace too large", src: "${inputs.s.replace('', inputs.s)}", wantOffset: 18, wantMsg: "larger than"},
		{name: "join too large", src: "${inputs.s.split('').join(inputs.s)}", wantOffset: 25, wantMsg: "larger than"},
		{name: "result too large", src: "${inputs.s.split('').map(x, inputs.s)}", wantOffset: 2, wantMsg: "larger than"},
		{name: "type value", src: "${type(1)}", wantOffset: 2, wantMsg: "no JSON form"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tp := compile(t, env, tt.src)
			_, err := tp.Eval(v)
			if err == nil {
				t.Fatal("Eval succeeded, want an error")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not an *Error", err)
			}
			if e.Code != CodeEval || e.Offset != tt.wantOffset {
				t.Errorf("got %s at %d, want %s at %d (%v)", e.Code, e.Offset, CodeEval, tt.wantOffset, err)
			}
			if !strings.Contains(e.Message, tt.wantMsg) {
				t.Errorf("message %q does not say %q", e.Message, tt.wantMsg)
			}
			if !strings.Contains(e.Message, tt.src[strings.Index(tt.src, "${"):]) {
				t.Errorf("message %q does not name the expression", e.Message)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "aaaaaaaaaa"+"aaaaaaaaaa"+"aaaaaaaaaa"+"aaaaaaaaaa") {
				t.Errorf("message %q carries data", err.Error())
			}
		})
	}
}

// An expression that would take 10^8 steps is stopped at the cost limit,
// not after it has run: the work done before the stop is counted by a
// function called at every innermost step, so no clock is involved.
func TestCostLimit(t *testing.T) {
	t.Parallel()
	var steps atomic.Int64
	ext, err := newEnv(t).cel.Extend(cel.Function("step",
		cel.Overload("step_int", []*cel.Type{cel.IntType}, cel.IntType,
			cel.UnaryBinding(func(v ref.Val) ref.Val {
				steps.Add(1)
				return v
			}))))
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{cel: ext}
	r := "[" + strings.Repeat("0,", 99) + "0]"
	src := "${" + r + ".map(a, " + r + ".map(b, " + r + ".map(c, " + r + ".map(d, step(a + b + c + d)))))}"
	tp := compile(t, env, src)
	_, err = tp.Eval(nil)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeEval || !strings.Contains(e.Message, "cost limit") {
		t.Fatalf("Eval error = %v, want the cost limit", err)
	}
	// Each step costs at least one unit, so no more than MaxCost of them
	// can run; the whole expression would run 10^8.
	if n := steps.Load(); n == 0 || n > MaxCost {
		t.Errorf("%d steps ran before the stop, want between 1 and %d", n, MaxCost)
	}
}

func TestCompileLimits(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	tests := []struct {
		name string
		src  string
	}{
		{name: "too long", src: "${" + strings.Repeat("1+", MaxExpressionSize) + "1}"},
		{name: "too deep", src: "${" + strings.Repeat("[", 2*MaxRecursionDepth) + strings.Repeat("]", 2*MaxRecursionDepth) + "}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := env.Compile(tt.src)
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeSyntax {
				t.Fatalf("Compile error = %.200v, want %s", err, CodeSyntax)
			}
			if e.Offset < 0 || e.Offset >= len(tt.src) {
				t.Errorf("offset %d outside the string", e.Offset)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	type want struct {
		code   string
		offset int
	}
	tests := []struct {
		name string
		src  string
		want []want
	}{
		// "${" at 10, the expression starts at 12, "&&&" at 28: CEL's
		// token error is on the third "&", at column 18 of the expression.
		{name: "syntax in the middle", src: "prefix -- ${inputs.a == 'x' &&& inputs.b} -- suffix",
			want: []want{{CodeSyntax, 12 + 18}}},
		// Line 2 of the expression starts at 2+11; the "*" is at column 2.
		{name: "syntax on second line", src: "${inputs.a +\n  * 2}", want: []want{{CodeSyntax, 2 + 11 + 2}}},
		{name: "syntax after multibyte", src: "prix €: ${'é' + }", want: []want{{CodeSyntax, len("prix €: ${'é' + ")}}},
		{name: "empty", src: "a ${} b", want: []want{{CodeSyntax, 4}}},
		{name: "blank", src: "${   }", want: []want{{CodeSyntax, 5}}},
		{name: "unterminated", src: "abc ${inputs.a", want: []want{{CodeUnterminated, 4}}},
		{name: "unterminated at end", src: "abc ${", want: []want{{CodeUnterminated, 4}}},
		{name: "unterminated by quote", src: "${'}", want: []want{{CodeUnterminated, 0}}},
		{name: "unterminated by brace", src: "${ {'a': 1}", want: []want{{CodeUnterminated, 0}}},
		{name: "unterminated by comment", src: "${ 1 // }", want: []want{{CodeUnterminated, 0}}},
		{name: "unterminated after good", src: "${inputs.a} ${inputs.b", want: []want{{CodeUnterminated, 12}}},
		{name: "undeclared", src: "x ${flow.name}", want: []want{{CodeType, 4}}},
		{name: "bad overload", src: "${1 + 'a'}", want: []want{{CodeType, 4}}},
		{name: "unknown function", src: "${inputs.a.frobnicate()}", want: []want{{CodeType, 21}}},
		{name: "several", src: "${1 +} and ${nope} and ${", want: []want{{CodeSyntax, 5}, {CodeType, 13}, {CodeUnterminated, 23}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := env.Compile(tt.src)
			if err == nil {
				t.Fatal("Compile succeeded")
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %T is not an ErrorList", err)
			}
			var got []want
			for _, e := range list {
				got = append(got, want{e.Code, e.Offset})
				if e.Message == "" {
					t.Errorf("empty message for %s", e.Code)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v\n%v", got, tt.want, err)
			}
			var one *Error
			if !errors.As(err, &one) || one != list[0] {
				t.Errorf("errors.As does not find the first *Error")
			}
		})
	}
}

func TestLabel(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	labels := map[string]ifc.Label{
		"inputs":                 ifc.TrustedFrom(ifc.SourceUser),
		"steps.a.output.x":       ifc.UntrustedFrom(ifc.WebSource("evil.example")),
		"steps.a.output.y":       ifc.TrustedFrom(ifc.ToolSource("calendar.list")),
		"steps.a.output.secret":  ifc.TrustedFrom("tool:vault").WithSecrecy("pii"),
		"steps.b.output.comment": ifc.UntrustedFrom("email:x@y.example"),
	}
	// lookup joins every label at or below p, and the label of the
	// nearest labeled ancestor: what Label's contract asks of it.
	lookup := func(p Path) ifc.Label {
		s := p.String()
		var ls []ifc.Label
		for k, l := range labels {
			if k == s || strings.HasPrefix(k, s+".") || strings.HasPrefix(s, k+".") {
				ls = append(ls, l)
			}
		}
		return ifc.Join(ls...)
	}
	untrusted := ifc.Untrusted
	trusted := ifc.Trusted
	tests := []struct {
		name      string
		src       string
		integrity ifc.Integrity
		secrecy   []string
	}{
		{name: "literal", src: "plain", integrity: trusted},
		{name: "constant expression", src: "${1 + 2}", integrity: trusted},
		{name: "only y", src: "${steps.a.output.y}", integrity: trusted},
		{name: "only y, interpolated", src: "y=${steps.a.output.y.upperAscii()}", integrity: trusted},
		{name: "only x", src: "${steps.a.output.x}", integrity: untrusted},
		{name: "x and y", src: "${steps.a.output.y + steps.a.output.x}", integrity: untrusted},
		{name: "x in another part", src: "${steps.a.output.y} ${steps.a.output.x}", integrity: untrusted},
		{name: "x only in the condition", src: "${steps.a.output.x == 'go' ? 'yes' : steps.a.output.y}", integrity: untrusted},
		{name: "x only in the unchosen branch", src: "${true ? steps.a.output.y : steps.a.output.x}", integrity: untrusted},
		{name: "x through size", src: "${size(steps.a.output.x) > 3}", integrity: untrusted},
		{name: "x through has", src: "${has(steps.a.output.x)}", integrity: untrusted},
		{name: "x as a computed key", src: "${inputs[steps.a.output.x]}", integrity: untrusted},
		{name: "x in a comprehension", src: "${[1, 2].exists(i, string(i) == steps.a.output.x)}", integrity: untrusted},
		{name: "whole step", src: "${steps.a.output}", integrity: untrusted, secrecy: []string{"pii"}},
		{name: "all steps", src: "${size(steps)}", integrity: untrusted, secrecy: []string{"pii"}},
		{name: "secret", src: "${steps.a.output.secret.size()}", integrity: trusted, secrecy: []string{"pii"}},
		{name: "inputs only", src: "${inputs.budget * 2}", integrity: trusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := compile(t, env, tt.src).Label(lookup)
			if got.Integrity() != tt.integrity || !reflect.DeepEqual(got.Secrecy(), tt.secrecy) {
				t.Errorf("Label = %v, want %v with secrecy %v", got, tt.integrity, tt.secrecy)
			}
		})
	}
	// A literal is the bottom, whatever lookup says.
	if got := compile(t, env, "x").Label(func(Path) ifc.Label { return ifc.UntrustedFrom("x") }); !got.Equal(ifc.TrustedFrom()) {
		t.Errorf("literal Label = %v, want the bottom", got)
	}
}

func TestConcurrentEval(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	tp := compile(t, env, "${steps.pick.output.flight} for ${steps.pick.output.price * 2.0}")
	const workers, rounds = 8, 200
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			v := vars()
			for range rounds {
				got, err := tp.Eval(v)
				if err != nil || got != "TP123 for 25" {
					errs <- errors.New("unexpected result")
					return
				}
				if _, err := env.Compile("${inputs.budget + 1}"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
