package web

import (
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/charset"
	"golang.org/x/text/encoding"
)

// decodeText converts body to UTF-8. The charset comes from a byte order
// mark, else the Content-Type header, else (for HTML) a <meta> element in
// the first 1024 bytes; a body without any of them is UTF-8 when it is valid
// UTF-8, else windows-1252, as browsers do.
func decodeText(body []byte, contentType string, isHTML bool) string {
	var enc encoding.Encoding
	if isHTML {
		e, name, certain := charset.DetermineEncoding(body, contentType)
		// DetermineEncoding guesses from the first 1024 bytes only; a guess
		// of windows-1252 is wrong for a body that is valid UTF-8 as a whole.
		if !certain && name == "windows-1252" && utf8.Valid(body) {
			e = encoding.Nop
		}
		enc = e
	} else {
		// A <meta> element means nothing in plain text: only the BOM and
		// the header count.
		e, _, certain := charset.DetermineEncoding(body, contentType)
		switch {
		case certain:
			enc = e
		case utf8.Valid(body):
			enc = encoding.Nop
		default:
			enc, _ = charset.Lookup("windows-1252")
		}
	}
	s := string(body)
	if enc != nil && enc != encoding.Nop {
		if b, err := enc.NewDecoder().Bytes(body); err == nil {
			s = string(b)
		}
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.TrimPrefix(s, "\uFEFF")
}

// page is what an HTML document reads as.
type page struct {
	title string
	text  string
}

// Elements whose content is never shown, and is dropped with them.
var dropped = map[string]bool{
	"head": true, "title": true, "script": true, "style": true, "noscript": true,
	"template": true, "iframe": true,
}

// Elements that start and end a line of text.
var blocks = map[string]bool{
	"address": true, "article": true, "aside": true, "blockquote": true, "body": true,
	"br": true, "caption": true, "dd": true, "details": true, "dialog": true, "div": true,
	"dl": true, "dt": true, "fieldset": true, "figcaption": true, "figure": true,
	"footer": true, "form": true, "h1": true, "h2": true, "h3": true, "h4": true,
	"h5": true, "h6": true, "header": true, "hgroup": true, "hr": true, "html": true,
	"legend": true, "li": true, "main": true, "menu": true, "nav": true, "ol": true,
	"option": true, "p": true, "pre": true, "section": true, "summary": true,
	"table": true, "tbody": true, "tfoot": true, "thead": true, "tr": true, "ul": true,
}

// parseHTML decodes body and returns its title and visible text: block
// elements end lines, table cells are separated by tabs, white space is
// collapsed (except inside <pre>), and a link reads "text (href)" with href
// resolved against base.
func parseHTML(body []byte, contentType string, base *url.URL) (page, error) {
	root, err := html.Parse(strings.NewReader(decodeText(body, contentType, true)))
	if err != nil {
		return page{}, err
	}
	p := page{title: title(root)}
	w := &textWriter{base: base}
	walk(root, w.enter, w.leave, func() bool { return w.b.Len() > maxText })
	p.text = w.b.String()
	return p, nil
}

// walk visits the tree under root in document order without recursion, so
// that deeply nested input cannot exhaust the stack. enter reports whether to
// visit a node's children; leave is called for every node entered that way.
func walk(root *html.Node, enter func(*html.Node) bool, leave func(*html.Node), stop func() bool) {
	n := root
	for !stop() {
		ok := enter(n)
		if ok && n.FirstChild != nil {
			n = n.FirstChild
			continue
		}
		if ok {
			leave(n)
		}
		for {
			if n == root {
				return
			}
			if n.NextSibling != nil {
				n = n.NextSibling
				break
			}
			n = n.Parent
			leave(n)
		}
	}
}

// title returns the text of the document's first HTML <title>.
func title(root *html.Node) string {
	var t *html.Node
	walk(root, func(n *html.Node) bool {
		if n.Type == html.ElementNode && n.Data == "title" && n.Namespace == "" {
			t = n
			return false
		}
		return true
	}, func(*html.Node) {}, func() bool { return t != nil })
	if t == nil {
		return ""
	}
	var b strings.Builder
	for c := t.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	}
	return strings.Join(strings.FieldsFunc(b.String(), unicode.IsSpace), " ")
}

