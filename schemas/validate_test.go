package schemas

import (
	"encoding/json"
	"testing"
)

// ValidateValue, on values as the engine holds them (integers as int64),
// gives the verdict ValidateJSON gives on their encoding.
func TestValidateValueAsJSON(t *testing.T) {
	sch, err := Compile(map[string]any{
		"type": "object",
		"properties": map[string]any{
			"amount": map[string]any{"type": "number", "minimum": 0},
			"count":  map[string]any{"type": "integer"},
			"payee":  map[string]any{"type": "string", "pattern": "^acct_"},
			"tags":   map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
			"memo":   map[string]any{"type": []any{"string", "null"}},
		},
		"required":             []any{"amount", "payee"},
		"additionalProperties": false,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []map[string]any{
		{"amount": int64(5), "payee": "acct_a"},
		{"amount": 5.5, "payee": "acct_a", "count": int64(2), "tags": []any{"x"}, "memo": nil},
		{"amount": int64(-1), "payee": "acct_a"},
		{"amount": 5.0, "payee": "acct_a", "count": 2.5},
		{"amount": 5.0, "payee": "evil"},
		{"amount": 5.0},
		{"amount": 5.0, "payee": "acct_a", "tags": []any{int64(1)}},
		{"amount": "5", "payee": "acct_a"},
		{"amount": 5.0, "payee": "acct_a", "extra": true},
	} {
		b, _ := json.Marshal(v)
		_, jerr := sch.ValidateJSON(b)
		verr := sch.ValidateValue(v)
		if (jerr == nil) != (verr == nil) {
			t.Errorf("%s: ValidateJSON %v, ValidateValue %v", b, jerr, verr)
		}
	}
}
