package main

import (
	"encoding/json"

	"bytes"
	"github.com/sluicehq/sluice/schemas"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func runCLI(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	if dir != "" {
		t.Chdir(dir)
	}
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(""), &out, &errb, func(string) string { return "" })
	return code, out.String(), errb.String()
}

func TestParseInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		pos     []string
		inputs  []string
		asJSON  bool
		wantErr bool
	}{
		{args: []string{"f.yaml", "--input", "a=1", "--json"}, pos: []string{"f.yaml"}, inputs: []string{"a"}, asJSON: true},
		{args: []string{"--json", "f.yaml", "--input=a=1"}, pos: []string{"f.yaml"}, inputs: []string{"a"}, asJSON: true},
		{args: []string{"--input", "a=1", "--", "--json"}, pos: []string{"--json"}, inputs: []string{"a"}},
		{args: []string{"f.yaml", "g.yaml"}, pos: []string{"f.yaml", "g.yaml"}},
		{args: []string{"f.yaml", "--nope"}, wantErr: true},
		{args: []string{"--input", "novalue"}, wantErr: true},
		{args: []string{"--input", "a=1", "--input", "a=2"}, wantErr: true},
	} {
		cmd := runCommand()
		fs := newFlagSet(cmd.name)
		cmd.flags(fs)
		pos, err := parseInterspersed(fs, tc.args)
		if (err != nil) != tc.wantErr {
			t.Errorf("%v: err %v", tc.args, err)
			continue
		}
		if tc.wantErr {
			continue
		}
		in := fs.Lookup("input").Value.(inputFlags)
		var names []string
		for k := range in {
			names = append(names, k)
		}
		if !slices.Equal(pos, tc.pos) || !slices.Equal(names, tc.inputs) || (fs.Lookup("json").Value.String() == "true") != tc.asJSON {
			t.Errorf("%v: pos %v inputs %v json %s", tc.args, pos, names, fs.Lookup("json").Value)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f.yaml"), []byte("name: f\ninputs: {n: {type: number}}\nsteps:\n  - {id: a, call: payment.balance}\n"), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{nil, exitUsage, ""},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"run"}, exitUsage, "exactly one flow file"},
		{[]string{"run", "f.yaml", "--wait=maybe"}, exitUsage, "invalid boolean"},
		{[]string{"run", "f.yaml", "--input", "x"}, exitUsage, "want name=value"},
		{[]string{"run", "f.yaml"}, exitUsage, "input n (number) is required"},
		{[]string{"run", "f.yaml", "--input", "n=abc"}, exitUsage, `want a number, got "abc"`},
		{[]string{"run", "f.yaml", "--input", "n=1", "--input", "m=2"}, exitUsage, `no input "m"`},
		{[]string{"run", "missing.yaml"}, exitFailure, "missing.yaml"},
		{[]string{"approve"}, exitUsage, "give an approval id"},
		{[]string{"up", "--nats", "nats://127.0.0.1:4222"}, exitUsage, "needs the account's key and the orchestrator's credentials"},
		{[]string{"approve", "01ABC"}, exitFailure, "no orchestrator is running"},
		{[]string{"cancel"}, exitUsage, "give run ids, or --interrupted"},
		{[]string{"cancel", "01ABC", "--interrupted"}, exitUsage, "give run ids, or --interrupted (not both)"},
		{[]string{"cancel", "01ABC"}, exitFailure, "no state directory"},
		{[]string{"worker"}, exitUsage, "--manifest"},
		{[]string{"version", "x"}, exitUsage, "no arguments"},
	} {
		code, _, stderr := runCLI(t, dir, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.err) {
			t.Errorf("sluice %v: exit %d, want %d; stderr %q lacks %q", tc.args, code, tc.code, stderr, tc.err)
		}
	}
}

