package payment

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/sluicehq/sluice/schemas"
	"github.com/sluicehq/sluice/worker"
)

// handlers builds a worker on ledger (in dir, when ledger is relative) with
// the given extra config keys.
func handlers(t *testing.T, state string, cfg map[string]any) map[string]worker.Handler {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := New(worker.Env{State: state, Config: raw})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return hs
}

// do calls tool with args under idempotency key.
func do(hs map[string]worker.Handler, tool, key string, args any) (map[string]any, error) {
	raw, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	c := worker.NewCall(tool, raw, nil)
	c.IdempotencyKey, c.Run, c.Step = key, "run-1", "pay"
	out, err := hs[tool](context.Background(), c)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	sch, err := schemas.Load("tools/payment." + tool + ".output.json")
	if err != nil {
		return nil, err
	}
	if _, err := sch.ValidateJSON(b); err != nil {
		return nil, fmt.Errorf("output does not satisfy its schema: %w", err)
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

func charge(amount float64, payee string) map[string]any {
	return map[string]any{"amount": amount, "currency": "EUR", "payee": payee}
}

// lines returns the ledger's lines, each decoded, failing on any that is
// not a JSON object.
func lines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("ledger line %d is not JSON: %v", len(out)+1, err)
		}
		out = append(out, m)
	}
	return out
}

func code(err error) string {
	var re *schemas.ReplyError
	if errors.As(err, &re) {
		return re.Code
	}
	return ""
}

func ledgerPath(state string) string { return filepath.Join(state, "payment", "ledger.jsonl") }

