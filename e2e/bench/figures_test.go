package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// Every figure and ratio the hop group prints, the floor's included, has
// its row in docs/performance.md's table of what each figure measures
// (named with C for the number of callers; the raw baseline's as
// raw_*_C).
func TestHopFiguresDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/performance.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	start := strings.Index(text, "## What each figure measures")
	end := strings.Index(text, "## Results on this machine")
	if start < 0 || end < start {
		t.Fatal("docs/performance.md has no table of what each figure measures")
	}
	table := text[start:end]
	all := map[hopKey][]stats{}
	for _, p := range []string{"hop", "raw", "floor"} {
		for _, c := range []int{1, 16} {
			all[hopKey{p, c}] = []stats{{p50: 1, p99: 2, rate: 3, allocs: 4, bytes: 5, cpu: 6}}
		}
	}
	res := &results{}
	hopFigures(res, all)
	var names []string
	for _, f := range res.Figures {
		names = append(names, f.Name)
	}
	for n := range res.Ratios {
		names = append(names, "ratio "+n)
	}
	callers := regexp.MustCompile(`_(1|16)$`)
	floor := 0
	for _, n := range names {
		doc := callers.ReplaceAllString(n, "_C")
		if strings.Contains(n, "floor") {
			floor++
		}
		if strings.Contains(table, "`"+doc+"`") || (strings.HasPrefix(n, "raw_") && strings.Contains(table, "`raw_*_C`")) {
			continue
		}
		t.Errorf("%s (%s) is printed but not in the table of docs/performance.md", n, doc)
	}
	if floor != 2*6+2*4 {
		t.Errorf("%d floor figures and ratios printed, want %d", floor, 2*6+2*4)
	}
}
