package flow

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/ifc/expr"
	"github.com/sluicehq/sluice/schemas"
)

// FuzzLoad feeds the loader arbitrary files: it must not panic or hang, and
// every diagnostic must point inside the file. Seeds are the shipped
// examples and the error cases of TestLoadErrors.
func FuzzLoad(f *testing.F) {
	examples, _ := filepath.Glob("../../examples/*/*.yaml")
	for _, p := range examples {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(good))
	for _, tc := range shapeCases {
		f.Add([]byte(tc.src))
	}
	f.Add([]byte("name: f\nsteps:\n  - id: a\n    call: web.fetch\n    for_each: \"${[1,2]}\"\n    with: {url: \"${'http://x/' + string(item)}\"}\n"))
	env, err := expr.NewEnv()
	if err != nil {
		f.Fatal(err)
	}
	cat := catalog(f)
	f.Fuzz(func(t *testing.T, src []byte) {
		_, err := Load("f.yaml", src, cat, env)
		if err == nil {
			return
		}
		ds, ok := schemas.AsDiagnostics(err)
		if !ok {
			t.Fatalf("error without a position: %v", err)
		}
		text := strings.ReplaceAll(string(src), "\r\n", "\n")
		lines := strings.Split(strings.ReplaceAll(text, "\r", "\n"), "\n")
		for _, d := range ds {
			if d.File != "f.yaml" || d.Line < 1 || d.Line > len(lines)+1 || d.Col < 1 {
				t.Fatalf("diagnostic outside the file: %+v", d)
			}
		}
	})
}