func TestCharge(t *testing.T) {
	tests := []struct {
		name string
		args any
		key  string
		code string // "" for success
	}{
		{name: "with memo", args: map[string]any{"amount": 12.5, "currency": "EUR", "payee": "acct_hotel_1", "memo": "room"}},
		{name: "without memo", args: charge(3, "acct_cafe")},
		{name: "wrong currency", args: map[string]any{"amount": 1, "currency": "USD", "payee": "p"}, code: schemas.CodeBadArguments},
		{name: "zero amount", args: charge(0, "p"), code: schemas.CodeBadArguments},
		{name: "negative amount", args: charge(-5, "p"), code: schemas.CodeBadArguments},
		{name: "missing amount", args: map[string]any{"currency": "EUR", "payee": "p"}, code: schemas.CodeBadArguments},
		{name: "amount as string", args: map[string]any{"amount": "5", "currency": "EUR", "payee": "p"}, code: schemas.CodeBadArguments},
		{name: "empty payee", args: charge(5, ""), code: schemas.CodeBadArguments},
		{name: "not an object", args: []int{1}, code: schemas.CodeBadArguments},
		{name: "no idempotency key", args: charge(5, "p"), key: "-", code: schemas.CodeFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			state := t.TempDir()
			hs := handlers(t, state, nil)
			key := cmpOr(tt.key, "run-1/pay")
			if key == "-" {
				key = ""
			}
			out, err := do(hs, "charge", key, tt.args)
			if got := code(err); got != tt.code || (tt.code == "" && err != nil) {
				t.Fatalf("charge: err = %v, want code %q", err, tt.code)
			}
			got := lines(t, ledgerPath(state))
			if tt.code != "" {
				if len(got) != 0 {
					t.Errorf("a refused charge wrote %d lines", len(got))
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("ledger has %d lines, want 1", len(got))
			}
			checkLine(t, got[0], out["charge_id"].(string), tt.args.(map[string]any), key)
			if out["status"] != "succeeded" {
				t.Errorf("status = %v", out["status"])
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// testStart is before any charge a test makes.
var testStart = time.Now()

func checkLine(t *testing.T, line map[string]any, id string, args map[string]any, key string) {
	t.Helper()
	keys := make([]string, 0, len(line))
	for k := range line {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"amount", "at", "charge_id", "currency", "idempotency_key", "memo", "payee", "run_id", "step"}
	if !slices.Equal(keys, want) {
		t.Errorf("line has fields %v, want %v", keys, want)
	}
	if line["charge_id"] != id {
		t.Errorf("charge_id = %v, want %v", line["charge_id"], id)
	}
	rest, ok := strings.CutPrefix(id, "ch_")
	if _, err := ulid.ParseStrict(rest); !ok || err != nil {
		t.Errorf("charge_id %q is not ch_ and a ULID", id)
	}
	memo, _ := args["memo"].(string)
	if line["amount"] != args["amount"] || line["currency"] != args["currency"] || line["payee"] != args["payee"] || line["memo"] != memo {
		t.Errorf("line %v does not record the arguments %v", line, args)
	}
	if line["idempotency_key"] != key || line["run_id"] != "run-1" || line["step"] != "pay" {
		t.Errorf("line %v does not record the call", line)
	}
	at, _ := line["at"].(string)
	ts, err := time.Parse(time.RFC3339Nano, at)
	if err != nil || !strings.HasSuffix(at, "Z") || len(at) != len("2006-01-02T15:04:05.000Z") ||
		ts.Before(testStart.Truncate(time.Millisecond)) || ts.After(time.Now()) {
		t.Errorf("at = %q, want RFC 3339 UTC with milliseconds, between the test's start (%s) and now", at, testStart.UTC().Format(time.RFC3339Nano))
	}
}

func TestIdempotency(t *testing.T) {
	type step struct {
		args    map[string]any
		key     string
		code    string
		sameAs  int // index of the earlier step whose charge_id this one must return, or -1
		restart bool
		config  map[string]any // config on restart
	}
	tests := []struct {
		name  string
		steps []step
		lines int
	}{
		{name: "retry returns the same charge", lines: 1, steps: []step{
			{args: charge(10, "acct_a"), key: "k1", sameAs: -1},
			{args: charge(10, "acct_a"), key: "k1", sameAs: 0},
			{args: charge(10, "acct_a"), key: "k1", sameAs: 0},
		}},
		{name: "a different memo is the same charge", lines: 1, steps: []step{
			{args: charge(10, "acct_a"), key: "k1", sameAs: -1},
			{args: map[string]any{"amount": 10, "currency": "EUR", "payee": "acct_a", "memo": "again"}, key: "k1", sameAs: 0},
		}},
		{name: "other keys are other charges", lines: 2, steps: []step{
			{args: charge(10, "acct_a"), key: "k1", sameAs: -1},
			{args: charge(10, "acct_a"), key: "k2", sameAs: -1},
		}},
		{name: "key reused with another amount", lines: 1, steps: []step{
			{args: charge(10, "acct_a"), key: "k1", sameAs: -1},
			{args: charge(11, "acct_a"), key: "k1", code: schemas.CodeFailed},
		}},
		{name: "key reused with another payee", lines: 1, steps: []step{
			{args: charge(10, "acct_a"), key: "k1", sameAs: -1},
			{args: charge(10, "acct_attacker"), key: "k1", code: schemas.CodeFailed},
		}},
		{name: "key reused with another currency", lines: 1, steps: []step{
			{args: charge(10, "acct_a"), key: "k1", sameAs: -1},
			{restart: true, config: map[string]any{"currency": "USD"},
				args: map[string]any{"amount": 10, "currency": "USD", "payee": "acct_a"}, key: "k1", code: schemas.CodeFailed},
		}},
		{name: "restart still dedups", lines: 2, steps: []step{
			{args: charge(10, "acct_a"), key: "k1", sameAs: -1},
			{restart: true, args: charge(10, "acct_a"), key: "k1", sameAs: 0},
			{args: charge(5, "acct_b"), key: "k2", sameAs: -1},
			{restart: true, args: charge(5, "acct_b"), key: "k2", sameAs: 2},
			{args: charge(99, "acct_b"), key: "k2", code: schemas.CodeFailed},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			state := t.TempDir()
			hs := handlers(t, state, nil)
			ids := make([]string, len(tt.steps))
			for i, s := range tt.steps {
				if s.restart {
					hs = handlers(t, state, s.config)
				}
				out, err := do(hs, "charge", s.key, s.args)
				if got := code(err); got != s.code || (s.code == "" && err != nil) {
					t.Fatalf("step %d: err = %v, want code %q", i, err, s.code)
				}
				if err != nil {
					if strings.Contains(err.Error(), s.args["payee"].(string)) {
						t.Errorf("step %d: the error quotes an argument: %v", i, err)
					}
					continue
				}
				ids[i] = out["charge_id"].(string)
				switch {
				case s.sameAs >= 0 && ids[i] != ids[s.sameAs]:
					t.Errorf("step %d: charge_id %s, want %s from step %d", i, ids[i], ids[s.sameAs], s.sameAs)
				case s.sameAs < 0 && slices.Contains(ids[:i], ids[i]):
					t.Errorf("step %d: charge_id %s was returned before", i, ids[i])
				}
			}
			if got := len(lines(t, ledgerPath(state))); got != tt.lines {
				t.Errorf("ledger has %d lines, want %d", got, tt.lines)
			}
		})
	}
}

// TestConcurrent charges from many goroutines, each key twice, on one
// handler set and on two (two replicas sharing the file).
func TestConcurrent(t *testing.T) {
	tests := []struct {
		name string
		sets int
	}{
		{name: "one handler set", sets: 1},
		{name: "two handler sets on one file", sets: 2},
		{name: "four handler sets on one file", sets: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			state := t.TempDir()
			sets := make([]map[string]worker.Handler, tt.sets)
			for i := range sets {
				sets[i] = handlers(t, state, nil)
			}
			const keys = 40
			var (
				wg    sync.WaitGroup
				mu    sync.Mutex
				ids   = map[string]map[string]bool{} // key -> charge ids returned
				start = make(chan struct{})
			)
			for i := range 2 * keys {
				wg.Go(func() {
					<-start
					key := fmt.Sprintf("k%d", i%keys)
					out, err := do(sets[i%len(sets)], "charge", key, charge(1.5, "p"))
					if err != nil {
						t.Errorf("charge %s: %v", key, err)
						return
					}
					mu.Lock()
					defer mu.Unlock()
					if ids[key] == nil {
						ids[key] = map[string]bool{}
					}
					ids[key][out["charge_id"].(string)] = true
				})
			}
			close(start)
			wg.Wait()
			for k, s := range ids {
				if len(s) != 1 {
					t.Errorf("key %s got %d different charge ids", k, len(s))
				}
			}
			got := lines(t, ledgerPath(state))
			if len(got) != keys {
				t.Fatalf("ledger has %d lines, want %d", len(got), keys)
			}
			seen := map[any]bool{}
			for _, l := range got {
				if seen[l["idempotency_key"]] {
					t.Errorf("key %v charged twice", l["idempotency_key"])
				}
				seen[l["idempotency_key"]] = true
			}
			for i, hs := range sets {
				out, err := do(hs, "balance", "b", map[string]any{})
				if err != nil {
					t.Fatal(err)
				}
				if out["balance"] != -1.5*keys {
					t.Errorf("set %d: balance = %v, want %v", i, out["balance"], -1.5*keys)
				}
			}
		})
	}
}

var helperLedger = flag.String("ledger-process", "", "run as a helper process charging on this ledger")

// TestMultiProcess runs replicas as real processes (this test binary, with
// -ledger-process) charging overlapping keys on one ledger.
func TestMultiProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	state := t.TempDir()
	path := ledgerPath(state)
	const procs, keys = 3, 30
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLedgerProcess$", "-ledger-process="+path)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, &out)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("process %d: %v\n%s", i, err, outs[i])
		}
	}
	got := lines(t, path)
	if len(got) != keys {
		t.Errorf("ledger has %d lines, want %d", len(got), keys)
	}
	ids := map[any]string{}
	for _, out := range outs {
		for l := range strings.Lines(out.String()) {
			key, id, ok := strings.Cut(strings.TrimSpace(l), "=")
			if !ok || !strings.HasPrefix(key, "k") {
				continue
			}
			if prev, ok := ids[key]; ok && prev != id {
				t.Errorf("key %s: charge ids %s and %s", key, prev, id)
			}
			ids[key] = id
		}
	}
	if len(ids) != keys {
		t.Errorf("processes reported %d keys, want %d", len(ids), keys)
	}
}

// TestLedgerProcess is the body of a helper process of TestMultiProcess.
func TestLedgerProcess(t *testing.T) {
	if *helperLedger == "" {
		t.Skip("only run as a helper process")
	}
	hs := handlers(t, "", map[string]any{"ledger": *helperLedger})
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			key := fmt.Sprintf("k%d", i)
			out, err := do(hs, "charge", key, charge(2, "p"))
			if err != nil {
				t.Errorf("charge %s: %v", key, err)
				return
			}
			fmt.Printf("%s=%s\n", key, out["charge_id"])
		})
	}
	wg.Wait()
}

