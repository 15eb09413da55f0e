package schemas

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"go.yaml.in/yaml/v3"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Codes of the diagnostics this file produces.
const (
	CodeYAMLSyntax     = "yaml_syntax"
	CodeYAMLFeature    = "yaml_feature" // anchors, aliases, merge keys, several documents
	CodeYAMLDuplicate  = "yaml_duplicate_key"
	CodeSchemaUnknown  = "schema_unknown_key"
	CodeSchemaMissing  = "schema_missing_key"
	CodeSchemaMismatch = "schema_mismatch"
)

// Document is a YAML file decoded for checking: its value in JSON form
// (map[string]any, []any, string, int64, float64, bool, nil) and the
// position of every value and key, by JSON pointer ("/steps/0/call").
type Document struct {
	File   string
	Source []byte
	Value  any

	nodes map[string]*yaml.Node
	keys  map[string]*yaml.Node
}

// ParseYAML decodes src. It refuses what hides from a reviewer what will
// run: several documents, anchors, aliases, merge keys and duplicate keys.
// Every problem is reported, with its position.
func ParseYAML(file string, src []byte) (*Document, Diagnostics) {
	d := &Document{File: file, Source: src, nodes: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}}
	var ds Diagnostics
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			ds.Add(file, Pos{1, 1}, CodeYAMLSyntax, "the file is empty")
			return nil, ds
		}
		ds = append(ds, syntaxDiag(file, err))
		return nil, ds
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		ds.Add(file, Pos{extra.Line, extra.Column}, CodeYAMLFeature, "a second YAML document; one file holds one document")
	} else if !errors.Is(err, io.EOF) {
		ds = append(ds, syntaxDiag(file, err))
	}
	n := &root
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	d.Value = d.convert(n, "", &ds)
	if ds.Err() != nil {
		return nil, ds
	}
	return d, ds
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func syntaxDiag(file string, err error) Diagnostic {
	msg := err.Error()
	line := 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	return Diagnostic{File: file, Line: line, Col: 1, Code: CodeYAMLSyntax, Severity: SeverityError, Message: "yaml: " + msg}
}

func (d *Document) convert(n *yaml.Node, ptr string, ds *Diagnostics) any {
	d.nodes[ptr] = n
	if n.Anchor != "" {
		ds.Add(d.File, Pos{n.Line, n.Column}, CodeYAMLFeature, "anchor &%s: anchors and aliases are not allowed, write the value out", n.Anchor)
	}
	switch n.Kind {
	case yaml.AliasNode:
		ds.Add(d.File, Pos{n.Line, n.Column}, CodeYAMLFeature, "alias *%s: anchors and aliases are not allowed, write the value out", n.Value)
		return nil
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				ds.Add(d.File, Pos{k.Line, k.Column}, CodeYAMLFeature, "a key must be a plain string")
				continue
			}
			if k.Tag == "!!merge" {
				ds.Add(d.File, Pos{k.Line, k.Column}, CodeYAMLFeature, "merge key <<: is not allowed, write the keys out")
				continue
			}
			if _, dup := m[k.Value]; dup {
				first := d.keys[ptr+"/"+escape(k.Value)]
				ds.Add(d.File, Pos{k.Line, k.Column}, CodeYAMLDuplicate, "duplicate key %q (first at line %d)", k.Value, first.Line)
				continue
			}
			cp := ptr + "/" + escape(k.Value)
			d.keys[cp] = k
			m[k.Value] = d.convert(v, cp, ds)
		}
		return m
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for i, c := range n.Content {
			s = append(s, d.convert(c, ptr+"/"+strconv.Itoa(i), ds))
		}
		return s
	case yaml.ScalarNode:
		return scalar(n)
	}
	return nil
}

func scalar(n *yaml.Node) any {
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!bool":
		var b bool
		if n.Decode(&b) == nil {
			return b
		}
	case "!!int":
		var i int64
		if n.Decode(&i) == nil {
			return i
		}
	case "!!float":
		var f float64
		if n.Decode(&f) == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return f
		}
	}
	return n.Value
}