// Separators between two pieces of text, by strength: a stronger one
// replaces a weaker one that is pending.
const (
	sepNone = iota
	sepSpace
	sepCell
	sepLine
)

type textWriter struct {
	b     strings.Builder
	sep   int // the separator owed before the next text
	pre   int // depth of <pre> elements
	base  *url.URL
	links []link
}

type link struct {
	start int    // length of the text when the link began
	href  string // absolute http(s) URL, or ""
}

func (w *textWriter) separate(sep int) { w.sep = max(w.sep, sep) }

// flush writes the pending separator, if any text came before it.
func (w *textWriter) flush() {
	if w.b.Len() > 0 {
		switch w.sep {
		case sepSpace:
			w.b.WriteByte(' ')
		case sepCell:
			w.b.WriteByte('\t')
		case sepLine:
			w.b.WriteByte('\n')
		}
	}
	w.sep = sepNone
}

func (w *textWriter) text(s string) {
	if w.pre > 0 {
		if s == "" {
			return
		}
		w.flush()
		w.b.WriteString(strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n"))
		return
	}
	words := strings.FieldsFunc(s, unicode.IsSpace)
	if len(words) == 0 {
		if s != "" {
			w.separate(sepSpace)
		}
		return
	}
	if r, _ := utf8.DecodeRuneInString(s); unicode.IsSpace(r) {
		w.separate(sepSpace)
	}
	for i, word := range words {
		if i > 0 {
			w.separate(sepSpace)
		}
		w.flush()
		w.b.WriteString(word)
	}
	if r, _ := utf8.DecodeLastRuneInString(s); unicode.IsSpace(r) {
		w.separate(sepSpace)
	}
}

func (w *textWriter) enter(n *html.Node) bool {
	switch n.Type {
	case html.DocumentNode:
		return true
	case html.TextNode:
		w.text(n.Data)
		return false
	case html.ElementNode:
	default: // comments, doctypes
		return false
	}
	name := strings.ToLower(n.Data)
	if dropped[name] {
		return false
	}
	switch {
	case blocks[name]:
		w.separate(sepLine)
	case name == "td" || name == "th":
		w.separate(sepCell)
	}
	switch name {
	case "pre":
		w.pre++
	case "a":
		w.links = append(w.links, link{start: w.b.Len(), href: w.href(n)})
	}
	return true
}

func (w *textWriter) leave(n *html.Node) {
	if n.Type != html.ElementNode {
		return
	}
	name := strings.ToLower(n.Data)
	switch name {
	case "pre":
		w.pre--
	case "a":
		if len(w.links) == 0 {
			break
		}
		l := w.links[len(w.links)-1]
		w.links = w.links[:len(w.links)-1]
		if l.href != "" && w.b.Len() > l.start && strings.TrimSpace(w.b.String()[l.start:]) != l.href {
			w.separate(sepSpace)
			w.flush()
			w.b.WriteString("(" + l.href + ")")
		}
	}
	if blocks[name] {
		w.separate(sepLine)
	}
}

// href returns the absolute http or https URL a link points to, or "" for
// any other link (fragments of this page, javascript:, mailto:).
func (w *textWriter) href(n *html.Node) string {
	for _, a := range n.Attr {
		if a.Namespace != "" || a.Key != "href" {
			continue
		}
		v := strings.TrimSpace(a.Val)
		if v == "" || strings.HasPrefix(v, "#") {
			return ""
		}
		u, err := url.Parse(v)
		if err != nil {
			return ""
		}
		if w.base != nil {
			u = w.base.ResolveReference(u)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return ""
		}
		return u.String()
	}
	return ""
}
