package runstore

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/schemas"
)

// storeOnServer opens a store on an embedded JetStream server of the
// test's own.
func storeOnServer(t *testing.T) *Store {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := Open(ctx, nc, "test", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// A call sent at most once is marked before each try: the first try of a
// key finds nothing before it, every later one (another pass, another
// process, a second store on the same bucket) finds the first's mark, or
// the call's result; a held call's approval is kept under the mark.
func TestSendingMarksATryOnce(t *testing.T) {
	st := storeOnServer(t)
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
