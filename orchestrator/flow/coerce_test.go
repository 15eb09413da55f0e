package flow

import "testing"

// Coerce converts a value given on the command line (a string) or as a
// default (as YAML decoded it) to its input's type, or says what it wanted.
func TestCoerce(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		v    any
		want any
		err  string
	}{
		{"string", "x", "x", ""},
		{"string", int64(1), nil, "want a string, got int64"},
		{"number", 1.5, 1.5, ""},
		{"number", int64(2), float64(2), ""},
		{"number", "2.5", 2.5, ""},
		{"number", "two", nil, `want a number, got "two"`},
		{"number", true, nil, "want a number, got bool"},
		{"number", "NaN", nil, `want a finite number, got "NaN"`},
		{"number", "-Inf", nil, `want a finite number, got "-Inf"`},
		{"number", "infinity", nil, `want a finite number, got "infinity"`},
		{"number", "1e400", nil, `want a number, got "1e400"`},
		{"integer", int64(3), int64(3), ""},
		{"integer", "-4", int64(-4), ""},
		{"integer", "4.0", nil, `want an integer, got "4.0"`},
		{"integer", 4.0, nil, "want a integer, got float64"},
		{"boolean", true, true, ""},
		{"boolean", "false", false, ""},
		{"boolean", "1", true, ""},
		{"boolean", "yes", nil, `want true or false, got "yes"`},
		{"boolean", int64(1), nil, "want a boolean, got int64"},
		{"object", "x", nil, "want a object, got string"},
	} {
		got, err := Coerce(tc.typ, tc.v)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if got != tc.want || gotErr != tc.err {
			t.Errorf("Coerce(%s, %#v) = %#v, %q; want %#v, %q", tc.typ, tc.v, got, gotErr, tc.want, tc.err)
		}
	}
}
