package echo

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"
)

const key = "sk-echo-canary-7f3a9c"

func TestFindsEveryForm(t *testing.T) {
	t.Parallel()
	m := New(map[string][]byte{"api": []byte(key)})
	u16 := func(s string) string {
		var b []byte
		for _, r := range utf16.Encode([]rune(s)) {
			b = append(b, byte(r), byte(r>>8))
		}
		return string(b)
	}
	var ju, ent strings.Builder
	for i, r := range key {
		if i%2 == 0 {
			fmt.Fprintf(&ju, `\u%04X`, r)
			fmt.Fprintf(&ent, "&#x%X;", r)
		} else {
			ju.WriteRune(r)
			fmt.Fprintf(&ent, "&#%d;", r)
		}
	}
	jsonAll, _ := json.Marshal(key)
	cases := map[string]string{
		"plain":              "x " + key + " y",
		"base64 user:key":    base64.StdEncoding.EncodeToString([]byte("user:" + key)),
		"base64 us:key":      base64.StdEncoding.EncodeToString([]byte("us:" + key + "!")),
		"base64 u:key":       base64.URLEncoding.EncodeToString([]byte("u:" + key + "!!")),
		"hex upper":          strings.ToUpper(hex.EncodeToString([]byte(key))),
		"url lower %xx":      strings.ToLower(strings.NewReplacer("-", "%2D", "k", "%6B").Replace(key)),
		"json \\u some":      ju.String(),
		"html entities":      ent.String(),
		"html one entity":    strings.Replace(key, "c", "&#99;", 1),
		"utf-16":             u16(key),
		"json plain":         string(jsonAll),
		"html escape string": html.EscapeString(key),
	}
	for name, text := range cases {
		if got := m.Find(text); !slices.Equal(got, []string{"api"}) {
			t.Errorf("%s: Find = %v, want [api]", name, got)
		}
	}
	// Controls: text without the key, and a near miss.
	for _, text := range []string{"nothing here", key[:len(key)-1], base64.StdEncoding.EncodeToString([]byte("user:other-value-1234"))} {
		if got := m.Find(text); got != nil {
			t.Errorf("Find(%q) = %v, want nothing", text, got)
		}
	}
}

func TestReplace(t *testing.T) {
	t.Parallel()
	m := New(map[string][]byte{"api": []byte(key)})
	in := "a " + key + " b " + base64.StdEncoding.EncodeToString([]byte("user:"+key)) + " c " + strings.ToUpper(hex.EncodeToString([]byte(key)))
	out, found := m.Replace([]byte(in))
	if !slices.Equal(found, []string{"api"}) || m.Find(string(out)) != nil || !strings.HasPrefix(string(out), "a "+Redacted+" b ") {
		t.Errorf("Replace = %q, %v", out, found)
	}
	if out, found := m.Replace([]byte("clean text")); string(out) != "clean text" || found != nil {
		t.Errorf("Replace of clean text = %q, %v", out, found)
	}
	var none *Matcher
	if none.Find(key) != nil {
		t.Error("a nil Matcher found something")
	}
}

// BenchmarkFind: one 4 KiB tool output against three secrets.
func BenchmarkFind(b *testing.B) {
	m := New(map[string][]byte{"a": []byte(key), "b": []byte("another-secret-value-1"), "c": []byte("third-secret-0000")})
	text := strings.Repeat("Flights to Lisbon from 289 EUR & more; see https://x.example/?q=1%20 ", 60)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if m.Find(text) != nil {
			b.Fatal("found")
		}
	}
}
