package e2e

import (
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const paymentOnly = "workers:\n  - manifest: builtin:payment\n"

const noPayments = `rules:
  - name: no-payments
    when: tool.name == "payment.charge"
    action: deny
    reason: no payment is made from this deployment
`

const bigPaymentsOnly = `rules:
  - name: no-big-payments
    when: tool.name == "payment.charge" && args.amount > 1000
    action: deny
    reason: payments over 1000 are made by hand
`

// The policy file of brokenPolicy does not compile: line 3, the when.
const brokenPolicy = `rules:
  - name: broken
    when: tool.name ==
    action: deny
`

var fingerprintRE = regexp.MustCompile(`sha256:[0-9a-f]{64}`)

// runningFingerprint reads the configuration line of sluice up's banner.
func runningFingerprint(t *testing.T, up *process) string {
	t.Helper()
	line := up.waitLine(t, "configuration: ", time.Minute)
	fp := fingerprintRE.FindString(line)
	if fp == "" {
		t.Fatalf("no fingerprint in the banner line %q", line)
	}
	return fp
}

// waitLog waits for a line of sluice up's stderr holding every one of
// parts, and returns how many lines hold them.
func waitLog(t *testing.T, p *process, n int, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		count := 0
		for _, l := range p.stderrLines() {
			all := true
			for _, s := range parts {
				all = all && strings.Contains(l, s)
			}
			if all {
				count++
			}
		}
		if count >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sluice up logged %d lines with %q within a minute, want %d", count, parts, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With sluice up running a permissive configuration, sluice run --config
// naming a stricter one is refused, naming both configurations, and
// nothing is paid; the same command with the running configuration runs;
// --use-running runs under the running one and says so. The strict
// configuration does deny the payment when it is the one running.
func TestRunRefusesAnotherConfiguration(t *testing.T) {
	w := newWorkspace(t, map[string]string{"sluice.yaml": paymentOnly, "pay.yaml": payDirectFlow,
		"strict.yaml": "policies: [no-payments.yaml]\n" + paymentOnly, "no-payments.yaml": noPayments})
	up := upAndReady(t, w)
	running := runningFingerprint(t, up)
	pay := []string{"run", "pay.yaml", "--input", "amount=7", "--input", "payee=acct_hotel_1", "--json"}

	// Control: the configuration that runs, named or found, runs.
	for _, args := range [][]string{pay, append(pay, "--config", "sluice.yaml")} {
		r := w.sluice(args...)
		if r.code != 0 || decodeRun(t, r.stdout).Status != "completed" {
			t.Fatalf("sluice %s: exit %d", strings.Join(args, " "), r.code)
		}
	}
	if n := len(w.ledger()); n != 2 {
		t.Fatalf("ledger has %d payments, want 2", n)
	}

	r := w.sluice(append(pay, "--config", "strict.yaml")...)
	if r.code != 1 {
		t.Fatalf("run --config strict.yaml against a permissive orchestrator: exit %d, want 1", r.code)
	}
	fps := fingerprintRE.FindAllString(r.stderr, -1)
	if len(fps) < 2 || fps[0] != running || fps[1] == running {
		t.Fatalf("the refusal does not name the running fingerprint %s and another: %s", running, r.stderr)
	}
	for _, want := range []string{"refused", w.path("sluice.yaml"), "strict.yaml", "pid " + strconv.Itoa(up.cmd.Process.Pid), "sluice reload", "--use-running"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the refusal does not say %q: %s", want, r.stderr)
		}
	}
	if r.stdout != "" {
		t.Errorf("a refused run printed a result: %s", r.stdout)
	}
	if n := len(w.ledger()); n != 2 {
		t.Fatalf("ledger has %d payments after the refused run, want 2", n)
	}

	r = w.sluice(append(pay, "--config", "strict.yaml", "--use-running")...)
	if r.code != 0 || decodeRun(t, r.stdout).Status != "completed" {
		t.Fatalf("--use-running: exit %d", r.code)
	}
	if !strings.Contains(r.stderr, "--use-running: running under the configuration of the orchestrator") || !strings.Contains(r.stderr, running) {
		t.Fatalf("--use-running does not say under which configuration it ran: %s", r.stderr)
	}
	if n := len(w.ledger()); n != 3 {
		t.Fatalf("ledger has %d payments, want 3", n)
	}

	up.cmd.Process.Signal(syscall.SIGINT)
	if code := up.wait(t, time.Minute); code != 0 {
		t.Fatalf("up exit %d", code)
	}
	// The refusal protected something: run on its own, the strict
	// configuration denies the payment.
	r = w.sluice(append(pay, "--config", "strict.yaml")...)
	if run := decodeRun(t, r.stdout); r.code != 3 || run.Status != "denied" {
		t.Fatalf("strict.yaml on its own: exit %d status %s, want 3 denied", r.code, run.Status)
	}
	if n := len(w.ledger()); n != 3 {
		t.Fatalf("ledger has %d payments, want 3", n)
	}
}

// Editing a policy while sluice up runs: doctor reports the drift, sluice
// run refuses the files on disk, sluice reload applies them (the next run
// is denied where it was allowed), a policy that does not load is refused
// with its position and the one in force kept, a change only a restart
// can make is refused, SIGHUP reloads as sluice reload does, and every
// reload, applied, refused or unchanged, is in the audit log with both
// fingerprints.
func TestReloadAppliesEditedPolicies(t *testing.T) {
	w := newWorkspace(t, map[string]string{"sluice.yaml": "policies: [policy.yaml]\n" + paymentOnly,
		"policy.yaml": bigPaymentsOnly, "pay.yaml": payDirectFlow})
	up := upAndReady(t, w)
	first := runningFingerprint(t, up)
	pay := []string{"run", "pay.yaml", "--input", "amount=7", "--input", "payee=acct_hotel_1", "--json"}
	if r := w.sluice(pay...); r.code != 0 {
		t.Fatalf("run before the edit: exit %d", r.code)
	}
	if r := w.sluice("doctor"); r.code != 0 || !regexp.MustCompile(`(?m)^ok +configuration drift +none`).MatchString(r.stdout) {
		t.Fatalf("doctor before the edit: exit %d\n%s", r.code, r.stdout)
	}

	w.write("policy.yaml", noPayments)
	r := w.sluice("doctor")
	drift := regexp.MustCompile(`(?m)^fail +configuration drift +(.*)$`).FindStringSubmatch(r.stdout)
	if r.code != 1 || drift == nil {
		t.Fatalf("doctor after the edit: exit %d, no drift line\n%s", r.code, r.stdout)
	}
	fps := fingerprintRE.FindAllString(drift[1], -1)
	if len(fps) != 2 || fps[0] != first || fps[1] == first || !strings.Contains(drift[1], "sluice reload") {
		t.Fatalf("the drift line does not name both fingerprints and sluice reload: %s", drift[1])
	}
	second := fps[1]
	// The files on disk are not what runs: a run is refused.
	if r := w.sluice(pay...); r.code != 1 || !strings.Contains(r.stderr, "refused") {
		t.Fatalf("run with edited files: exit %d, want 1 %s", r.code, r.stderr)
	}
	if n := len(w.ledger()); n != 1 {
		t.Fatalf("ledger has %d payments, want 1", n)
	}

	r = w.sluice("reload")
	if r.code != 0 || !strings.Contains(r.stdout, first+" → "+second) {
		t.Fatalf("reload: exit %d, want 0 and %s → %s\n%s%s", r.code, first, second, r.stdout, r.stderr)
	}
	waitLog(t, up, 1, "configuration reloaded", second)
	// The endpoint clients read says what runs now.
	var endpoint struct{ Config, Fingerprint string }
	if b, err := os.ReadFile(w.path(".sluice/run/api.json")); err != nil || json.Unmarshal(b, &endpoint) != nil ||
		endpoint.Fingerprint != second || endpoint.Config != w.path("sluice.yaml") {
		t.Fatalf("api.json after the reload: %+v %v, want %s", endpoint, err, second)
	}
	r = w.sluice(pay...)
	if run := decodeRun(t, r.stdout); r.code != 3 || run.Status != "denied" || !strings.Contains(strings.Join(run.Steps[0].Rules, " "), "no-payments") {
		t.Fatalf("run after the reload: exit %d %+v, want 3, denied by no-payments", r.code, run)
	}
	if r := w.sluice("doctor"); r.code != 0 || !strings.Contains(r.stdout, "none: the orchestrator runs "+second) {
		t.Fatalf("doctor after the reload: exit %d\n%s", r.code, r.stdout)
	}

	// A policy that does not load is refused, with its position; the one
	// in force stays.
	w.write("policy.yaml", brokenPolicy)
	r = w.sluice("reload")
	if r.code != 1 || !regexp.MustCompile(`policy\.yaml:3:\d+: `).MatchString(r.stderr) || !strings.Contains(r.stderr, "refused") ||
		!strings.Contains(r.stderr, "keeps running "+second) {
		t.Fatalf("reload of a broken policy: exit %d, want 1 with policy.yaml:3:col\n%s", r.code, r.stderr)
	}
	r = w.sluice(append(pay, "--use-running")...)
	if run := decodeRun(t, r.stdout); r.code != 3 || run.Status != "denied" {
		t.Fatalf("run after a refused reload: exit %d status %s, want the policy in force to deny it", r.code, run.Status)
	}

	// What only a restart can change is refused, named.
	w.write("policy.yaml", noPayments)
	w.write("sluice.yaml", "policies: [policy.yaml]\n"+paymentOnly+"  - manifest: builtin:calendar\n")
	r = w.sluice("reload")
	if r.code != 1 || !strings.Contains(r.stderr, "worker calendar (added)") || !strings.Contains(r.stderr, "restart sluice up") {
		t.Fatalf("reload adding a worker: exit %d, want 1 naming the worker\n%s", r.code, r.stderr)
	}
	w.write("sluice.yaml", "policies: [policy.yaml]\n"+paymentOnly)

	// SIGHUP: a broken policy is refused, its problems in up's log; a
	// good one is applied.
	w.write("policy.yaml", brokenPolicy)
	up.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, up, 1, "policy.yaml:3:")
	waitLog(t, up, 3, "configuration reload refused")
	w.write("policy.yaml", bigPaymentsOnly)
	up.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, up, 1, "configuration reloaded", "signal:SIGHUP", first)
	r = w.sluice(pay...)
	if run := decodeRun(t, r.stdout); r.code != 0 || run.Status != "completed" {
		t.Fatalf("run after SIGHUP: exit %d status %s", r.code, run.Status)
	}
	if n := len(w.ledger()); n != 2 {
		t.Fatalf("ledger has %d payments, want 2", n)
	}
	// Reloading what runs changes nothing, and is recorded too.
	if r := w.sluice("reload"); r.code != 0 || !strings.Contains(r.stdout, "unchanged, "+first) {
		t.Fatalf("reload of unchanged files: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := w.sluice("runs"); r.code != 0 {
		t.Fatalf("sluice runs: exit %d %s", r.code, r.stderr)
	}

	up.cmd.Process.Signal(syscall.SIGINT)
	if code := up.wait(t, time.Minute); code != 0 {
		t.Fatalf("up exit %d", code)
	}
	type reload struct{ user, status, old, new string }
	var got []reload
	for _, rec := range checkAudit(t, w) {
		if rec["kind"] != "config_reload" {
			continue
		}
		s := func(k string) string { v, _ := rec[k].(string); return v }
		if s("file") != w.path("sluice.yaml") {
			t.Errorf("config_reload record of file %q, want %s", s("file"), w.path("sluice.yaml"))
		}
		got = append(got, reload{strings.SplitN(s("user"), ":", 2)[0], s("status"), s("old_fingerprint"), s("new_fingerprint")})
	}
	want := []reload{
		{"cli", "applied", first, second},
		{"cli", "refused", second, "?"},
		{"cli", "refused", second, "?"},
		{"signal", "refused", second, "?"},
		{"signal", "applied", second, first},
		{"cli", "unchanged", first, first},
	}
	if len(got) != len(want) {
		t.Fatalf("config_reload records %+v, want %d", got, len(want))
	}
	for i := range want {
		if want[i].new == "?" {
			// A refused reload records what it read: another fingerprint.
			want[i].new = got[i].new
			if got[i].new == "" || got[i].new == second {
				t.Errorf("refused reload %d records the new fingerprint %q", i, got[i].new)
			}
		}
		if got[i] != want[i] {
			t.Errorf("config_reload record %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}
