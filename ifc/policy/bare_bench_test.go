package policy

import (
	"testing"

	"cel.dev/cel-go/cel"
)

// BenchmarkBareCEL is the raw baseline for BenchmarkDecide: one compiled
// CEL program of the shape of a policy rule, evaluated on prepared map
// input, with nothing of Sluice around it.
func BenchmarkBareCEL(b *testing.B) {
	env, err := cel.NewEnv(cel.Variable("label", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("tool", cel.MapType(cel.StringType, cel.DynType)))
	if err != nil {
		b.Fatal(err)
	}
	ast, iss := env.Compile(`tool.privileged && label.integrity == "untrusted"`)
	if iss.Err() != nil {
		b.Fatal(iss.Err())
	}
	prg, err := env.Program(ast)
	if err != nil {
		b.Fatal(err)
	}
	vars := map[string]any{
		"label": map[string]any{"integrity": "untrusted", "sources": []string{"user", "web:flights.example"}},
		"tool":  map[string]any{"name": "payment.charge", "privileged": true},
	}
	b.ReportAllocs()
	for b.Loop() {
		out, _, err := prg.Eval(vars)
		if err != nil || out.Value() != true {
			b.Fatal(out, err)
		}
	}
}
