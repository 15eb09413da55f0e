package main

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/capabilities"
	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// The schema of each built-in worker's config block (what sluice.yaml is
// checked against) and the worker itself (what it checks when it starts)
// agree: what one refuses, the other refuses too, so a worker still
// refuses a bad config that reaches it some other way.
func TestWorkerConfigSchemaAgreesWithWorker(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "answers.yaml")
	if err := os.WriteFile(script, []byte("- {match: x, respond: y}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	scriptJSON, _ := json.Marshal(script)
	for _, tc := range []struct {
		kind, config string
		ok           bool
	}{
		{"web", `{}`, true},
		{"web", `{"timeout": 3}`, false},
		{"payment", `{}`, true},
		{"payment", `{"opening_balance": 250, "currency": "USD"}`, true},
		{"payment", `{"ledgr": "x.jsonl"}`, false},
		{"payment", `{"backend": "stripe"}`, false},
		{"payment", `{"currency": "eur"}`, false},
		{"payment", `{"opening_balance": "lots"}`, false},
		{"payment", `{"backend": "http", "base_url": "https://p.example", "ledger": "x"}`, false},
		{"payment", `{"backend": "ledger", "api_key": "{{secret:k}}"}`, false},
		{"payment", `{"backend": "http", "base_url": "https://p.example", "api_key": "sk_live_123"}`, false},
		{"llm", `{}`, true},
		{"llm", `{"backend": "hijackable", "script": ` + string(scriptJSON) + `}`, true},
		{"llm", `{"backend": "gpt5"}`, false},
		{"llm", `{"scrpt": "a.yaml"}`, false},
		{"llm", `{"script": 3}`, false},
		{"llm", `{"backend": "openai", "model": "m"}`, false},
		{"llm", `{"backend": "scripted", "model": "m"}`, false},
		{"llm", `{"backend": "openai", "base_url": "https://api.example/v1", "model": "m", "max_retries": 11}`, false},
		{"llm", `{"backend": "openai", "base_url": "https://api.example/v1", "model": "m", "max_tokens": 512, "temperature": 0.5}`, true},
		{"llm", `{"backend": "openai", "base_url": "https://api.example/v1", "model": "m", "temperature": 2.5}`, false},
		{"llm", `{"backend": "anthropic", "model": "m", "api_key": "{{secret:anthropic_key}}"}`, true},
		{"llm", `{"backend": "anthropic", "base_url": "https://llm.example", "model": "m", "max_tokens": 0}`, false},
		{"llm", `{"backend": "anthropic"}`, false},
		{"llm", `{"backend": "anthropic", "model": "m", "script": "a.yaml"}`, false},
		{"calendar", `{"owner": "me@home.example", "timezone": "UTC"}`, true},
		{"calendar", `{"owner": "Me <me@home.example>"}`, false},
		{"calendar", `{"tz": "UTC"}`, false},
		{"email", `{"address": "me@home.example"}`, true},
		{"email", `{"adress": "me@home.example"}`, false},
		{"email", `{"address": "me@localhost"}`, true},
		{"email", `{"address": "Me.Too+tag@Home.Example"}`, true},
		{"email", `{"address": "not an address"}`, false},
		{"email", `{"address": "me@home.example", "smtp": {"url": "smtp://m.example:587", "password": "hunter2", "username": "me"}}`, false},
		{"email", `{"address": "me@home.example", "smtp": {"url": "smtp://m.example:587", "insecure_plaintext": "yes"}}`, false},
		{"files", `{"root": "x"}`, false},
	} {
		sch, err := schemas.Load("workers/" + tc.kind + ".config.json")
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal([]byte(tc.config), &v); err != nil {
			t.Fatal(err)
		}
		if err := sch.ValidateValue(v); (err == nil) != tc.ok {
			t.Errorf("%s %s: schema says %v, want ok=%v", tc.kind, tc.config, err, tc.ok)
		}
		m, err := capabilities.Load("builtin:" + tc.kind)
		if err != nil {
			t.Fatal(err)
		}
		state := t.TempDir()
		_, err = builtins()[tc.kind](worker.Env{State: state, Config: json.RawMessage(tc.config), Log: slog.New(slog.DiscardHandler), Manifest: m})
		if (err == nil) != tc.ok {
			t.Errorf("%s %s: worker says %v, want ok=%v", tc.kind, tc.config, err, tc.ok)
		}
	}
	// Every built-in worker has a schema for its config block.
	for name := range builtins() {
		if _, err := schemas.Load("workers/" + name + ".config.json"); err != nil {
			t.Errorf("built-in worker %s: %v", name, err)
		}
	}
}

// sluice doctor shows every problem of sluice.yaml, each in its column.
func TestDoctorShowsEveryConfigProblem(t *testing.T) {
	dir := t.TempDir()
	cfg := "workers:\n  - manifest: builtin:payment\n    config: {backend: stripe}\n  - manifest: builtin:llm\n    config: {scrpt: a.yaml}\n"
	if err := os.WriteFile(filepath.Join(dir, "sluice.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI(t, dir, "doctor")
	want := "fail  configuration          " + filepath.Join(dir, "sluice.yaml") + ":3:23: workers.0.config.backend: value must be one of 'ledger', 'http'\n" +
		"                             " + filepath.Join(dir, "sluice.yaml") + `:5:14: unknown key "scrpt" (did you mean "script"?)` + "\n"
	if code != exitFailure || out != want {
		t.Fatalf("exit %d, output\n%s\nwant\n%s", code, out, want)
	}
}
