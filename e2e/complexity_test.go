package e2e

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// maxComplexity bounds the cyclomatic complexity of every function of the
// orchestrator (tests aside): one a reviewer can hold in mind at once.
const maxComplexity = 15

// TestOrchestratorComplexity fails on any function of orchestrator/...
// over maxComplexity, counted as gocyclo counts it: one, plus one for each
// if, for, range, case other than default, select case, && and ||.
func TestOrchestratorComplexity(t *testing.T) {
	var over []string
	var funcs int
	err := filepath.WalkDir("../orchestrator", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || strings.Contains(path, "testdata") {
			return err
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			funcs++
			if c := complexity(fn); c > maxComplexity {
				over = append(over, fmt.Sprintf("%s: %s has complexity %d", fset.Position(fn.Pos()), name(fn), c))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if funcs < 200 {
		t.Fatalf("only %d functions found under orchestrator/", funcs)
	}
	for _, o := range over {
		t.Errorf("%s (at most %d: split it into functions that each do one thing)", strings.TrimPrefix(o, "../"), maxComplexity)
	}
}

func name(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return fn.Name.Name
	}
	var b strings.Builder
	switch r := fn.Recv.List[0].Type.(type) {
	case *ast.StarExpr:
		b.WriteString("(*")
		if id, ok := r.X.(*ast.Ident); ok {
			b.WriteString(id.Name)
		}
		b.WriteString(")")
	case *ast.Ident:
		b.WriteString(r.Name)
	}
	return b.String() + "." + fn.Name.Name
}

func complexity(fn *ast.FuncDecl) int {
	c := 1
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.IfStmt, *ast.ForStmt, *ast.RangeStmt:
			c++
		case *ast.CaseClause:
			if n.List != nil {
				c++
			}
		case *ast.CommClause:
			if n.Comm != nil {
				c++
			}
		case *ast.BinaryExpr:
			if n.Op == token.LAND || n.Op == token.LOR {
				c++
			}
		}
		return true
	})
	return c
}

func TestComplexityCounts(t *testing.T) {
	src := `package p
func f(a, b bool, x int, ch chan int) {
	if a && b || !a {
	}
	for i := 0; i < x; i++ {
	}
	switch x {
	case 1, 2:
	case 3:
	default:
	}
	select {
	case <-ch:
	default:
	}
}`
	f, err := parser.ParseFile(token.NewFileSet(), "p.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	// 1 + if + && + || + for + two cases + one select case.
	if got := complexity(f.Decls[0].(*ast.FuncDecl)); got != 8 {
		t.Fatalf("complexity = %d, want 8", got)
	}
}
