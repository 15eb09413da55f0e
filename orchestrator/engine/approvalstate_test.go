package engine

import (
	"go/ast"
	"go/token"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/gosrc"
)

// TestEngineSetsNoApprovalStatus holds the engine to approval.Advance: no
// code of the package assigns an approval's status (one of the Approval…
// states) itself, and a new approval is made only pending.
func TestEngineSetsNoApprovalStatus(t *testing.T) {
	fset := token.NewFileSet()
	files, err := gosrc.Parse(fset, ".")
	if err != nil {
		t.Fatal(err)
	}
	isStatus := func(e ast.Expr) bool {
		switch e := e.(type) {
		case *ast.Ident:
			return strings.HasPrefix(e.Name, "Approval") && e.Name != "Approval"
		case *ast.SelectorExpr:
			x, ok := e.X.(*ast.Ident)
			return ok && x.Name == "approval"
		}
		return false
	}
	var found []string
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.AssignStmt:
				for i, lhs := range n.Lhs {
					if sel, ok := lhs.(*ast.SelectorExpr); ok && sel.Sel.Name == "Status" && i < len(n.Rhs) && isStatus(n.Rhs[i]) {
						found = append(found, fset.Position(n.Pos()).String())
					}
				}
			case *ast.KeyValueExpr:
				if k, ok := n.Key.(*ast.Ident); ok && k.Name == "Status" && isStatus(n.Value) {
					if id, ok := n.Value.(*ast.Ident); !ok || id.Name != "ApprovalPending" {
						found = append(found, fset.Position(n.Pos()).String())
					}
				}
			}
			return true
		})
	}
	if len(found) > 0 {
		t.Fatalf("the engine sets an approval's status itself at %v; use approval.Advance", found)
	}
}
