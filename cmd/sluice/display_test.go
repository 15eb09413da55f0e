package main

import (
	"bytes"
	"strings"
	"testing"
	"unicode"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/api"
	"github.com/sluicehq/sluice/orchestrator/audit"
	"github.com/sluicehq/sluice/orchestrator/engine"
)

// forged is what an attacker writes into a source, a tool name a model
// chose, an error text or a reason, to forge a line of the output,
// clear the screen or reorder what follows.
const forged = "x\n    arguments labeled trusted, from user\r\x1b[2J\x1b[H\u202e\u2028\u200b"

// checkShown fails when out holds a control (but a line break), a format
// character or a line that the attacker forged.
func checkShown(t *testing.T, what, out string) {
	t.Helper()
	for _, r := range out {
		if r != '\n' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028') {
			t.Errorf("%s prints %U raw:\n%q", what, r, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "arguments labeled trusted, from user") {
			t.Errorf("%s prints a forged line %q", what, line)
		}
	}
	if !strings.Contains(out, `x\n    arguments labeled trusted, from user\r\x1b[2J\x1b[H\u202e\u2028\u200b`) {
		t.Errorf("%s does not show the forged text escaped:\n%s", what, out)
	}
}

func TestPrintersShowWhatAnAttackerWroteEscaped(t *testing.T) {
	t.Parallel()
	l := ifc.UntrustedFrom("calendar:"+forged, "web:a.example:443")
	step := engine.StepResult{ID: "pay", Tool: "payment.charge", Status: engine.StatusHeld, Label: l,
		ArgLabels: map[string]ifc.Label{"payee": l}, Args: map[string]any{"payee": forged},
		Decision: "approve", Rules: []string{"untrusted-never-pays-alone"}, Reasons: []string{"held: " + forged},
		ApprovalID: "01J", Lookalikes: []engine.Lookalike{{Arg: "payee", Value: "\u0430cct_hotel_1", Like: "acct_hotel_1", Where: "registry payees"}}}
	agent := engine.StepResult{ID: "agent", Tool: "llm.chat", Status: engine.StatusFailed, Label: l, Turns: 1, Error: "failed: " + forged,
		Calls: []engine.StepResult{{Tool: "web.fetch" + forged, Status: engine.StatusDenied, Decision: "deny", Label: l}}}
	var b bytes.Buffer
	printResult(&b, &engine.Result{RunID: "01R", Flow: "f", Status: engine.StatusHeld, Steps: []engine.StepResult{step, agent}, Error: forged})
	checkShown(t, "sluice run", b.String())
	if !strings.Contains(b.String(), `⚠ payee looks like acct_hotel_1 (registry payees) but is not: "\u0430cct_hotel_1"`) {
		t.Errorf("sluice run does not flag the lookalike payee:\n%s", b.String())
	}

	b.Reset()
	heldNotice(&b, step, "")
	checkShown(t, "the held notice", b.String())

	b.Reset()
	p := newProgress(&b, "")
	p.step(api.StepEvent{Step: "fetch" + forged, Tool: "web.fetch" + forged, Status: "failed" + forged, Error: forged})
	p.close()
	checkShown(t, "a step's progress line", b.String())

	b.Reset()
	printArgs(&b, &engine.Approval{Tool: "payment.charge", Args: step.Args, ArgLabels: step.ArgLabels, Lookalikes: step.Lookalikes}, "  ")
	checkShown(t, "sluice approvals", b.String())
	if !strings.Contains(b.String(), `⚠ payee looks like acct_hotel_1`) {
		t.Errorf("sluice approvals does not flag the lookalike payee:\n%s", b.String())
	}

	b.Reset()
	printTrace(&b, &audit.Run{ID: "01R", Flow: "f", Status: "failed", Steps: []audit.StepTrace{
		{ID: "fetch", Tool: "web.fetch" + forged, Label: &l, OutputLabel: &l, Decision: "allow", Reasons: []string{forged},
			Status: "failed", Error: forged, Answer: "denied by " + forged},
	}})
	checkShown(t, "sluice trace", b.String())
}

// A plan step's program is printed a line at a time, each line behind
// "| " and escaped: a program cannot forge a line of the output or print
// a control character.
func TestPrintProgramEscapes(t *testing.T) {
	t.Parallel()
	prog := "result = 1\n" + forged + "\n"
	var run, trace bytes.Buffer
	printModelStep(&run, engine.StepResult{ID: "trip", Tool: "llm.chat", Turns: 1, Program: prog})
	printProgram(&trace, "  ", prog)
	for what, out := range map[string]string{"sluice run": run.String(), "sluice trace": trace.String()} {
		for _, r := range out {
			if r != '\n' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028') {
				t.Errorf("%s prints %U raw:\n%q", what, r, out)
			}
		}
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		for _, line := range lines[1:] {
			if !strings.HasPrefix(strings.TrimSpace(line), "| ") {
				t.Errorf("%s prints a program line outside the program: %q", what, line)
			}
		}
		if !strings.Contains(out, "| result = 1") || !strings.Contains(out, `|     arguments labeled trusted, from user\r\x1b[2J\x1b[H\u202e\u2028\u200b`) {
			t.Errorf("%s:\n%s", what, out)
		}
	}
}
