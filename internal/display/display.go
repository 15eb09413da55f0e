// Package display makes strings that an attacker may have written safe to
// show to a person, in a terminal or on a web page.
//
// What a person reads before approving a call must be what would be sent.
// A mail's sender, an invite's organizer, a page's text, a tool name a
// model chose or an error a worker wrote can carry characters that do not
// show as themselves: a line break and an indent that forge a line
// ("untrusted, from user"), an escape sequence that clears the screen or
// moves the cursor, bidirectional controls that reorder what follows
// ("acct_1\u202e9lh" reads as "acct_1hl9"), zero-width characters that
// make two different strings look equal. [String] writes every such
// character as an escape, so that each shows, and [JSON] does the same for
// a value shown as JSON.
//
// # The escapes
//
// The escapes are those of a Go (or JSON) string literal, so that what is
// shown can be read back exactly: `\n`, `\t`, `\r`, `\a`, `\b`, `\f`, `\v`,
// `\x1b` for other ASCII controls (and for a byte that is not UTF-8),
// `\u202e` for a character of the Basic Multilingual Plane and
// `\U000e0041` above it. A backslash is written `\\`, so that no text can
// pass for an escape: the output of [String] read as the inside of a Go
// string literal (with `"` written `\"`) is the input.
//
// # Which characters
//
// [Hidden] reports the characters written as escapes: everything that is
// not a graphic character (C0 and C1 controls, ESC, DEL, the line and
// paragraph separators U+2028 and U+2029, private use, surrogates,
// unassigned code points); every format character (category Cf: the
// bidirectional controls U+200E, U+200F, U+061C, U+202A–U+202E,
// U+2066–U+2069, the zero-width U+200B–U+200D, U+2060–U+2064, U+FEFF,
// the tags U+E0000–U+E007F, the soft hyphen); every space other than
// U+0020 (U+00A0, U+2000–U+200A, U+3000, …, which look like a space but
// are not one); and the rest of Unicode's Default_Ignorable_Code_Point
// (variation selectors, the Hangul fillers U+115F, U+1160, U+3164, U+FFA0,
// the combining grapheme joiner U+034F) and noncharacters, which render as
// nothing.
package display

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mtibben/confusables"
)

// Hidden reports whether r is written as an escape by [String] and [JSON]:
// it would not show on screen as itself, or would change how what follows
// it shows. U+0020 is the one space that is not hidden.
func Hidden(r rune) bool {
	switch {
	case r == ' ':
		return false
	case r == '\\':
		return false
	case r == utf8.RuneError:
		// U+FFFD shows; a byte that is not UTF-8 is escaped by the
		// callers before they ask.
		return false
	case !unicode.IsGraphic(r),
		unicode.Is(unicode.Cf, r),
		unicode.Is(unicode.Zs, r),
		unicode.Is(unicode.Variation_Selector, r),
		unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r),
		unicode.Is(unicode.Noncharacter_Code_Point, r):
		return true
	}
	return false
}

// String returns s with every hidden character (see [Hidden]), every byte
// that is not UTF-8 and every backslash written as an escape. The result
// holds no hidden character and is valid UTF-8; text without any of those
// is returned unchanged. Use it for every string an attacker may have
// influenced before it is printed or put on a page: arguments, sources,
// tool names, error messages, reasons.
func String(s string) string {
	if clean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case Hidden(r):
			writeEscape(&b, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// clean reports whether String(s) == s.
func clean(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f || c == '\\' {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 || Hidden(r) {
			return false
		}
		i += n
	}
	return true
}

func writeEscape(b *strings.Builder, r rune) {
	switch r {
	case '\a':
		b.WriteString(`\a`)
	case '\b':
		b.WriteString(`\b`)
	case '\f':
		b.WriteString(`\f`)
	case '\n':
		b.WriteString(`\n`)
	case '\r':
		b.WriteString(`\r`)
	case '\t':
		b.WriteString(`\t`)
	case '\v':
		b.WriteString(`\v`)
	default:
		switch {
		case r < 0x80:
			fmt.Fprintf(b, `\x%02x`, r)
		case r <= 0xFFFF:
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			fmt.Fprintf(b, `\U%08x`, r)
		}
	}
}

// QuoteASCII is [String] with every character outside ASCII escaped as
// well, and `"` too, in quotes: for a value flagged as looking like
// another, so that the person sees which of its letters is not what it
// seems ("\u0430cct_hotel_1"). The result is a Go string literal of s.
func QuoteASCII(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r == '"':
			b.WriteString(`\"`)
		case r >= utf8.RuneSelf || Hidden(r):
			writeEscape(&b, r)
		default:
			b.WriteByte(byte(r))
		}
		i += n
	}
	b.WriteByte('"')
	return b.String()
}

// Strings applies [String] to each of ss, in a new slice.
func Strings(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = String(s)
	}
	return out
}

// List shows a list of strings an attacker may have influenced, such as a
// label's sources, joined by ", ". An item that holds a comma, a quote or a
// space, or is empty, is shown quoted, so that no item can pass for two
// ("email:x, user" is one source, not two).
func List(ss []string) string {
	var b strings.Builder
	for i, s := range ss {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(Item(s))
	}
	return b.String()
}

// Item is [String] of s, quoted when s holds a comma, a quote or a space
// or is empty: for one item of a list that [List] shows.
func Item(s string) string {
	v := String(s)
	if s != "" && !strings.ContainsAny(s, `, "`) {
		return v
	}
	return `"` + strings.ReplaceAll(v, `"`, `\"`) + `"`
}

// JSON renders v as JSON (strings quoted, no HTML escaping, indented by
// indent when it is not empty) with every hidden character written as a
// \u escape (a UTF-16 pair above U+FFFF), so that the result is still
// JSON that decodes to v, and holds no hidden character but the line
// breaks and spaces of the indentation.
func JSON(v any, indent string) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if indent != "" {
		enc.SetIndent("", indent)
	}
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	s := strings.TrimSuffix(b.String(), "\n")
	var out strings.Builder
	for _, r := range s {
		// encoding/json writes valid UTF-8 and escapes the C0 controls
		// in strings; a line break or a space outside a string is its
		// indentation.
		if r == '\n' || !Hidden(r) {
			out.WriteRune(r)
			continue
		}
		if r > 0xFFFF {
			r -= 0x10000
			fmt.Fprintf(&out, `\u%04x\u%04x`, 0xD800+(r>>10)&0x3FF, 0xDC00+r&0x3FF)
			continue
		}
		fmt.Fprintf(&out, `\u%04x`, r)
	}
	return out.String(), nil
}

// Skeleton is the skeleton of s that Unicode Technical Standard #39
// (section 4, Confusable Detection) defines: s in NFD, without its
// default-ignorable characters (here: the ones [Hidden] reports), each
// character mapped to its prototype in the standard's confusables.txt, and
// in NFD again. Two strings that have the same skeleton look alike to a
// person: "acct_hotel_1" and "аcct_hotel_1" (a Cyrillic а) do.
//
// # Notes
//
// The mapping is github.com/mtibben/confusables's table of
// confusables.txt for Unicode 13.0: a character added to the standard's
// list since is not mapped, and so two strings that differ by it are not
// found alike. Skeletons are for comparing only; never show one.
func Skeleton(s string) string {
	return confusables.Skeleton(strings.Map(func(r rune) rune {
		if r != ' ' && Hidden(r) {
			return -1
		}
		return r
	}, s))
}

// Confusable reports whether a and b look alike ([Skeleton]) but are not
// the same string: what a person could take for the other.
func Confusable(a, b string) bool {
	return a != b && Skeleton(a) == Skeleton(b)
}
