package runstore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/orchestrator/approval"
)

// twoStores starts a JetStream server and opens the run state of one
// deployment twice, each on its own connection, as two orchestrators do;
// hooks are the first store's view's.
func twoStores(t *testing.T, hooks viewHooks) (*Store, *Store, func() *Store) {
	t.Helper()
	s := newServer(t)
	open := func() *Store { return openStore(t, s) }
	a := open()
	a.hooks = hooks
	return a, open(), open
}

// gatedStores is twoStores whose first store's view, once gated is set,
// applies each write only when a read waits for it: a read that does not
// wait for the view to catch up sees the writes made through the second
// store just before it missing.
func gatedStores(t *testing.T) (first, second *Store, open func() *Store, gated *atomic.Bool) {
	t.Helper()
	gated = new(atomic.Bool)
	waiting := make(chan struct{}, 1)
	ended := make(chan struct{})
	first, second, open = twoStores(t, viewHooks{
		beforeApply: func() {
			if gated.Load() {
				select {
				case <-waiting:
				case <-ended:
				}
			}
		},
		readWaits: func() {
			select {
			case waiting <- struct{}{}:
			default:
			}
		},
	})
	// Before the stores close: a view held at the gate stops only then.
	t.Cleanup(func() { close(ended) })
	return first, second, open, gated
}

// TestApprovedOfSeesAnApprovalAnsweredThroughAnotherStore: a call approved
// through another orchestrator an instant before a new call is held is
// compared with. The first store's view is made to apply that write only
// once a read waits for it: ApprovedOf must wait for the view to catch up
// with the bucket, and answer with the approval, not answer from the view
// as it stood.
func TestApprovedOfSeesAnApprovalAnsweredThroughAnotherStore(t *testing.T) {
	var gated atomic.Bool
	waiting := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(waiting) }) }
	first, second, open := twoStores(t, viewHooks{
		beforeApply: func() {
			if gated.Load() {
				<-waiting
			}
		},
		readWaits: release,
	})
	// Before the stores close: a view held at the gate stops only then.
	t.Cleanup(release)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pending := &approval.Approval{ID: "a1", Tool: "payment.charge", Status: approval.Pending, Args: map[string]any{"payee": "acct_1"}}
	if err := second.CreateApproval(ctx, pending); err != nil {
		t.Fatal(err)
	}
	// The first store's view starts, and holds no approved call.
	if got, err := first.ApprovedOf(ctx, "payment.charge"); err != nil || got.Len() != 0 {
		t.Fatalf("ApprovedOf before any approval = %q, %v; want none", got.Values("payee"), err)
	}
	gated.Store(true)
	a, rev, err := second.GetApproval(ctx, "a1")
	if err != nil {
		t.Fatal(err)
	}
	a.Who = "alice"
	if err := a.Advance(approval.Approve); err != nil {
		t.Fatal(err)
	}
	if err := second.UpdateApproval(ctx, a, rev); err != nil {
		t.Fatal(err)
	}
	got, err := first.ApprovedOf(ctx, "payment.charge")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Values("payee"), []string{"acct_1"}) {
		t.Fatalf("ApprovedOf right after a1 was approved through another store = %q, want a1's payee", got.Values("payee"))
	}
	// Another tool's approvals are not that tool's; a store opened
	// afterwards (a restarted orchestrator) loads what is stored.
	if got, err := first.ApprovedOf(ctx, "mail.send"); err != nil || got.Len() != 0 {
		t.Fatalf("ApprovedOf(mail.send) = %q, %v; want none", got.Values("payee"), err)
	}
	if err := second.CreateApproval(ctx, &approval.Approval{ID: "a2", Tool: "payment.charge", Status: approval.Used,
		Args: map[string]any{"payee": "acct_2"}}); err != nil {
		t.Fatal(err)
	}
	got, err = open().ApprovedOf(ctx, "payment.charge")
	if err != nil || !slices.Equal(got.Values("payee"), []string{"acct_1", "acct_2"}) {
		t.Fatalf("a new store's ApprovedOf = %q, %v; want the payees of a1 and a2", got.Values("payee"), err)
	}
}

