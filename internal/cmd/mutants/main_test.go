package main

import (
	"path/filepath"
	"testing"
)

// Every mutant of the list applies to the code as it is: its snippet is in
// its file exactly once. make test runs this, so that the list moves with
// the code; make mutants runs the mutants themselves.
func TestEveryMutantApplies(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	ms, err := load(filepath.Join(root, "testdata/mutants/mutants.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 40 {
		t.Errorf("%d mutants, want at least 40", len(ms))
	}
	for _, m := range ms {
		if err := m.check(root); err != nil {
			t.Errorf("%s: %v", m.Name, err)
		}
	}
}
