// Package echo finds the secrets the orchestrator holds in text, in every
// form it knows: plain, base64 (standard and URL alphabets, at each of the
// three alignments a secret can have inside a longer encoded string),
// hex, URL-encoding, JSON \u escapes and HTML character references (any
// case of their hex digits), and UTF-16. Text that escapes only some
// characters (a JSON string with one \u escape in the key, a page with one
// entity) is found by searching the text once more with each of those
// escapes decoded.
//
// The forms of every secret are computed once, by New; a search is a few
// substring scans per form.
package echo

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"html"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
)

// Redacted replaces a secret's echo.
const Redacted = "[redacted]"

// Matcher finds secrets. The zero Matcher and a nil *Matcher find nothing.
type Matcher struct {
	secrets []secret
}

type secret struct {
	name  string
	plain []byte
	exact [][]byte // forms compared byte for byte, longest first
	fold  [][]byte // forms compared ignoring ASCII case, in lower case, longest first
}

// New computes the forms of each secret, by name.
func New(secrets map[string][]byte) *Matcher {
	m := &Matcher{}
	names := make([]string, 0, len(secrets))
	for n := range secrets {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		v := secrets[n]
		if len(v) == 0 {
			continue
		}
		exact, fold := forms(v)
		m.secrets = append(m.secrets, secret{name: n, plain: bytes.Clone(v), exact: exact, fold: fold})
	}
	return m
}

func forms(v []byte) (exact, fold [][]byte) {
	exact = append(exact, bytes.Clone(v))
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		for k := range 3 {
			exact = append(exact, aligned(enc, v, k))
		}
	}
	u16le, u16be := make([]byte, 0, 2*len(v)), make([]byte, 0, 2*len(v))
	for _, r := range utf16.Encode([]rune(string(v))) {
		u16le = append(u16le, byte(r), byte(r>>8))
		u16be = append(u16be, byte(r>>8), byte(r))
	}
	exact = append(exact, u16le, u16be)

	lower := func(s string) []byte { return []byte(strings.ToLower(s)) }
	fold = append(fold, lower(hex.EncodeToString(v)), lower(url.QueryEscape(string(v))), lower(url.PathEscape(string(v))))
	var pct, ju, dec, hx strings.Builder
	for _, c := range v {
		fmt.Fprintf(&pct, "%%%02x", c)
	}
	for _, r := range string(v) {
		if r > 0xffff {
			a, b := utf16.EncodeRune(r)
			fmt.Fprintf(&ju, `\u%04x\u%04x`, a, b)
		} else {
			fmt.Fprintf(&ju, `\u%04x`, r)
		}
		fmt.Fprintf(&dec, "&#%d;", r)
		fmt.Fprintf(&hx, "&#x%x;", r)
	}
	fold = append(fold, []byte(pct.String()), []byte(ju.String()), []byte(dec.String()), []byte(hx.String()))
	sortForms := func(f [][]byte) [][]byte {
		slices.SortStableFunc(f, func(a, b []byte) int { return len(b) - len(a) })
		return slices.CompactFunc(f, bytes.Equal)
	}
	return sortForms(exact), sortForms(fold)
}

// aligned is the part of the base64 encoding of v, placed k bytes into a
// longer string, that depends on v alone: the characters that mix in the
// bytes before or after it are cut.
func aligned(enc *base64.Encoding, v []byte, k int) []byte {
	buf := make([]byte, k+len(v))
	copy(buf[k:], v)
	s := enc.EncodeToString(buf)
	n := len(buf)
	end := n / 3 * 4
	switch n % 3 {
	case 1:
		end++
	case 2:
		end += 2
	}
	start := [3]int{0, 2, 3}[k]
	return []byte(s[start:end])
}

// Replace returns b with every echo of a secret in a form of its own
// replaced by Redacted, and the names of the secrets it replaced.
func (m *Matcher) Replace(b []byte) ([]byte, []string) {
	if m == nil {
		return b, nil
	}
	var found []string
	for _, s := range m.secrets {
		hit := false
		for _, f := range s.exact {
			if bytes.Contains(b, f) {
				b, hit = bytes.ReplaceAll(b, f, []byte(Redacted)), true
			}
		}
		for _, f := range s.fold {
			var ok bool
			if b, ok = replaceFold(b, f); ok {
				hit = true
			}
		}
		if hit {
			found = append(found, s.name)
		}
	}
	return b, found
}

// replaceFold replaces every occurrence of f (lower case) in b, ignoring
// ASCII case. Lowering ASCII keeps every byte where it was.
func replaceFold(b, f []byte) ([]byte, bool) {
	low := asciiLower(b)
	if !bytes.Contains(low, f) {
		return b, false
	}
	var out []byte
	for {
		i := bytes.Index(low, f)
		if i < 0 {
			return append(out, b...), true
		}
		out = append(append(out, b[:i]...), Redacted...)
		b, low = b[i+len(f):], low[i+len(f):]
	}
}

func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// Find returns the names of the secrets s holds, in any form Replace
// knows or in plain once JSON \u escapes, HTML character references or
// URL escapes in s are decoded.
func (m *Matcher) Find(s string) []string {
	if m == nil || len(m.secrets) == 0 {
		return nil
	}
	b := []byte(s)
	low := asciiLower(b)
	var found []string
	var variants []string
	decodedOnce := false
	for _, sec := range m.secrets {
		if sec.in(b, low) {
			found = append(found, sec.name)
			continue
		}
		if !decodedOnce {
			variants, decodedOnce = decoded(s), true
		}
		for _, v := range variants {
			if strings.Contains(v, string(sec.plain)) {
				found = append(found, sec.name)
				break
			}
		}
	}
	return found
}

// in reports whether b (low: b in ASCII lower case) holds a form of s.
func (s *secret) in(b, low []byte) bool {
	for _, f := range s.exact {
		if bytes.Contains(b, f) {
			return true
		}
	}
	for _, f := range s.fold {
		if bytes.Contains(low, f) {
			return true
		}
	}
	return false
}

var jsonEscape = regexp.MustCompile(`\\u[0-9a-fA-F]{4}`)

// decoded returns s with each escape scheme decoded, where s has any.
func decoded(s string) []string {
	var out []string
	if strings.Contains(s, `\u`) {
		out = append(out, jsonEscape.ReplaceAllStringFunc(s, func(e string) string {
			n, _ := strconv.ParseUint(e[2:], 16, 16)
			return string(rune(n))
		}))
	}
	if strings.Contains(s, "&") {
		out = append(out, html.UnescapeString(s))
	}
	if strings.Contains(s, "%") {
		if u, err := url.PathUnescape(s); err == nil {
			out = append(out, u)
		} else {
			out = append(out, percentLenient(s))
		}
	}
	return out
}

// percentLenient decodes every well-formed %xx and leaves the rest.
func percentLenient(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
