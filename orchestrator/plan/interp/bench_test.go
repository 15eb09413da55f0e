package interp

import (
	"context"
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/ifc"
)

// noop answers every call at once: the benchmark measures the interpreter
// alone.
type noop struct{ out Outcome }

func (h *noop) Call(context.Context, Call) Outcome { return h.out }
func (h *noop) Inspect(context.Context, Inspection) Outcome {
	return Outcome{Status: Completed, Output: true, Base: lWeb}
}

// benchPlan is a typical plan: a search, a loop over 20 records with
// string formatting and a condition, an inspect, two more calls.
const benchPlan = `
page = web.fetch(url="https://search.example/?q=" + inputs["q"])
lines = []
total = 0
for item in page["items"]:
    if item["price"] <= inputs["budget"]:
        lines = lines + ["%s: %d EUR (%s)" % (item["name"], item["price"], item["when"].upper())]
        total += item["price"]
cheap = sorted([i for i in page["items"] if i["price"] < 100], key=lambda i: i["price"])
ok = inspect(page["items"][0]["name"], "is this a flight?", {"type": "boolean"})
if ok and len(cheap) > 0:
    payment.charge(amount=cheap[0]["price"], payee=cheap[0]["name"])
email.send(to=inputs["to"], subject="{} offers".format(len(lines)), body="\n".join(lines))
result = {"offers": lines, "total": total}
`

func benchOutcome() Outcome {
	var items []any
	fields := map[string]ifc.Label{}
	for i := range 20 {
		items = append(items, map[string]any{"name": fmt.Sprintf("flight %d", i), "price": int64(50 + 10*i), "when": "monday"})
		fields[fmt.Sprintf("items.%d.name", i)] = lWeb
	}
	return Outcome{Status: Completed, Output: map[string]any{"items": items}, Base: ifc.TrustedFrom("web:search.example"), Fields: fields}
}

// BenchmarkRun runs a typical plan on a host that answers at once; the
// target is that interpreting a plan adds at most 1 ms to a run.
func BenchmarkRun(b *testing.B) {
	p := mustCompile(b, benchPlan)
	h := &noop{out: benchOutcome()}
	in := map[string]Input{"q": input("rome", lUser), "budget": input(int64(200), lUser), "to": input("me@example.com", lUser)}
	b.ReportAllocs()
	for b.Loop() {
		if res := p.Run(context.Background(), h, in, Limits{}); res.Status != Completed {
			b.Fatalf("%+v", res)
		}
	}
}

// BenchmarkCompile compiles the typical plan.
func BenchmarkCompile(b *testing.B) {
	for b.Loop() {
		mustCompile(b, benchPlan)
	}
}
