package agent

import (
	"encoding/json"
	"testing"
)

func TestNarrowSchema(t *testing.T) {
	for _, src := range []string{`{"type":"boolean"}`, `{"type":"string","enum":["a","b"]}`,
		`{"type":"number","minimum":0,"maximum":10}`, `{"type":"string","format":"date"}`} {
		var s map[string]any
		_ = json.Unmarshal([]byte(src), &s)
		if p := NarrowSchema(s); p != "" {
			t.Errorf("%s refused: %s", src, p)
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
