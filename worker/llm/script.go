package llm

import (
	"encoding/json"
	"regexp"

	"github.com/sluicehq/sluice/schemas"
)

// Diagnostic codes of a script.
const (
	codeScriptRegex   = "llm_script_regex"
	codeScriptRespond = "llm_script_respond"
)

// scriptSchema is the shape of a script. `turn` belongs to chat; extract and
// complete skip the entries that have one.
const scriptSchema = `{
  "type": "array",
  "items": {
    "type": "object",
    "properties": {
      "match": {"type": "string"},
      "respond": true,
      "turn": {"type": "integer", "minimum": 1}
    },
    "required": ["match", "respond"],
    "additionalProperties": false
  }
}`

// entry is one compiled script entry.
type entry struct {
	match   *regexp.Regexp
	respond json.RawMessage
	turn    int
}

// parseScript checks a script and compiles every entry. The error, if any,
// is a schemas.Diagnostics with every problem and its position in file.
func parseScript(file string, src []byte) ([]entry, error) {
	doc, ds := schemas.ParseYAML(file, src)
	if err := ds.Err(); err != nil {
		return nil, err
	}
	var shape any
	if err := json.Unmarshal([]byte(scriptSchema), &shape); err != nil {
		return nil, err
	}
	sch, err := schemas.Compile(shape)
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(sch).Err(); err != nil {
		return nil, err
	}
	items, _ := doc.Value.([]any)
	entries := make([]entry, 0, len(items))
	for i, item := range items {
		m, _ := item.(map[string]any)
		pattern, _ := m["match"].(string)
		re, err := regexp.Compile(pattern)
		if err != nil {
			ds.Add(file, doc.Pos(schemas.Pointer(i, "match")), codeScriptRegex,
				"entry %d: match is not a valid regular expression: %v", i, err)
			continue
		}
		respond, err := json.Marshal(m["respond"])
		if err != nil {
			ds.Add(file, doc.Pos(schemas.Pointer(i, "respond")), codeScriptRespond,
				"entry %d: respond cannot be written as JSON", i)
			continue
		}
		e := entry{match: re, respond: respond}
		switch t := m["turn"].(type) {
		case int64:
			e.turn = int(t)
		case float64: // 1.0 is an integer to JSON Schema
			e.turn = int(t)
		}
		entries = append(entries, e)
	}
	if err := ds.Err(); err != nil {
		return nil, err
	}
	return entries, nil
}
