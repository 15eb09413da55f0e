// Command mutants checks that every security check of Sluice has a test
// that fails without it.
//
// It reads a list of mutants (testdata/mutants/mutants.yaml): each names a
// security check, the promise it guards, the file it lives in, a snippet of
// that file exactly as it is, the snippet that disables the check, and the
// package and -run pattern of the tests that must fail once the snippet is
// replaced. For each mutant it copies the tree (the files git knows of,
// never the checkout itself) to a scratch directory, replaces the snippet,
// runs the tests and puts the file back. A mutant is caught when the tests
// fail; it survives when they pass.
//
// It prints one line per mutant, then "mutants: C/N caught" and every
// survivor, and exits 1 when a mutant survives, when its snippet is not in
// its file exactly once (the list must move with the code), when the
// replaced file does not build, or when the tests fail on the unchanged
// tree (a baseline run, per package and pattern, before any mutant).
//
// The scratch directories live at one place per checkout under the
// temporary directory, so that the Go build cache, which keys compiled
// packages by their directory, serves one run of the suite to the next.
//
// It is a development tool: it is not part of the sluice binary.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// Mutant is one entry of the list.
type Mutant struct {
	Name        string `yaml:"name"`
	Promise     string `yaml:"promise"`
	Check       string `yaml:"check"`
	File        string `yaml:"file"`
	Original    string `yaml:"original"`
	Replacement string `yaml:"replacement"`
	Package     string `yaml:"package"`
	Run         string `yaml:"run"`
	// Timeout, when set, is the go test -timeout for this mutant: a
	// mutant that lifts a time limit makes its test hang until then.
	Timeout string `yaml:"timeout"`
	timeout time.Duration
}

func main() {
	list := flag.String("list", "testdata/mutants/mutants.yaml", "the list of mutants, relative to the repository's root")
	jobs := flag.Int("j", 1, "mutants tested at once (each in its own scratch copy)")
	only := flag.String("run", "", "test only the mutants whose name matches this regular expression")
	skip := flag.String("skip", "", "leave out the mutants whose name matches this regular expression")
	timeout := flag.Duration("timeout", 6*time.Minute, "the go test -timeout of each run")
	baseline := flag.Bool("baseline", true, "first run every named test on the unchanged tree")
	verbose := flag.Bool("v", false, "print the output of go test for mutants that survive or fail to build")
	flag.Parse()
	os.Exit(run(*list, *jobs, *only, *skip, *timeout, *baseline, *verbose))
}

type outcome int

const (
	caught outcome = iota
	survived
	broken
)

