package e2e

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestAttackCaseFormatIsDocumented: testdata/attacks/README.md names every
// field a case file may have.
func TestAttackCaseFormatIsDocumented(t *testing.T) {
	b, err := os.ReadFile("testdata/attacks/README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	seen := map[reflect.Type]bool{}
	var walk func(ty reflect.Type)
	walk = func(ty reflect.Type) {
		for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice || ty.Kind() == reflect.Map {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || seen[ty] {
			return
		}
		seen[ty] = true
		for i := range ty.NumField() {
			f := ty.Field(i)
			tag := f.Tag.Get("yaml")
			if tag == "" {
				continue
			}
			if !strings.Contains(doc, tag+":") && !strings.Contains(doc, "`"+tag+"`") && !strings.Contains(doc, tag+",") && !strings.Contains(doc, tag+"}") {
				t.Errorf("testdata/attacks/README.md does not name the field %s of %s", tag, ty.Name())
			}
			walk(f.Type)
		}
	}
	walk(reflect.TypeFor[attackCase]())
	walk(reflect.TypeFor[benignCase]())
	if len(seen) < 8 {
		t.Fatalf("walked %d types", len(seen))
	}
}

// TestAttackCaseFilesLoad loads every case file of the attack suite, and
// checks that the loader refuses a case file that is wrong, naming the file
// and, where there is one, the line and column.
func TestAttackCaseFilesLoad(t *testing.T) {
	cases, err := loadAttackCases(attackCaseDir)
	if err != nil {
		t.Fatal(err)
	}
	benigns, err := loadBenignCases(benignCaseDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 30 || len(benigns) < 10 {
		t.Fatalf("%d attacks and %d benign workflows: the suite needs at least 30 and 10", len(cases), len(benigns))
	}
	if _, err := fixturesOf(cases); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		a := c.atk()
		if a.stop == nil && (a.layer == "" || a.after == nil) || a.harm == nil {
			t.Errorf("%s: compiled without a stop or a harm", c.file)
		}
	}

	const flow = "flow: |\n  name: w1\n  steps:\n    - {id: a, call: web.fetch, with: {url: x}}\n"
	const head = "id: W1\nsource: web page\ntarget: a payment\ntrick: none\n" + flow
	const stop = "stop:\n  - held: {step: pay, tool: payment.charge, rules: [untrusted-never-pays-alone]}\n"
	const harm = "harm:\n  - paid: acct_attacker\n"
	const control = "control: {permissive: true}\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"a good case", map[string]string{"W1.yaml": head + stop + harm + control}, nil},
		{"an unknown field", map[string]string{"W1.yaml": head + stop + harm + control + "hrm:\n  - paid: x\n"},
			[]string{"W1.yaml:14:1: unknown field \"hrm\""}},
		{"an unknown field in a stop", map[string]string{"W1.yaml": head + "stop:\n  - held: {step: pay, tol: payment.charge}\n" + harm + control},
			[]string{"W1.yaml:10:23: unknown field \"tol\""}},
		{"an unknown kind of stop", map[string]string{"W1.yaml": head + "stop:\n  - helt: {step: pay}\n" + harm + control},
			[]string{"W1.yaml:10:5: unknown field \"helt\""}},
		{"no stop", map[string]string{"W1.yaml": head + harm + control}, []string{"W1.yaml: no stop"}},
		{"no harm", map[string]string{"W1.yaml": head + stop + control}, []string{"W1.yaml: no harm"}},
		{"two kinds in one stop", map[string]string{"W1.yaml": head + "stop:\n  - {held: {step: a}, denied: {step: a}}\n" + harm + control},
			[]string{"W1.yaml: stop[0]: want exactly one kind, have 2 (held, denied)"}},
		{"no control", map[string]string{"W1.yaml": head + stop + harm}, []string{"W1.yaml: no control"}},
		{"an unknown hook", map[string]string{"W1.yaml": head + stop + harm + control + "hook: {name: steal-the-keys, does: x}\n"},
			[]string{"W1.yaml:14:7: unknown hook \"steal-the-keys\""}},
		{"a hook that does not say what it does", map[string]string{"W1.yaml": head + stop + harm + control + "hook: {name: listen-beside-the-web}\n"},
			[]string{"W1.yaml:14:7: hook \"listen-beside-the-web\": say what it does"}},
		{"a benign hook in an attack", map[string]string{"W1.yaml": head + stop + harm + control + "hook: {name: summaries-of-every-message, does: x}\n"},
			[]string{"is not an attack hook"}},
		{"a duplicate id", map[string]string{"W1.yaml": head + stop + harm + control, "W1 copy.yaml": head + stop + harm + control},
			[]string{"W1.yaml: id W1 is also the id of", "W1 copy.yaml"}},
		{"a file not named by its id", map[string]string{"W2.yaml": head + stop + harm + control},
			[]string{"W2.yaml: the case W1 belongs in", "W1.yaml"}},
		{"an id of no family", map[string]string{"Z1.yaml": strings.Replace(head, "W1", "Z1", 1) + stop + harm + control},
			[]string{"Z1.yaml: id \"Z1\""}},
		{"two documents", map[string]string{"W1.yaml": head + stop + harm + control + "---\nid: W2\n"},
			[]string{"W1.yaml:14:1: one case per file"}},
		{"a page outside /a/", map[string]string{"W1.yaml": head + stop + harm + control + "pages:\n  /offers: {html: x}\n"},
			[]string{"W1.yaml: page /offers"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := loadAttackCases(dir)
			if tc.want == nil {
				if err != nil || len(got) != 1 {
					t.Fatalf("got %d cases, %v", len(got), err)
				}
				return
			}
			if err == nil {
				t.Fatalf("loaded %d cases, want an error", len(got))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}

	const bflow = "id: B1\nwhat: a workflow\n" + flow
	for _, tc := range []struct {
		name, file, want string
	}{
		{"approvals not stated", bflow + "expect:\n  - event: x\n", "state the approvals"},
		{"nothing expected", bflow + "approvals: 0\n", "no expect"},
		{"an unknown expectation", bflow + "approvals: 0\nexpect:\n  - evnt: x\n", "B1.yaml:9:5: unknown field \"evnt\""},
		{"an attack hook", bflow + "approvals: 0\nhook: {name: one-recipient, does: x}\n", "is not a benign hook"},
	} {
		t.Run("benign: "+tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "B1.yaml"), []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := loadBenignCases(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
