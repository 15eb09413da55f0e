package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/bus"
	"github.com/sluicehq/sluice/schemas"
)

var (
	testKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	testPub = testKey.Public().(ed25519.PublicKey)
	// otherKey is the key of someone who can write the stream, or edit an
	// export, but does not hold the deployment's key.
	otherKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
)

// splitLines returns the lines of an export, without their newlines.
func splitLines(export string) []string {
	return strings.Split(strings.TrimSuffix(export, "\n"), "\n")
}

func joinLines(lines []string) string { return strings.Join(lines, "\n") + "\n" }

// rechain sets the prev of every line after from to the hash of the line
// before it, as someone recomputing the chain would, and re-signs the
// checkpoints with key when key is not nil.
func rechain(t *testing.T, lines []string, from int, key ed25519.PrivateKey) []string {
	t.Helper()
	out := slices.Clone(lines)
	for i := from + 1; i < len(out); i++ {
		var r Record
		if err := json.Unmarshal([]byte(out[i]), &r); err != nil {
			t.Fatal(err)
		}
		r.Prev = hash([]byte(out[i-1]))
		if r.Kind == KindCheckpoint {
			r.Count = uint64(i)
			if key != nil {
				r.Signature, r.Key = "", PublicKeyString(key.Public().(ed25519.PublicKey))
				b, _ := json.Marshal(r)
				s := &signer{key: key}
				out[i] = string(s.sign(b))
				continue
			}
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = string(b)
	}
	return out
}

// fullRecord has every field of Record set, to a value that is not its
// zero value; V and Prev are set again by Publish.
func fullRecord(t *testing.T) Record {
	lb := ifc.UntrustedFrom("web:a.example").WithSecrecy("pii")
	r := Record{}
	v := reflect.ValueOf(&r).Elem()
	for f := range v.NumField() {
		fv, name := v.Field(f), v.Type().Field(f).Name
		switch fv.Interface().(type) {
		case int:
			fv.SetInt(Version)
		case uint64:
			fv.SetUint(42)
		case bool:
			fv.SetBool(true)
		case string:
			fv.SetString(name + "-value")
		case time.Time:
			fv.Set(reflect.ValueOf(time.Date(2026, 11, 24, 23, 59, 1, 5000, time.UTC)))
		case *ifc.Label:
			fv.Set(reflect.ValueOf(&lb))
		case map[string]ifc.Label:
			fv.Set(reflect.ValueOf(map[string]ifc.Label{"amount": ifc.TrustedFrom("user"), "payee": lb}))
		case []string:
			fv.Set(reflect.ValueOf([]string{name + "-1", name + "-2"}))
		case []PlanStep:
			fv.Set(reflect.ValueOf([]PlanStep{{ID: "a", Tool: "t.a"}, {ID: "b", Tool: "t.b", Deps: []string{"a"}}}))
		case *schemas.Usage:
			fv.Set(reflect.ValueOf(&schemas.Usage{InputTokens: 1200, OutputTokens: 34}))
		default:
			t.Fatalf("Record.%s: a type the test does not fill", name)
		}
	}
	r.ID, r.Kind = NewID(), KindDecision
	return r
}

// changeField changes field f of r to another value of its type.
func changeField(t *testing.T, r *Record, f int) {
	fv := reflect.ValueOf(r).Elem().Field(f)
	switch x := fv.Interface().(type) {
	case int:
		fv.SetInt(int64(x) + 1)
	case uint64:
		fv.SetUint(x + 1)
	case bool:
		fv.SetBool(!x)
	case string:
		fv.SetString(x + "x")
	case time.Time:
		fv.Set(reflect.ValueOf(x.Add(time.Second)))
	case *ifc.Label:
		lb := ifc.TrustedFrom("user")
		if x != nil && x.Integrity() == ifc.Trusted {
			lb = ifc.UntrustedFrom("web:b.example")
		}
		fv.Set(reflect.ValueOf(&lb))
	case map[string]ifc.Label:
		m := maps.Clone(x)
		if m == nil {
			m = map[string]ifc.Label{}
		}
		m["extra"] = ifc.TrustedFrom("user")
		fv.Set(reflect.ValueOf(m))
	case []string:
		fv.Set(reflect.ValueOf(append(slices.Clone(x), "x")))
	case []PlanStep:
		fv.Set(reflect.ValueOf(append(slices.Clone(x), PlanStep{ID: "x", Tool: "t.x"})))
	case *schemas.Usage:
		u := schemas.Usage{InputTokens: 1}
		if x != nil {
			u = schemas.Usage{InputTokens: x.InputTokens, OutputTokens: x.OutputTokens + 1}
		}
		fv.Set(reflect.ValueOf(&u))
	default:
		t.Fatalf("Record.%s: a type the test does not change", reflect.TypeOf(*r).Field(f).Name)
	}
}

// Every field of a record is covered: changing any one of them, in a
// record or in the checkpoint at the end, fails verify, whether the chain
// after it is left as it was or recomputed. action is one of them.
func TestEveryFieldIsCovered(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	for _, r := range []Record{{Kind: KindRunStarted, RunID: "r", Flow: "f"}, fullRecord(t), {Kind: KindResult, RunID: "r", Step: "s"}} {
		if err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	lines := splitLines(signedExport(t, l))
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 3 records and a checkpoint", len(lines))
	}
	if _, err := Verify(strings.NewReader(joinLines(lines)), testPub); err != nil {
		t.Fatalf("untouched export: %v", err)
	}
	// The record on line 2 has every field; line 4 is the checkpoint.
	for _, at := range []int{1, 3} {
		var orig Record
		if err := json.Unmarshal([]byte(lines[at]), &orig); err != nil {
			t.Fatal(err)
		}
		if b, _ := json.Marshal(orig); string(b) != lines[at] {
			t.Fatalf("line %d does not encode back to itself:\n%s\n%s", at+1, b, lines[at])
		}
		if at == 1 && orig.Action == "" {
			t.Fatal("the record on line 2 has no action")
		}
		typ := reflect.TypeOf(orig)
		for f := range typ.NumField() {
			name := typ.Field(f).Name
			r := orig
			changeField(t, &r, f)
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) == lines[at] {
				t.Fatalf("line %d, %s: the change did not change the line", at+1, name)
			}
			changed := slices.Clone(lines)
			changed[at] = string(b)
			for variant, ls := range map[string][]string{
				"changed":             changed,
				"chain recomputed":    rechain(t, changed, at, nil),
				"re-signed by other":  rechain(t, changed, at, otherKey),
				"only the chain kept": rechain(t, changed, at, nil)[:at+1],
			} {
				_, err := Verify(strings.NewReader(joinLines(ls)), testPub)
				if err == nil {
					t.Errorf("line %d, %s %s: verify passed", at+1, name, variant)
					continue
				}
				if !strings.Contains(err.Error(), "line ") {
					t.Errorf("line %d, %s %s: the error names no line: %v", at+1, name, variant, err)
				}
			}
		}
	}
}