func run(listPath string, jobs int, only, skip string, timeout time.Duration, baseline, verbose bool) int {
	start := time.Now()
	root, err := gitOutput(".", "rev-parse", "--show-toplevel")
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutants: not in a git checkout:", err)
		return 2
	}
	root = strings.TrimSpace(root)
	mutants, err := load(filepath.Join(root, listPath))
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutants:", err)
		return 2
	}
	for _, f := range []struct {
		flag, expr string
		want       bool
	}{{"-run", only, true}, {"-skip", skip, false}} {
		if f.expr == "" {
			continue
		}
		re, err := regexp.Compile(f.expr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "mutants: %s: %v\n", f.flag, err)
			return 2
		}
		var keep []Mutant
		for _, m := range mutants {
			if re.MatchString(m.Name) == f.want {
				keep = append(keep, m)
			}
		}
		mutants = keep
	}
	// Every snippet must be where the list says, exactly once, before
	// anything runs.
	var stale []string
	for _, m := range mutants {
		if err := m.check(root); err != nil {
			stale = append(stale, fmt.Sprintf("%s: %v", m.Name, err))
		}
	}
	if len(stale) > 0 {
		for _, s := range stale {
			fmt.Println("STALE   ", s)
		}
		fmt.Printf("mutants: %d of %d no longer apply; update %s\n", len(stale), len(mutants), listPath)
		return 1
	}
	jobs = max(1, min(jobs, len(mutants)))
	slots := make([]string, jobs)
	for i := range slots {
		if slots[i], err = prepare(root, i); err != nil {
			fmt.Fprintln(os.Stderr, "mutants:", err)
			return 2
		}
	}
	ctx := context.Background()
	if baseline && !runBaseline(ctx, slots[0], mutants, timeout) {
		fmt.Println("mutants: the named tests must pass on the unchanged tree")
		return 1
	}

	type result struct {
		out     outcome
		elapsed time.Duration
		log     []byte
	}
	results := make([]result, len(mutants))
	next := make(chan int)
	var wg sync.WaitGroup
	var printMu sync.Mutex
	for _, dir := range slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				m := mutants[i]
				t0 := time.Now()
				o, log := m.apply(ctx, dir, timeout)
				results[i] = result{o, time.Since(t0), log}
				printMu.Lock()
				word := map[outcome]string{caught: "caught  ", survived: "SURVIVED", broken: "BROKEN  "}[o]
				fmt.Printf("%s %02d %-44s %s -run '%s' (%s)\n", word, i+1, m.Name, m.Package, m.Run, since(t0))
				if verbose && o != caught {
					fmt.Println(tail(log, 40))
				}
				printMu.Unlock()
			}
		}()
	}
	for i := range mutants {
		next <- i
	}
	close(next)
	wg.Wait()

	n, c := len(mutants), 0
	var survivors, brokens []string
	for i, r := range results {
		m := mutants[i]
		switch r.out {
		case caught:
			c++
		case survived:
			survivors = append(survivors, fmt.Sprintf("%s (%s, %s): %s -run '%s'", m.Name, m.Promise, m.File, m.Package, m.Run))
		case broken:
			brokens = append(brokens, fmt.Sprintf("%s (%s): the replaced file does not build\n%s", m.Name, m.File, tail(r.log, 10)))
		}
	}
	fmt.Printf("mutants: %d/%d caught in %s (%d at once)\n", c, n, since(start), jobs)
	for _, s := range survivors {
		fmt.Println("survivor:", s)
	}
	for _, s := range brokens {
		fmt.Println("broken:", s)
	}
	if c != n {
		return 1
	}
	return 0
}

// runBaseline runs the tests every mutant names on the unchanged tree at
// dir, each package's test binary built once: a test that fails there, or
// a pattern that matches no test, proves nothing about a mutant.
func runBaseline(ctx context.Context, dir string, mutants []Mutant, timeout time.Duration) bool {
	bin := filepath.Join(dir, ".mutants")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		fmt.Println("BASELINE", err)
		return false
	}
	defer os.RemoveAll(bin)
	built := map[string]string{}
	seen := map[[2]string]bool{}
	ok := true
	for _, m := range mutants {
		k := [2]string{m.Package, m.Run}
		if seen[k] {
			continue
		}
		seen[k] = true
		t0 := time.Now()
		exe, done := built[m.Package]
		if !done {
			exe = filepath.Join(bin, fmt.Sprintf("%d.test", len(built)))
			cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", exe, m.Package)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Printf("BASELINE %s does not build\n%s\n", m.Package, tail(out, 20))
				ok = false
				continue
			}
			built[m.Package] = exe
		}
		cmd := exec.CommandContext(ctx, exe, "-test.count=1", "-test.timeout="+timeout.String(), "-test.run="+m.Run)
		cmd.Dir = filepath.Join(dir, m.Package)
		out, err := cmd.CombinedOutput()
		switch {
		case err != nil:
			fmt.Printf("BASELINE %s -run '%s' fails on the unchanged tree (%s)\n%s\n", m.Package, m.Run, since(t0), tail(out, 40))
			ok = false
		case bytes.Contains(out, []byte("no tests to run")):
			fmt.Printf("BASELINE %s -run '%s' runs no test\n", m.Package, m.Run)
			ok = false
		default:
			fmt.Printf("baseline %s -run '%s' passes (%s)\n", m.Package, m.Run, since(t0))
		}
	}
	return ok
}

