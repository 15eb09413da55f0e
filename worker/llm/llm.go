// Package llm is the built-in language-model worker: tools extract (a JSON
// value that satisfies a schema, read from a text) and complete (a text
// answer to a prompt).
//
// Configuration (the worker's `config:` block):
//
//	backend: scripted (the default) or hijackable; openai is reserved
//	script:  path of the script, relative to the working directory
//
// The scripted backend is deterministic: the script is a YAML list of
// entries `{match: REGEX, respond: VALUE}`, and a call is answered with the
// respond value of the first entry whose Go regular expression matches the
// prompt text. For extract the prompt text is the instruction, a blank line
// and the text; for complete it is the system prompt, a blank line and the
// prompt (or the prompt alone). Entries with `turn:` are for chat and are
// skipped by extract and complete.
//
// The hijackable backend is the worst-case model of the threat model: it
// answers like the scripted one, except that a line containing
// `SLUICE-INJECT: <json>` anywhere in its input (the first such line wins;
// the JSON runs to the end of the line) becomes its answer, whatever the
// script says. Security tests use it to prove that what an attacker makes a
// model say still cannot decide a privileged call.
//
// An extract answer must satisfy the schema argument and is the output
// itself; a complete answer must be a string and is returned as {text}.
package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// Backends.
const (
	backendScripted   = "scripted"
	backendHijackable = "hijackable"
	backendOpenAI     = "openai" // reserved
)

// injectMarker starts a line that the hijackable backend obeys.
const injectMarker = "SLUICE-INJECT:"

type config struct {
	Backend string `json:"backend"`
	Script  string `json:"script"`
}

func loadConfig(raw json.RawMessage) (config, error) {
	var cfg config
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = json.RawMessage("{}")
	}
	// The backend decides which keys are allowed, so read it first.
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return cfg, errors.New("llm config: not an object")
	}
	if b, ok := keys["backend"]; ok {
		if err := json.Unmarshal(b, &cfg.Backend); err != nil {
			return cfg, errors.New("llm config: backend must be a string")
		}
	}
	switch cfg.Backend {
	case "":
		cfg.Backend = backendScripted
	case backendScripted, backendHijackable:
	case backendOpenAI:
		return cfg, fmt.Errorf("llm config: backend %s is not available yet (available: %s, %s)",
			backendOpenAI, backendScripted, backendHijackable)
	default:
		return cfg, fmt.Errorf("llm config: unknown backend %q (available: %s, %s)",
			cfg.Backend, backendScripted, backendHijackable)
	}
	var unknown []string
	for k := range keys {
		if k != "backend" && k != "script" {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return cfg, fmt.Errorf("llm config: unknown key %q for backend %s (keys are: backend, script)", unknown[0], cfg.Backend)
	}
	if s, ok := keys["script"]; ok {
		if err := json.Unmarshal(s, &cfg.Script); err != nil {
			return cfg, errors.New("llm config: script must be a path")
		}
	}
	return cfg, nil
}

// New returns the llm worker's handlers. It reads and checks the script
// once; every problem in it is an error here, positioned in the file.
func New(env worker.Env) (map[string]worker.Handler, error) {
	cfg, err := loadConfig(env.Config)
	if err != nil {
		return nil, err
	}
	m := &model{hijackable: cfg.Backend == backendHijackable}
	if cfg.Script != "" {
		src, err := os.ReadFile(cfg.Script)
		if err != nil {
			return nil, fmt.Errorf("llm config: read script: %w", err)
		}
		if m.entries, err = parseScript(cfg.Script, src); err != nil {
			return nil, err
		}
	}
	return map[string]worker.Handler{"extract": m.extract, "complete": m.complete}, nil
}

var _ worker.Builtin = New

// model is one configured backend.
type model struct {
	entries    []entry
	hijackable bool
}

// answer returns the model's answer to prompt, as JSON.
func (m *model) answer(prompt string) (json.RawMessage, error) {
	if m.hijackable {
		if a, ok, err := injection(prompt); ok {
			return a, err
		}
	}
	for _, e := range m.entries {
		if e.turn == 0 && e.match.MatchString(prompt) {
			return e.respond, nil
		}
	}
	if len(m.entries) == 0 {
		// The defaults run an llm worker with no script, so that every
		// other worker can be tried; it says what to configure.
		return nil, worker.Failed("the model has no script: set config.script of the llm worker in sluice.yaml")
	}
	return nil, worker.Failed("no scripted answer matches")
}

// injection finds the first line of s that contains the marker and returns
// the JSON after it. ok reports whether there was such a line.
func injection(s string) (answer json.RawMessage, ok bool, err error) {
	for line := range strings.Lines(s) {
		_, after, found := strings.Cut(line, injectMarker)
		if !found {
			continue
		}
		a := []byte(strings.TrimSpace(after))
		if !json.Valid(a) {
			return nil, true, worker.Failed("the model's answer is not valid JSON")
		}
		return a, true, nil
	}
	return nil, false, nil
}

type extractArgs struct {
	Text        *string         `json:"text"`
	Instruction *string         `json:"instruction"`
	Schema      json.RawMessage `json:"schema"`
}

func (m *model) extract(ctx context.Context, call *worker.Call) (any, error) {
	var args extractArgs
	if err := decodeArgs(call.Args, &args); err != nil {
		return nil, err
	}
	switch {
	case args.Text == nil:
		return nil, worker.BadArguments("argument text is required")
	case args.Instruction == nil:
		return nil, worker.BadArguments("argument instruction is required")
	case len(args.Schema) == 0:
		return nil, worker.BadArguments("argument schema is required")
	}
	var doc any
	if err := json.Unmarshal(args.Schema, &doc); err != nil {
		return nil, worker.BadArguments("argument schema is not JSON")
	}
	if _, ok := doc.(map[string]any); !ok {
		return nil, worker.BadArguments("argument schema must be a JSON Schema object")
	}
	sch, err := schemas.Compile(doc)
	if err != nil {
		return nil, worker.BadArguments("argument schema is not a valid JSON Schema")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	a, err := m.answer(*args.Instruction + "\n\n" + *args.Text)
	if err != nil {
		return nil, err
	}
	if _, err := sch.ValidateJSON(a); err != nil {
		return nil, worker.Failed("the model's answer does not satisfy the schema")
	}
	var out bytes.Buffer
	if err := json.Compact(&out, a); err != nil {
		return nil, worker.Failed("the model's answer is not valid JSON")
	}
	return json.RawMessage(out.Bytes()), nil
}

type completeArgs struct {
	Prompt *string `json:"prompt"`
	System string  `json:"system"`
}

type completeOutput struct {
	Text string `json:"text"`
}

func (m *model) complete(ctx context.Context, call *worker.Call) (any, error) {
	var args completeArgs
	if err := decodeArgs(call.Args, &args); err != nil {
		return nil, err
	}
	if args.Prompt == nil {
		return nil, worker.BadArguments("argument prompt is required")
	}
	prompt := *args.Prompt
	if args.System != "" {
		prompt = args.System + "\n\n" + prompt
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	a, err := m.answer(prompt)
	if err != nil {
		return nil, err
	}
	var text string
	if err := json.Unmarshal(a, &text); err != nil {
		return nil, worker.Failed("the model's answer is not a string")
	}
	return completeOutput{Text: text}, nil
}

// decodeArgs unmarshals arguments into v. Its errors name the field that
// failed, never the value.
func decodeArgs(raw json.RawMessage, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return worker.BadArguments("argument %s: expected %s", te.Field, te.Type)
		}
		return worker.BadArguments("arguments are not a JSON object of the expected shape")
	}
	return nil
}
