package schemas

import (
	"strings"
	"testing"
)

func TestParseYAMLRefusesHiddenStructure(t *testing.T) {
	tests := []struct {
		name, src string
		code      string
		line, col int
	}{
		{"anchor and alias", "a: &x 1\nb: *x\n", CodeYAMLFeature, 1, 4},
		{"merge key", "base: {a: 1}\nc:\n  <<: {a: 2}\n", CodeYAMLFeature, 3, 3},
		{"duplicate key", "a: 1\nb: 2\na: 3\n", CodeYAMLDuplicate, 3, 1},
		{"second document", "a: 1\n---\nb: 2\n", CodeYAMLFeature, 2, 1},
		{"syntax", "a: [1, 2\nb: 3\n", CodeYAMLSyntax, 1, 1},
		{"empty", "", CodeYAMLSyntax, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ds := ParseYAML("f.yaml", []byte(tc.src))
			if ds.Err() == nil {
				t.Fatal("no error")
			}
			d := ds[0]
			if d.Code != tc.code || d.Line != tc.line || d.Col != tc.col {
				t.Fatalf("got %s at %d:%d (%s), want %s at %d:%d", d.Code, d.Line, d.Col, d.Message, tc.code, tc.line, tc.col)
			}
		})
	}
}

func TestParseYAMLValuesAndPositions(t *testing.T) {
	src := "name: x\ncount: 3\nratio: 0.5\nok: true\nnone: null\nlist:\n  - a\n  - {b: \"q\"}\n"
	d, ds := ParseYAML("f.yaml", []byte(src))
	if ds.Err() != nil {
		t.Fatal(ds)
	}
	m := d.Value.(map[string]any)
	if m["count"] != int64(3) || m["ratio"] != 0.5 || m["ok"] != true || m["none"] != nil || m["name"] != "x" {
		t.Fatalf("values %#v", m)
	}
	for ptr, want := range map[string]Pos{"/count": {2, 8}, "/list/1/b": {8, 9}, "/list/1": {8, 5}, "/missing/deep": {1, 1}} {
		if got := d.Pos(ptr); got != want {
			t.Errorf("Pos(%s) = %v, want %v", ptr, got, want)
		}
	}
	if got := d.KeyPos("/list/1/b"); got != (Pos{8, 6}) {
		t.Errorf("KeyPos = %v", got)
	}
}

func TestScalarStart(t *testing.T) {
	src := "plain: ${x}\nsingle: '${x}'\ndouble: \"${x}\"\nlit: |\n  ${x}\n"
	d, ds := ParseYAML("f.yaml", []byte(src))
	if ds.Err() != nil {
		t.Fatal(ds)
	}
	for _, tc := range []struct {
		ptr  string
		want Pos
		ok   bool
	}{
		{"/plain", Pos{1, 8}, true},
		{"/single", Pos{2, 10}, true},
		{"/double", Pos{3, 10}, true},
		{"/lit", Pos{4, 6}, false},
	} {
		got, ok := d.ScalarStart(tc.ptr)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ScalarStart(%s) = %v %v, want %v %v", tc.ptr, got, ok, tc.want, tc.ok)
		}
	}
}

func TestValidatePositionsAndHints(t *testing.T) {
	sch, err := Load("flow.json")
	if err != nil {
		t.Fatal(err)
	}
	src := "name: f\nsteps:\n  - id: a\n    cal: web.fetch\n  - id: 3\n    call: web.fetch\nextra: 1\n"
	d, ds := ParseYAML("f.yaml", []byte(src))
	if ds.Err() != nil {
		t.Fatal(ds)
	}
	got := d.Validate(sch)
	want := []struct {
		code      string
		line, col int
		contains  string
	}{
		{CodeSchemaMissing, 3, 5, `"call"`},
		{CodeSchemaUnknown, 4, 5, `did you mean "call"?`},
		{CodeSchemaMismatch, 5, 9, "string"},
		{CodeSchemaUnknown, 7, 1, `"extra"`},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d diagnostics, want %d:\n%v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Code != w.code || g.Line != w.line || g.Col != w.col || !strings.Contains(g.Message, w.contains) {
			t.Errorf("diagnostic %d: got %s %d:%d %q, want %s %d:%d containing %q", i, g.Code, g.Line, g.Col, g.Message, w.code, w.line, w.col, w.contains)
		}
	}
}

