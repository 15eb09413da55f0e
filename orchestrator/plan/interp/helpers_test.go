package interp

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/ifc"
	"go.starlark.net/starlark"
)

// recorder is a Host that records every call and inspection and answers
// them with outcomes the test chooses.
type recorder struct {
	calls    []Call
	inspects []Inspection
	// answer gives a call's outcome; nil completes it with {"ok": true}.
	answer func(c Call) Outcome
	// inspect gives an inspection's outcome; nil answers "yes" labelled
	// with the value's label.
	inspect func(i Inspection) Outcome
}

func (h *recorder) Call(_ context.Context, c Call) Outcome {
	h.calls = append(h.calls, c)
	if h.answer != nil {
		return h.answer(c)
	}
	return Outcome{Status: Completed, Output: map[string]any{"ok": true}, Base: ifc.TrustedFrom(ifc.ToolSource(c.Tool))}
}

func (h *recorder) Inspect(_ context.Context, i Inspection) Outcome {
	h.inspects = append(h.inspects, i)
	if h.inspect != nil {
		return h.inspect(i)
	}
	return Outcome{Status: Completed, Output: "yes", Base: i.Label}
}

// testTools are the tools the tests' programs call.
var testTools = []Tool{
	{Name: "web.fetch", Params: []string{"url"}},
	{Name: "email.send", Params: []string{"to", "subject", "body"}},
	{Name: "calendar.list"},
	{Name: "payment.charge", Params: []string{"amount", "payee"}},
}

func mustCompile(t testing.TB, src string) *Program {
	t.Helper()
	p, err := Compile("plan.star", src, testTools)
	if err != nil {
		t.Fatalf("compile: %v\n%s", err, src)
	}
	return p
}

// run compiles and runs src with inputs, and fails the test unless it
// ends with status.
func runPlan(t testing.TB, src string, h Host, inputs map[string]Input, status string) Result {
	t.Helper()
	res := mustCompile(t, src).Run(context.Background(), h, inputs, Limits{})
	if res.Status != status {
		t.Fatalf("status %s (%s), want %s\n%s", res.Status, res.Error, status, src)
	}
	return res
}

// Labels the tests use.
var (
	lUser   = ifc.TrustedFrom(ifc.SourceUser)
	lWeb    = ifc.UntrustedFrom(ifc.WebSource("evil.example"))
	lSecret = ifc.New(ifc.Trusted, []string{"pii"}, []string{"tool:crm.lookup"})
)

// flowsToPublic reports whether l is trusted and carries no secrecy.
func trustedPublic(l ifc.Label) bool {
	return l.Integrity() == ifc.Trusted && len(l.Secrecy()) == 0
}

func hasAll(got, want ifc.Label) bool { return ifc.Join(got, want).Equal(got) }

func callLabel(c Call) ifc.Label {
	l := c.PC
	for _, a := range c.ArgLabels {
		l = l.Join(a)
	}
	return l
}

func input(v any, l ifc.Label) Input { return Input{Value: v, Base: l} }

func lines(s ...string) string { return strings.Join(s, "\n") + "\n" }

func starlarkUniverse() map[string]bool {
	out := map[string]bool{}
	for k := range starlark.Universe {
		out[k] = true
	}
	return out
}

func isConstant(name string) bool { return slices.Contains(universeConstants, name) }
