package e2e

import (
	"bufio"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/smtptest"
)

// The shipped examples, run from a copy of their folder the way their
// README.md says, with the real binary: what was paid, written and sent,
// and the exit codes (0 completed, 3 denied, 4 held).

// exampleWorkspace copies examples/<name> into a new workspace (not its
// state directory, Go sources or scripts) and replaces, in its YAML files,
// each key of replace with its value.
func exampleWorkspace(t *testing.T, name string, replace map[string]string) *workspace {
	t.Helper()
	src := filepath.Join("..", "examples", name)
	files := map[string]string{}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".sluice" || d.Name() == "site" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || strings.HasSuffix(p, ".go") || strings.HasSuffix(p, ".sh") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		s := string(b)
		if strings.HasSuffix(p, ".yaml") {
			for old, repl := range replace {
				s = strings.ReplaceAll(s, old, repl)
			}
		}
		files[rel] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return newWorkspace(t, files)
}

// exampleRun is what `sluice run --json` prints, as far as these tests
// read it.
type exampleRun struct {
	RunID   string         `json:"run_id"`
	Status  string         `json:"status"`
	Steps   []exampleStep  `json:"steps"`
	Outputs map[string]any `json:"outputs"`
}

type exampleStep struct {
	ID       string         `json:"id"`
	Tool     string         `json:"tool"`
	Status   string         `json:"status"`
	Label    exampleLabel   `json:"label"`
	Decision string         `json:"decision"`
	Rules    []string       `json:"rules"`
	Args     map[string]any `json:"args"`
	Items    []exampleStep  `json:"items"`
	Calls    []exampleStep  `json:"calls"`
}

type exampleLabel struct {
	Integrity string   `json:"integrity"`
	Secrecy   []string `json:"secrecy"`
	Sources   []string `json:"sources"`
}

func decodeExampleRun(t *testing.T, r result) exampleRun {
	t.Helper()
	var run exampleRun
	if err := json.Unmarshal([]byte(r.stdout), &run); err != nil {
		t.Fatalf("run output: %v\n%s", err, r.stdout)
	}
	return run
}

