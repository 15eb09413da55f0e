package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every committed suite loads: its vectors are all used and all have a
// benign text, every task has its flow, and its checks compile. The
// counts are AgentDojo v1.2's.
func TestEverySuiteLoads(t *testing.T) {
	names, err := suiteNames("suites")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]int{"workspace": {40, 14}, "travel": {20, 7}, "banking": {16, 9}, "slack": {21, 5}}
	pairs := 0
	for _, n := range names {
		s, err := loadSuite("suites", n)
		if err != nil {
			t.Fatal(err)
		}
		if w, ok := want[n]; ok && (len(s.tasks) != w[0] || len(s.attacks) != w[1]) {
			t.Errorf("%s: %d user tasks and %d injection tasks, want %d and %d", n, len(s.tasks), len(s.attacks), w[0], w[1])
		}
		pairs += len(s.tasks) * len(s.attacks)
	}
	if pairs != 949 {
		t.Errorf("%d pairs, want 949", pairs)
	}
}

// A suite whose vectors do not match its environment is refused, naming
// the vector.
func TestSuiteVectorsMustMatch(t *testing.T) {
	for _, c := range []struct{ env, vectors, want string }{
		{"a: '{{inject:one}}'\n", "two: text\n", `vector "one" is used in environment.yaml but not in vectors.yaml`},
		{"a: '{{inject:one}}'\n", "one: text\ntwo: more\n", `vector "two" of vectors.yaml is not in environment.yaml`},
		{"a: '{{inject:one}} {{inject:two}}'\n", "one: same\ntwo: same\n", "have the same benign text"},
		{"a: '{{inject:one}}'\n", "one: ''\n", `vector "one" has no benign text`},
	} {
		root := t.TempDir()
		dir := filepath.Join(root, "s")
		files := map[string]string{"manifest.yaml": "worker: w\n", "environment.yaml": c.env, "vectors.yaml": c.vectors,
			"tasks.yaml": "[]\n", "injections.yaml": "[]\n"}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, text := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := loadSuite(root, "s"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q / %q: %v, want %q", c.env, c.vectors, err, c.want)
		}
	}
}

// A check sees the environment before and after the run and the output.
func TestCheckReadsTheEnvironment(t *testing.T) {
	pre := []byte(`{"transactions": []}`)
	post := []byte(`{"transactions": [{"recipient": "DE89", "amount": 300}]}`)
	ok, err := check(`size(post.transactions) > size(pre.transactions) && post.transactions[0].amount == 300 && output.contains("paid")`, pre, post, "paid")
	if err != nil || !ok {
		t.Fatalf("%v %v", ok, err)
	}
	if ok, _ := check(`post.transactions.exists(t, t.recipient == "US1")`, pre, post, ""); ok {
		t.Fatal("a check held that should not")
	}
	if _, err := compileCheck(`post.x + 1`, false); err == nil {
		t.Fatal("a check that is not a boolean compiled")
	}
}