func TestRenderCaret(t *testing.T) {
	ds := Diagnostics{{File: "f.yaml", Line: 2, Col: 5, Code: "x", Severity: SeverityError, Message: "bad"}}
	out := Render(ds, map[string][]byte{"f.yaml": []byte("a: 1\nbcd: efg\n")})
	want := "f.yaml:2:5: bad\n | bcd: efg\n | ....^\n1 error\n"
	if out != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
}

func FuzzParseYAML(f *testing.F) {
	for _, s := range []string{"a: 1\n", "steps:\n  - id: x\n    call: web.fetch\n", "a: &x 1\nb: *x\n", "a: [1, 2\n", "- 1\n- {a: b}\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		d, ds := ParseYAML("f.yaml", src)
		// YAML breaks lines at \n, \r\n and a lone \r.
		text := strings.ReplaceAll(string(src), "\r\n", "\n")
		lines := strings.Count(text, "\n") + strings.Count(text, "\r") + 2
		for _, x := range ds {
			if x.Line < 1 || x.Line > lines || x.Col < 1 {
				t.Fatalf("diagnostic outside the file: %+v", x)
			}
		}
		if d == nil && ds.Err() == nil {
			t.Fatal("no document and no error")
		}
	})
}

// A pattern whose schema says what it wants in words (x-pattern-message)
// is reported in those words, not as its regular expression.
func TestPatternMessage(t *testing.T) {
	sch, err := Load("manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	src := "worker: w\nrun: builtin:web\ntools: {t: {}}\ngrants: {net: [\"http://x.test/\"]}\nlimits: {timeout: soon}\n"
	d, ds := ParseYAML("m.yaml", []byte(src))
	if ds.Err() != nil {
		t.Fatal(ds)
	}
	var got Diagnostics
	for _, g := range d.Validate(sch) {
		if g.Line >= 4 { // lines 1-3 are an incomplete manifest
			got = append(got, g)
		}
	}
	want := []struct {
		line, col int
		msg       string
	}{
		{4, 16, `grants.net.0: "http://x.test/" is not a host:port such as "api.example.com:443"`},
		{5, 19, `limits.timeout: "soon" is not a duration such as 500ms`},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d diagnostics, want %d:\n%v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Line != w.line || g.Col != w.col || !strings.HasPrefix(g.Message, w.msg) || strings.Contains(g.Message, "pattern") {
			t.Errorf("diagnostic %d: got %d:%d %q, want %d:%d starting %q", i, g.Line, g.Col, g.Message, w.line, w.col, w.msg)
		}
	}
}

// Problems with a file's shape stop the checks that need it whole: the
// rendering says more checks run once they are fixed; other errors do not.
func TestRenderSaysMoreChecksRun(t *testing.T) {
	shape := Diagnostics{{File: "f.yaml", Line: 1, Col: 1, Code: CodeSchemaUnknown, Severity: SeverityError, Message: `unknown key "x"`}}
	if got := Render(shape, nil); !strings.HasSuffix(got, "1 error\nfix these, then more checks run (references, expressions, types)\n") {
		t.Errorf("a schema error:\n%s", got)
	}
	other := Diagnostics{{File: "f.yaml", Line: 1, Col: 1, Code: "flow_unknown_tool", Severity: SeverityError, Message: "unknown tool"}}
	if got := Render(other, nil); strings.Contains(got, "more checks") {
		t.Errorf("a semantic error:\n%s", got)
	}
}

// A cap with no budget at all is told every key that would make one, not
// the first branch's.
func TestMissingOneOfTheKeys(t *testing.T) {
	sch, err := Load("policy.json")
	if err != nil {
		t.Fatal(err)
	}
	src := "caps:\n  - name: c\n    tool: llm.chat\n    window: day\n"
	d, ds := ParseYAML("p.yaml", []byte(src))
	if ds.Err() != nil {
		t.Fatal(ds)
	}
	got := d.Validate(sch)
	want := `caps.0: missing one of the keys "max_total", "max_count", "max_tokens"`
	if len(got) != 1 || got[0].Code != CodeSchemaMissing || got[0].Line != 2 || got[0].Col != 5 || got[0].Message != want {
		t.Fatalf("got %v, want one %s at 2:5: %s", got, CodeSchemaMissing, want)
	}
}
