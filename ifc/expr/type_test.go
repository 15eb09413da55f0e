package expr

import "testing"

func TestJSONType(t *testing.T) {
	env, err := NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	for src, want := range map[string]string{
		"${'a' + 'b'}":             "string",
		"${1 + 2}":                 "integer",
		"${1.5 * 2.0}":             "number",
		"${1 < 2}":                 "boolean",
		"${[1, 2]}":                "array",
		"${{'a': 1}}":              "object",
		"${null}":                  "null",
		"${steps.a.output.price}":  "",
		"total ${1 + 2}":           "string",
		"${size(inputs.x) > 3}":    "boolean",
		"${string(inputs.budget)}": "string",
	} {
		tmpl, err := env.Compile(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if got := tmpl.JSONType(); got != want {
			t.Errorf("JSONType(%q) = %q, want %q", src, got, want)
		}
	}
}
