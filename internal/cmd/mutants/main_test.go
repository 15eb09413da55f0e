package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// The threat model lists every mutant under the promise it guards, with
// the check it disables: the list a reader trusts is the list that runs.
func TestThreatModelListsEveryMutant(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	ms, err := load(filepath.Join(root, "testdata/mutants/mutants.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "docs/THREAT_MODEL.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	if want := fmt.Sprintf("(%d of them;", len(ms)); !strings.Contains(doc, want) {
		t.Errorf("docs/THREAT_MODEL.md does not say how many mutants CI runs: want %q", want)
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(doc, "\n") {
		if name, ok := strings.CutPrefix(line, "- `"); ok {
			if i := strings.Index(name, "`: "); i > 0 {
				listed[name[:i]] = true
			}
		}
	}
	for _, m := range ms {
		if !strings.Contains(doc, "- `"+m.Name+"`: "+m.Check+" (") {
			t.Errorf("docs/THREAT_MODEL.md does not list mutant %s as \"- `%s`: %s (…)\"", m.Name, m.Name, m.Check)
		}
		delete(listed, m.Name)
	}
	for name := range listed {
		if strings.Contains(name, "-") && !strings.Contains(name, " ") && !strings.Contains(name, "/") && !strings.Contains(name, ".") {
			t.Errorf("docs/THREAT_MODEL.md lists %s, which testdata/mutants/mutants.yaml does not have", name)
		}
	}
}
