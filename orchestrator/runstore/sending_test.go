package runstore

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/schemas"
)

// A call sent at most once is marked before each try: the first try of a
// key finds nothing before it, every later one (another pass, another
// process, a second store on the same bucket) finds the first's mark, or
// the call's result; a held call's approval is kept under the mark.
func TestSendingMarksATryOnce(t *testing.T) {
	st := openStore(t, newServer(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if earlier, err := st.Sending(ctx, "r1/pay", "m1"); err != nil || earlier != "" {
		t.Fatalf("first try: earlier %q, %v", earlier, err)
	}
	for _, token := range []string{"m2", "m1"} {
		if earlier, err := st.Sending(ctx, "r1/pay", token); err != nil || earlier != "m1" {
			t.Fatalf("try %s after m1: earlier %q, %v; want m1", token, earlier, err)
		}
	}

	// A held call's record holds its approval: the mark keeps it.
	if err := st.PutCall(ctx, "r1/held", &CallRecord{ApprovalID: "A1"}); err != nil {
		t.Fatal(err)
	}
	if earlier, err := st.Sending(ctx, "r1/held", "m3"); err != nil || earlier != "" {
		t.Fatalf("held call's first try: earlier %q, %v", earlier, err)
	}
	rec, err := st.GetCall(ctx, "r1/held")
	if err != nil || rec == nil || rec.ApprovalID != "A1" || rec.Sent != "m3" {
		t.Fatalf("held call's record after the mark: %+v, %v", rec, err)
	}
	if earlier, _ := st.Sending(ctx, "r1/held", "m4"); earlier != "m3" {
		t.Fatalf("held call's second try: earlier %q, want m3", earlier)
	}

	// A call whose result was recorded was made.
	if err := st.PutCall(ctx, "r1/done", &CallRecord{Result: &schemas.StepResult{Status: schemas.StatusCompleted}}); err != nil {
		t.Fatal(err)
	}
	if earlier, err := st.Sending(ctx, "r1/done", "m5"); err != nil || earlier != "completed" {
		t.Fatalf("completed call: earlier %q, %v", earlier, err)
	}
	// Nothing is written for a call found made.
	if rec, _ := st.GetCall(ctx, "r1/done"); rec.Sent != "" {
		t.Fatalf("the completed call's record was marked: %+v", rec)
	}
}