func TestCorruptLedger(t *testing.T) {
	good := `{"charge_id":"ch_01J00000000000000000000000","amount":5,"currency":"EUR","payee":"a","memo":"","idempotency_key":"k0","run_id":"r","step":"s","at":"2026-01-02T03:04:05.000Z"}` + "\n"
	tests := []struct {
		name    string
		content string
		line    int
	}{
		{name: "not JSON", content: good + "garbage that is not json\n" + good, line: 2},
		{name: "unknown field", content: good + good + `{"charge_id":"ch_x","amount":1,"currency":"EUR","payee":"a","idempotency_key":"k","extra":1}` + "\n", line: 3},
		{name: "missing key", content: `{"charge_id":"ch_x","amount":1,"currency":"EUR","payee":"a"}` + "\n", line: 1},
		{name: "negative amount", content: good + `{"charge_id":"ch_x","amount":-1,"currency":"EUR","payee":"a","idempotency_key":"k"}` + "\n", line: 2},
		{name: "torn last line", content: good + `{"charge_id":"ch_x","amo`, line: 2},
		{name: "empty line", content: good + "\n", line: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			state := t.TempDir()
			path := ledgerPath(state)
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			hs := handlers(t, state, nil)
			for tool, args := range map[string]any{"charge": charge(1, "b"), "balance": map[string]any{}} {
				_, err := do(hs, tool, "k-new", args)
				if code(err) != schemas.CodeFailed {
					t.Fatalf("%s: err = %v, want tool_failed", tool, err)
				}
				if want := fmt.Sprintf("%s:%d:", path, tt.line); !strings.Contains(err.Error(), want) {
					t.Errorf("%s: error %q does not name %s", tool, err, want)
				}
				if strings.Contains(err.Error(), "garbage") || strings.Contains(err.Error(), "amo\"") {
					t.Errorf("%s: error quotes the line: %v", tool, err)
				}
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.content {
				t.Error("the ledger was changed")
			}
			// Once repaired, the same worker uses the ledger again.
			if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := do(hs, "charge", "k-new", charge(1, "b")); err != nil {
				t.Errorf("charge after repair: %v", err)
			}
			if out, err := do(hs, "charge", "k0", charge(5, "a")); err != nil || out["charge_id"] != "ch_01J00000000000000000000000" {
				t.Errorf("charge of a key from the repaired ledger = %v, %v", out, err)
			}
		})
	}
}

