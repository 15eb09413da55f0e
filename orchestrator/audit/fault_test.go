package audit

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/orchestrator/bus"
	"github.com/sluicehq/sluice/orchestrator/internal/fault"
)

// Once the state directory cannot be written, a record waited for fails
// with that cause rather than after its tries run out (20s, failing with
// "not stored"), and so does every record after it; the records stored
// before stay in the log.
func TestFaultFailsWaitAndLaterRecords(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	b, err := bus.Start(bus.Config{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	nc, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	f := fault.New(dir)
	l, err := Open(ctx, nc, "sluice", Options{Fault: f})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ctx, Record{Kind: KindDecision, Step: "before"}); err != nil {
		t.Fatal(err)
	}
	// The stream stops taking the log's subject: its records get no
	// answer, and are tried again until the fault stops them.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.Subjects = []string{"elsewhere"}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	p, err := l.Publish(Record{Kind: KindDecision, Step: "lost"})
	if err != nil {
		t.Fatal(err)
	}
	full := fault.NewError("audit log", dir, "write x: no space left on device")
	f.Fail(full)
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err = p.Wait(wctx)
	var fe *fault.Error
	if !errors.As(err, &fe) || !errors.Is(err, syscall.ENOSPC) || err.Error() != full.Error() {
		t.Fatalf("Wait = %v; want %v", err, full)
	}
	if _, err := l.Publish(Record{Kind: KindDecision, Step: "after"}); err == nil || err.Error() != full.Error() {
		t.Fatalf("Publish after the fault = %v; want %v", err, full)
	}
	if err := l.Append(ctx, Record{Kind: KindDecision, Step: "after"}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append after the fault = %v", err)
	}
	recs, err := l.Records(ctx)
	if err != nil || len(recs) != 1 || recs[0].Step != "before" {
		t.Fatalf("records after the fault: %+v %v", recs, err)
	}
}
