package expr

import "strings"

// segment is a literal run of text or the position of one ${…}.
type segment struct {
	lit    string // unescaped text, when isExpr is false
	open   int    // offset of "${"
	start  int    // offset of the expression text, just after "${"
	end    int    // offset of the closing "}"
	isExpr bool
}

// split cuts s into literal text and expressions, scanning left to right:
// "$${" is a literal "${", "${" opens an expression. An expression ends at
// the first "}" that closes no "{" opened inside it and is outside CEL
// string literals and comments, so ${ {'a': '}'}['a'] } is one expression.
// A "${" with no such "}" is an error; the segments before it are returned.
func split(s string) ([]segment, *Error) {
	var segs []segment
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			segs = append(segs, segment{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			lit.WriteString("${")
			i += 3
		case strings.HasPrefix(s[i:], "${"):
			end := scanExpr(s, i+2)
			if end < 0 {
				flush()
				return segs, &Error{Offset: i, Code: CodeUnterminated,
					Message: `"${" is not closed: no matching "}" (check for an unbalanced brace or quote)`}
			}
			flush()
			segs = append(segs, segment{open: i, start: i + 2, end: end, isExpr: true})
			i = end + 1
		default:
			lit.WriteByte(s[i])
			i++
		}
	}
	flush()
	return segs, nil
}

// scanExpr returns the offset of the "}" that ends the expression starting
// at from, or -1.
func scanExpr(s string, from int) int {
	depth := 0
	for i := from; i < len(s); i++ {
		switch c := s[i]; c {
		case '{':
			depth++
		case '}':
			if depth == 0 {
				return i
			}
			depth--
		case '\'', '"':
			raw := i > from && (s[i-1] == 'r' || s[i-1] == 'R')
			end := skipString(s, i, raw)
			if end < 0 {
				return -1
			}
			i = end
		case '/':
			if i+1 < len(s) && s[i+1] == '/' {
				nl := strings.IndexByte(s[i:], '\n')
				if nl < 0 {
					return -1
				}
				i += nl
			}
		}
	}
	return -1
}

// skipString returns the offset of the last byte of the CEL string literal
// whose opening quote is at i, or -1 when it is not closed.
func skipString(s string, i int, raw bool) int {
	q := s[i : i+1]
	if strings.HasPrefix(s[i:], q+q+q) {
		q = q + q + q
	}
	for j := i + len(q); j < len(s); j++ {
		if s[j] == '\\' && !raw {
			j++
			continue
		}
		if strings.HasPrefix(s[j:], q) {
			return j + len(q) - 1
		}
	}
	return -1
}
