package e2e

import (
	"strings"
	"testing"
	"time"
)

const payCfg = `workers:
  - manifest: builtin:payment
`

// payReadsChargeid pays, then reads a field payment.charge's output
// schema does not have: before lint knew the shapes of outputs, the money
// moved and only then did the run fail.
const payReadsChargeid = `name: pay-and-report
inputs:
  amount: {type: number}
steps:
  - id: pay
    call: payment.charge
    with: {amount: "${inputs.amount}", currency: EUR, payee: acct_shop}
outputs:
  receipt: "${steps.pay.output.chargeid}"
`

const stringPlusNumber = `name: label
inputs:
  n: {type: number}
steps:
  - id: pay
    call: payment.charge
    with: {amount: "${inputs.n}", currency: EUR, payee: acct_shop, memo: "${'order ' + inputs.n}"}
`

// A flow that reads an output field its tool's schema lacks, or adds a
// string to a number, fails sluice lint with the place, and sluice run of
// it refuses before any payment; the same flow written rightly lints and
// pays.
func TestLintFindsWhatFailsAfterAPayment(t *testing.T) {
	w := newWorkspace(t, map[string]string{"sluice.yaml": payCfg, "pay.yaml": payReadsChargeid, "label.yaml": stringPlusNumber,
		"fixed.yaml": strings.Replace(payReadsChargeid, "chargeid", "charge_id", 1)})

	r := w.sluice("lint", "pay.yaml")
	want := `pay.yaml:9:32: steps.pay.output has no field "chargeid": the output schema of tool payment.charge gives charge_id, status (did you mean charge_id?)
 |   receipt: "${steps.pay.output.chargeid}"
 | ...............................^`
	if r.code != 1 || !strings.Contains(r.stderr, want) {
		t.Fatalf("lint of a misspelled output field: exit %d, want 1 and\n%s", r.code, want)
	}
	r = w.sluice("run", "pay.yaml", "--input", "amount=5")
	if r.code != 1 || !strings.Contains(r.stderr, `pay.yaml:9:32: steps.pay.output has no field "chargeid"`) {
		t.Fatalf("run of a misspelled output field: exit %d, want 1 with the position", r.code)
	}
	if lines := w.ledger(); len(lines) != 0 {
		t.Fatalf("a payment was made: %v", lines)
	}

	r = w.sluice("lint", "label.yaml")
	if r.code != 1 || !strings.Contains(r.stderr, "label.yaml:7:86: operator + cannot take a string and a number (double)") {
		t.Fatalf("lint of 'x' + a number: exit %d, want 1 with the position", r.code)
	}

	// The control: the same flow with the field the schema has lints and
	// pays, once.
	if r := w.sluice("lint", "fixed.yaml"); r.code != 0 {
		t.Fatalf("lint of the fixed flow: exit %d", r.code)
	}
	r = w.sluice("run", "fixed.yaml", "--input", "amount=5", "--json")
	if r.code != 0 || decodeRun(t, r.stdout).Status != "completed" {
		t.Fatalf("run of the fixed flow: exit %d", r.code)
	}
	if lines := w.ledger(); len(lines) != 1 {
		t.Fatalf("ledger %v: want the one payment", lines)
	}
}

// A worker config block with a misspelled key, an unknown backend or a
// script that does not exist fails sluice lint, sluice doctor and sluice
// up at once, at its place in sluice.yaml: no worker is started, so none
// is restarted.
func TestBadWorkerConfigFailsAtLoad(t *testing.T) {
	for _, tc := range []struct {
		name, cfg, want string
	}{
		{"misspelled key", "workers:\n  - manifest: builtin:payment\n    config: {opening_balanse: 100}\n",
			`sluice.yaml:3:14: unknown key "opening_balanse" (did you mean "opening_balance"?)`},
		{"unknown backend", "workers:\n  - manifest: builtin:payment\n  - manifest: builtin:llm\n    config:\n      backend: gpt5\n",
			`sluice.yaml:5:16: workers.1.config.backend: value must be one of 'scripted', 'hijackable', 'openai', 'anthropic'`},
		{"missing script", "workers:\n  - manifest: builtin:llm\n    config: {backend: scripted, script: answers.yaml}\n",
			`sluice.yaml:3:41: workers.0.config.script: no file `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorkspace(t, map[string]string{"sluice.yaml": tc.cfg})
			if r := w.sluice("lint"); r.code != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("lint: exit %d, want 1 and %q", r.code, tc.want)
			}
			if r := w.sluice("doctor"); r.code != 1 || !strings.Contains(r.stdout, tc.want) {
				t.Fatalf("doctor: exit %d, want 1 and %q", r.code, tc.want)
			}
			up := w.start("up")
			if code := up.wait(t, time.Minute); code != 1 {
				t.Fatalf("up: exit %d, want 1", code)
			}
			errText := strings.Join(up.stderrLines(), "\n")
			if !strings.Contains(errText, tc.want) {
				t.Fatalf("up did not say %q", tc.want)
			}
			if strings.Contains(errText, "restarting") || strings.Contains(errText, "stop with Ctrl-C") {
				t.Fatalf("up started workers")
			}
		})
	}
}
