package interp

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/ifc"
)

// TestCallsAreNumberedInOrder: calls and inspects are numbered from 1 in
// the order the program makes them, with JSON-shaped arguments.
func TestCallsAreNumberedInOrder(t *testing.T) {
	h := &recorder{}
	res := runPlan(t, lines(
		`a = web.fetch(url="u1")`,
		`b = inspect(a, "is it ok?", {"type": "boolean"})`,
		`c = payment.charge(amount=1.5, payee={"name": "shop", "ids": [1, None, True]})`,
	), h, nil, Completed)
	if res.Calls != 3 || len(h.calls) != 2 || len(h.inspects) != 1 {
		t.Fatalf("%+v", res)
	}
	if h.calls[0].N != 1 || h.inspects[0].N != 2 || h.calls[1].N != 3 {
		t.Fatalf("numbers %d %d %d", h.calls[0].N, h.inspects[0].N, h.calls[1].N)
	}
	want := map[string]any{"amount": 1.5, "payee": map[string]any{"name": "shop", "ids": []any{int64(1), nil, true}}}
	if !reflect.DeepEqual(h.calls[1].Args, want) {
		t.Fatalf("args %#v", h.calls[1].Args)
	}
	if h.inspects[0].Question != "is it ok?" || h.inspects[0].Schema["type"] != "boolean" || !reflect.DeepEqual(h.inspects[0].Value, map[string]any{"ok": true}) {
		t.Fatalf("inspection %+v", h.inspects[0])
	}
}

// TestDeterministic: the same program, inputs and outcomes make the same
// calls in the same order.
func TestDeterministic(t *testing.T) {
	src := lines(
		`d = {"z": 1, "a": 2, "m": 3}`,
		`for k in d:`,
		`    web.fetch(url=k)`,
		`out = calendar.list()`,
		`for k, v in out.items():`,
		`    email.send(to=k, subject=str(v), body=str(d))`,
	)
	run := func() []Call {
		h := &recorder{answer: func(c Call) Outcome {
			return Outcome{Status: Completed, Output: map[string]any{"q": int64(1), "b": int64(2), "x": int64(3)}, Base: lUser}
		}}
		runPlan(t, src, h, nil, Completed)
		return h.calls
	}
	a, b := run(), run()
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("%+v\n%+v", a, b)
	}
	if a[0].Args["url"] != "z" || a[4].Args["to"] != "b" {
		t.Fatalf("order: %+v", a)
	}
}

// TestDeniedCallEndsTheProgram: a denied or failed call ends the program
// with an error labelled with the outcome's label, the arguments' and the
// program counter label; a held one ends it held; no later call is made.
func TestDeniedCallEndsTheProgram(t *testing.T) {
	denial := ifc.New(ifc.Trusted, []string{"finance"}, []string{"policy"})
	src := lines(
		`page = web.fetch(url="u")`,
		`if page["n"] > 1:`,
		`    payment.charge(amount=inputs["amount"], payee="shop")`,
		`calendar.list()`,
	)
	for _, status := range []string{Denied, Failed} {
		h := attacker(evilPage)
		next := h.answer
		h.answer = func(c Call) Outcome {
			if c.Tool == "payment.charge" {
				return Outcome{Status: status, Error: "no rule allows it", Label: denial}
			}
			return next(c)
		}
		res := runPlan(t, src, h, map[string]Input{"amount": input(int64(5), lSecret)}, Failed)
		if len(h.calls) != 2 || res.Line != 3 || !strings.Contains(res.Error, "payment.charge: "+status+": no rule allows it") {
			t.Fatalf("%+v", res)
		}
		if !hasAll(res.ErrorLabel, ifc.Join(denial, lSecret, lWeb)) {
			t.Fatalf("error label %v", res.ErrorLabel)
		}
	}
	h := &recorder{answer: func(c Call) Outcome { return Outcome{Status: Held} }}
	res := runPlan(t, src, h, nil, Held)
	if len(h.calls) != 1 || res.Calls != 1 || res.Error != "" {
		t.Fatalf("%+v", res)
	}
	stop := &recorder{answer: func(c Call) Outcome { return Outcome{Status: Completed, Stop: true} }}
	runPlan(t, src, stop, nil, Held)
}

// TestInspectLabels: an inspection carries the value's label and the
// program counter label; its answer is labelled as the host says.
func TestInspectLabels(t *testing.T) {
	endorsed := ifc.TrustedFrom("endorsed:rule")
	h := attacker(evilPage)
	h.inspect = func(i Inspection) Outcome {
		return Outcome{Status: Completed, Output: map[string]any{"ok": true, "who": "x"}, Base: endorsed, Fields: map[string]ifc.Label{"who": i.Label}}
	}
	runPlan(t, lines(
		`page = web.fetch(url="u")`,
		`a = inspect(page["text"], "is it an invoice?", {"type": "object"})`,
		`email.send(to="me", subject=str(a["ok"]), body=a["who"])`,
	), h, nil, Completed)
	if !hasAll(h.inspects[0].Label, lWeb) || !trustedPublic(h.inspects[0].PC) {
		t.Fatalf("%+v", h.inspects[0])
	}
	send := h.calls[1]
	if !send.ArgLabels["subject"].Equal(endorsed) || !hasAll(send.ArgLabels["body"], lWeb) {
		t.Fatalf("%+v", send)
	}
}

