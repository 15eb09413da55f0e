package audit

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/orchestrator/bus"
)

// Three logs on one stream, as three orchestrators of one deployment
// append: every append succeeds, each publisher's records are stored in
// the order it published and waited for them, nothing is stored twice,
// and the export, with checkpoints signed by each log, verifies.
func TestSeveralWritersKeepOneChain(t *testing.T) {
	b, err := bus.Start(bus.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const logs, writers, each = 3, 4, 40
	var ls []*Log
	for range logs {
		ls = append(ls, openLogOn(t, b))
	}
	var wg sync.WaitGroup
	errs := make(chan error, logs*writers)
	for li, l := range ls {
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				run := fmt.Sprintf("%d-%d", li, w)
				var held []*Pending
				for i := range each {
					r := Record{Kind: KindResult, RunID: run, Step: strconv.Itoa(i)}
					if i%3 == 0 {
						if err := l.Append(ctx, r); err != nil {
							errs <- fmt.Errorf("log %d, writer %d, record %d: %w", li, w, i, err)
							return
						}
						continue
					}
					// Published now, waited for in pairs, in order.
					p, err := l.Publish(r)
					if err != nil {
						errs <- err
						return
					}
					if held = append(held, p); len(held) == 2 {
						for _, p := range held {
							if err := p.Wait(ctx); err != nil {
								errs <- fmt.Errorf("log %d, writer %d: %w", li, w, err)
								return
							}
						}
						held = held[:0]
					}
				}
				for _, p := range held {
					if err := p.Wait(ctx); err != nil {
						errs <- err
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Each log signs a checkpoint, or finds the last record is one
	// already: the last ends the export.
	for _, l := range ls[:logs-1] {
		if _, err := l.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	export := signedExport(t, ls[logs-1])
	v, err := Verify(strings.NewReader(export), testPub)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if want := logs*writers*each + v.Checkpoints; v.Records != want || v.Checkpoints == 0 {
		t.Fatalf("verify: %+v, want %d records and checkpoints", v, want)
	}
	next := map[string]int{}
	for _, r := range exportRecords(t, ls[0]) {
		if r.Kind != KindResult {
			continue
		}
		if r.Step != strconv.Itoa(next[r.RunID]) {
			t.Fatalf("publisher %s: step %s stored where %d was due", r.RunID, r.Step, next[r.RunID])
		}
		next[r.RunID]++
	}
	for run, n := range next {
		if n != each {
			t.Errorf("publisher %s: %d records stored, want %d", run, n, each)
		}
	}
}

// A log that appended nothing for a while signs a checkpoint that covers
// the records another orchestrator appended meanwhile: an export through
// it holds them.
func TestCheckpointCoversOthersRecords(t *testing.T) {
	b, err := bus.Start(bus.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	ctx := context.Background()
	var ls []*Log
	for range 2 {
		nc, err := b.Connect()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		l, err := Open(ctx, nc, "sluice", Options{Signer: testKey, CheckpointInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	if err := ls[0].Append(ctx, Record{Kind: KindResult, Step: "first"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ls[0].Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := ls[1].Append(ctx, Record{Kind: KindResult, Step: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	v, err := Verify(strings.NewReader(signedExport(t, ls[0])), testPub)
	if err != nil || v.Records != 8 {
		t.Fatalf("verify: %+v, %v; want the 6 records and 2 checkpoints", v, err)
	}
}

// Another orchestrator's record takes the place of the first of two
// records a log published at once. The second was chained to the first,
// and its sequence alone would now let it in after the other's record:
// the stream refuses it because the record it follows is not the one it
// names by id, and both are chained again after the other's, in order.
// Unlike TestSeveralWritersKeepOneChain, nothing here depends on how the
// writers happen to interleave.
func TestRecordChainedToALostRecordIsChainedAgain(t *testing.T) {
	b, err := bus.Start(bus.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ours, theirs := openLogOn(t, b), openLogOn(t, b)
	if err := ours.Append(ctx, Record{Kind: KindResult, RunID: "ours", Step: "0"}); err != nil {
		t.Fatal(err)
	}
	// The other log appends right after it, where ours expects its next
	// record: ours does not know until the stream says so.
	if err := theirs.Append(ctx, Record{Kind: KindResult, RunID: "theirs", Step: "0"}); err != nil {
		t.Fatal(err)
	}
	var before []string
	for _, r := range exportRecords(t, theirs) {
		before = append(before, r.Kind)
	}
	if strings.Join(before, " ") != "result result" {
		t.Fatalf("stored %v before ours published again, want two results", before)
	}
	var ps []*Pending
	for _, step := range []string{"1", "2"} {
		p, err := ours.Publish(Record{Kind: KindResult, RunID: "ours", Step: step})
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		if err := p.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	v, err := Verify(strings.NewReader(signedExport(t, ours)), testPub)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if v.Records != 4+v.Checkpoints || v.Checkpoints == 0 {
		t.Fatalf("verify: %+v, want the 4 records and checkpoints", v)
	}
	var got []string
	for _, r := range exportRecords(t, theirs) {
		if r.Kind == KindResult {
			got = append(got, r.RunID+":"+r.Step)
		}
	}
	if want := "ours:0 theirs:0 ours:1 ours:2"; strings.Join(got, " ") != want {
		t.Fatalf("stored %v, want %s", got, want)
	}
}

// openLogOn opens the deployment's audit log on b, on a connection of its
// own, as an orchestrator does, signing checkpoints only when asked.
func openLogOn(t testing.TB, b *bus.Bus) *Log {
	t.Helper()
	nc, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	l, err := Open(context.Background(), nc, "sluice", Options{Signer: testKey, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return l
}