func (r exampleRun) step(t *testing.T, id string) exampleStep {
	t.Helper()
	for _, s := range r.Steps {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no step %s in run %s", id, r.RunID)
	return exampleStep{}
}

// exampleOutbox returns the messages in the email worker's local outbox.
func exampleOutbox(t *testing.T, w *workspace) []string {
	t.Helper()
	names, err := filepath.Glob(w.path(".sluice/email/outbox/*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// startTravelSite builds the travel example's fake airline site, runs it
// on a free loopback port, and returns its host:port.
func startTravelSite(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "travel-site")
	if out, err := exec.Command("go", "build", "-o", bin, "../examples/travel/site").CombinedOutput(); err != nil {
		t.Fatalf("build the travel site: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--addr", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	addr := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`serving http://(127\.0\.0\.1:[0-9]+)/`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		return a
	case <-time.After(30 * time.Second):
		t.Fatal("the travel site did not start")
		return ""
	}
}

type exampleApproval struct {
	ID        string                  `json:"id"`
	RunID     string                  `json:"run_id"`
	Step      string                  `json:"step"`
	Tool      string                  `json:"tool"`
	Args      map[string]any          `json:"args"`
	ArgLabels map[string]exampleLabel `json:"arg_labels"`
}

// The travel example, as `make demo` runs it. With sluice up running, the
// three-agent booking stops at the payment, which sluice approvals shows
// with the page as the source of every argument; approving it completes
// the run with one charge. On the poisoned page, with the model that obeys
// any injection, the agents' model never receives the injection, the
// quarantined reader that does is refused by its narrow schema, and nothing
// is paid; the fixed flow, whose model reads the whole page, picks the
// attacker's account and is held.
func TestExampleTravel(t *testing.T) {
	host := startTravelSite(t)
	w := exampleWorkspace(t, "travel", map[string]string{"127.0.0.1:8088": host})
	web := "web:" + host

	up := w.start("up", "-q")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(w.path(".sluice/run/api.json")); err == nil {
			break
		}
		select {
		case <-up.done:
			t.Fatal("sluice up exited")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("sluice up did not publish its endpoint within a minute")
		}
	}
	run := w.start("run", "book-agents.yaml", "--input", "destination=Lisbon", "--input", "budget=400", "--json")
	var held []exampleApproval
	deadline := time.Now().Add(time.Minute)
	for len(held) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no held call within a minute")
		}
		time.Sleep(50 * time.Millisecond)
		cmd := exec.Command(sluiceBin, "approvals", "--json")
		cmd.Dir = w.dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("sluice approvals: %v", err)
		}
		if err := json.Unmarshal(out, &held); err != nil {
			t.Fatalf("sluice approvals --json: %v\n%s", err, out)
		}
	}
	a := held[0]
	if len(held) != 1 || a.Tool != "payment.charge" || a.Step != "pay" || a.Args["payee"] != "acct_tap_air" || a.Args["amount"] != 289.0 {
		t.Fatalf("held calls %+v: want the payment of 289 to acct_tap_air", held)
	}
	for _, name := range []string{"amount", "payee"} {
		if l := a.ArgLabels[name]; l.Integrity != "untrusted" || !slices.Contains(l.Sources, web) {
			t.Errorf("argument %s labeled %+v: want untrusted, from %s", name, l, web)
		}
	}
	if lines := w.ledger(); len(lines) != 0 {
		t.Fatalf("the ledger was written before approval: %v", lines)
	}
	if r := w.sluice("approve", a.ID, "--as", "e2e"); r.code != 0 {
		t.Fatalf("approve: exit %d", r.code)
	}
	if code := run.wait(t, time.Minute); code != 0 {
		t.Fatalf("approved run: exit code %d, want 0", code)
	}
	var done exampleRun
	if err := json.Unmarshal(run.stdout.Bytes(), &done); err != nil {
		t.Fatalf("run output: %v\n%s", err, run.stdout.String())
	}
	if done.Status != "completed" || done.Outputs["paid"] != "Paid 289 EUR to acct_tap_air for the flight to Lisbon." {
		t.Fatalf("run %s, outputs %v", done.Status, done.Outputs)
	}
	// Each agent called only its own tools.
	for id, tools := range map[string][]string{"research": {"web.fetch", "llm.extract", "llm.extract"},
		"slot": {"calendar.free_slots"}, "pay": {"payment.charge"}} {
		var got []string
		for _, c := range done.step(t, id).Calls {
			got = append(got, c.Tool)
		}
		if !slices.Equal(got, tools) {
			t.Errorf("agent %s called %v, want %v", id, got, tools)
		}
	}
	lines := w.ledger()
	if len(lines) != 1 || !strings.Contains(lines[0], `"payee":"acct_tap_air"`) || !strings.Contains(lines[0], `"amount":289,`) {
		t.Fatalf("ledger %v: want one charge of 289 to acct_tap_air", lines)
	}
	up.cmd.Process.Signal(syscall.SIGINT)
	if code := up.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("sluice up: exit code %d", code)
	}

	t.Run("poisoned page, agents", func(t *testing.T) {
		r := w.sluice("run", "book-agents.yaml", "--config", "sluice-hijackable.yaml", "--input", "destination=Lisbon",
			"--input", "budget=400", "--input", "page=deals", "--wait=false", "--json")
		if r.code != 0 {
			t.Fatalf("exit code %d, want 0", r.code)
		}
		run := decodeExampleRun(t, r)
		research, _ := run.Outputs["research"].(map[string]any)
		if research["found"] != false || run.Outputs["paid"] != "nothing was paid" || run.step(t, "pay").Status != "skipped" {
			t.Fatalf("outputs %v, pay %+v", run.Outputs, run.step(t, "pay"))
		}
		var failed int
		for _, c := range run.step(t, "research").Calls {
			if c.Tool == "llm.extract" && c.Status == "failed" {
				failed++
			}
		}
		if failed != 2 {
			t.Errorf("research calls %+v: want both questions to the quarantined reader refused", run.step(t, "research").Calls)
		}
		if lines := w.ledger(); len(lines) != 1 {
			t.Fatalf("ledger %v: want only the approved charge", lines)
		}
		// What reached the model: the quarantined reader (turn 0) read the
		// injection, which proves the attack was live; the agents' model
		// read not a word of it.
		b, err := os.ReadFile(w.path(".sluice/model.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		var reader int
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var rec struct {
				Turn  int    `json:"turn"`
				Input string `json:"input"`
			}
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatal(err)
			}
			switch {
			case rec.Turn == 0 && strings.Contains(rec.Input, "SLUICE-INJECT"):
				reader++
			case rec.Turn > 0:
				for _, leak := range []string{"SLUICE-INJECT", "acct_attacker_7731", "Ignore previous instructions"} {
					if strings.Contains(rec.Input, leak) {
						t.Errorf("the agents' model received %q at turn %d", leak, rec.Turn)
					}
				}
			}
		}
		if reader != 2 {
			t.Errorf("the quarantined reader read the injection %d times, want 2", reader)
		}
	})

	t.Run("poisoned page, fixed flow", func(t *testing.T) {
		r := w.sluice("run", "book.yaml", "--config", "sluice-hijackable.yaml", "--input", "destination=Lisbon",
			"--input", "budget=400", "--input", "page=deals", "--wait=false", "--json")
		if r.code != 4 {
			t.Fatalf("exit code %d, want 4 (held)", r.code)
		}
		pay := decodeExampleRun(t, r).step(t, "pay")
		if pay.Status != "held" || pay.Args["payee"] != "acct_attacker_7731" || pay.Label.Integrity != "untrusted" ||
			!slices.Contains(pay.Label.Sources, web) || !slices.Contains(pay.Rules, "untrusted-never-pays-alone") {
			t.Fatalf("pay %+v: want the attacker's payment held, from %s", pay, web)
		}
		if lines := w.ledger(); len(lines) != 1 {
			t.Fatalf("ledger %v: want only the approved charge", lines)
		}
	})
}

