package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/ifc"
	"github.com/sluicehq/sluice/orchestrator/bus"
	"github.com/sluicehq/sluice/schemas"
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
	l, err := Open(ctx, nc, "sluice", Options{Signer: testKey, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := l.Append(ctx, Record{Kind: KindDecision, Step: string(rune('a' + i))}); err != nil {
			t.Fatal(err)
		}
	}
	// A new Log on the same stream (a restart) continues the chain,
	// after a checkpoint of the records before it.
	l2, err := Open(ctx, nc, "sluice", Options{Signer: testKey, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	l2.Append(ctx, Record{Kind: KindDecision, Step: "f"})
	seq, err := l2.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := l2.ExportThrough(ctx, &buf, seq)
	if err != nil || n != 8 {
		t.Fatalf("export: %d %v", n, err)
	}
	nc.Close()
	b.Shutdown()
	clean := buf.String()
	if v, err := Verify(strings.NewReader(clean), testKey.Public().(ed25519.PublicKey)); err != nil || v.Records != 8 || v.Checkpoints != 2 {
		t.Fatalf("clean export: %+v %v", v, err)
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
		if _, err := Verify(strings.NewReader(strings.Join(ls, "")), testKey.Public().(ed25519.PublicKey)); err == nil || !strings.Contains(err.Error(), "line ") {
			t.Errorf("%s: verify passed (%v)", name, err)
		}
	}
}

// openLog starts a bus and opens the audit log on it.
func openLog(t testing.TB) (*Log, *nats.Conn) {
	t.Helper()
	b, err := bus.Start(bus.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	// No checkpoint in the background: the tests sign when they export.
	l := openLogOn(t, b)
	return l, l.nc
}

// signedExport signs a checkpoint and exports the log through it.
func signedExport(t *testing.T, l *Log) string {
	t.Helper()
	ctx := context.Background()
	seq, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := l.ExportThrough(ctx, &buf, seq); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func exportRecords(t *testing.T, l *Log) []Record {
	t.Helper()
	var buf bytes.Buffer
	if _, err := l.Export(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	var recs []Record
	for _, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	return recs
}

func TestPublishKeepsTheOrderOfTheCalls(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	var ps []*Pending
	for i := range 200 {
		p, err := l.Publish(Record{Kind: KindDecision, Step: strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	// Waiting for the last first, then the rest, is as good as in order.
	for i := len(ps) - 1; i >= 0; i-- {
		if err := ps[i].Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := ps[0].Wait(ctx); err != nil {
		t.Fatalf("second wait: %v", err)
	}
	recs := exportRecords(t, l)
	if len(recs) != 200 {
		t.Fatalf("%d records stored", len(recs))
	}
	for i, r := range recs {
		if r.Step != strconv.Itoa(i) {
			t.Fatalf("record %d is step %s", i, r.Step)
		}
	}
	if v, err := Verify(strings.NewReader(signedExport(t, l)), testPub); err != nil || v.Records != 201 {
		t.Fatalf("verify: %+v %v", v, err)
	}
}

func TestConcurrentPublishersKeepOneChain(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	const writers, each = 8, 60
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var held []*Pending
			for i := range each {
				r := Record{Kind: KindResult, RunID: strconv.Itoa(w), Step: strconv.Itoa(i)}
				switch i % 3 {
				case 0: // Append: publish and wait
					if err := l.Append(ctx, r); err != nil {
						errs <- err
						return
					}
				default: // publish now, wait in pairs
					p, err := l.Publish(r)
					if err != nil {
						errs <- err
						return
					}
					held = append(held, p)
					if len(held) == 2 {
						for _, p := range held {
							if err := p.Wait(ctx); err != nil {
								errs <- err
								return
							}
						}
						held = held[:0]
					}
				}
			}
			for _, p := range held {
				if err := p.Wait(ctx); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	recs := exportRecords(t, l)
	if v, err := Verify(strings.NewReader(signedExport(t, l)), testPub); err != nil || v.Records != writers*each+1 {
		t.Fatalf("verify: %+v %v", v, err)
	}
	// Each writer's records are in the order it published them.
	next := map[string]int{}
	for _, r := range recs {
		if r.Step != strconv.Itoa(next[r.RunID]) {
			t.Fatalf("writer %s: step %s stored where %d was due", r.RunID, r.Step, next[r.RunID])
		}
		next[r.RunID]++
	}
}

func TestWaitReportsARecordTheStreamDidNotStore(t *testing.T) {
	l, nc := openLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Append(ctx, Record{Kind: KindRunStarted}); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, StreamName); err != nil {
		t.Fatal(err)
	}
	p, err := l.Publish(Record{Kind: KindDecision})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	err = p.Wait(ctx)
	t.Logf("wait: %v", err)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("wait after the stream was deleted: %v (ctx %v)", err, ctx.Err())
	}
	if err := l.Append(ctx, Record{Kind: KindRunFinished}); err == nil {
		t.Fatal("append after the stream was deleted: no error")
	}
}

// TestEncodeRecordAsMarshal holds the record encoder to json.Marshal: every
// field of Record is set (a field added to Record and not to appendRecord
// fails here), with and without prev, with strings encoding/json escapes.
func TestEncodeRecordAsMarshal(t *testing.T) {
	odd := []string{"plain", "a\"quote", `back\slash`, "<b>&amp;", "tab\t", "é", "\u2028", "bad\xff", ""}
	for i, s := range odd {
		lb := ifc.UntrustedFrom("web:a.example", s).WithSecrecy("pii")
		var r Record
		v := reflect.ValueOf(&r).Elem()
		for f := range v.NumField() {
			fv := v.Field(f)
			switch fv.Interface().(type) {
			case int:
				fv.SetInt(Version)
			case uint64:
				fv.SetUint(uint64(i) + 1<<40)
			case bool:
				fv.SetBool(i%2 == 0) // set and left out (omitempty)
			case string:
				fv.SetString(v.Type().Field(f).Name + ":" + s)
			case time.Time:
				fv.Set(reflect.ValueOf(time.Date(2026, 11, 24, 23, 59, 1, i*1000, time.UTC)))
			case *ifc.Label:
				fv.Set(reflect.ValueOf(&lb))
			case map[string]ifc.Label:
				fv.Set(reflect.ValueOf(map[string]ifc.Label{"b" + s: lb, "a": ifc.TrustedFrom(), s: lb}))
			case []string:
				fv.Set(reflect.ValueOf([]string{s, "x", s}))
			case []PlanStep:
				fv.Set(reflect.ValueOf([]PlanStep{{ID: "a" + s, Tool: "t." + s}, {ID: "b", Tool: "t.x", Deps: []string{"a" + s, s}}}))
			case *schemas.Usage:
				fv.Set(reflect.ValueOf(&schemas.Usage{InputTokens: int64(i) << 40, OutputTokens: int64(i)}))
			default:
				t.Fatalf("Record.%s: a type the test does not fill", v.Type().Field(f).Name)
			}
		}
		buf, err := encodeRecord(&r)
		if err != nil {
			t.Fatal(err)
		}
		r.Prev = hash([]byte(s))
		want, _ := json.Marshal(r)
		if got := withPrev(slices.Clone(buf), r.Prev); !bytes.Equal(got, want) {
			t.Errorf("with prev:\n got %s\nwant %s", got, want)
		}
		r.Prev = ""
		want, _ = json.Marshal(r)
		if got := withPrev(buf, ""); !bytes.Equal(got, want) {
			t.Errorf("no prev:\n got %s\nwant %s", got, want)
		}
	}
	// Only the fields that are set appear (omitempty), as with Marshal.
	r := Record{V: Version, ID: "x", Kind: KindRunStarted, Time: time.Unix(0, 0).UTC()}
	buf, _ := encodeRecord(&r)
	want, _ := json.Marshal(r)
	if got := withPrev(buf, ""); !bytes.Equal(got, want) {
		t.Errorf("sparse record:\n got %s\nwant %s", got, want)
	}
	r.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := encodeRecord(&r); err == nil {
		t.Error("a time json.Marshal refuses encoded")
	}
}

// decisionRecord is a typical decision record of a call.
func decisionRecord() Record {
	lb := ifc.UntrustedFrom("web:flights.example").WithSecrecy("pii")
	user := ifc.TrustedFrom("user")
	return Record{Kind: KindDecision, RunID: NewID(), Flow: "book-trip", Step: "pay", Tool: "payment.charge",
		MsgID: NewID(), Label: &lb, ArgLabels: map[string]ifc.Label{"amount": user, "payee": lb},
		Action: "approve", Rules: []string{"policies/pay.yaml:untrusted-payee"}, Reasons: []string{"the payee came from the web"}}
}

// BenchmarkAppend is one record appended and acknowledged at a time.
func BenchmarkAppend(b *testing.B) {
	l, _ := openLog(b)
	ctx := context.Background()
	r := decisionRecord()
	for b.Loop() {
		if err := l.Append(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishPair is two records published, then waited for
// together: the cost of two appends of one run, pipelined.
func BenchmarkPublishPair(b *testing.B) {
	l, _ := openLog(b)
	ctx := context.Background()
	r := decisionRecord()
	for b.Loop() {
		p1, err := l.Publish(r)
		if err != nil {
			b.Fatal(err)
		}
		p2, err := l.Publish(r)
		if err != nil {
			b.Fatal(err)
		}
		if err := errors.Join(p1.Wait(ctx), p2.Wait(ctx)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode is the encoding of one decision record, with its prev.
func BenchmarkEncode(b *testing.B) {
	r := decisionRecord()
	r.V, r.ID, r.Time = Version, NewID(), time.Now().UTC()
	prev := hash([]byte("x"))
	for b.Loop() {
		buf, err := encodeRecord(&r)
		if err != nil {
			b.Fatal(err)
		}
		_ = withPrev(buf, prev)
	}
}

// BenchmarkEncodeMarshal is the same with encoding/json, for comparison.
func BenchmarkEncodeMarshal(b *testing.B) {
	r := decisionRecord()
	r.V, r.ID, r.Time = Version, NewID(), time.Now().UTC()
	r.Prev = hash([]byte("x"))
	for b.Loop() {
		if _, err := json.Marshal(r); err != nil {
			b.Fatal(err)
		}
	}
}

// Verify reads exports a person hands it: whatever the bytes, it answers
// with a count or an error, never a panic, and never calls a chain intact
// when a line in it is not a record.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"01JD6Z4W8X2F3K5N7Q9R1T3V5X","kind":"run_started","time":"2026-11-24T10:00:00Z"}` + "\n"))
	f.Add([]byte("{\"v\":1,\"prev\":\"00\"}\n{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Verify(bytes.NewReader(data), testPub)
		if err == nil {
			for i, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
				if i >= v.Records {
					break
				}
				var rec struct {
					V int `json:"v"`
				}
				if json.Unmarshal(line, &rec) != nil || rec.V == 0 {
					t.Fatalf("line %d is not a record, yet the chain was called intact", i+1)
				}
			}
		}
	})
}
