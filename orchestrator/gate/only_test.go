package gate

import (
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestOnlyTheGateCallsWorkers: the one place in the orchestrator and the
// CLI that addresses a worker's tool subject (Subjects.Tool) is the
// gate's delivery; the only other use is the readiness check, which
// only asks the bus whether a worker has subscribed, and sends nothing. A new path to a
// worker that skips the decision, the record and the labels fails here.
func TestOnlyTheGateCallsWorkers(t *testing.T) {
	allowed := map[string]string{
		"orchestrator/gate/deliver.go": "",
		"orchestrator/orchestrator.go": "readyProbe",
	}
	found := map[string]bool{}
	root := filepath.Join("..", "..")
	for _, dir := range []string{"orchestrator", "cmd"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			rel = filepath.ToSlash(rel)
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "Tool" || !strings.HasSuffix(strings.ToLower(types.ExprString(sel.X)), "subjects") {
					return true
				}
				want, ok := allowed[rel]
				if ok && want != "" && (len(call.Args) < 2 || types.ExprString(call.Args[1]) != want) {
					ok = false
				}
				if !ok {
					t.Errorf("%s: %s addresses a worker's tool outside the gate", fset.Position(call.Pos()), types.ExprString(call))
				}
				found[rel] = true
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if !found["orchestrator/gate/deliver.go"] {
		t.Fatal("the gate's delivery was not found: the test looks for the wrong thing")
	}
}
