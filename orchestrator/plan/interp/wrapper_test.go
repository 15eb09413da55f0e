package interp

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/ifc"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// testRun is a run's state outside a program, to call helpers directly.
func testRun() (*run, *starlark.Thread) {
	th := &starlark.Thread{}
	r := &run{ctx: context.Background(), host: &recorder{}, pc: bottom(), read: bottom(), lim: Limits{}.withDefaults(), thread: th}
	r.clock = clock{limit: time.Hour, cancel: func() {}}
	r.clock.start()
	th.SetLocal(runKey, r)
	return r, th
}

func labelledList(r *run, l ifc.Label) *labeled {
	xs := starlark.NewList([]starlark.Value{starlark.MakeInt(1), starlark.MakeInt(2)})
	xs.Freeze()
	return &labeled{v: xs, l: l, r: r}
}

// TestHelpersRaisePC: each helper that decides the program's path raises
// the program counter label by its operand's label, alone (without the
// value's own methods, which would raise it too: see
// TestWrappersRaisePC).
func TestHelpersRaisePC(t *testing.T) {
	cases := []struct {
		name string
		fn   builtinFn
		args func(r *run) starlark.Tuple
	}{
		{"iter", opIter, func(r *run) starlark.Tuple { return starlark.Tuple{labelledList(r, lWeb)} }},
		{"truth", opTruth, func(r *run) starlark.Tuple { return starlark.Tuple{labelledList(r, lWeb)} }},
		{"index key", opIndex, func(r *run) starlark.Tuple {
			return starlark.Tuple{starlark.Tuple{starlark.MakeInt(1), starlark.MakeInt(2)}, &labeled{v: starlark.MakeInt(0), l: lWeb, r: r}}
		}},
		{"and", opAnd, func(r *run) starlark.Tuple {
			return starlark.Tuple{&labeled{v: starlark.False, l: lWeb, r: r}, starlark.None}
		}},
	}
	for _, c := range cases {
		r, th := testRun()
		v := plainOf(r, c.args(r))
		if _, err := c.fn(th, nil, v, nil); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !r.pc.Equal(lWeb) {
			t.Errorf("%s: pc %v, want %v", c.name, r.pc, lWeb)
		}
	}
}

// plainOf hides the labelled values' own Truth, Iterate and Len from the
// helper: each labelled argument is passed as a value whose methods raise
// nothing, so only the helper's own check can raise the pc.
func plainOf(r *run, args starlark.Tuple) starlark.Tuple {
	out := make(starlark.Tuple, len(args))
	for i, a := range args {
		if x, ok := a.(*labeled); ok {
			out[i] = &labeled{v: x.v, l: x.l, r: &run{pc: bottom(), read: bottom()}}
			continue
		}
		out[i] = a
	}
	return out
}

// TestWrappersRaisePC: where Starlark itself takes a labelled value's
// truth, hash, length, order or elements, the value raises the program
// counter label by its label.
func TestWrappersRaisePC(t *testing.T) {
	ops := map[string]func(x *labeled){
		"truth":   func(x *labeled) { x.Truth() },
		"len":     func(x *labeled) { x.Len() },
		"iterate": func(x *labeled) { it := x.Iterate(); it.Done() },
		"hash":    func(x *labeled) { _, _ = (&labeled{v: starlark.String("k"), l: x.l, r: x.r}).Hash() },
		"compare": func(x *labeled) {
			_, _ = x.CompareSameType(syntax.EQL, &labeled{v: x.v, l: bottom(), r: x.r}, 1)
		},
	}
	for name, op := range ops {
		r, _ := testRun()
		op(labelledList(r, lWeb))
		if !r.pc.Equal(lWeb) {
			t.Errorf("%s: pc %v, want %v", name, r.pc, lWeb)
		}
	}
	r, _ := testRun()
	it := labelledList(r, lSecret).Iterate()
	var e starlark.Value
	for it.Next(&e) {
		if !labelOf(e).Equal(lSecret) {
			t.Errorf("element %v labelled %v", e, labelOf(e))
		}
	}
}
