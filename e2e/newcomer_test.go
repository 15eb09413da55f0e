package e2e

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sluiceIn runs the binary in the workspace with stdin and waits for it.
func (w *workspace) sluiceIn(stdin string, args ...string) result {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sluiceBin, args...)
	cmd.Dir = w.dir
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		w.t.Fatalf("sluice %v: %v", args, err)
	}
	return r
}

// sluice version and sluice --version print the same: the version, the
// commit the binary was built from, and the Go version.
func TestVersion(t *testing.T) {
	w := newWorkspace(t, nil)
	a, b := w.sluice("version"), w.sluice("--version")
	if a.code != 0 || b.code != 0 || a.stdout != b.stdout {
		t.Fatalf("version: exit %d, --version: exit %d; outputs differ:\n%s\n%s", a.code, b.code, a.stdout, b.stdout)
	}
	lines := strings.Split(a.stdout, "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "sluice ") || !strings.HasPrefix(lines[1], "commit ") || lines[2] != "go "+runtime.Version() {
		t.Fatalf("version output:\n%s", a.stdout)
	}
	if r := w.sluice("version", "x"); r.code != 2 {
		t.Errorf("version x: exit %d, want 2", r.code)
	}

	// Built with VCS stamping, the commit line is the revision the go
	// command recorded.
	bin := filepath.Join(t.TempDir(), "sluice")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "../cmd/sluice")
	build.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Skipf("no VCS stamping here (not a git checkout?): go build -buildvcs=true: %v\n%s", err, out)
	}
	info, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	rev := ""
	for _, l := range strings.Split(string(info), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision=") {
			rev = strings.TrimPrefix(f[1], "vcs.revision=")
		}
	}
	if rev == "" {
		t.Skip("the go command stamped no commit (a git worktree's .git is a file, which it does not read)")
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "\ncommit "+rev) {
		t.Fatalf("--version of a stamped build:\n%s\nwant a line starting \"commit %s\"", out, rev)
	}
}

