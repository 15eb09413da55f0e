package audit

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// streamState is the audit stream's config and state.
func streamState(t *testing.T, l *Log) *jetstream.StreamInfo {
	t.Helper()
	st, err := l.js.Stream(context.Background(), StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// Records older than max_age are dropped up to the checkpoint after them:
// the log starts with that checkpoint, the drop is recorded, the stream
// still denies purges and has no limit, and an export verifies, saying
// how many records were dropped. Anything changed after the checkpoint
// still fails verify, and so does an export cut anywhere but at a
// checkpoint.
func TestRetainDropsTheHeadUpToACheckpoint(t *testing.T) {
	l, nc := openLog(t)
	ctx := context.Background()
	now := time.Now().UTC()
	for range 3 {
		if err := l.Append(ctx, Record{Kind: KindDecision, Action: "allow", Time: now.Add(-2 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil || cp != 4 {
		t.Fatalf("checkpoint at %d, %v; want 4", cp, err)
	}
	for range 2 {
		if err := l.Append(ctx, Record{Kind: KindDecision, Action: "deny", Time: now}); err != nil {
			t.Fatal(err)
		}
	}
	// Within the limits: nothing is dropped.
	if d, err := l.Retain(ctx, Retention{MaxAge: 3 * time.Hour, MaxSize: 1 << 30}, now); err != nil || d.Records != 0 {
		t.Fatalf("within the limits: %+v %v", d, err)
	}
	d, err := l.Retain(ctx, Retention{MaxAge: time.Hour}, now)
	if err != nil || d.Records != 3 || d.Seq != 4 || !strings.HasPrefix(d.Reason, "max_age 1h0m0s") {
		t.Fatalf("retain: %+v %v; want the 3 old records dropped up to the checkpoint at 4", d, err)
	}
	info := streamState(t, l)
	if info.State.FirstSeq != 4 || !info.Config.DenyPurge || !info.Config.DenyDelete || info.Config.MaxMsgs != -1 {
		t.Fatalf("after the drop: first %d, deny purge %v, deny delete %v, max msgs %d", info.State.FirstSeq,
			info.Config.DenyPurge, info.Config.DenyDelete, info.Config.MaxMsgs)
	}
	recs := exportRecords(t, l)
	last := recs[len(recs)-1]
	if recs[0].Kind != KindCheckpoint || recs[0].Count != 3 || last.Kind != KindRetention || last.Count != 3 ||
		last.Checkpoint != recs[0].ID || len(last.Reasons) != 1 || last.Reasons[0] != d.Reason {
		t.Fatalf("first record %+v, last %+v: want the checkpoint, and the drop recorded", recs[0], last)
	}

	lines := splitLines(signedExport(t, l))
	v, err := Verify(strings.NewReader(joinLines(lines)), testPub)
	if err != nil || v.Dropped != 3 || v.Records != len(lines) || v.Start.IsZero() {
		t.Fatalf("verify after the drop: %+v %v", v, err)
	}
	deny := strings.Replace(lines[1], `"action":"deny"`, `"action":"allow"`, 1)
	count := strings.Replace(lines[0], `"count":3`, `"count":2`, 1)
	for _, c := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"a record after the checkpoint changed", append([]string{lines[0], deny}, lines[2:]...), "line 3: the chain is broken"},
		{"a record after the checkpoint changed, chain recomputed", rechainFrom(t, append([]string{lines[0], deny}, lines[2:]...), 1, 3), "the checkpoint's signature does not verify"},
		{"the first checkpoint's count changed", append([]string{count}, lines[1:]...), "line 1: the checkpoint's signature does not verify"},
		{"cut after the checkpoint", lines[1:], "line 1: the chain does not start here, and not at a checkpoint either"},
		{"cut two records after the checkpoint", lines[2:], "line 1: the chain does not start here"},
	} {
		if _, err := Verify(strings.NewReader(joinLines(c.lines)), testPub); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}

	// A log opened again counts the dropped records: its checkpoints
	// still verify.
	l2, err := Open(ctx, nc, "sluice", Options{Signer: testKey, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.Append(ctx, Record{Kind: KindDecision, Action: "allow"}); err != nil {
		t.Fatal(err)
	}
	if v, err := Verify(strings.NewReader(signedExport(t, l2)), testPub); err != nil || v.Dropped != 3 {
		t.Fatalf("verify after opening again: %+v %v", v, err)
	}
}

// rechainFrom is rechain for an export that starts after dropped
// records: each checkpoint after from counts them too, and keeps its
// signature.
func rechainFrom(t *testing.T, lines []string, from int, dropped uint64) []string {
	t.Helper()
	out := slices.Clone(lines)
	for i := from + 1; i < len(out); i++ {
		var r Record
		if err := json.Unmarshal([]byte(out[i]), &r); err != nil {
			t.Fatal(err)
		}
		r.Prev = hash([]byte(out[i-1]))
		if r.Kind == KindCheckpoint {
			r.Count = uint64(i) + dropped
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = string(b)
	}
	return out
}

// Over max_size, the oldest records are dropped up to the first
// checkpoint after enough bytes; with no checkpoint after them, Retain
// signs one at the end, and the log starts there.
func TestRetainKeepsTheLogUnderItsSize(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	for i := range 12 {
		if err := l.Append(ctx, Record{Kind: KindDecision, Action: "allow", Reasons: []string{strings.Repeat("x", 200)}}); err != nil {
			t.Fatal(err)
		}
		if i%4 == 3 {
			if _, err := l.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Records 1-4, checkpoint 5, 6-9, checkpoint 10, 11-14, checkpoint 15.
	before := streamState(t, l).State.Bytes
	d, err := l.Retain(ctx, Retention{MaxSize: int64(before) - 100}, time.Now())
	if err != nil || d.Records != 4 || d.Seq != 5 || !strings.HasPrefix(d.Reason, "max_size") {
		t.Fatalf("retain 100 bytes: %+v %v; want 4 records dropped, up to the first checkpoint", d, err)
	}
	if v, err := Verify(strings.NewReader(signedExport(t, l)), testPub); err != nil || v.Dropped != 4 {
		t.Fatalf("verify: %+v %v", v, err)
	}
	for range 3 {
		if err := l.Append(ctx, Record{Kind: KindDecision, Action: "allow"}); err != nil {
			t.Fatal(err)
		}
	}
	// A limit below everything: all but a checkpoint signed now goes.
	d, err = l.Retain(ctx, Retention{MaxSize: 1}, time.Now())
	info := streamState(t, l)
	if err != nil || d.Seq != info.State.LastSeq-1 || info.State.Msgs != 2 {
		t.Fatalf("retain all: %+v %v; the stream holds %d records from %d to %d, want a checkpoint and the retention record",
			d, err, info.State.Msgs, info.State.FirstSeq, info.State.LastSeq)
	}
	v, err := Verify(strings.NewReader(signedExport(t, l)), testPub)
	if err != nil || v.Records != 3 || v.Dropped != info.State.FirstSeq-1 {
		t.Fatalf("verify: %+v %v", v, err)
	}
}

// The drop itself refuses to cut anywhere but at a checkpoint: the log
// would start with a record no signature vouches for.
func TestRetainRefusesACutNotAtACheckpoint(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	for range 3 {
		if err := l.Append(ctx, Record{Kind: KindDecision, Action: "allow"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.dropBefore(ctx, 2); err == nil || !strings.Contains(err.Error(), "record 2 is not a checkpoint") {
		t.Fatalf("drop before record 2: %v", err)
	}
	if info := streamState(t, l); info.State.FirstSeq != 1 || info.State.Msgs != 4 {
		t.Fatalf("the stream holds %d records from %d, want all 4", info.State.Msgs, info.State.FirstSeq)
	}
	if v, err := Verify(strings.NewReader(signedExport(t, l)), testPub); err != nil || v.Dropped != 0 {
		t.Fatalf("verify: %+v %v", v, err)
	}
}

// One pass reads a bounded number of records: on a long log it drops the
// head up to the last checkpoint it read, and the next pass goes on.
func TestRetainReadsABoundedPartOfTheLog(t *testing.T) {
	defer func(n uint64) { maxScan = n }(maxScan)
	maxScan = 6
	l, _ := openLog(t)
	ctx := context.Background()
	for i := range 12 {
		if err := l.Append(ctx, Record{Kind: KindDecision, Action: "allow"}); err != nil {
			t.Fatal(err)
		}
		if i%4 == 3 {
			if _, err := l.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Records 1-4, checkpoint 5, 6-9, checkpoint 10, 11-14, checkpoint 15:
	// the first pass reads 1 to 6 and cuts at 5.
	d, err := l.Retain(ctx, Retention{MaxSize: 1024}, time.Now())
	if err != nil || d.Seq != 5 || d.Records != 4 || !strings.Contains(d.Reason, "bytes more") || strings.Contains(d.Reason, " 0 bytes more") {
		t.Fatalf("first pass: %+v %v; want the head dropped up to 5", d, err)
	}
	// The next starts at 5 and reads to 10.
	if d, err = l.Retain(ctx, Retention{MaxSize: 1024}, time.Now()); err != nil || d.Seq != 10 {
		t.Fatalf("second pass: %+v %v; want the head dropped up to 10", d, err)
	}
	if v, err := Verify(strings.NewReader(signedExport(t, l)), testPub); err != nil || v.Dropped != 9 {
		t.Fatalf("verify: %+v %v", v, err)
	}
}
