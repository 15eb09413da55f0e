package agent

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"strings"
	"testing"
)

func TestNarrowSchema(t *testing.T) {
	for _, src := range []string{`{"type":"boolean"}`, `{"type":"string","enum":["a","b"]}`,
		`{"type":"number","minimum":0,"maximum":10}`, `{"type":"string","format":"date"}`} {
		var s map[string]any
		_ = json.Unmarshal([]byte(src), &s)
		if p := NarrowSchema(s); p != "" {
			t.Errorf("%s refused: %s", src, p)
		}
	}
	for _, src := range []string{`{"type":"string"}`, `{"type":"object"}`, `{"type":"number","minimum":0}`,
		`{"type":"boolean","pattern":"x"}`, `{"type":"string","enum":[1]}`, `{}`} {
		var s map[string]any
		_ = json.Unmarshal([]byte(src), &s)
		if p := NarrowSchema(s); p == "" {
			t.Errorf("%s accepted", src)
		}
	}
}

// Everything a model is told enters its conversation through tell: no
// other function of the package writes the conversation's messages (by
// assignment, append, index or a composite literal), so a reviewer who
// reads tell, and what its callers pass, knows every path.
func TestConversationHasOneWriter(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	writers := map[string]int{}
	for _, f := range pkgs["agent"].Files {
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.AssignStmt:
					for _, lhs := range n.Lhs {
						if writesMsgs(lhs) {
							writers[fn.Name.Name]++
						}
					}
				case *ast.CompositeLit:
					for _, e := range n.Elts {
						if kv, ok := e.(*ast.KeyValueExpr); ok {
							if id, ok := kv.Key.(*ast.Ident); ok && id.Name == "msgs" {
								writers[fn.Name.Name]++
							}
						}
					}
				case *ast.UnaryExpr:
					if n.Op == token.AND && writesMsgs(n.X) {
						writers[fn.Name.Name]++ // a pointer to them
					}
				}
				return true
			})
		}
	}
	if len(writers) != 1 || writers["tell"] == 0 {
		t.Fatalf("functions that write a conversation's messages: %v; want tell alone", writers)
	}
}

// writesMsgs reports whether e is x.msgs or an element of it.
func writesMsgs(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.SelectorExpr:
		return e.Sel.Name == "msgs"
	case *ast.IndexExpr:
		return writesMsgs(e.X)
	case *ast.SliceExpr:
		return writesMsgs(e.X)
	case *ast.ParenExpr:
		return writesMsgs(e.X)
	}
	return false
}
