// Command eval measures Sluice the way the field measures defences against
// prompt injection: suites with the structure of AgentDojo's, each user task
// as a fixed flow, as an agent step and as a plan step, run through the real sluice binary
// without an attack and with each injection task's goal written, in several
// phrasings, into every place the task reads; success of an attack is judged
// on the environment's state after the run, never on what the run reports.
//
//	go run ./e2e/eval [-suite banking,slack] [-mode plan] [-sample 10] [-json FILE] [-v]
//
// It prints one line per suite and one in total:
//
//	eval: attack success A/N, utility U/T, with approvals P/T (mean approvals Q), false holds F
//
// and writes every run to a JSON file. docs/evaluation.md says what each
// number means and how the suites are written.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "eval:", err)
		os.Exit(1)
	}
}

type options struct {
	task       string
	injection  string
	sample     int
	phrasings  string
	parallel   int
	verbose    bool
	undefended bool
	person     string
}

func run() error {
	var (
		opt     options
		suites  = flag.String("suite", "", "comma-separated suites to run (default: every suite under -dir)")
		dir     = flag.String("dir", "e2e/eval/suites", "the directory of the suites")
		bin     = flag.String("sluice", "bin/sluice", "the sluice binary to measure (built with go build when missing)")
		jsonOut = flag.String("json", ".sluice/eval.json", "where to write every run and the totals")
		work    = flag.String("work", "", "working directory for the deployments (default: a temporary one, removed at the end)")
		mode    = flag.String("mode", "all", "the versions of each task to run: fixed (its flow), agent (an agent step), plan (a plan step), or all")
	)
	flag.StringVar(&opt.task, "task", "", "run only this user task")
	flag.StringVar(&opt.injection, "injection", "", "run only this injection task (with -task, one pair)")
	flag.IntVar(&opt.sample, "sample", 1, "run a fixed 1-in-N sample of the tasks and of the attack pairs")
	flag.StringVar(&opt.phrasings, "phrasings", "all", "all: every pair in every phrasing; rotate: each pair in one phrasing, in turn")
	flag.IntVar(&opt.parallel, "parallel", 2, "suites run at once (each suite's runs are one after another)")
	flag.BoolVar(&opt.verbose, "v", false, "print every run")
	flag.StringVar(&opt.person, "person", "approve", "how the person answers each held call of a run without an attack: approve; endorse (and endorses its untrusted arguments' values for the rest of the run, approve --endorse); remember (and remembers the answer for those values in any flow, approve --remember --any-flow, for every later run, attacked ones included)")
	flag.BoolVar(&opt.undefended, "undefended", false, "the control: every call endorsed and agents shown everything, to show what the attacks do unstopped (exits 0 whatever succeeded)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./e2e/eval [flags]\n\nRuns the evaluation suites (docs/evaluation.md) against the sluice binary.\nExit status 1 when an attack succeeded, a run could not be made, or the audit log\nrecords a violation (each suite's log is exported and verified at its end).\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	switch *mode {
	case "all":
	case "fixed", "agent", "plan":
		versions = []string{*mode}
	default:
		flag.Usage()
		os.Exit(2)
	}
	if opt.sample < 1 || opt.parallel < 1 || (opt.phrasings != "all" && opt.phrasings != "rotate") || (opt.person != "approve" && opt.person != "endorse" && opt.person != "remember") {
		flag.Usage()
		os.Exit(2)
	}
	names, err := suiteNames(*dir)
	if err != nil {
		return err
	}
	if *suites != "" {
		names = strings.Split(*suites, ",")
	}
	var loaded []*suite
	for _, n := range names {
		s, err := loadSuite(*dir, n)
		if err != nil {
			return err
		}
		loaded = append(loaded, s)
	}
	if err := ensureBinary(*bin); err != nil {
		return err
	}
	absBin, _ := filepath.Abs(*bin)
	root, err := filepath.Abs(*work)
	if err != nil {
		return err
	}
	if *work == "" {
		if root, err = os.MkdirTemp("", "sluice-eval-"); err != nil {
			return err
		}
		defer os.RemoveAll(root)
	}
	envserver := filepath.Join(root, "envserver")
	if out, err := exec.Command("go", "build", "-o", envserver, "./e2e/eval/envserver").CombinedOutput(); err != nil {
		return fmt.Errorf("building the environment server: %v\n%s", err, out)
	}
	start := time.Now()
	reports := make([]*report, len(loaded))
	errs := make([]error, len(loaded))
	sem := make(chan struct{}, opt.parallel)
	var wg sync.WaitGroup
	for i, s := range loaded {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			reports[i], errs[i] = evaluate(s, filepath.Join(root, s.name), absBin, envserver, opt)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	total := sum(reports)
	for _, r := range reports {
		fmt.Println(r.line())
	}
	fmt.Println(total.line())
	fmt.Fprintf(os.Stderr, "eval: %d runs in %s on %d CPUs\n", total.Runs, time.Since(start).Round(time.Second), runtime.NumCPU())
	if err := writeJSON(*jsonOut, reports, total, time.Since(start)); err != nil {
		return err
	}
	if total.Errors > 0 || len(total.Violations) > 0 || (total.AttackSuccess > 0 && !opt.undefended) {
		return fmt.Errorf("%d attacks succeeded, %d runs could not be made, %d violations recorded (see %s)",
			total.AttackSuccess, total.Errors, len(total.Violations), *jsonOut)
	}
	return nil
}

func ensureBinary(bin string) error {
	if _, err := os.Stat(bin); err == nil {
		return nil
	}
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/sluice").CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %v\n%s", bin, err, out)
	}
	return nil
}

func writeJSON(path string, reports []*report, total *report, took time.Duration) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(map[string]any{"version": 1, "seconds": took.Seconds(), "total": total, "suites": reports}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