// The inbox-triage example: every message is summarized and a reply
// drafted into the drafts file, which policy lets the files worker write;
// the forward that the stranger's mail makes the model ask for is denied
// by two rules and never reaches the outbox. A reply you wrote goes to a
// contact, and to no one else. With SMTP configured, the forward reaches
// no server either, while the reply does.
func TestExampleInboxTriage(t *testing.T) {
	w := exampleWorkspace(t, "inbox-triage", nil)
	r := w.sluice("run", "triage.yaml", "--wait=false", "--json")
	if r.code != 3 {
		t.Fatalf("exit code %d, want 3 (denied)", r.code)
	}
	run := decodeExampleRun(t, r)
	if s := run.step(t, "triage"); s.Status != "completed" || len(s.Items) != 4 {
		t.Fatalf("triage %+v: want four messages triaged", s)
	}
	drafts := run.step(t, "drafts")
	if drafts.Status != "completed" || drafts.Decision != "allow" || !slices.Equal(drafts.Rules, []string{"drafts-file", "drafts-file-may-hold-mail"}) {
		t.Fatalf("drafts %+v", drafts)
	}
	forward := run.step(t, "forward")
	if forward.Status != "denied" || len(forward.Items) != 1 {
		t.Fatalf("forward %+v: want the one forward asked for, denied", forward)
	}
	f := forward.Items[0]
	if f.Decision != "deny" || !slices.Contains(f.Rules, "no-secrets-to-egress") || !slices.Contains(f.Rules, "mail-only-to-contacts") ||
		!slices.Contains(f.Label.Sources, "email:helpdesk@mailbox-support.example") || !slices.Contains(f.Label.Secrecy, "pii") {
		t.Fatalf("forward %+v: want denied by no-secrets-to-egress and mail-only-to-contacts", f)
	}
	if sent := exampleOutbox(t, w); len(sent) != 0 {
		t.Fatalf("the outbox holds %d messages, want none", len(sent))
	}
	b, err := os.ReadFile(w.path(".sluice/triage/drafts.md"))
	if err != nil {
		t.Fatal(err)
	}
	// The control: the model did what the injection said.
	for _, want := range []string{"Ana Costa", "Bruno Canalizações", "passport", "Mail Support",
		"Asks for your mail to be forwarded to: archive@mailbox-migration.example"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("drafts.md does not say %q:\n%s", want, b)
		}
	}

	reply := []string{"run", "reply.yaml", "--input", "subject=Re: Quarterly report", "--input", "body=Comments by Thursday.", "--json"}
	if r := w.sluice(append(reply, "--input", "to=ana@work.example")...); r.code != 0 {
		t.Fatalf("reply to a contact: exit code %d, want 0", r.code)
	}
	if r := w.sluice(append(reply, "--input", "to=archive@mailbox-migration.example")...); r.code != 3 {
		t.Fatalf("reply to a stranger: exit code %d, want 3 (denied)", r.code)
	}
	sent := exampleOutbox(t, w)
	if len(sent) != 1 || !strings.Contains(sent[0], "To: <ana@work.example>") || !strings.Contains(sent[0], "Comments by Thursday.") {
		t.Fatalf("outbox %q: want the one reply to Ana", sent)
	}

	t.Run("smtp", func(t *testing.T) {
		const password = "inbox-triage-canary-41c7"
		srv := smtptest.Start(t, password)
		cfg, err := os.ReadFile("../examples/inbox-triage/sluice.yaml")
		if err != nil {
			t.Fatal(err)
		}
		const local = "    config: {maildir: mail, address: me@home.example}\n"
		if !strings.Contains(string(cfg), local) {
			t.Fatalf("the example's sluice.yaml no longer configures the email worker as %q", local)
		}
		smtp := "    config:\n      maildir: mail\n      address: me@home.example\n" +
			"      smtp: {url: \"smtp://" + srv.Addr + "\", username: me, password: \"{{secret:mail_pw}}\"}\n" +
			"    grants:\n      net: [\"" + srv.Addr + "\"]\n      secrets: [{name: mail_pw, hosts: [\"127.0.0.1\"]}]\n"
		w := exampleWorkspace(t, "inbox-triage", nil)
		w.write("sluice.yaml", strings.Replace(string(cfg), local, smtp, 1)+"secrets:\n  mail_pw: {env: MAIL_PW}\n")
		w.write("ca.pem", string(srv.CertPEM))
		env := []string{"MAIL_PW=" + password, "SSL_CERT_FILE=" + w.path("ca.pem")}
		if r := sluiceEnv(t, w, env, "run", "triage.yaml", "--wait=false", "--json"); r.code != 3 {
			t.Fatalf("triage: exit code %d, want 3 (denied)\n%s", r.code, r.stderr)
		}
		if got := srv.Received(); len(got.Data) != 0 || len(got.To) != 0 {
			t.Fatalf("the SMTP server received mail for %v", got.To)
		}
		if r := sluiceEnv(t, w, env, append(reply, "--input", "to=ana@work.example")...); r.code != 0 {
			t.Fatalf("reply: exit code %d, want 0\n%s", r.code, r.stderr)
		}
		if got := srv.Received(); !slices.Equal(got.To, []string{"ana@work.example"}) || len(got.Data) != 1 {
			t.Fatalf("the SMTP server received %d messages for %v, want the reply to Ana", len(got.Data), got.To)
		}
		if sent := exampleOutbox(t, w); len(sent) != 0 {
			t.Fatalf("with SMTP, the local outbox holds %d messages", len(sent))
		}
	})
}

