package schemas

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed *.json tools/*.json workers/*.json output/*.json
var files embed.FS

// FS returns the embedded JSON Schemas: flow.json, manifest.json,
// policy.json, config.json, tools/<worker>.<tool>.json, and
// workers/<kind>.config.json, the `config:` block of each kind of worker,
// and output/<command>.json, what each command prints with --json.
func FS() fs.FS { return files }

const urlBase = "https://sluice.dev/schemas/"

// Schema is a compiled JSON Schema together with its source, which is kept
// to name the keys an object allows when a user misspells one.
type Schema struct {
	compiled *jsonschema.Schema
	raw      map[string]any // url -> decoded document

	mu    sync.Mutex
	props map[string]*Schema // compiled property schemas, by name
}

// Validate checks a JSON-form value (as produced by encoding/json or
// [ParseYAML]) and returns its problems, positioned by pos.
func (sch *Schema) Validate(file string, v any, pos func(ptr string) Pos) Diagnostics {
	return sch.check(file, v, "", pos, pos)
}

// node is the raw schema object at schemaURL (a document URL and a JSON
// pointer fragment), or nil.
func (sch *Schema) node(schemaURL string) map[string]any {
	url, frag, _ := strings.Cut(schemaURL, "#")
	node, ok := sch.raw[url]
	if !ok {
		return nil
	}
	for _, tok := range strings.Split(strings.TrimPrefix(frag, "/"), "/") {
		if tok == "" {
			continue
		}
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := node.(map[string]any)
		if !ok {
			return nil
		}
		node = m[tok]
	}
	m, _ := node.(map[string]any)
	return m
}

func (sch *Schema) keys(schemaURL string) []string {
	m := sch.node(schemaURL)
	props, _ := m["properties"].(map[string]any)
	out := make([]string, 0, len(props))
	for k := range props {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

type compiled struct {
	compiler *jsonschema.Compiler
	raw      map[string]any
	mu       sync.Mutex
	cache    map[string]*Schema
}

var embedded = sync.OnceValues(func() (*compiled, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	raw := map[string]any{}
	err := fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(path)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("schema %s: %w", path, err)
		}
		raw[urlBase+path] = doc
		return c.AddResource(urlBase+path, doc)
	})
	if err != nil {
		return nil, err
	}
	return &compiled{compiler: c, raw: raw, cache: map[string]*Schema{}}, nil
})

// Load returns the embedded schema at path ("flow.json",
// "tools/payment.charge.json"), compiled once.
func Load(path string) (*Schema, error) {
	c, err := embedded()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.cache[path]; ok {
		return s, nil
	}
	if _, ok := c.raw[urlBase+path]; !ok {
		return nil, fmt.Errorf("no schema %q", path)
	}
	sch, err := c.compiler.Compile(urlBase + path)
	if err != nil {
		return nil, fmt.Errorf("compile schema %s: %w", path, err)
	}
	s := &Schema{compiled: sch, raw: c.raw}
	c.cache[path] = s
	return s, nil
}

// Compile compiles a schema given inline as a JSON-form value (for example
// the `schema` argument of llm.extract). It may reference no other document.
func Compile(doc any) (*Schema, error) {
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(noLoader{})
	const url = "urn:sluice:inline.json"
	if err := c.AddResource(url, v); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	return &Schema{compiled: sch, raw: map[string]any{url: v}}, nil
}

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("schema may not load %s", url)
}

// ValidateJSON decodes b and validates it, returning the decoded value.
// Numbers decode as json.Number-free float64/int64 the way the validator
// expects them.
func (sch *Schema) ValidateJSON(b []byte) (any, error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	if ds := sch.Validate("", v, func(string) Pos { return Pos{} }); len(ds) > 0 {
		return nil, ds
	}
	return v, nil
}

// ValidateValue validates a value already decoded: maps, lists, strings,
// booleans, nil, and numbers as int64 or float64 (or any Go integer), as
// the engine holds them, without encoding and decoding it again.
func (sch *Schema) ValidateValue(v any) error {
	if ds := sch.Validate("", v, func(string) Pos { return Pos{} }); len(ds) > 0 {
		return ds
	}
	return nil
}

// Shape returns the property names and the required names of an object
// schema's root, sorted; both are empty for other schemas.
func (sch *Schema) Shape() (props, required []string) {
	root, _ := sch.raw[sch.url()].(map[string]any)
	if p, ok := root["properties"].(map[string]any); ok {
		for k := range p {
			props = append(props, k)
		}
	}
	if r, ok := root["required"].([]any); ok {
		for _, k := range r {
			if s, ok := k.(string); ok {
				required = append(required, s)
			}
		}
	}
	slices.Sort(props)
	slices.Sort(required)
	return props, required
}

func (sch *Schema) url() string {
	u, _, _ := strings.Cut(sch.compiled.Location, "#")
	return u
}

// Property returns the schema of one property of an object schema's root,
// compiled on its own (with the root's $defs, so local references hold), or
// nil when the root does not describe that property.
func (sch *Schema) Property(name string) (*Schema, error) {
	sch.mu.Lock()
	defer sch.mu.Unlock()
	if p, ok := sch.props[name]; ok {
		return p, nil
	}
	root, _ := sch.raw[sch.url()].(map[string]any)
	props, _ := root["properties"].(map[string]any)
	raw, ok := props[name]
	if !ok {
		return nil, nil
	}
	doc := map[string]any{}
	if m, ok := raw.(map[string]any); ok {
		for k, v := range m {
			doc[k] = v
		}
	} else {
		return nil, nil
	}
	if defs, ok := root["$defs"]; ok {
		doc["$defs"] = defs
	}
	p, err := Compile(doc)
	if err != nil {
		return nil, err
	}
	if sch.props == nil {
		sch.props = map[string]*Schema{}
	}
	sch.props[name] = p
	return p, nil
}

// Type returns the "type" keyword of the schema's root when it names one
// type, else "".
func (sch *Schema) Type() string {
	root, _ := sch.raw[sch.url()].(map[string]any)
	t, _ := root["type"].(string)
	return t
}

// Doc returns the schema's root document in JSON form, for showing it to
// someone (a model choosing a tool's arguments). It must not be changed.
func (sch *Schema) Doc() any { return sch.raw[sch.url()] }

// Mismatches validates v and says, for each problem, which top-level
// property (or "the value" for the root) failed which keyword — and
// nothing of the value itself, not even the path below that property:
// the value may be one its reader must not learn about.
func (sch *Schema) Mismatches(v any) []string {
	err := sch.compiled.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []string{"the value: not valid"}
	}
	var out []string
	for _, leaf := range leaves(ve) {
		where := "the value"
		if len(leaf.InstanceLocation) > 0 {
			where = leaf.InstanceLocation[0]
		}
		kw := "schema"
		if p := leaf.ErrorKind.KeywordPath(); len(p) > 0 {
			kw = p[len(p)-1]
		}
		if s := where + ": " + kw; !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}
