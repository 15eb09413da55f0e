package audit

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/orchestrator/bus"
)

func TestChainExportVerify(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	b, err := bus.Start(bus.Config{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(ctx, nc, "sluice")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := l.Append(ctx, Record{Kind: KindDecision, Step: string(rune('a' + i))}); err != nil {
			t.Fatal(err)
		}
	}
	// A new Log on the same stream (a restart) continues the chain.
	l2, err := Open(ctx, nc, "sluice")
	if err != nil {
		t.Fatal(err)
	}
	l2.Append(ctx, Record{Kind: KindRunFinished})
	var buf bytes.Buffer
	n, err := l2.Export(ctx, &buf)
	if err != nil || n != 6 {
		t.Fatalf("export: %d %v", n, err)
	}
	nc.Close()
	b.Shutdown()
	clean := buf.String()
	if n, err := Verify(strings.NewReader(clean)); err != nil || n != 6 {
		t.Fatalf("clean export: %d %v", n, err)
	}
	lines := strings.SplitAfter(clean, "\n")
	lines = lines[:len(lines)-1]
	tampered := map[string][]string{
		"a record changed":  {lines[0], lines[1], strings.Replace(lines[2], `"step":"c"`, `"step":"x"`, 1), lines[3], lines[4], lines[5]},
		"a record dropped":  {lines[0], lines[1], lines[3], lines[4], lines[5]},
		"records reordered": {lines[0], lines[2], lines[1], lines[3], lines[4], lines[5]},
		"the first dropped": lines[1:],
	}
	for name, ls := range tampered {
		if _, err := Verify(strings.NewReader(strings.Join(ls, ""))); err == nil || !strings.Contains(err.Error(), "line ") {
			t.Errorf("%s: verify passed (%v)", name, err)
		}
	}
}
