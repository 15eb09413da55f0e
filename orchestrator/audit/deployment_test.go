package audit

import (
	"context"
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
