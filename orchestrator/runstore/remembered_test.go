package runstore

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/orchestrator/approval"
)

// TestRememberedSeesEveryWrite: a held call reads the remembered answers
// again only when the bucket changed since the last read, and sees every
// write made before it asked, through any store: one remembered, used and
// revoked through another store an instant before. What it returns is its
// caller's to change.
func TestRememberedSeesEveryWrite(t *testing.T) {
	first, second, _ := twoStores(t, viewHooks{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	read := func() []approval.Remembered {
		t.Helper()
		got, err := first.Remembered(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := read(); len(got) != 0 {
		t.Fatalf("remembered before any = %+v", got)
	}
	r := &approval.Remembered{ID: "r1", Tool: "payment.charge", Pins: map[string]any{"payee": "acct_1"}, Until: time.Now().Add(time.Hour)}
	if err := second.CreateRemembered(ctx, r); err != nil {
		t.Fatal(err)
	}
	if got := read(); len(got) != 1 || got[0].ID != "r1" || got[0].Count != 0 {
		t.Fatalf("remembered right after r1 was stored through another store = %+v", got)
	}
	got := read()
	got[0].Tool = "changed by the caller"
	if again := read(); again[0].Tool != "payment.charge" {
		t.Fatalf("a caller's change reached the next read: %+v", again)
	}
	for _, change := range []func(*approval.Remembered){
		func(r *approval.Remembered) { r.Count = 1 },
		func(r *approval.Remembered) { now := time.Now(); r.Revoked = &now },
	} {
		cur, rev, err := second.GetRemembered(ctx, "r1")
		if err != nil {
			t.Fatal(err)
		}
		change(cur)
		if err := second.UpdateRemembered(ctx, cur, rev); err != nil {
			t.Fatal(err)
		}
		if got := read(); len(got) != 1 || got[0].Count != cur.Count || (got[0].Revoked == nil) != (cur.Revoked == nil) {
			t.Fatalf("remembered right after r1 was changed through another store = %+v, want %+v", got, cur)
		}
	}
}