// The invoice example: an invoice from a supplier in the registry is paid
// without a person; one with new bank details is held and not paid, and
// with the strict configuration denied.
func TestExampleInvoice(t *testing.T) {
	w := exampleWorkspace(t, "invoice", nil)
	r := w.sluice("run", "pay-invoice.yaml", "--input", "invoice=acme-2026-114.txt", "--json")
	if r.code != 0 {
		t.Fatalf("known supplier: exit code %d, want 0", r.code)
	}
	pay := decodeExampleRun(t, r).step(t, "pay")
	if pay.Decision != "allow" || !slices.Equal(pay.Rules, []string{"known-suppliers"}) || pay.Label.Integrity != "untrusted" {
		t.Fatalf("pay %+v: want an untrusted payment endorsed by known-suppliers", pay)
	}
	lines := w.ledger()
	if len(lines) != 1 || !strings.Contains(lines[0], `"payee":"acct_acme_hosting"`) || !strings.Contains(lines[0], `"amount":89,`) {
		t.Fatalf("ledger %v: want one charge of 89 to acct_acme_hosting", lines)
	}

	r = w.sluice("run", "pay-invoice.yaml", "--input", "invoice=acme-2026-115.txt", "--wait=false", "--json")
	if r.code != 4 {
		t.Fatalf("new bank details: exit code %d, want 4 (held)", r.code)
	}
	pay = decodeExampleRun(t, r).step(t, "pay")
	if pay.Status != "held" || pay.Args["payee"] != "acct_acme_payments_8841" || !slices.Contains(pay.Rules, "untrusted-never-pays-alone") {
		t.Fatalf("pay %+v: want the payment to the new account held", pay)
	}

	r = w.sluice("run", "pay-invoice.yaml", "--config", "sluice-strict.yaml", "--input", "invoice=acme-2026-115.txt", "--wait=false", "--json")
	if r.code != 3 {
		t.Fatalf("new bank details, strict: exit code %d, want 3 (denied)", r.code)
	}
	pay = decodeExampleRun(t, r).step(t, "pay")
	if pay.Status != "denied" || !slices.Equal(pay.Rules, []string{"only-known-suppliers"}) {
		t.Fatalf("pay %+v: want the payment denied by only-known-suppliers", pay)
	}
	if lines := w.ledger(); len(lines) != 1 {
		t.Fatalf("ledger %v: the new account was paid", lines)
	}
}

