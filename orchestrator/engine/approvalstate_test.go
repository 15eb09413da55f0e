package engine

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"strings"
	"testing"
)

// TestApprovalStatusHasOneWriter holds every change of an approval's
// status to approvalTransitions: no code of the package sets a status
// (an Approval... constant) but advance, and a new approval can only be
// made pending.
func TestApprovalStatusHasOneWriter(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	isStatus := func(e ast.Expr) bool {
		id, ok := e.(*ast.Ident)
		return ok && strings.HasPrefix(id.Name, "Approval") && id.Name != "Approval"
	}
	var found []string
	for _, f := range pkgs["engine"].Files {
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
						if isStatus(n.Rhs[i]) || fn.Name.Name == "advance" {
							found = append(found, fn.Name.Name+" at "+fset.Position(n.Pos()).String())
						}
					}
				case *ast.KeyValueExpr:
					if k, ok := n.Key.(*ast.Ident); ok && k.Name == "Status" && isStatus(n.Value) && n.Value.(*ast.Ident).Name != "ApprovalPending" {
						found = append(found, fn.Name.Name+" makes one at "+fset.Position(n.Pos()).String())
					}
				}
				return true
			})
		}
	}
	if len(found) != 1 || !strings.HasPrefix(found[0], "advance at") {
		t.Fatalf("code that sets an approval's status: %v; want advance alone", found)
	}
}

// TestApprovalTransitions pins the life of a held call.
func TestApprovalTransitions(t *testing.T) {
	states := []string{ApprovalPending, ApprovalApproved, ApprovalDenied, ApprovalUsed, ApprovalSuperseded, ApprovalCancelled}
	events := []string{approvalApprove, approvalDeny, approvalUse, approvalSupersede, approvalCancel}
	want := map[string]string{
		ApprovalPending + " " + approvalApprove:   ApprovalApproved,
		ApprovalPending + " " + approvalDeny:      ApprovalDenied,
		ApprovalPending + " " + approvalSupersede: ApprovalSuperseded,
		ApprovalPending + " " + approvalCancel:    ApprovalCancelled,
		ApprovalApproved + " " + approvalUse:      ApprovalUsed,
		ApprovalApproved + " " + approvalCancel:   ApprovalCancelled,
	}
	for _, s := range states {
		for _, ev := range events {
			a := &Approval{ID: "a1", Status: s}
			err := a.advance(ev)
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
