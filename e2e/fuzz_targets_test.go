package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestMakeFuzzRunsEveryTarget holds `make fuzz` to the fuzz targets the
// tree has: each Fuzz function is run there, in its own package, and each
// line there names a target that exists. (Their seeds run with every go
// test either way.)
func TestMakeFuzzRunsEveryTarget(t *testing.T) {
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`-fuzz '?\^?(Fuzz\w+)\$?\$?'? .*\./(\S+)`)
	inMake := map[string]bool{}
	for _, m := range line.FindAllStringSubmatch(string(mk), -1) {
		inMake[m[2]+" "+m[1]] = true
	}
	decl := regexp.MustCompile(`(?m)^func (Fuzz\w+)\(`)
	inTree := map[string]bool{}
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			inTree[filepath.ToSlash(strings.TrimPrefix(filepath.Dir(path), "../"))+" "+m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(inTree) < 10 {
		t.Fatalf("only %d fuzz targets found", len(inTree))
	}
	for k := range inTree {
		if !inMake[k] {
			t.Errorf("make fuzz does not run %s", k)
		}
	}
	for k := range inMake {
		if !inTree[k] {
			t.Errorf("make fuzz runs %s, which does not exist", k)
		}
	}
}
