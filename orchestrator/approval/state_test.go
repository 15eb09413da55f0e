package approval

import (
	"go/ast"
	"go/token"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/gosrc"
)

// TestStatusHasOneWriter holds every change of an approval's status to
// the transitions table: no code of the package sets a status but
// Advance.
func TestStatusHasOneWriter(t *testing.T) {
	fset := token.NewFileSet()
	files, err := gosrc.Parse(fset, ".")
	if err != nil {
		t.Fatal(err)
	}
	isStatus := func(e ast.Expr) bool {
		id, ok := e.(*ast.Ident)
		if !ok {
			return false
		}
		switch id.Name {
		case "Pending", "Approved", "Denied", "Used", "Superseded", "Cancelled":
			return true
		}
		return false
	}
	var found []string
	for _, f := range files {
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.AssignStmt:
					for i, lhs := range n.Lhs {
						sel, ok := lhs.(*ast.SelectorExpr)
						if !ok || sel.Sel.Name != "Status" || i >= len(n.Rhs) {
							continue
						}
						if isStatus(n.Rhs[i]) || fn.Name.Name == "Advance" {
							found = append(found, fn.Name.Name+" at "+fset.Position(n.Pos()).String())
						}
					}
				case *ast.KeyValueExpr:
					if k, ok := n.Key.(*ast.Ident); ok && k.Name == "Status" && isStatus(n.Value) && n.Value.(*ast.Ident).Name != "Pending" {
						found = append(found, fn.Name.Name+" makes one at "+fset.Position(n.Pos()).String())
					}
				}
				return true
			})
		}
	}
	if len(found) != 1 || !strings.HasPrefix(found[0], "Advance at") {
		t.Fatalf("code that sets an approval's status: %v; want Advance alone", found)
	}
}

// TestApprovalTransitions pins the life of a held call.
func TestTransitions(t *testing.T) {
	states := []string{Pending, Approved, Denied, Used, Superseded, Cancelled}
	events := []string{Approve, Deny, Use, Supersede, Cancel}
	want := map[string]string{
		Pending + " " + Approve:   Approved,
		Pending + " " + Deny:      Denied,
		Pending + " " + Supersede: Superseded,
		Pending + " " + Cancel:    Cancelled,
		Approved + " " + Use:      Used,
		Approved + " " + Cancel:   Cancelled,
	}
	for _, s := range states {
		for _, ev := range events {
			a := &Approval{ID: "a1", Status: s}
			err := a.Advance(ev)
			next, allowed := want[s+" "+ev]
			switch {
			case allowed && (err != nil || a.Status != next):
				t.Errorf("%s, %s: got %s, %v; want %s", s, ev, a.Status, err, next)
			case !allowed && (err == nil || a.Status != s):
				t.Errorf("%s, %s: went to %s; want refused", s, ev, a.Status)
			}
		}
	}
}
