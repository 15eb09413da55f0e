// Package llm is the built-in language-model worker: tools extract (a JSON
// value that satisfies a schema, read from a text), complete (a text answer
// to a prompt) and chat (a message or tool calls, answering a conversation).
//
// Configuration (the worker's `config:` block):
//
//	backend: scripted (the default), hijackable, openai or anthropic
//	         (see apiConfig and anthropic.go)
//	script:  path of the script, relative to the working directory
//
// The scripted backend is deterministic: the script is a YAML list of
// entries `{match: REGEX, respond: VALUE}`, and a call is answered with the
// respond value of the first entry whose Go regular expression matches the
// prompt text. For extract the prompt text is the instruction, a blank line
// and the text; for complete it is the system prompt, a blank line and the
// prompt (or the prompt alone). For chat the regular expressions see the
// whole conversation rendered as text, and an entry with `turn: N` applies
// only to the model's N-th answer; extract and complete skip such entries.
//
// The hijackable backend is the worst-case model of the threat model: it
// answers like the scripted one, except that a line containing
// `SLUICE-INJECT: <json>` anywhere in its input (the first such line wins;
// the JSON runs to the end of the line) becomes its answer, whatever the
// script says. In chat it also reads the strings inside tool results that
// are JSON, unescaped, before the rest of the conversation, the way a model
// reads a page it fetched; in extract, likewise, the strings inside a text
// that is JSON (a hidden tool result handed to inspect). Security tests use
// it to prove that what an attacker makes a model say still cannot decide a
// privileged call.
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
	"sync"
	"unicode/utf8"

	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// Backends.
const (
	backendScripted   = "scripted"
	backendHijackable = "hijackable"
	backendOpenAI     = "openai"
	backendAnthropic  = "anthropic"
)

// injectMarker starts a line that the hijackable backend obeys.
const injectMarker = "SLUICE-INJECT:"