func TestBalance(t *testing.T) {
	tests := []struct {
		name    string
		config  map[string]any
		charges []map[string]any
		want    float64
		cur     string
	}{
		{name: "empty, default opening", want: 0, cur: "EUR"},
		{name: "opening balance", config: map[string]any{"opening_balance": 1000}, want: 1000, cur: "EUR"},
		{name: "decimal sums are exact", config: map[string]any{"opening_balance": 1000},
			charges: []map[string]any{charge(0.1, "a"), charge(0.2, "b")}, want: 999.7, cur: "EUR"},
		{name: "other currency", config: map[string]any{"opening_balance": 50, "currency": "CHF"},
			charges: []map[string]any{{"amount": 20.25, "currency": "CHF", "payee": "a"}}, want: 29.75, cur: "CHF"},
		{name: "overdrawn", charges: []map[string]any{charge(3, "a")}, want: -3, cur: "EUR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hs := handlers(t, t.TempDir(), tt.config)
			for i, c := range tt.charges {
				if _, err := do(hs, "charge", fmt.Sprint("k", i), c); err != nil {
					t.Fatal(err)
				}
			}
			out, err := do(hs, "balance", "b", map[string]any{})
			if err != nil {
				t.Fatal(err)
			}
			if out["balance"] != tt.want || out["currency"] != tt.cur {
				t.Errorf("balance = %v %v, want %v %v", out["balance"], out["currency"], tt.want, tt.cur)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name   string
		state  string // "" for none
		config string
		ledger string // where the ledger must be, relative to the temp dir
		ok     bool
	}{
		{name: "defaults", state: "st", config: "", ledger: "st/payment/ledger.jsonl", ok: true},
		{name: "null", state: "st", config: "null", ledger: "st/payment/ledger.jsonl", ok: true},
		{name: "ledger path", state: "st", config: `{"ledger": "LEDGER/books/l.jsonl"}`, ledger: "books/l.jsonl", ok: true},
		{name: "no state and no ledger", config: `{}`},
		{name: "unknown key", state: "st", config: `{"ledgr": "x"}`},
		{name: "lowercase currency", state: "st", config: `{"currency": "eur"}`},
		{name: "long currency", state: "st", config: `{"currency": "EURO"}`},
		{name: "opening balance not a number", state: "st", config: `{"opening_balance": "10"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			state := ""
			if tt.state != "" {
				state = filepath.Join(dir, tt.state)
			}
			cfg := strings.ReplaceAll(tt.config, "LEDGER", dir)
			_, err := New(worker.Env{State: state, Config: json.RawMessage(cfg)})
			if (err == nil) != tt.ok {
				t.Fatalf("New: err = %v, want ok = %v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			path := filepath.Join(dir, tt.ledger)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("ledger mode = %v, want 0600", fi.Mode().Perm())
			}
			di, err := os.Stat(filepath.Dir(path))
			if err != nil {
				t.Fatal(err)
			}
			if di.Mode().Perm() != 0o700 {
				t.Errorf("ledger directory mode = %v, want 0700", di.Mode().Perm())
			}
		})
	}
}
