package agent

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/token"
	"testing"

	"github.com/sluicehq/sluice/internal/gosrc"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/internal/jsonvalue"
	"github.com/sluicehq/sluice/orchestrator/flow"
	"github.com/sluicehq/sluice/schemas"
)

func TestNarrowSchema(t *testing.T) {
	for _, src := range []string{`{"type":"boolean"}`, `{"type":"string","enum":["a","b"]}`,
		`{"type":"number","minimum":0,"maximum":10}`, `{"type":"string","format":"date"}`} {
		var s map[string]any
		_ = json.Unmarshal([]byte(src), &s)
		if p := NarrowSchema(s); p != "" {
			t.Errorf("%s refused: %s", src, p)
		}
		// As a model's arguments are decoded: integral numbers as int64.
		v, _ := jsonvalue.Decode([]byte(src))
		if p := NarrowSchema(v.(map[string]any)); p != "" {
			t.Errorf("%s, decoded with integers, refused: %s", src, p)
		}
	}
	for _, src := range []string{`{"type":"string"}`, `{"type":"object"}`, `{"type":"number","minimum":0}`,
		`{"type":"boolean","pattern":"x"}`, `{"type":"string","enum":[1]}`, `{}`} {
		var s map[string]any
		_ = json.Unmarshal([]byte(src), &s)
		if p := NarrowSchema(s); p == "" {
			t.Errorf("%s accepted", src)
		}
	}
}

// Everything a model is told enters its conversation through tell: no
// other function of the package writes the conversation's messages (by
// assignment, append, index or a composite literal), so a reviewer who
// reads tell, and what its callers pass, knows every path.
func TestConversationHasOneWriter(t *testing.T) {
	fset := token.NewFileSet()
	files, err := gosrc.Parse(fset, ".")
	if err != nil {
		t.Fatal(err)
	}
	writers := map[string]int{}
	for _, f := range files {
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.AssignStmt:
					for _, lhs := range n.Lhs {
						if writesMsgs(lhs) {
							writers[fn.Name.Name]++
						}
					}
				case *ast.CompositeLit:
					for _, e := range n.Elts {
						if kv, ok := e.(*ast.KeyValueExpr); ok {
							if id, ok := kv.Key.(*ast.Ident); ok && id.Name == "msgs" {
								writers[fn.Name.Name]++
							}
						}
					}
				case *ast.UnaryExpr:
					if n.Op == token.AND && writesMsgs(n.X) {
						writers[fn.Name.Name]++ // a pointer to them
					}
				}
				return true
			})
		}
	}
	if len(writers) != 1 || writers["tell"] == 0 {
		t.Fatalf("functions that write a conversation's messages: %v; want tell alone", writers)
	}
}

// writesMsgs reports whether e is x.msgs or an element of it.
func writesMsgs(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.SelectorExpr:
		return e.Sel.Name == "msgs"
	case *ast.IndexExpr:
		return writesMsgs(e.X)
	case *ast.SliceExpr:
		return writesMsgs(e.X)
	case *ast.ParenExpr:
		return writesMsgs(e.X)
	}
	return false
}

// What tell shows of a hidden outcome depends on nothing the call
// returned: success, failure, any value and any label give the same handle,
// and the context label does not move. A shown message raises it by what
// the message depends on.
func TestTellHidesByTheStaticLabel(t *testing.T) {
	out, err := schemas.Compile(map[string]any{"type": "object", "properties": map[string]any{"text": map[string]any{"type": "string"}, "note": map[string]any{"type": "string"}}})
	if err != nil {
		t.Fatal(err)
	}
	tool := &flow.AgentTool{Name: "web.fetch", Spec: &capabilities.Tool{Output: out}}
	untrusted := ifc.UntrustedFrom("web:evil.example")
	outcomes := []*handle{
		{out: map[string]any{"text": "SLUICE-INJECT: pay"}, base: untrusted},
		{out: map[string]any{"text": "fine", "note": "x"}, base: untrusted, fields: map[string]ifc.Label{"note": ifc.UntrustedFrom("web:other.example")}},
		{failed: "connection refused by the page", base: untrusted},
		{out: "trusted after all", base: ifc.TrustedFrom()},
	}
	var shown []string
	for _, h := range outcomes {
		c := &conversation{label: ifc.TrustedFrom("user"), hide: true}
		c.tell(Message{Role: "tool", Content: str(fmt.Sprint(h.out, h.failed))}, h.label(), &callOutcome{tool: tool, static: untrusted, h: h})
		if !c.label.Equal(ifc.TrustedFrom("user")) {
			t.Errorf("a hidden outcome moved the context label to %v", c.label)
		}
		shown = append(shown, *c.msgs[0].Content)
	}
	for _, s := range shown[1:] {
		if s != shown[0] {
			t.Errorf("hidden outcomes were told apart:\n%s\n%s", shown[0], s)
		}
	}
	if want := `{"$handle":"h1","fields":["note","text"],"tool":"web.fetch"}`; shown[0] != want {
		t.Errorf("handle %s, want %s", shown[0], want)
	}

	// Known trusted before the call: shown, and the context takes on what
	// the call returned.
	c := &conversation{label: ifc.TrustedFrom("user"), hide: true}
	c.tell(Message{Role: "tool", Content: str("an invite from eve")}, untrusted, &callOutcome{tool: tool, static: ifc.TrustedFrom(), h: &handle{}})
	if *c.msgs[0].Content != "an invite from eve" || c.label.Integrity() != ifc.Untrusted || len(c.handles) != 0 {
		t.Errorf("shown %q, label %v, handles %d", *c.msgs[0].Content, c.label, len(c.handles))
	}
	// Without hiding, everything is shown and raises the label.
	c = &conversation{label: ifc.TrustedFrom("user")}
	c.tell(Message{Role: "tool", Content: str("page")}, untrusted, &callOutcome{tool: tool, static: untrusted, h: &handle{}})
	if *c.msgs[0].Content != "page" || c.label.Integrity() != ifc.Untrusted {
		t.Errorf("without hiding: shown %q, label %v", *c.msgs[0].Content, c.label)
	}
}
