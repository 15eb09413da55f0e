package schemas

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ScalarMap maps positions inside a string scalar's value to positions in
// its file, so that a diagnostic about a part of an expression gets its
// caret under that part. It handles every scalar style: plain, single-
// and double-quoted (with escapes and folded line breaks), literal (|) and
// folded (>). When the value cannot be matched to the raw text, every
// position maps to the scalar's start.
type ScalarMap struct {
	value []rune
	pos   []Pos // pos[i] is where value[i] is written; nil if unknown
	start Pos   // the scalar's position, the fallback
}

// token is one character of a scalar's raw text, after quoting is undone.
type token struct {
	r   rune
	pos Pos
}

// NewScalarMap maps the string scalar at ptr in doc, whose decoded value
// is value.
func NewScalarMap(doc *Document, ptr, value string) *ScalarMap {
	m := &ScalarMap{value: []rune(value), start: doc.Pos(ptr)}
	lines := SplitLines(string(doc.Source))
	// No more raw characters other than whitespace can be needed than the
	// value has runes: this bounds the scan of a plain scalar.
	budget := len(m.value) + 1
	var toks []token
	if start, flow := doc.ScalarStart(ptr); flow {
		toks = flowTokens(lines, start, budget)
	} else {
		toks = blockTokens(lines, m.start, budget)
	}
	m.pos = align(m.value, toks)
	return m
}

// At returns the file position of a location inside the value given as
// CEL gives it: a 1-based line and a 0-based column in code points.
func (m *ScalarMap) At(line, col int) Pos {
	if m.pos == nil || len(m.value) == 0 || line < 1 {
		return m.start
	}
	i := 0
	for l := 1; l < line && i < len(m.value); i++ {
		if m.value[i] == '\n' {
			l++
		}
	}
	i += max(col, 0)
	return m.pos[min(i, len(m.value)-1)]
}

// AtOffset returns the file position of the byte at offset off of the
// value; an offset outside it maps to the scalar's start.
func (m *ScalarMap) AtOffset(value string, off int) Pos {
	if off < 0 || off > len(value) {
		return m.start
	}
	before := value[:off]
	line := 1 + strings.Count(before, "\n")
	col := utf8.RuneCountInString(before[strings.LastIndexByte(before, '\n')+1:])
	return m.At(line, col)
}

// align matches the value's runes to the raw tokens: equal runes match; a
// raw line break matches a space the folding made of it; other raw
// whitespace is indentation or was folded away. Anything else means the
// raw text is not understood, and align returns nil.
func align(value []rune, toks []token) []Pos {
	pos := make([]Pos, len(value))
	t := 0
	for v := 0; v < len(value); {
		if t >= len(toks) {
			return nil
		}
		switch r := toks[t].r; {
		case r == value[v], r == '\n' && value[v] == ' ':
			pos[v] = toks[t].pos
			v++
			t++
		case r == '\n' || r == ' ' || r == '\t':
			t++
		default:
			return nil
		}
	}
	return pos
}

// flowTokens reads a plain or quoted scalar whose text starts at start.
func flowTokens(lines []string, start Pos, budget int) []token {
	if start.Line < 1 || start.Line > len(lines) {
		return nil
	}
	first := []rune(lines[start.Line-1])
	if start.Col < 1 || start.Col-1 > len(first) {
		return nil
	}
	quote := rune(0)
	if start.Col >= 2 && (first[start.Col-2] == '"' || first[start.Col-2] == '\'') {
		quote = first[start.Col-2]
	}
	var toks []token
	for ln := start.Line; ln <= len(lines) && budget > 0; ln++ {
		rs := []rune(lines[ln-1])
		c := 0
		if ln == start.Line {
			c = start.Col - 1
		}
		for ; c < len(rs) && budget > 0; c++ {
			if rs[c] != ' ' && rs[c] != '\t' {
				budget--
			}
			p := Pos{Line: ln, Col: c + 1}
			switch {
			case quote == '"' && rs[c] == '"', quote == '\'' && rs[c] == '\'' && (c+1 >= len(rs) || rs[c+1] != '\''):
				return toks
			case quote == '\'' && rs[c] == '\'':
				toks = append(toks, token{'\'', p})
				c++
			case quote == '"' && rs[c] == '\\':
				if c+1 >= len(rs) { // an escaped line break joins the lines
					c = len(rs)
					continue
				}
				r, n := unescape(rs[c+1:])
				toks = append(toks, token{r, p})
				c += n
			default:
				toks = append(toks, token{rs[c], p})
			}
		}
		toks = append(toks, token{'\n', Pos{Line: ln, Col: len(rs) + 1}})
	}
	return toks
}

// unescape decodes the escape sequence after a backslash in a
// double-quoted scalar; it returns the rune and how many runes it used.
func unescape(rs []rune) (rune, int) {
	hex := map[rune]int{'x': 2, 'u': 4, 'U': 8}
	if n, ok := hex[rs[0]]; ok && len(rs) > n {
		if v, err := strconv.ParseUint(string(rs[1:1+n]), 16, 32); err == nil && v <= unicode.MaxRune {
			return rune(v), 1 + n
		}
	}
	simple := map[rune]rune{'0': 0, 'a': '\a', 'b': '\b', 't': '\t', '\t': '\t', 'n': '\n', 'v': '\v',
		'f': '\f', 'r': '\r', 'e': 0x1b, ' ': ' ', '"': '"', '/': '/', '\\': '\\', 'N': 0x85,
		'_': 0xa0, 'L': 0x2028, 'P': 0x2029}
	if r, ok := simple[rs[0]]; ok {
		return r, 1
	}
	return utf8.RuneError, 1
}

// blockTokens reads a literal or folded block scalar whose indicator is at
// header: its content starts on the next line, indented by the indentation
// of the first line that is not blank.
func blockTokens(lines []string, header Pos, budget int) []token {
	if header.Line < 1 || header.Line >= len(lines) {
		return nil
	}
	indent := -1
	var toks []token
	for ln := header.Line + 1; ln <= len(lines) && budget > 0; ln++ {
		rs := []rune(lines[ln-1])
		if indent < 0 {
			if strings.TrimSpace(string(rs)) == "" {
				toks = append(toks, token{'\n', Pos{Line: ln, Col: len(rs) + 1}})
				continue
			}
			for indent = 0; indent < len(rs) && rs[indent] == ' '; indent++ {
			}
		}
		if len(rs) > indent && !allSpace(rs[:indent]) {
			break // less indented: the scalar has ended
		}
		for c := min(indent, len(rs)); c < len(rs); c++ {
			if rs[c] != ' ' && rs[c] != '\t' {
				budget--
			}
			toks = append(toks, token{rs[c], Pos{Line: ln, Col: c + 1}})
		}
		toks = append(toks, token{'\n', Pos{Line: ln, Col: len(rs) + 1}})
	}
	return toks
}

// SplitLines splits src at line breaks as the YAML decoder counts them:
// "\r\n", "\r", "\n", and U+0085, U+2028, U+2029.
func SplitLines(src string) []string {
	var lines []string
	start := 0
	for i := 0; i < len(src); {
		r, n := utf8.DecodeRuneInString(src[i:])
		switch r {
		case '\r':
			lines = append(lines, src[start:i])
			if strings.HasPrefix(src[i+1:], "\n") {
				n++
			}
			start = i + n
		case '\n', 0x85, 0x2028, 0x2029:
			lines = append(lines, src[start:i])
			start = i + n
		}
		i += n
	}
	return append(lines, src[start:])
}

func allSpace(rs []rune) bool {
	for _, r := range rs {
		if r != ' ' {
			return false
		}
	}
	return true
}
