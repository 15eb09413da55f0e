package e2e

import (
	"regexp"
	"strings"
	"testing"
)

const lookalikeHoldPolicy = `rules:
  - name: hold-every-charge
    when: tool.name == "payment.charge"
    action: approve
    reason: every payment waits for a person
`

func lookalikeChargeFlow(payee string) string {
	return "name: pay\nsteps:\n  - id: pay\n    call: payment.charge\n    with: {amount: 1, currency: EUR, payee: \"" + payee + "\"}\n"
}

var heldForApproval = regexp.MustCompile(`held for approval (\w+)`)

// TestHeldCallFlagsAPayeeLikeOneApprovedBefore: through sluice up, a call
// held while other calls wait is compared with the calls of its tool a
// person approved before, and with those only: a payee one letter away
// (a Cyrillic і) from an approved payee is flagged where sluice run shows
// the held call, and one like a payee still waiting is not.
func TestHeldCallFlagsAPayeeLikeOneApprovedBefore(t *testing.T) {
	w := newWorkspace(t, map[string]string{
		"sluice.yaml":        "workers:\n  - manifest: builtin:payment\npolicies: [hold.yaml]\n",
		"hold.yaml":          lookalikeHoldPolicy,
		"approved.yaml":      lookalikeChargeFlow("acct_taxi_7"),
		"pending.yaml":       lookalikeChargeFlow("acct_hotel_9"),
		"like-approved.yaml": lookalikeChargeFlow("acct_tax\u0456_7"),
		"like-pending.yaml":  lookalikeChargeFlow("acct_hote\u04cf_9"),
	})
	upAndReady(t, w)
	held := func(flow string) (string, string) {
		t.Helper()
		r := w.sluice("run", "--wait=false", flow)
		if r.code != 4 {
			t.Fatalf("run %s: exit %d, want 4 (held)", flow, r.code)
		}
		m := heldForApproval.FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("run %s: no held approval in\n%s", flow, r.stdout)
		}
		return m[1], r.stdout
	}
	id, _ := held("approved.yaml")
	if r := w.sluice("approve", id, "--as", "e2e"); r.code != 0 {
		t.Fatalf("approve %s: exit %d %s", id, r.code, r.stderr)
	}
	held("pending.yaml")
	_, out := held("like-approved.yaml")
	if !strings.Contains(out, "approved before (payment.charge payee)") || !strings.Contains(out, "acct_taxi_7") {
		t.Fatalf("a payee like the approved acct_taxi_7 is not flagged:\n%s", out)
	}
	_, out = held("like-pending.yaml")
	if strings.Contains(out, "approved before") {
		t.Fatalf("a payee like one only waiting for a person is flagged as approved before:\n%s", out)
	}
}
