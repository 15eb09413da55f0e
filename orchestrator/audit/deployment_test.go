package audit

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Two deployments on one bus keep two audit streams: the default one
// SLUICE_AUDIT, a named one SLUICE_<NAME>_AUDIT; each log reads its own
// records only.
func TestDeploymentsKeepTheirOwnStream(t *testing.T) {
	def, nc := openLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acme, err := Open(ctx, nc, "acme", Options{Deployment: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if err := def.Append(ctx, Record{Kind: KindRunStarted, RunID: "default-run"}); err != nil {
		t.Fatal(err)
	}
	if err := acme.Append(ctx, Record{Kind: KindRunStarted, RunID: "acme-run"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		l    *Log
		want string
	}{{def, "default-run"}, {acme, "acme-run"}} {
		recs, err := tc.l.Records(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var runs []string
		for _, r := range recs {
			if r.RunID != "" {
				runs = append(runs, r.RunID)
			}
		}
		if len(runs) != 1 || runs[0] != tc.want {
			t.Errorf("log of stream %s reads runs %v, want only %s", tc.l.stream, runs, tc.want)
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for name, subject := range map[string]string{StreamName: "sluice.audit", "SLUICE_ACME_AUDIT": "acme.audit"} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if got := st.CachedInfo().Config.Subjects; len(got) != 1 || got[0] != subject {
			t.Errorf("stream %s takes %v, want %s", name, got, subject)
		}
	}
}

// Retention drops the head of its own deployment's log only: a named
// deployment's retention leaves the default deployment's log on the same
// bus whole, and its own still verifies.
func TestRetentionKeepsToItsDeployment(t *testing.T) {
	def, nc := openLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acme, err := Open(ctx, nc, "acme", Options{Deployment: "acme", Signer: testKey, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []*Log{def, acme} {
		for range 4 {
			if err := l.Append(ctx, Record{Kind: KindDecision, Action: "allow"}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := l.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	before := streamState(t, def).State
	d, err := acme.Retain(ctx, Retention{MaxSize: 1}, time.Now())
	if err != nil || d.Records == 0 {
		t.Fatalf("retain acme: %+v %v", d, err)
	}
	if after := streamState(t, def).State; after.FirstSeq != before.FirstSeq || after.Msgs != before.Msgs {
		t.Fatalf("the default deployment's log changed: %d records from %d, was %d from %d", after.Msgs, after.FirstSeq, before.Msgs, before.FirstSeq)
	}
	if v, err := Verify(strings.NewReader(signedExport(t, acme)), testPub); err != nil || v.Dropped != d.Records {
		t.Fatalf("verify acme: %+v %v", v, err)
	}
}