// TestOutputLabel: the result is labelled with its own label joined with
// the program counter label at the end.
func TestOutputLabel(t *testing.T) {
	res := runPlan(t, lines(
		`x = inputs["x"]`,
		`if inputs["c"]:`,
		`    pass`,
		`result = {"x": x}`,
	), &recorder{}, map[string]Input{"x": input("v", lSecret), "c": input(true, lWeb)}, Completed)
	if !res.Base.Equal(ifc.Join(lSecret, lWeb)) || !res.PC.Equal(lWeb) {
		t.Fatalf("%v %v", res.Base, res.PC)
	}
	none := runPlan(t, "x = 1\n", &recorder{}, nil, Completed)
	if none.Output != nil || !none.Base.Equal(bottom()) {
		t.Fatalf("%+v", none)
	}
	bad := runPlan(t, "result = lambda: 1\n", &recorder{}, nil, Failed)
	if !strings.Contains(bad.Error, "result: a value of type function has no JSON form") {
		t.Fatalf("%+v", bad)
	}
}

// panicky panics in a call.
type panicky struct{ recorder }

func (p *panicky) Call(context.Context, Call) Outcome { panic("boom") }

// TestPanicsDoNotEscape: a panic under Run ends the run as failed.
func TestPanicsDoNotEscape(t *testing.T) {
	res := mustCompile(t, "web.fetch(url='u')\n").Run(t.Context(), &panicky{}, nil, Limits{})
	if res.Status != Failed || !strings.Contains(res.Error, "internal error") {
		t.Fatalf("%+v", res)
	}
}

// TestInterruptedRunIsHeld: a run whose context ends stops as held, to be
// resumed from its record.
func TestInterruptedRunIsHeld(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	h := &recorder{answer: func(c Call) Outcome {
		cancel()
		return Outcome{Status: Completed, Output: map[string]any{}, Base: lUser}
	}}
	res := mustCompile(t, "web.fetch(url='u')\nfor i in range(1 << 40):\n    pass\n").Run(ctx, h, nil, Limits{Steps: 1 << 62})
	if res.Status != Held {
		t.Fatalf("%+v", res)
	}
}

// TestToolArgumentsChecked: a tool called through getattr is still held
// to keyword arguments and its parameters.
func TestToolArgumentsChecked(t *testing.T) {
	for _, src := range []string{"f = getattr(web, 'fetch')\nf('u')\n", "f = getattr(web, 'fetch')\nf(uri='u')\n", "getattr(web, 'nope')\n"} {
		res := runPlan(t, src, &recorder{}, nil, Failed)
		if res.Line != 2 && res.Line != 1 {
			t.Errorf("%q: %+v", src, res)
		}
	}
}

// TestNumbersAsTheProgramSeesThem: a tool's integral numbers, decoded
// from JSON as float64, reach calls and the result as int64, as the
// program saw them.
func TestNumbersAsTheProgramSeesThem(t *testing.T) {
	h := &recorder{answer: func(c Call) Outcome {
		return Outcome{Status: Completed, Output: map[string]any{"n": float64(3), "f": 1.5, "xs": []any{float64(1)}}, Base: lUser}
	}}
	res := runPlan(t, "o = calendar.list()\nemail.send(to='a', subject=o, body=o['n'] + 1)\nresult = o\n", h, nil, Completed)
	want := map[string]any{"n": int64(3), "f": 1.5, "xs": []any{int64(1)}}
	if !reflect.DeepEqual(h.calls[1].Args["subject"], want) || h.calls[1].Args["body"] != int64(4) || !reflect.DeepEqual(res.Output, want) {
		t.Fatalf("%#v %#v", h.calls[1].Args, res.Output)
	}
}

// TestConcurrentRuns: one compiled program runs in several goroutines at
// once, each run with its own state (run under -race).
func TestConcurrentRuns(t *testing.T) {
	p := mustCompile(t, benchPlan)
	done := make(chan Result)
	for range 4 {
		go func() {
			done <- p.Run(context.Background(), &noop{out: benchOutcome()}, map[string]Input{
				"q": input("rome", lUser), "budget": input(int64(200), lUser), "to": input("me@example.com", lUser)}, Limits{})
		}()
	}
	var first Result
	for i := range 4 {
		res := <-done
		if res.Status != Completed {
			t.Fatalf("%+v", res)
		}
		if i == 0 {
			first = res
		} else if !reflect.DeepEqual(res.Output, first.Output) || !res.Base.Equal(first.Base) {
			t.Fatalf("runs differ: %+v %+v", res, first)
		}
	}
}