// sluice completion bash|zsh|fish prints a script; the bash one, loaded in
// a real bash, completes commands and flags by asking the binary.
func TestCompletion(t *testing.T) {
	w := newWorkspace(t, nil)
	for _, sh := range []string{"bash", "zsh", "fish"} {
		r := w.sluice("completion", sh)
		if r.code != 0 || !strings.Contains(r.stdout, "completion complete") {
			t.Fatalf("completion %s: exit %d\n%s", sh, r.code, r.stdout)
		}
		if _, err := exec.LookPath(sh); err != nil {
			continue // the shell is not installed: its syntax is not checked
		}
		w.write("c."+sh, r.stdout)
		if out, err := exec.Command(sh, "-n", w.path("c."+sh)).CombinedOutput(); err != nil {
			t.Errorf("%s -n on the %s script: %v\n%s", sh, sh, err, out)
		}
	}
	if r := w.sluice("completion", "tcsh"); r.code != 2 || !strings.Contains(r.stderr, "bash, zsh, fish") {
		t.Errorf("completion tcsh: exit %d %s", r.code, r.stderr)
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	script := `source <(sluice completion bash)
try() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _sluice; echo "${COMPREPLY[*]}"; }
try sluice ru
try sluice run flow.yaml --wa
try sluice audit ""
try sluice help appr
try sluice run --config ""
`
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = w.dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(sluiceBin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	want := "run runs\n--wait --wait-timeout\nexport verify\napprovals approve\n\n"
	if string(out) != want {
		t.Fatalf("bash completions:\n%q\nwant\n%q", out, want)
	}
}

const memoFlow = `name: memo
inputs:
  amount: {type: number}
  memo: {type: string}
steps:
  - id: pay
    call: payment.charge
    with: {amount: "${inputs.amount}", currency: EUR, payee: acct_shop, memo: "${inputs.memo}"}
`

// --input name=@FILE reads a value from a file, name=@- from standard
// input; a file that cannot be read is a usage error that starts nothing.
func TestInputFromFileAndStdin(t *testing.T) {
	w := newWorkspace(t, map[string]string{"memo.yaml": memoFlow, "sluice.yaml": "workers:\n  - manifest: builtin:payment\n",
		"invoice.txt": "invoice 42:\ntwo nights\n"})
	r := w.sluiceIn("7\n", "run", "memo.yaml", "--input", "memo=@invoice.txt", "--input", "amount=@-")
	if r.code != 0 {
		t.Fatalf("run: exit %d\n%s", r.code, r.stderr)
	}
	ledger := w.ledger()
	if len(ledger) != 1 || !strings.Contains(ledger[0], `"memo":"invoice 42:\ntwo nights"`) || !strings.Contains(ledger[0], `"amount":7`) {
		t.Fatalf("ledger: %q", ledger)
	}
	r = w.sluiceIn("", "run", "memo.yaml", "--input", "memo=@@at", "--input", "amount=1")
	if r.code != 0 || len(w.ledger()) != 2 || !strings.Contains(w.ledger()[1], `"memo":"@at"`) {
		t.Fatalf("run with @@: exit %d; ledger %q", r.code, w.ledger())
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--input", "memo=@missing.txt", "--input", "amount=1"}, "--input memo=@missing.txt: open missing.txt: no such file or directory"},
		{[]string{"--input", "memo=@-", "--input", "amount=@-"}, "standard input is already read by --input"},
		{[]string{"--input", "memo=@", "--input", "amount=1"}, "--input memo=@: name a file after @"},
	} {
		r := w.sluiceIn("1", append([]string{"run", "memo.yaml"}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("run %v: exit %d, stderr %q; want exit 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	if n := len(w.ledger()); n != 2 {
		t.Fatalf("%d charges after the refused runs, want 2", n)
	}
}

// A flow that fetches a page with no net grant: lint warns, naming the
// step and the line to add; the run fails with an error that names the
// grant to add for that host. With the grant, lint is silent.
func TestNetGrantMissing(t *testing.T) {
	host := site(t, map[string]string{"/": "<p>hello</p>"})
	flowSrc := "name: fetch\ninputs:\n  url: {type: string}\nsteps:\n  - id: page\n    call: web.fetch\n    with: {url: \"${inputs.url}\"}\n"
	w := newWorkspace(t, map[string]string{"fetch.yaml": flowSrc, "sluice.yaml": "workers:\n  - manifest: builtin:web\n"})
	r := w.sluice("lint", "fetch.yaml")
	want := `fetch.yaml:5:5: warning: step "page" calls web.fetch, but worker web has no net grant`
	if r.code != 0 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, `add grants: {net: ["HOST:PORT"]} to the web worker in `) {
		t.Fatalf("lint: exit %d, want 0 and %q\n%s", r.code, want, r.stderr)
	}
	r = w.sluice("run", "fetch.yaml", "--input", "url=http://"+host+"/")
	hint := `add grants: {net: ["` + host + `"]} to the web worker in sluice.yaml`
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, hint) {
		t.Fatalf("run: exit %d, want 1 and %q", r.code, hint)
	}
	// Granted another host: the egress broker refuses, with the same hint.
	w.write("sluice.yaml", "workers:\n  - manifest: builtin:web\n    grants: {net: [\"127.0.0.1:1\"]}\n")
	r = w.sluice("run", "fetch.yaml", "--input", "url=http://"+host+"/")
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, host+" is not granted to worker web; to allow it, "+hint) {
		t.Fatalf("run with another grant: exit %d, want 1 and %q", r.code, hint)
	}
	w.write("sluice.yaml", "workers:\n  - manifest: builtin:web\n    grants: {net: [\""+host+"\"]}\n")
	if r := w.sluice("lint", "fetch.yaml"); r.code != 0 || r.stderr != "" {
		t.Fatalf("lint with the grant: exit %d\n%s", r.code, r.stderr)
	}
	if r := w.sluice("run", "fetch.yaml", "--input", "url=http://"+host+"/"); r.code != 0 {
		t.Fatalf("run with the grant: exit %d", r.code)
	}
}

// Where nothing has run yet, the readers say so and list nothing (an
// empty JSON array, not null); answering a call with no orchestrator
// running says how to start one.
func TestNothingRunYet(t *testing.T) {
	w := newWorkspace(t, nil)
	if r := w.sluice("runs", "--json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" || !strings.Contains(r.stderr, "nothing has run here yet") {
		t.Errorf("runs --json: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := w.sluice("approvals", "--json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("approvals --json: exit %d, stdout %q", r.code, r.stdout)
	}
	if r := w.sluice("approvals"); r.code != 0 || !strings.Contains(r.stdout, "no call is waiting for approval") {
		t.Errorf("approvals: exit %d, stdout %q", r.code, r.stdout)
	}
	r := w.sluice("deny", "01JD6Z4W8X2F3K5N7Q9R1T3V5X")
	if r.code != 1 || !strings.Contains(r.stderr, "no orchestrator is running") || !strings.Contains(r.stderr, "start one in another terminal with\n  sluice up\n") {
		t.Errorf("deny: exit %d %q", r.code, r.stderr)
	}
	// With a log that holds no run yet, still an empty array.
	w.write("sluice.yaml", "workers:\n  - manifest: builtin:payment\n")
	up := w.start("up", "-q", "--http=off")
	up.waitLine(t, "sluice is up in ", 2*time.Minute)
	if r := w.sluice("runs", "--json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("runs --json beside sluice up: exit %d, stdout %q", r.code, r.stdout)
	}
	up.cmd.Process.Signal(os.Interrupt)
	if code := up.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("sluice up: exit %d", code)
	}
}

// make demo's script, in a copy of the tree on a free port (DEMO_PORT=0):
// it runs to the end, shows the web page's address, and the commands its
// last lines suggest work. A demo that cannot get its port fails naming
// DEMO_PORT, and leaves the previous demo's state as it was.
func TestDemo(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("the demo script needs bash")
	}
	root := t.TempDir()
	copyTree(t, "../examples/travel", filepath.Join(root, "examples/travel"), nil)
	if err := os.Chmod(filepath.Join(root, "examples/travel/demo.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(sluiceBin, filepath.Join(root, "bin/sluice")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("go", "build", "-o", filepath.Join(root, "bin/travel-site"), "../examples/travel/site").CombinedOutput(); err != nil {
		t.Fatalf("build the travel site: %v\n%s", err, out)
	}
	demo := func(port string) (int, string) {
		cmd := exec.Command("examples/travel/demo.sh")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "DEMO_PORT="+port)
		out, err := runBounded(cmd)
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatalf("demo.sh: %v\n%s", err, out)
		}
		return 0, string(out)
	}
	code, out := demo("0")
	if code != 0 {
		t.Fatalf("demo: exit %d\n%s", code, out)
	}
	if !regexp.MustCompile(`(?m)^   http://127\.0\.0\.1:[0-9]+/\?key=\S+$`).MatchString(out) {
		t.Errorf("the demo does not show the web page's address:\n%s", out)
	}
	cfg := "examples/travel/.demo/sluice.yaml"
	if !strings.Contains(out, "bin/sluice approvals --config "+cfg) || !strings.Contains(out, "bin/sluice up --config "+cfg) {
		t.Fatalf("the demo's last lines do not suggest the commands tested here:\n%s", out)
	}
	sluice := func(args ...string) (int, string) {
		cmd := exec.Command(filepath.Join(root, "bin/sluice"), args...)
		cmd.Dir = root
		b, err := runBounded(cmd)
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(b)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(b)
	}
	if code, out := sluice("runs", "--config", cfg); code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(out, " held ") {
		t.Fatalf("runs after the demo: exit %d\n%s", code, out)
	}
	code, out = sluice("approvals", "--config", cfg)
	if code != 0 || !strings.Contains(out, "acct_attacker_7731") || !strings.Contains(out, "1 call(s) waiting") ||
		!strings.Contains(out, "sluice up --config "+cfg) || !strings.Contains(out, "sluice deny ID --config "+cfg) {
		t.Fatalf("approvals after the demo: exit %d\n%s", code, out)
	}

	// The port is taken: the demo fails, and keeps the state it found.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ledger := filepath.Join(root, "examples/travel/.demo/.sluice/payment/ledger.jsonl")
	before, err := os.ReadFile(ledger)
	if err != nil {
		t.Fatal(err)
	}
	code, out = demo(port)
	if code == 0 || !strings.Contains(out, "could not listen on 127.0.0.1:"+port) || !strings.Contains(out, "DEMO_PORT=") {
		t.Fatalf("demo on a taken port: exit %d\n%s", code, out)
	}
	if after, err := os.ReadFile(ledger); err != nil || string(after) != string(before) {
		t.Fatalf("the failed demo changed the previous demo's state: %v", err)
	}
	if code, out := demo("eighty"); code == 0 || !strings.Contains(out, "DEMO_PORT=eighty: want a port number") {
		t.Fatalf("DEMO_PORT=eighty: exit %d\n%s", code, out)
	}
}

// sluice run prints a line on stderr for each step as it finishes, with
// its status and duration, whether it runs the flow itself or submits it
// to sluice up; a held call shows its arguments, the web page to answer
// it on, and since when it waits. --json prints no progress.
func TestProgressLines(t *testing.T) {
	host := startTravelSite(t)
	w := newWorkspace(t, map[string]string{"pay.yaml": payDirectFlow})
	copyTree(t, "../examples/travel", w.path("examples/travel"), map[string]string{"127.0.0.1:8088": host})
	stepLine := regexp.MustCompile(`(?m)^step pay \(payment\.charge\): completed in [0-9.]+[µnm]?s$`)

	r := w.sluice("run", "pay.yaml", "--input", "amount=3", "--input", "payee=acct_x")
	if r.code != 0 || !stepLine.MatchString(r.stderr) {
		t.Fatalf("run: exit %d; no step line in stderr:\n%s", r.code, r.stderr)
	}
	r = w.sluice("run", "pay.yaml", "--input", "amount=3", "--input", "payee=acct_x", "--json")
	if r.code != 0 || strings.Contains(r.stderr, "step pay") {
		t.Fatalf("run --json: exit %d; progress on stderr:\n%s", r.code, r.stderr)
	}

	cfg := "examples/travel/sluice.yaml"
	up := w.start("up", "-q", "--config", cfg)
	up.waitLine(t, "sluice is up in ", 2*time.Minute)
	run := w.start("run", "examples/travel/book.yaml", "--config", cfg, "--input", "destination=Lisbon", "--input", "budget=400")
	run.waitLine(t, "waiting for a person since ", 2*time.Minute)
	id := run.waitLine(t, "approve: sluice approve ", 2*time.Minute)
	web := run.waitLine(t, "or on the web page: ", 2*time.Minute)
	if !strings.HasPrefix(web, "http://127.0.0.1:") || !strings.Contains(web, "key=") {
		t.Errorf("web page line: %q", web)
	}
	run.waitLine(t, `payee      = "acct_tap_air"`, 2*time.Minute)
	for _, s := range []string{"step offers (web.fetch): completed in ", "step pick (llm.extract): completed in "} {
		run.waitLine(t, s, 2*time.Minute)
	}
	if r := w.sluice("deny", id, "--config", cfg); r.code != 0 {
		t.Fatalf("deny: exit %d", r.code)
	}
	if code := run.wait(t, 2*time.Minute); code != 3 {
		t.Fatalf("the denied run: exit %d, want 3", code)
	}
	if !slices.Contains(run.stderrLines(), "step pay (payment.charge): denied") {
		t.Errorf("no line for the denied step:\n%s", strings.Join(run.stderrLines(), "\n"))
	}
	up.cmd.Process.Signal(os.Interrupt)
	if code := up.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("sluice up: exit %d", code)
	}
}

