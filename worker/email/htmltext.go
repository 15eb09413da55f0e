package email

import (
	"strings"

	"golang.org/x/net/html"
)

// htmlText turns an HTML body into plain text: the visible text, a line
// break for each block element, and links as "text (url)". What CSS hides
// stays in: the sender wrote it, and the message's label says who that was.
func htmlText(src string) string {
	doc, err := html.Parse(strings.NewReader(src))
	if err != nil {
		return ""
	}
	var sb strings.Builder
	space := func() {
		if s := sb.String(); s != "" && s[len(s)-1] != ' ' && s[len(s)-1] != '\n' {
			sb.WriteByte(' ')
		}
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		switch n.Type {
		case html.TextNode:
			words := strings.Fields(n.Data)
			if len(words) == 0 {
				space()
				return
			}
			if n.Data[0] <= ' ' {
				space()
			}
			sb.WriteString(strings.Join(words, " "))
			if n.Data[len(n.Data)-1] <= ' ' {
				space()
			}
			return
		case html.ElementNode:
			switch n.Data {
			case "script", "style", "head", "title", "noscript", "template":
				return
			case "br":
				sb.WriteByte('\n')
				return
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
		if n.Type == html.ElementNode {
			switch n.Data {
			case "a":
				for _, a := range n.Attr {
					if a.Key == "href" && strings.HasPrefix(a.Val, "http") {
						sb.WriteString(" (" + a.Val + ")")
					}
				}
			case "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol", "section", "article":
				sb.WriteByte('\n')
			}
		}
	}
	walk(doc)
	// Trim each line, and keep at most one empty line in a row.
	var out []string
	for _, line := range strings.Split(sb.String(), "\n") {
		line = strings.TrimSpace(line)
		if line == "" && (len(out) == 0 || out[len(out)-1] == "") {
			continue
		}
		out = append(out, line)
	}
	return strings.TrimSpace(strings.Join(out, "\n"))
}