func TestFlowErrorsArePositioned(t *testing.T) {
	dir := t.TempDir()
	src := "name: f\nsteps:\n  - id: a\n    call: payment.refund\n  - id: b\n    call: payment.charge\n    with: {amount: \"${steps.zz.output.x}\", currency: EUR, payee: p}\n"
	os.WriteFile(filepath.Join(dir, "f.yaml"), []byte(src), 0o644)
	code, stdout, stderr := runCLI(t, dir, "run", "f.yaml")
	if code != exitFailure || stdout != "" {
		t.Fatalf("exit %d stdout %q", code, stdout)
	}
	for _, want := range []string{
		`f.yaml:4:11: unknown tool "payment.refund"; worker "payment" has: balance, charge`,
		" |     call: payment.refund\n | ..........^\n",
		`f.yaml:7:21: no step "zz" (steps are: a, b)`,
		"2 errors",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestBadConfigIsPositioned(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "sluice.yaml"), []byte("workers:\n  - manifest: builtin:payment\n    replica: 2\n  - manifest: builtin:nope\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "f.yaml"), []byte("name: f\nsteps:\n  - {id: a, call: payment.balance}\n"), 0o644)
	code, _, stderr := runCLI(t, dir, "run", "f.yaml")
	if code != exitFailure || !strings.Contains(stderr, `sluice.yaml:3:5: unknown key "replica" (did you mean "replicas"?)`) {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
}

func TestHelp(t *testing.T) {
	for _, cmd := range commands() {
		code, out, _ := runCLI(t, "", cmd.name, "--help")
		if code != exitOK || !strings.HasPrefix(out, "usage: sluice "+cmd.name) {
			t.Errorf("%s --help: exit %d\n%s", cmd.name, code, out)
		}
		code2, out2, _ := runCLI(t, "", "help", cmd.name)
		if code2 != exitOK || out2 != out {
			t.Errorf("help %s differs from %s --help", cmd.name, cmd.name)
		}
	}
	code, out, _ := runCLI(t, "", "help")
	if code != exitOK || !strings.Contains(out, "run ") || !strings.Contains(out, "approve ") {
		t.Errorf("help: %d\n%s", code, out)
	}
	_, out, _ = runCLI(t, "", "run", "--help")
	for _, want := range []string{"--input name=value", "--wait", "--json", "Exit codes", "Examples:"} {
		if !strings.Contains(out, want) {
			t.Errorf("run --help lacks %q", want)
		}
	}
}

func TestLint(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ok.yaml"), []byte("name: ok\nsteps:\n  - {id: a, call: payment.balance}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("name: bad\nsteps:\n  - id: a\n    call: payment.balance\n    retry: 2\n"), 0o644)
	code, out, errOut := runCLI(t, dir, "lint", "ok.yaml")
	if code != exitOK || out != "" || errOut != "" {
		t.Fatalf("lint ok.yaml: exit %d, %q %q", code, out, errOut)
	}
	code, _, errOut = runCLI(t, dir, "lint", "ok.yaml", "bad.yaml")
	if code != exitFailure || !strings.Contains(errOut, `bad.yaml:5:5: unknown key "retry" (did you mean "retries"?)`) {
		t.Fatalf("lint bad.yaml: exit %d\n%s", code, errOut)
	}
	code, out, _ = runCLI(t, dir, "lint", "bad.yaml", "--json")
	var got struct {
		Diagnostics []schemas.Diagnostic `json:"diagnostics"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != exitFailure || len(got.Diagnostics) != 1 {
		t.Fatalf("lint --json: exit %d, %v\n%s", code, err, out)
	}
	d := got.Diagnostics[0]
	if d.File != "bad.yaml" || d.Line != 5 || d.Col != 5 || d.Code != schemas.CodeSchemaUnknown || d.Severity != schemas.SeverityError {
		t.Fatalf("diagnostic %+v", d)
	}
}

func TestDoctor(t *testing.T) {
	dir := t.TempDir()
	code, out, _ := runCLI(t, dir, "doctor")
	if code != exitOK || !strings.Contains(out, "ok    configuration          built-in defaults") || !strings.Contains(out, "landlock") {
		t.Fatalf("doctor: exit %d\n%s", code, out)
	}
	os.WriteFile(filepath.Join(dir, "sluice.yaml"), []byte("secrets:\n  api: {env: SLUICE_TEST_UNSET_KEY}\n"), 0o644)
	code, out, _ = runCLI(t, dir, "doctor")
	if code != exitFailure || !strings.Contains(out, "fail  secret api") || !strings.Contains(out, "SLUICE_TEST_UNSET_KEY is not set") {
		t.Fatalf("doctor with a missing secret: exit %d\n%s", code, out)
	}
}

func TestReadInputs(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin"), []byte{0xff, 0xfe}, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, tc := range []struct {
		name    string
		in      inputFlags
		stdin   string
		want    map[string]string
		wantErr string
	}{
		{"plain", inputFlags{"a": "x"}, "", map[string]string{"a": "x"}, ""},
		{"file", inputFlags{"a": "@a.txt"}, "", map[string]string{"a": "line"}, ""},
		{"one final newline only", inputFlags{"a": "@-"}, "x\r\n\n", map[string]string{"a": "x\r\n"}, ""},
		{"CRLF", inputFlags{"a": "@-"}, "x\r\n", map[string]string{"a": "x"}, ""},
		{"stdin", inputFlags{"a": "@-", "b": "1"}, "in", map[string]string{"a": "in", "b": "1"}, ""},
		{"escaped @", inputFlags{"a": "@@x"}, "", map[string]string{"a": "@x"}, ""},
		{"stdin twice", inputFlags{"a": "@-", "b": "@-"}, "", nil, "--input b=@-: standard input is already read by --input a=@-"},
		{"missing", inputFlags{"a": "@nope"}, "", nil, "--input a=@nope: open nope"},
		{"no file named", inputFlags{"a": "@"}, "", nil, "name a file after @"},
		{"not text", inputFlags{"a": "@bin"}, "", nil, "--input a=@bin: not UTF-8 text"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &cli{stdin: strings.NewReader(tc.stdin)}
			got, err := c.readInputs(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !maps.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
