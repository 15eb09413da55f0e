package runstore

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/orchestrator/approval"
)

// TestApprovedOfDecodesOnlyApprovedCallsOfTheTool: a new held call is
// compared with the calls of its tool a person approved, and reading them
// must not decode the other approvals in full (with thousands held, that
// decoding made each new hold slower than the last). A pending approval
// whose arguments cannot be decoded shows it: ApprovedOf passes over it,
// where decoding every approval fails on it.
func TestApprovedOfDecodesOnlyApprovedCallsOfTheTool(t *testing.T) {
	st := openStore(t, newServer(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, a := range []approval.Approval{
		{ID: "a1", Tool: "payment.charge", Status: approval.Approved, Args: map[string]any{"payee": "acct_1"}},
		{ID: "a2", Tool: "payment.charge", Status: approval.Used, Args: map[string]any{"payee": "acct_2"}},
		{ID: "a3", Tool: "payment.charge", Status: approval.Pending, Args: map[string]any{"payee": "acct_3"}},
		{ID: "a4", Tool: "mail.send", Status: approval.Approved, Args: map[string]any{"to": "x@example.com"}},
	} {
		if err := st.CreateApproval(ctx, &a); err != nil {
			t.Fatal(err)
		}
	}
	// Held, its arguments not an object: only a full decode fails on it.
	if _, err := st.approvals.Create(ctx, "a5", []byte(`{"id":"a5","tool":"payment.charge","status":"pending","args":7}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AllApprovals(ctx); err == nil {
		t.Fatal("AllApprovals decoded a5, whose arguments are not an object: the test shows nothing")
	}
	got, err := st.ApprovedOf(ctx, "payment.charge")
	if err != nil {
		t.Fatalf("ApprovedOf decoded more than the approved calls of the tool: %v", err)
	}
	if payees := got.Values("payee"); !slices.Equal(payees, []string{"acct_1", "acct_2"}) {
		t.Fatalf("ApprovedOf(payment.charge) payees = %q, want those of a1 and a2", payees)
	}
	// The same through the scan, which reads what the view could not.
	scanned, err := st.approvedOfScan(ctx, "payment.charge")
	if err != nil || !slices.Equal(scanned.Values("payee"), []string{"acct_1", "acct_2"}) {
		t.Fatalf("the scan's payees = %q, %v; want those of a1 and a2", scanned.Values("payee"), err)
	}
}