func escape(tok string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
}

// Pointer joins reference tokens into a JSON pointer.
func Pointer(tokens ...any) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(escape(fmt.Sprint(t)))
	}
	return b.String()
}

// Pos returns the position of the value at ptr, or of its nearest ancestor
// when ptr names nothing in the file.
func (d *Document) Pos(ptr string) Pos {
	for {
		if n, ok := d.nodes[ptr]; ok {
			return Pos{n.Line, n.Column}
		}
		i := strings.LastIndexByte(ptr, '/')
		if i < 0 {
			return Pos{1, 1}
		}
		ptr = ptr[:i]
	}
}

// KeyPos returns the position of the key whose value is at ptr, falling back
// to Pos(ptr).
func (d *Document) KeyPos(ptr string) Pos {
	if k, ok := d.keys[ptr]; ok {
		return Pos{k.Line, k.Column}
	}
	return d.Pos(ptr)
}

// ScalarStart returns where the text of the string scalar at ptr begins:
// after the opening quote for quoted styles, on the next line for block
// scalars. ok is false for block scalars (their text spans lines; callers
// map positions line by line) and for non-scalars.
func (d *Document) ScalarStart(ptr string) (pos Pos, ok bool) {
	n, found := d.nodes[ptr]
	if !found || n.Kind != yaml.ScalarNode {
		return Pos{}, false
	}
	switch n.Style {
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		return Pos{n.Line, n.Column + 1}, true
	case yaml.LiteralStyle, yaml.FoldedStyle:
		return Pos{n.Line, n.Column}, false
	}
	return Pos{n.Line, n.Column}, true
}

var printer = message.NewPrinter(language.English)

// Validate checks the document against sch and maps every error to the
// position of the value (or, for unknown keys, of the key) it is about.
func (d *Document) Validate(sch *Schema) Diagnostics {
	return sch.check(d.File, d.Value, "", d.Pos, d.KeyPos)
}

// ValidateAt checks the value at ptr against sch, as Validate does the
// whole document: each problem at its position in the file, named by its
// path from the document's root.
func (d *Document) ValidateAt(ptr string, sch *Schema) Diagnostics {
	v, ok := d.At(ptr)
	if !ok {
		return nil
	}
	return sch.check(d.File, v, ptr, func(p string) Pos { return d.Pos(ptr + p) }, func(p string) Pos { return d.KeyPos(ptr + p) })
}