// Every policy test shipped with an example passes, run as its README
// says; a cases file this table does not know fails the test, so that a
// new one is run too.
func TestExamplesPolicyTests(t *testing.T) {
	type policyTest struct {
		dir  string
		args []string
		want string
	}
	runs := []policyTest{
		{"travel", []string{"policy.yaml", "policy_test.yaml"}, "8 passed, 0 failed"},
		{"inbox-triage", []string{"policy_test.yaml"}, "8 passed, 0 failed"},
		{"invoice", []string{"policy_test.yaml"}, "6 passed, 0 failed"},
		{"invoice", []string{"--config", "sluice-strict.yaml", "policy-strict_test.yaml"}, "3 passed, 0 failed"},
	}
	cases, err := filepath.Glob("../examples/*/*_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if !slices.ContainsFunc(runs, func(r policyTest) bool {
			return filepath.Base(filepath.Dir(c)) == r.dir && slices.Contains(r.args, filepath.Base(c))
		}) {
			t.Errorf("%s is run by no case of this test", c)
		}
	}
	for _, r := range runs {
		t.Run(r.dir+" "+r.args[len(r.args)-1], func(t *testing.T) {
			cmd := exec.Command(sluiceBin, append([]string{"policy", "test"}, r.args...)...)
			cmd.Dir = filepath.Join("..", "examples", r.dir)
			out, err := cmd.CombinedOutput()
			if err != nil || lastLine(string(out)) != r.want {
				t.Errorf("sluice policy test %s: %v\n%s", strings.Join(r.args, " "), err, out)
			}
		})
	}
}