// TestWatchApprovalTellsAWaitingRunItsAnswer: a run waiting for an answer
// is sent its approval's status when an answer is written through another
// store, through the first store's one watch of the bucket.
func TestWatchApprovalTellsAWaitingRunItsAnswer(t *testing.T) {
	first, second, _ := twoStores(t, viewHooks{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := &approval.Approval{ID: "w1", Tool: "payment.charge", Status: approval.Pending}
	if err := first.CreateApproval(ctx, a); err != nil {
		t.Fatal(err)
	}
	changed, stop, err := first.WatchApproval(ctx, "w1")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	_, rev, err := second.GetApproval(ctx, "w1")
	if err != nil {
		t.Fatal(err)
	}
	a.Who = "bob"
	if err := a.Advance(approval.Deny); err != nil {
		t.Fatal(err)
	}
	if err := second.UpdateApproval(ctx, a, rev); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case s := <-changed:
			if s == approval.Denied {
				return
			}
			if s != approval.Pending {
				t.Fatalf("the waiting run was told %q, want %q", s, approval.Denied)
			}
		case <-ctx.Done():
			t.Fatal("the waiting run was not told its approval was answered")
		}
	}
}

// TestOpenApprovalsOfARun: a run's open approvals, pending or approved
// and not yet used, are listed from the view, whichever store wrote them
// an instant before (the view is made to apply a write only once a read
// waits for it); answered and done with, or another run's, they are not.
// A store opened afterwards loads them.
func TestOpenApprovalsOfARun(t *testing.T) {
	first, second, open, gated := gatedStores(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	openIDs := func(s *Store, run string) []string {
		t.Helper()
		got, err := s.OpenApprovalsOf(ctx, run)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range got {
			if a.RunID != run {
				t.Fatalf("OpenApprovalsOf(%s) lists %+v", run, a)
			}
			out = append(out, a.ID+":"+a.Status)
		}
		slices.Sort(out)
		return out
	}
	for _, a := range []approval.Approval{
		{ID: "p1", RunID: "r1", Tool: "payment.charge", Status: approval.Pending},
		{ID: "a1", RunID: "r1", Tool: "payment.charge", Status: approval.Approved},
		{ID: "u1", RunID: "r1", Tool: "payment.charge", Status: approval.Used},
		{ID: "d1", RunID: "r1", Tool: "payment.charge", Status: approval.Denied},
		{ID: "p2", RunID: "r2", Tool: "payment.charge", Status: approval.Pending},
	} {
		if err := second.CreateApproval(ctx, &a); err != nil {
			t.Fatal(err)
		}
	}
	if got := openIDs(first, "r1"); !slices.Equal(got, []string{"a1:approved", "p1:pending"}) {
		t.Fatalf("open approvals of r1 = %v, want a1 approved and p1 pending", got)
	}
	// Cancelled through the other store, and a new one held there, each
	// applied by the first store's view only once it is read.
	gated.Store(true)
	p1, rev, err := second.GetApproval(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if err := p1.Advance(approval.Cancel); err != nil {
		t.Fatal(err)
	}
	if err := second.UpdateApproval(ctx, p1, rev); err != nil {
		t.Fatal(err)
	}
	if err := second.CreateApproval(ctx, &approval.Approval{ID: "p3", RunID: "r1", Tool: "mail.send", Status: approval.Pending}); err != nil {
		t.Fatal(err)
	}
	if got := openIDs(first, "r1"); !slices.Equal(got, []string{"a1:approved", "p3:pending"}) {
		t.Fatalf("open approvals of r1 right after p1 was cancelled and p3 held elsewhere = %v, want a1 and p3", got)
	}
	gated.Store(false)
	if got := openIDs(open(), "r2"); !slices.Equal(got, []string{"p2:pending"}) {
		t.Fatalf("a new store's open approvals of r2 = %v, want p2", got)
	}
	if got := openIDs(open(), "r3"); len(got) != 0 {
		t.Fatalf("open approvals of a run with none = %v", got)
	}
}

// TestPendingApprovalsReadsOnlyThePending: the list people read holds the
// approvals pending, whole and by id, whichever store wrote them an
// instant before (the view applies a write only once a read waits for
// it), and reads only those: an answered approval whose arguments cannot
// be decoded, which reading every approval fails on, does not stop it.
// The scan, when the view cannot answer, finds the same.
func TestPendingApprovalsReadsOnlyThePending(t *testing.T) {
	first, second, _, gated := gatedStores(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pendingIDs := func() []string {
		t.Helper()
		got, err := first.PendingApprovals(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range got {
			if a.Status != approval.Pending || a.Args["payee"] != "acct_"+a.ID {
				t.Fatalf("PendingApprovals lists %+v", a)
			}
			out = append(out, a.ID)
		}
		return out
	}
	for _, a := range []approval.Approval{
		{ID: "p2", Status: approval.Pending},
		{ID: "p1", Status: approval.Pending},
		{ID: "a1", Status: approval.Approved},
		{ID: "u1", Status: approval.Used},
	} {
		a.RunID, a.Tool, a.Args = "r1", "payment.charge", map[string]any{"payee": "acct_" + a.ID}
		if err := second.CreateApproval(ctx, &a); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := second.approvals.Create(ctx, "d1", []byte(`{"id":"d1","tool":"payment.charge","status":"denied","args":7}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := first.AllApprovals(ctx); err == nil {
		t.Fatal("AllApprovals decoded d1, whose arguments are not an object: the test shows nothing")
	}
	if got := pendingIDs(); !slices.Equal(got, []string{"p1", "p2"}) {
		t.Fatalf("pending = %v, want [p1 p2]", got)
	}
	// Denied, and a new call held, through the other store.
	gated.Store(true)
	p1, rev, err := second.GetApproval(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if err := p1.Advance(approval.Deny); err != nil {
		t.Fatal(err)
	}
	if err := second.UpdateApproval(ctx, p1, rev); err != nil {
		t.Fatal(err)
	}
	if err := second.CreateApproval(ctx, &approval.Approval{ID: "p3", RunID: "r2", Tool: "payment.charge", Status: approval.Pending,
		Args: map[string]any{"payee": "acct_p3"}}); err != nil {
		t.Fatal(err)
	}
	if got := pendingIDs(); !slices.Equal(got, []string{"p2", "p3"}) {
		t.Fatalf("pending right after p1 was denied and p3 held through another store = %v, want [p2 p3]", got)
	}
	scanned, err := first.pendingScan(ctx)
	var ids []string
	for _, a := range scanned {
		if a.Args["payee"] != "acct_"+a.ID {
			t.Fatalf("the scan lists %+v", a)
		}
		ids = append(ids, a.ID)
	}
	if err != nil || !slices.Equal(ids, []string{"p2", "p3"}) {
		t.Fatalf("the scan's pending = %v, %v; want [p2 p3]", ids, err)
	}
}

// BenchmarkPendingApprovals lists 10 calls held among 10,000 approvals
// kept, the rest answered: from the view, reading the 10 alone, and by the
// scan of every approval (what the list did before the view).
func BenchmarkPendingApprovals(b *testing.B) {
	st := openStore(b, newServer(b))
	ctx := context.Background()
	for i := range 10000 {
		a := approval.Approval{ID: fmt.Sprintf("a%05d", i), RunID: "r", Tool: "payment.charge", Status: approval.Used,
			Args: map[string]any{"payee": fmt.Sprintf("acct_%d", i%50), "amount": i}}
		if i%1000 == 0 {
			a.Status = approval.Pending
		}
		if err := st.CreateApproval(ctx, &a); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name string
		list func(context.Context) ([]approval.Approval, error)
	}{{"view", st.PendingApprovals}, {"scan", st.pendingScan}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if got, err := bc.list(ctx); err != nil || len(got) != 10 {
					b.Fatalf("%d listed, %v", len(got), err)
				}
			}
		})
	}
}
