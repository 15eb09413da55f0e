package display

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"plain", "web:127.0.0.1:8088", "web:127.0.0.1:8088"},
		{"unicode letters stay", "email:zoë@例え.example", "email:zoë@例え.example"},
		{"line break and a forged line", "acct_1\n    trusted, from user", `acct_1\n    trusted, from user`},
		{"clear screen", "x\x1b[2J\x1b[H", `x\x1b[2J\x1b[H`},
		{"carriage return", "a\rb", `a\rb`},
		{"DEL and C1", "a\x7fb\u0085c\u009bd", `a\x7fb\u0085c\u009bd`},
		{"line and paragraph separators", "a\u2028b\u2029c", `a\u2028b\u2029c`},
		{"bidi override", "acct_1\u202e9lh", `acct_1\u202e9lh`},
		{"bidi isolates and marks", "\u2066a\u2069\u200e\u200f\u061c", `\u2066a\u2069\u200e\u200f\u061c`},
		{"zero width", "a\u200bb\u200cc\u200dd\u2060e\ufefff", `a\u200bb\u200cc\u200dd\u2060e\ufefff`},
		{"tags", "a\U000E0041", `a\U000e0041`},
		{"other spaces", "a\u00a0b\u2007c\u3000d", `a\u00a0b\u2007c\u3000d`},
		{"fillers and selectors", "\u3164\u115f\ufe0f\u034f", `\u3164\u115f\ufe0f\u034f`},
		{"backslash", `a\nb`, `a\\nb`},
		{"not UTF-8", "a\xffb", `a\xffb`},
		{"soft hyphen", "pay\u00adee", `pay\u00adee`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := String(tt.in); got != tt.want {
				t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []string
		want string
	}{
		{"plain", []string{"user", "web:a.example:443"}, "user, web:a.example:443"},
		{"a comma cannot make two", []string{"calendar:x, user"}, `"calendar:x, user"`},
		{"quote", []string{`a"b`}, `"a\"b"`},
		{"empty", []string{""}, `""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := List(tt.in); got != tt.want {
				t.Errorf("List(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestJSON(t *testing.T) {
	t.Parallel()
	v := map[string]any{"payee": "acct_1\u202e9lh", "memo": "a\nb\x1b[2J", "tag": "x\U000E0041"}
	got, err := JSON(v, "")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"memo":"a\nb\u001b[2J","payee":"acct_1\u202e9lh","tag":"x\udb40\udc41"}`
	if got != want {
		t.Fatalf("JSON = %s, want %s", got, want)
	}
	var back map[string]any
	if err := json.Unmarshal([]byte(got), &back); err != nil || back["payee"] != v["payee"] || back["tag"] != v["tag"] {
		t.Fatalf("JSON does not decode to the value: %v %q", err, back)
	}
}

func TestConfusable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b string
		want bool
	}{
		{"Cyrillic a", "\u0430cct_hotel_1", "acct_hotel_1", true},
		{"Greek omicron", "b\u03bfb@x.example", "bob@x.example", true},
		{"zero width inside", "acct_hotel\u200b_1", "acct_hotel_1", true},
		{"digit one and letter l", "acct_hote1_1", "acct_hotel_1", true},
		{"equal is not confusable", "acct_hotel_1", "acct_hotel_1", false},
		{"different", "acct_attacker", "acct_hotel_1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Confusable(tt.a, tt.b); got != tt.want {
				t.Errorf("Confusable(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

// FuzzString checks that what String shows holds no hidden character, is
// UTF-8, and reads back, as a Go string literal, as exactly the input —
// so no two strings show alike. The same holds of JSON for the JSON
// encoding of the string.
func FuzzString(f *testing.F) {
	for _, s := range []string{"", "plain", "a\nb", "\x1b[2J", "acct_1\u202e9lh", "\u0430cct", `\u202e`,
		"a\xffb", "\U000E0041", "\u2028", "\"quoted\"", "\u3164"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := String(s)
		check := func(what, out string, allow func(rune) bool) {
			if !utf8.ValidString(out) {
				t.Fatalf("%s(%q) = %q: not UTF-8", what, s, out)
			}
			for _, r := range out {
				if Hidden(r) && !allow(r) {
					t.Fatalf("%s(%q) = %q holds %U", what, s, out, r)
				}
			}
		}
		check("String", out, func(rune) bool { return false })
		back, err := strconv.Unquote(`"` + strings.ReplaceAll(out, `"`, `\"`) + `"`)
		if err != nil || back != s {
			t.Fatalf("String(%q) = %q reads back as %q (%v)", s, out, back, err)
		}
		if utf8.ValidString(s) {
			for _, indent := range []string{"", "  "} {
				j, err := JSON(map[string]any{"v": s}, indent)
				if err != nil {
					t.Fatal(err)
				}
				check("JSON", j, func(r rune) bool { return r == '\n' && indent != "" })
				var got map[string]string
				if err := json.Unmarshal([]byte(j), &got); err != nil || got["v"] != s {
					t.Fatalf("JSON(%q) = %s decodes as %q (%v)", s, j, got["v"], err)
				}
			}
		}
		q := QuoteASCII(s)
		for _, r := range q {
			if r >= utf8.RuneSelf || Hidden(r) {
				t.Fatalf("QuoteASCII(%q) = %q holds %U", s, q, r)
			}
		}
		if back, err := strconv.Unquote(q); err != nil || back != s {
			t.Fatalf("QuoteASCII(%q) = %s reads back as %q (%v)", s, q, back, err)
		}
		if Item(s) == "" {
			t.Fatalf("Item(%q) is empty", s)
		}
	})
}