// A cut tail, a removed checkpoint, a recomputed chain and another key
// fail, naming the line; a cut right after a checkpoint is the log as it
// stood when that checkpoint was signed, and verifies.
func TestVerifyAgainstTheLatestCheckpoint(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	for i := range 3 {
		if err := l.Append(ctx, Record{Kind: KindDecision, Step: strconv.Itoa(i), Action: "allow"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := l.Append(ctx, Record{Kind: KindDecision, Step: strconv.Itoa(3 + i), Action: "deny"}); err != nil {
			t.Fatal(err)
		}
	}
	lines := splitLines(signedExport(t, l))
	if len(lines) != 7 {
		t.Fatalf("%d lines, want 7", len(lines))
	}
	v, err := Verify(strings.NewReader(joinLines(lines)), testPub)
	if err != nil || v.Records != 7 || v.Checkpoints != 2 || v.Key != PublicKeyString(testPub) || v.Signed.IsZero() {
		t.Fatalf("untouched export: %+v %v", v, err)
	}
	allow := strings.Replace(lines[1], `"action":"allow"`, `"action":"deny"`, 1)
	noCheckpoints := rechain(t, append(slices.Clone(lines[:3]), lines[4:6]...), 0, nil)
	for _, c := range []struct {
		name  string
		lines []string
		key   ed25519.PublicKey
		want  string
	}{
		{"the last line cut", lines[:6], testPub, "line 6: no checkpoint covers lines 5 to 6 (the last is line 4)"},
		{"two lines cut", lines[:5], testPub, "line 5: no checkpoint covers lines 5 to 5"},
		{"the checkpoint in the middle removed", append(slices.Clone(lines[:3]), lines[4:]...), testPub, "line 4: the chain is broken"},
		{"the checkpoint in the middle removed, chain recomputed", rechain(t, append(slices.Clone(lines[:3]), lines[4:]...), 2, nil), testPub, "line 6: the checkpoint's signature does not verify"},
		{"every checkpoint removed, chain recomputed", noCheckpoints, testPub, "line 5: no checkpoint in the export covers lines 1 to 5"},
		{"an action changed, chain recomputed", rechain(t, append([]string{lines[0], allow}, lines[2:]...), 1, nil), testPub, "line 4: the checkpoint's signature does not verify"},
		{"an action changed, chain recomputed and signed by another key", rechain(t, append([]string{lines[0], allow}, lines[2:]...), 1, otherKey), testPub, "line 4: the checkpoint is signed by " + PublicKeyString(otherKey.Public().(ed25519.PublicKey))},
		{"checked with another key", lines, otherKey.Public().(ed25519.PublicKey), "line 4: the checkpoint is signed by"},
		{"a record added before a checkpoint", append(append(slices.Clone(lines[:3]), lines[2]), lines[3:]...), testPub, "line 4: the chain is broken"},
		{"empty", nil, testPub, "the export is empty"},
	} {
		export := ""
		if c.lines != nil {
			export = joinLines(c.lines)
		}
		_, err := Verify(strings.NewReader(export), c.key)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// The documented limit: cut right after a checkpoint, an export is the
	// log as it stood then, and says so by its count and time.
	if v, err := Verify(strings.NewReader(joinLines(lines[:4])), testPub); err != nil || v.Records != 4 {
		t.Fatalf("cut after the first checkpoint: %+v %v", v, err)
	}
	if _, err := Verify(strings.NewReader(joinLines(lines))); err == nil {
		t.Fatal("verify without a key passed")
	}
}

// lastRecord is the last record of the log.
func lastRecord(t *testing.T, l *Log) Record {
	t.Helper()
	recs, err := l.Records(context.Background())
	if err != nil || len(recs) == 0 {
		t.Fatalf("records: %d %v", len(recs), err)
	}
	return recs[len(recs)-1]
}

// waitCheckpoint waits until the last record of the log is a checkpoint
// covering count records.
func waitCheckpoint(t *testing.T, l *Log, count uint64, why string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := lastRecord(t, l)
		if r.Kind == KindCheckpoint && r.Count == count {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no checkpoint of %d records; the last record is %+v", why, count, r)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The log signs by itself: after the interval, at the end of a run, on
// Close, and on Open for records a crash left uncovered.
func TestCheckpointsAreSignedInTheBackground(t *testing.T) {
	ctx := context.Background()
	b, err := bus.Start(bus.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	nc, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)

	// A log without a key (an older orchestrator, or one that crashed)
	// leaves records uncovered; opening it with the key signs them.
	unsigned, err := Open(ctx, nc, "sluice")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := unsigned.Append(ctx, Record{Kind: KindDecision}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := unsigned.Checkpoint(ctx); err == nil {
		t.Fatal("a checkpoint without a key")
	}
	l, err := Open(ctx, nc, "sluice", Options{Signer: testKey, CheckpointInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r := lastRecord(t, l); r.Kind != KindCheckpoint || r.Count != 2 {
		t.Fatalf("after open: the last record is %+v", r)
	}
	if err := l.Append(ctx, Record{Kind: KindDecision}); err != nil {
		t.Fatal(err)
	}
	waitCheckpoint(t, l, 4, "after the interval")
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// A run that finishes is signed without waiting for the interval.
	l, err = Open(ctx, nc, "sluice", Options{Signer: testKey, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ctx, Record{Kind: KindRunFinished, RunID: "r", Flow: "f", Status: "completed"}); err != nil {
		t.Fatal(err)
	}
	waitCheckpoint(t, l, 6, "after a run finished")

	// Shutting down signs the last records.
	if err := l.Append(ctx, Record{Kind: KindDecision}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if r := lastRecord(t, l); r.Kind != KindCheckpoint || r.Count != 8 {
		t.Fatalf("after close: the last record is %+v", r)
	}
	var buf bytes.Buffer
	if _, err := l.Export(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	if v, err := Verify(&buf, testPub); err != nil || v.Records != 9 || v.Checkpoints != 4 {
		t.Fatalf("verify: %+v %v", v, err)
	}
}

// The server refuses to delete an audit record or purge the stream, also
// on a stream created before the log denied both.
func TestStreamRefusesDeleteAndPurge(t *testing.T) {
	ctx := context.Background()
	b, err := bus.Start(bus.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	nc, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// An older stream, which allowed both.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: StreamName, Subjects: []string{"sluice.audit"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	l, err := Open(ctx, nc, "sluice", Options{Signer: testKey, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := l.Append(ctx, Record{Kind: KindDecision}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := st.CachedInfo().Config; !cfg.DenyDelete || !cfg.DenyPurge {
		t.Fatalf("stream config: deny delete %v, deny purge %v", cfg.DenyDelete, cfg.DenyPurge)
	}
	if err := st.DeleteMsg(ctx, 2); err == nil {
		t.Error("a record was deleted")
	} else {
		t.Logf("delete: %v", err)
	}
	if err := st.SecureDeleteMsg(ctx, 3); err == nil {
		t.Error("a record was erased")
	}
	if err := st.Purge(ctx); err == nil {
		t.Error("the stream was purged")
	} else {
		t.Logf("purge: %v", err)
	}
	if err := st.Purge(ctx, jetstream.WithPurgeKeep(1)); err == nil {
		t.Error("the stream was purged but for its last record")
	}
	// Nor can the deny be taken back by updating the stream.
	cfg := st.CachedInfo().Config
	cfg.DenyDelete, cfg.DenyPurge = false, false
	if _, err := js.UpdateStream(ctx, cfg); err == nil {
		t.Error("the stream was updated to allow deletes and purges")
	}
	if n := len(exportRecords(t, l)); n != 3 {
		t.Fatalf("%d records left, want 3", n)
	}
}

// BenchmarkCheckpoint is one record appended and a checkpoint signed after
// it, both acknowledged: set against BenchmarkAppend, the cost of a
// checkpoint (a run that finishes asks for one).
func BenchmarkCheckpoint(b *testing.B) {
	l, _ := openLog(b)
	ctx := context.Background()
	r := decisionRecord()
	for b.Loop() {
		if err := l.Append(ctx, r); err != nil {
			b.Fatal(err)
		}
		if _, err := l.Checkpoint(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