type config struct {
	Backend string `json:"backend"`
	Script  string `json:"script"`
	// Record, for the scripted and hijackable backends, names a file that
	// gets one JSON line per request: exactly what the model was given. Tests
	// and demos use it to show what reached the model.
	Record    string `json:"record"`
	OpenAI    apiConfig
	Anthropic apiConfig
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
		err := loadAPIConfig(raw, backendOpenAI, "", "https://api.openai.com/v1", &cfg.OpenAI)
		return cfg, err
	case backendAnthropic:
		err := loadAPIConfig(raw, backendAnthropic, "https://api.anthropic.com", "https://api.anthropic.com", &cfg.Anthropic)
		return cfg, err
	default:
		return cfg, fmt.Errorf("llm config: unknown backend %q (available: %s, %s, %s, %s)",
			cfg.Backend, backendAnthropic, backendOpenAI, backendScripted, backendHijackable)
	}
	var unknown []string
	for k := range keys {
		if k != "backend" && k != "script" && k != "record" {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return cfg, fmt.Errorf("llm config: unknown key %q for backend %s (keys are: backend, script, record)", unknown[0], cfg.Backend)
	}
	if r, ok := keys["record"]; ok {
		if err := json.Unmarshal(r, &cfg.Record); err != nil || cfg.Record == "" {
			return cfg, errors.New("llm config: record must be a path")
		}
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
	switch cfg.Backend {
	case backendOpenAI:
		return (&tools{b: &openAI{cfg: cfg.OpenAI}}).handlers(), nil
	case backendAnthropic:
		return (&tools{b: &anthropic{cfg: cfg.Anthropic}}).handlers(), nil
	}
	m := &model{hijackable: cfg.Backend == backendHijackable}
	if cfg.Record != "" {
		// Opened now and kept open: the worker is confined once it serves.
		f, err := os.OpenFile(cfg.Record, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("llm config: record: %w", err)
		}
		m.record = f
	}
	if cfg.Script != "" {
		src, err := os.ReadFile(cfg.Script)
		if err != nil {
			return nil, fmt.Errorf("llm config: read script: %w", err)
		}
		if m.entries, err = parseScript(cfg.Script, src); err != nil {
			return nil, err
		}
	}
	return (&tools{b: m}).handlers(), nil
}

// backend is a language model: the scripted or hijackable one of this
// package, an OpenAI-compatible endpoint or Anthropic's Messages API.
type backend interface {
	// complete answers a prompt with text.
	complete(ctx context.Context, call *worker.Call, system, prompt string) (string, error)
	// extract answers with a JSON value meant to satisfy schema; the
	// caller checks it does.
	extract(ctx context.Context, call *worker.Call, instruction, text string, schema json.RawMessage) (json.RawMessage, error)
	// chat answers a conversation with a message: content or tool calls.
	chat(ctx context.Context, call *worker.Call, messages []Message, tools []ToolSpec) (Message, error)
}

// tools are the worker's handlers over one backend.
type tools struct{ b backend }

func (t *tools) handlers() map[string]worker.Handler {
	return map[string]worker.Handler{"extract": t.extract, "complete": t.complete, "chat": t.chat}
}

var _ worker.Builtin = New

// model is one configured backend.
type model struct {
	entries    []entry
	hijackable bool
	recordMu   sync.Mutex
	record     *os.File // nil: nothing is recorded
}

// answer returns the model's answer to prompt, as JSON.
func (m *model) answer(prompt string) (json.RawMessage, error) { return m.answerAt(prompt, 0) }

// answerAt answers at a chat turn (1 for the model's first answer in a
// step); turn 0 is not chat, and only entries without a turn apply.
func (m *model) answerAt(prompt string, turn int) (json.RawMessage, error) {
	if m.record != nil {
		line, _ := json.Marshal(map[string]any{"turn": turn, "input": prompt})
		m.recordMu.Lock()
		_, _ = m.record.Write(append(line, '\n'))
		m.recordMu.Unlock()
	}
	if m.hijackable {
		if a, ok, err := injection(prompt); ok {
			return a, err
		}
	}
	for _, e := range m.entries {
		if (e.turn == 0 || (turn > 0 && e.turn == turn)) && e.match.MatchString(prompt) {
			return e.respond, nil
		}
	}
	if len(m.entries) == 0 {
		// The defaults run an llm worker with no script, so that every
		// other worker can be tried; it says what to configure.
		return nil, worker.Failed("the model has no script: set config.script of the llm worker in sluice.yaml")
	}
	// The text itself stays out of the error, which goes to the audit
	// log: record writes it to a file of the user's choosing.
	where := "the text"
	if turn > 0 {
		where = fmt.Sprintf("the conversation at turn %d", turn)
	}
	hint := "set record: FILE in the llm worker's config to see each text matched"
	if m.record != nil {
		hint = "the record file holds the text matched"
	}
	return nil, worker.Failed("no scripted answer matches %s (%d characters; %d entries tried): %s", where, utf8.RuneCountInString(prompt), len(m.entries), hint)
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

func (t *tools) extract(ctx context.Context, call *worker.Call) (any, error) {
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
	a, err := t.b.extract(ctx, call, *args.Instruction, *args.Text, args.Schema)
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

func (t *tools) complete(ctx context.Context, call *worker.Call) (any, error) {
	var args completeArgs
	if err := decodeArgs(call.Args, &args); err != nil {
		return nil, err
	}
	if args.Prompt == nil {
		return nil, worker.BadArguments("argument prompt is required")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	text, err := t.b.complete(ctx, call, args.System, *args.Prompt)
	if err != nil {
		return nil, err
	}
	return completeOutput{Text: text}, nil
}

// complete answers from the script.
func (m *model) complete(_ context.Context, _ *worker.Call, system, prompt string) (string, error) {
	if system != "" {
		prompt = system + "\n\n" + prompt
	}
	a, err := m.answer(prompt)
	if err != nil {
		return "", err
	}
	var text string
	if err := json.Unmarshal(a, &text); err != nil {
		return "", worker.Failed("the model's answer is not a string")
	}
	return text, nil
}

// extract answers from the script.
func (m *model) extract(_ context.Context, _ *worker.Call, instruction, text string, _ json.RawMessage) (json.RawMessage, error) {
	prompt := instruction + "\n\n" + text
	if m.hijackable {
		// The text may be a JSON value (inspect hands over a hidden tool
		// result whole): a model reads the strings inside it, not their
		// escaped form, and so does the worst-case one, first.
		prompt = jsonTexts(text) + prompt
	}
	return m.answer(prompt)
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