// load reads the list and checks that every entry is complete and every
// name unique.
func load(path string) ([]Mutant, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var ms []Mutant
	if err := dec.Decode(&ms); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	names := map[string]bool{}
	for i, m := range ms {
		if m.Name == "" || m.Promise == "" || m.File == "" || m.Original == "" || m.Package == "" || m.Run == "" {
			return nil, fmt.Errorf("%s: entry %d (%q): name, promise, file, original, package and run are required", path, i+1, m.Name)
		}
		if m.Original == m.Replacement {
			return nil, fmt.Errorf("%s: %s: the replacement is the original", path, m.Name)
		}
		if m.Timeout != "" {
			if ms[i].timeout, err = time.ParseDuration(m.Timeout); err != nil {
				return nil, fmt.Errorf("%s: %s: timeout: %w", path, m.Name, err)
			}
		}
		if names[m.Name] {
			return nil, fmt.Errorf("%s: %s is listed twice", path, m.Name)
		}
		names[m.Name] = true
	}
	return ms, nil
}

// check reports whether the mutant's snippet is in its file, in the
// checkout at root, exactly once.
func (m Mutant) check(root string) error {
	b, err := os.ReadFile(filepath.Join(root, m.File))
	if err != nil {
		return err
	}
	switch n := bytes.Count(b, []byte(m.Original)); n {
	case 1:
		return nil
	case 0:
		return fmt.Errorf("%s: the original snippet is not there", m.File)
	default:
		return fmt.Errorf("%s: the original snippet is there %d times", m.File, n)
	}
}

// apply replaces the snippet in the scratch copy at dir, runs the tests,
// and puts the file back.
func (m Mutant) apply(ctx context.Context, dir string, timeout time.Duration) (outcome, []byte) {
	path := filepath.Join(dir, m.File)
	orig, err := os.ReadFile(path)
	if err != nil {
		return broken, []byte(err.Error())
	}
	mutated := bytes.Replace(orig, []byte(m.Original), []byte(m.Replacement), 1)
	if err := os.WriteFile(path, mutated, 0o644); err != nil {
		return broken, []byte(err.Error())
	}
	defer os.WriteFile(path, orig, 0o644)
	if m.timeout > 0 {
		timeout = m.timeout
	}
	out, err := goTest(ctx, dir, m.Package, m.Run, timeout)
	switch {
	case err == nil:
		return survived, out
	case bytes.Contains(out, []byte("[build failed]")) || bytes.Contains(out, []byte("[setup failed]")):
		return broken, out
	}
	return caught, out
}

// goTest runs the tests matching pattern in pkg, in the tree at dir,
// without the race detector and without the test cache.
func goTest(ctx context.Context, dir, pkg, pattern string, timeout time.Duration) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-timeout", timeout.String(), "-run", pattern, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// prepare makes scratch copy slot of the tree at root: the files git
// tracks, and those it would track, as they are in the checkout. The same
// path serves every run from this checkout, so the build cache carries
// over.
func prepare(root string, slot int) (string, error) {
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(os.TempDir(), "sluice-mutants-"+hex.EncodeToString(sum[:6]), fmt.Sprintf("slot-%d", slot))
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	files, err := gitOutput(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	if err != nil {
		return "", err
	}
	for _, name := range strings.Split(files, "\x00") {
		if name == "" {
			continue
		}
		if err := copyFile(filepath.Join(root, name), filepath.Join(dir, name)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // deleted in the checkout, not yet in git
			}
			return "", err
		}
	}
	return dir, nil
}

func copyFile(from, to string) error {
	fi, err := os.Lstat(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(from)
		if err != nil {
			return err
		}
		return os.Symlink(target, to)
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func gitOutput(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func since(t time.Time) string { return time.Since(t).Round(100 * time.Millisecond).String() }

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