// A number input that is not finite (NaN, Inf) is a usage error before
// anything starts: the run could not be recorded in JSON.
func TestNonFiniteInputRefused(t *testing.T) {
	w := newWorkspace(t, map[string]string{"pay.yaml": payDirectFlow})
	for _, v := range []string{"NaN", "Inf", "-infinity"} {
		r := w.sluice("run", "pay.yaml", "--input", "amount="+v, "--input", "payee=acct_x")
		if r.code != 2 || !strings.Contains(r.stderr, `input amount: want a finite number, got "`+v+`"`) || strings.Contains(r.stderr, "starting the bus") {
			t.Errorf("amount=%s: exit %d, want 2 before anything starts\n%s", v, r.code, r.stderr)
		}
	}
	if _, err := os.Stat(w.path(".sluice")); err == nil {
		t.Error("a refused run created the state directory")
	}
}

// A first start with a WebAssembly tool says it compiles it, and why that
// takes seconds; the next start, with the compiled code kept, does not.
func TestSlowStartSaysWhy(t *testing.T) {
	w := newWorkspace(t, map[string]string{"pay.yaml": payDirectFlow, "sluice.yaml": "workers:\n  - manifest: builtin:payment\n  - manifest: money/money.yaml\n"})
	copyTool(t, w, "money")
	note := "compiling the WebAssembly tools of money for their first start"
	r := w.sluice("run", "pay.yaml", "--input", "amount=1", "--input", "payee=acct_x")
	if r.code != 0 || !strings.Contains(r.stderr, note) {
		t.Fatalf("first run: exit %d; no %q in\n%s", r.code, note, r.stderr)
	}
	r = w.sluice("run", "pay.yaml", "--input", "amount=1", "--input", "payee=acct_x")
	if r.code != 0 || strings.Contains(r.stderr, "compiling the WebAssembly") {
		t.Fatalf("second run: exit %d; the note again:\n%s", r.code, r.stderr)
	}
}

// A run on the built-in defaults whose flow has a sluice.yaml beside it
// says that one is not used, and how to use it.
func TestConfigBesideTheFlowIsNamed(t *testing.T) {
	w := newWorkspace(t, map[string]string{"flows/pay.yaml": payDirectFlow, "flows/sluice.yaml": "workers:\n  - manifest: builtin:payment\n"})
	r := w.sluice("run", "flows/pay.yaml", "--input", "amount=1", "--input", "payee=acct_x")
	want := "note: running on the built-in defaults (no ./sluice.yaml); flows/sluice.yaml beside the flow is used only with --config flows/sluice.yaml"
	if r.code != 0 || !strings.Contains(r.stderr, want) {
		t.Fatalf("run: exit %d; want %q in\n%s", r.code, want, r.stderr)
	}
	r = w.sluice("run", "flows/pay.yaml", "--config", "flows/sluice.yaml", "--input", "amount=1", "--input", "payee=acct_x")
	if r.code != 0 || strings.Contains(r.stderr, "note:") {
		t.Fatalf("run --config: exit %d\n%s", r.code, r.stderr)
	}
}