// At returns the value at ptr.
func (d *Document) At(ptr string) (any, bool) {
	v := d.Value
	if ptr == "" {
		return v, true
	}
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[tok]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

func (sch *Schema) check(file string, v any, prefix string, pos, keyPos func(string) Pos) Diagnostics {
	err := sch.compiled.Validate(v)
	var ve *jsonschema.ValidationError
	if err == nil || !errors.As(err, &ve) {
		if err != nil {
			return Diagnostics{{File: file, Line: 1, Col: 1, Code: CodeSchemaMismatch, Severity: SeverityError, Message: err.Error()}}
		}
		return nil
	}
	var ds Diagnostics
	seen := map[string]bool{}
	for _, leaf := range leaves(ve) {
		ptr := ""
		if len(leaf.InstanceLocation) > 0 {
			ptr = Pointer(anySlice(leaf.InstanceLocation)...)
		}
		switch k := leaf.ErrorKind.(type) {
		case *kind.AdditionalProperties:
			for _, p := range k.Properties {
				cp := ptr + "/" + escape(p)
				if seen[cp] {
					continue
				}
				seen[cp] = true
				msg := fmt.Sprintf("unknown key %q", p)
				if s := suggest(p, sch.keys(leaf.SchemaURL)); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				ds.Add(file, keyPos(cp), CodeSchemaUnknown, "%s", msg)
			}
		case *missingOneOf:
			ds.Add(file, pos(ptr), CodeSchemaMissing, "%s: %s", where(prefix+ptr), k.LocalizedString(printer))
		case *kind.Required:
			for _, p := range k.Missing {
				ds.Add(file, pos(ptr), CodeSchemaMissing, "%s: missing required key %q", where(prefix+ptr), p)
			}
		default:
			msg := leaf.ErrorKind.LocalizedString(printer)
			if p, ok := k.(*kind.Pattern); ok {
				// A pattern says what it wants in words, not as a
				// regular expression, when its schema has one.
				if hint, _ := sch.node(leaf.SchemaURL)["x-pattern-message"].(string); hint != "" {
					msg = fmt.Sprintf("%q is not %s", p.Got, hint)
				}
			}
			key := ptr + "\x00" + msg
			if seen[key] {
				continue
			}
			seen[key] = true
			ds.Add(file, pos(ptr), CodeSchemaMismatch, "%s: %s", where(prefix+ptr), msg)
		}
	}
	ds.Sort()
	return ds
}

func where(ptr string) string {
	if ptr == "" {
		return "document"
	}
	return strings.ReplaceAll(strings.TrimPrefix(ptr, "/"), "/", ".")
}

func anySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// leaves flattens a validation error tree. Under oneOf/anyOf the branch
// that got deepest into the instance is kept, so that the user sees the
// complaint about the shape they were evidently writing.
func leaves(e *jsonschema.ValidationError) []*jsonschema.ValidationError {
	if len(e.Causes) == 0 {
		return []*jsonschema.ValidationError{e}
	}
	switch e.ErrorKind.(type) {
	case *kind.OneOf, *kind.AnyOf:
		if m := missingOne(e); m != nil {
			return []*jsonschema.ValidationError{m}
		}
		best := e.Causes[0]
		for _, c := range e.Causes[1:] {
			if depth(c) > depth(best) {
				best = c
			}
		}
		return leaves(best)
	}
	var out []*jsonschema.ValidationError
	for _, c := range e.Causes {
		out = append(out, leaves(c)...)
	}
	return out
}

// missingOneOf is an anyOf or oneOf whose every branch wants a key the
// object lacks: one of the keys would do.
type missingOneOf struct{ keys []string }

func (k *missingOneOf) KeywordPath() []string { return []string{"anyOf"} }

func (k *missingOneOf) LocalizedString(*message.Printer) string {
	q := make([]string, len(k.keys))
	for i, key := range k.keys {
		q[i] = strconv.Quote(key)
	}
	return "missing one of the keys " + strings.Join(q, ", ")
}

// missingOne merges the branches of e when each only misses required keys
// of the same object, so the user is told every key that would do rather
// than the first branch's.
func missingOne(e *jsonschema.ValidationError) *jsonschema.ValidationError {
	var keys []string
	for _, c := range e.Causes {
		r, ok := c.ErrorKind.(*kind.Required)
		if !ok || len(c.Causes) > 0 || !slices.Equal(c.InstanceLocation, e.InstanceLocation) {
			return nil
		}
		keys = append(keys, r.Missing...)
	}
	m := *e
	m.ErrorKind, m.Causes = &missingOneOf{keys: keys}, nil
	return &m
}

func depth(e *jsonschema.ValidationError) int {
	d := len(e.InstanceLocation)
	for _, c := range e.Causes {
		d = max(d, depth(c))
	}
	return d
}

// Suggest returns the candidate closest to s by edit distance when it is
// close enough to be a likely typo, else "".
func Suggest(s string, candidates []string) string { return suggest(s, candidates) }

// suggest returns the candidate closest to s by edit distance, if it is
// close enough to be a likely typo.
func suggest(s string, candidates []string) string {
	best, bestD := "", len(s)/2+2
	for _, c := range candidates {
		if d := levenshtein(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
