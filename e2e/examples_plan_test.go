package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// planStepOf is what the tests read of a plan step in a run's JSON.
type planStepOf struct {
	Steps []struct {
		ID      string        `json:"id"`
		Status  string        `json:"status"`
		Error   string        `json:"error"`
		Turns   int           `json:"turns"`
		Program string        `json:"program"`
		Calls   []exampleStep `json:"calls"`
	} `json:"steps"`
}

// The travel example's plan version, run the way its README says. The
// planner is shown the instructions and no result; its program fetches the
// page, asks it two narrow questions through inspect, and pays: the
// payment is held for a person, every argument from the page, and
// approving it resumes the program from its records (the page is fetched
// once, the planner asked once) and pays once. On the poisoned page with
// the model that obeys any injection, the planner's request holds not a
// word of the page, the quarantined reader that reads the injection is
// refused by its schema, the program stops, and nothing is paid or asked.
func TestExampleTravelPlan(t *testing.T) {
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
	run := w.start("run", "book-plan.yaml", "--input", "destination=Lisbon", "--input", "budget=400", "--json")
	var held []exampleApproval
	for deadline := time.Now().Add(time.Minute); len(held) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no held call within a minute")
		}
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
	if len(held) != 1 || a.Tool != "payment.charge" || a.Step != "trip" || a.Args["payee"] != "acct_tap_air" || a.Args["amount"] != 289.0 {
		t.Fatalf("held calls %+v: want the plan's payment of 289 to acct_tap_air", held)
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
		t.Fatalf("approved run: exit code %d, want 0\n%s", code, run.stdout.String())
	}
	var done exampleRun
	var plan planStepOf
	if err := json.Unmarshal(run.stdout.Bytes(), &done); err != nil {
		t.Fatalf("run output: %v\n%s", err, run.stdout.String())
	}
	_ = json.Unmarshal(run.stdout.Bytes(), &plan)
	booked, _ := done.Outputs["booked"].(map[string]any)
	if done.Status != "completed" || booked["payee"] != "acct_tap_air" || booked["price"] != 289.0 || booked["charge"] == nil {
		t.Fatalf("run %s, outputs %v", done.Status, done.Outputs)
	}
	if len(plan.Steps) != 1 || plan.Steps[0].Turns != 1 || !strings.Contains(plan.Steps[0].Program, "payment.charge(") {
		t.Fatalf("plan step %+v: want one program, written once", plan.Steps)
	}
	var tools []string
	for _, c := range plan.Steps[0].Calls {
		tools = append(tools, c.Tool)
	}
	if want := []string{"web.fetch", "llm.extract", "llm.extract", "payment.charge"}; !slices.Equal(tools, want) {
		t.Errorf("the program's calls %v, want %v: each made once", tools, want)
	}
	lines := w.ledger()
	if len(lines) != 1 || !strings.Contains(lines[0], `"payee":"acct_tap_air"`) || !strings.Contains(lines[0], `"amount":289,`) {
		t.Fatalf("ledger %v: want one charge of 289 to acct_tap_air", lines)
	}
	up.cmd.Process.Signal(syscall.SIGINT)
	if code := up.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("sluice up: exit code %d", code)
	}

	t.Run("poisoned page", func(t *testing.T) {
		r := w.sluice("run", "book-plan.yaml", "--config", "sluice-hijackable.yaml", "--input", "destination=Lisbon",
			"--input", "budget=400", "--input", "page=deals", "--wait=false", "--json")
		if r.code != 1 {
			t.Fatalf("exit code %d, want 1 (failed)", r.code)
		}
		var p planStepOf
		if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || len(p.Steps) != 1 {
			t.Fatalf("run output: %v\n%s", err, r.stdout)
		}
		s := p.Steps[0]
		if s.Status != "failed" || !strings.Contains(s.Error, "inspect") || len(s.Calls) != 2 || s.Calls[1].Status != "failed" {
			t.Fatalf("plan step %+v: want the program stopped at the refused inspect", s)
		}
		if lines := w.ledger(); len(lines) != 1 {
			t.Fatalf("ledger %v: want only the approved charge", lines)
		}
		// What reached the model: the quarantined reader (turn 0) read the
		// injection, which proves the attack was live; the planner read
		// not a word of the page.
		b, err := os.ReadFile(w.path(".sluice/model.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		var reader, planner int
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
				planner++
				for _, leak := range []string{"SLUICE-INJECT", "acct_attacker_7731", "TP 1234", "289"} {
					if strings.Contains(rec.Input, leak) {
						t.Errorf("the planner received %q", leak)
					}
				}
			}
		}
		if reader != 1 || planner != 1 {
			t.Errorf("the quarantined reader read the injection %d times, the planner was asked %d times; want 1 and 1", reader, planner)
		}
	})
}
