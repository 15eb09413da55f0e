package jsonappend

import (
	"encoding/json"
	"testing"
)

func TestAsMarshal(t *testing.T) {
	odd := []string{"", "plain", "a\"quote", `back\slash`, "<b>&amp;", "tab\t", "é", "\u2028", "bad\xff", "\x00"}
	for _, s := range odd {
		want, _ := json.Marshal(s)
		if got := String(nil, s); string(got) != string(want) {
			t.Errorf("String(%q) = %s, want %s", s, got, want)
		}
	}
	want, _ := json.Marshal(odd)
	if got := Strings([]byte("x"), odd); string(got) != "x"+string(want) {
		t.Errorf("Strings = %s, want x%s", got, want)
	}
	if got := Strings(nil, nil); string(got) != "[]" {
		t.Errorf("Strings(nil) = %s", got)
	}
}

func FuzzString(f *testing.F) {
	f.Add("a\"b<c>\u2028")
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := String(nil, s); string(got) != string(want) {
			t.Fatalf("String(%q) = %s, want %s", s, got, want)
		}
	})
}
