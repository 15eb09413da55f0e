package telemetry

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// recorder is an uploader that keeps the spans of the batches it is
// given; while gate is set, an upload waits for it to be closed.
type recorder struct {
	mu      sync.Mutex
	batches [][]*tracepb.Span
	res     []*tracepb.ResourceSpans
	entered chan struct{} // when gate is set: an upload has begun
	gate    chan struct{}
	stopped bool
}

func (r *recorder) UploadTraces(ctx context.Context, rss []*tracepb.ResourceSpans) error {
	if r.gate != nil {
		r.entered <- struct{}{}
		<-r.gate
	}
	// What it is given is good until it returns, as for the OTLP client,
	// which encodes it: keep a copy.
	var batch []*tracepb.Span
	var copies []*tracepb.ResourceSpans
	for _, rs := range rss {
		rs = proto.Clone(rs).(*tracepb.ResourceSpans)
		copies = append(copies, rs)
		for _, ss := range rs.ScopeSpans {
			batch = append(batch, ss.Spans...)
		}
	}
	r.mu.Lock()
	r.batches = append(r.batches, batch)
	r.res = append(r.res, copies...)
	r.mu.Unlock()
	return nil
}

func (r *recorder) Stop(context.Context) error {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	return nil
}

// got is the names of the spans of each batch, and whether the uploader
// was stopped.
func (r *recorder) got() ([][]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names [][]string
	for _, b := range r.batches {
		var n []string
		for _, s := range b {
			n = append(n, s.Name)
		}
		names = append(names, n)
	}
	return names, r.stopped
}

// all is every span uploaded, in order.
func (r *recorder) all() []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []*tracepb.Span
	for _, b := range r.batches {
		all = append(all, b...)
	}
	return all
}

// waitFor polls cond until it holds, for at most 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func spans(t *testing.T, tp trace.TracerProvider, names ...string) {
	t.Helper()
	tr := tp.Tracer("test")
	for _, n := range names {
		_, s := tr.Start(context.Background(), n)
		s.End()
	}
}

// A full batch goes to the exporter without waiting for the delay; the
// rest goes on ForceFlush, and Shutdown stops the exporter; spans that end
// after it are not exported.
func TestBatcherBatches(t *testing.T) {
	rec := &recorder{}
	tp := newTracerProvider(newBatcher(rec, batchConfig{delay: time.Hour, timeout: time.Minute, queue: 100, batch: 3}), nil)
	spans(t, tp, "a", "b", "c", "d")
	waitFor(t, "the full batch a, b, c exported", func() bool { got, _ := rec.got(); return len(got) == 1 })
	if got, _ := rec.got(); strings.Join(got[0], ",") != "a,b,c" {
		t.Fatalf("first batch %v, want a, b, c", got[0])
	}
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := rec.got(); len(got) != 2 || strings.Join(got[1], ",") != "d" {
		t.Fatalf("after ForceFlush: %v, want [a b c] [d]", got)
	}
	spans(t, tp, "e")
	_, late := tp.Tracer("test").Start(context.Background(), "late")
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, stopped := rec.got()
	if len(got) != 3 || strings.Join(got[2], ",") != "e" || !stopped {
		t.Fatalf("after Shutdown: %v, exporter stopped %v; want [e] last, stopped", got, stopped)
	}
	// After Shutdown: nothing more is exported, and a flush is a no-op.
	late.End()
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := rec.got(); len(got) != 3 {
		t.Fatalf("a span exported after Shutdown: %v", got)
	}
}

// What is held goes once the delay has passed, with no batch full.
func TestBatcherDelay(t *testing.T) {
	rec := &recorder{}
	tp := newTracerProvider(newBatcher(rec, batchConfig{delay: 10 * time.Millisecond, timeout: time.Minute, queue: 100, batch: 50}), nil)
	defer tp.Shutdown(context.Background())
	spans(t, tp, "a")
	waitFor(t, "span a exported after the delay", func() bool { got, _ := rec.got(); return len(got) == 1 })
}

// A span that ends while the queue is full (spans waiting while the
// exporter is busy with a batch) is dropped, and Shutdown says how many
// were.
func TestBatcherDrops(t *testing.T) {
	rec := &recorder{entered: make(chan struct{}), gate: make(chan struct{})}
	tp := newTracerProvider(newBatcher(rec, batchConfig{delay: time.Hour, timeout: time.Minute, queue: 2, batch: 1}), nil)
	// a goes to the exporter, which waits for the gate; b and c fill the
	// queue; d finds it full.
	spans(t, tp, "a")
	<-rec.entered
	spans(t, tp, "b", "c", "d")
	go func() {
		for range rec.entered {
		}
	}()
	close(rec.gate)
	err := tp.Shutdown(context.Background())
	close(rec.entered)
	if err == nil || !strings.Contains(err.Error(), "1 spans dropped") || !strings.Contains(err.Error(), "OTEL_BSP_MAX_QUEUE_SIZE (2)") {
		t.Fatalf("Shutdown: %v, want 1 span dropped", err)
	}
	got, _ := rec.got()
	var names []string
	for _, g := range got {
		names = append(names, g...)
	}
	if strings.Join(names, ",") != "a,b,c" {
		t.Fatalf("exported %v, want a, b, c", names)
	}
}

// The OTEL_BSP_* variables set the batching, in milliseconds and spans;
// anything but a whole number above 0 is refused, naming the variable.
func TestReadBatchConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		getenv func(string) string
		want   batchConfig
		err    string
	}{
		{name: "defaults", getenv: env(), want: batchConfig{delay: 5 * time.Second, timeout: 30 * time.Second, queue: 2048, batch: 512}},
		{name: "all set", getenv: env("OTEL_BSP_SCHEDULE_DELAY", "200", "OTEL_BSP_EXPORT_TIMEOUT", "1000",
			"OTEL_BSP_MAX_QUEUE_SIZE", "4096", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1024"),
			want: batchConfig{delay: 200 * time.Millisecond, timeout: time.Second, queue: 4096, batch: 1024}},
		{name: "batch above queue", getenv: env("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
			want: batchConfig{delay: 5 * time.Second, timeout: 30 * time.Second, queue: 100, batch: 100}},
		{name: "zero", getenv: env("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0"), err: "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=0: want a whole number above 0"},
		{name: "not a number", getenv: env("OTEL_BSP_SCHEDULE_DELAY", "5s"), err: "OTEL_BSP_SCHEDULE_DELAY=5s: want a whole number above 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readBatchConfig(tc.getenv)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// withBatcher makes spans start on a provider exporting to up through a
// batcher with cfg, as Setup's does, until the test ends.
func withBatcher(t *testing.T, up uploader, cfg batchConfig) *tracerProvider {
	t.Helper()
	tp := newTracerProvider(newBatcher(up, cfg), nil)
	old := provider.Swap(newHolder(tp))
	t.Cleanup(func() { provider.Store(old); tp.Shutdown(context.Background()) })
	return tp
}

// End and Finish end a span on the call's path, with their attributes,
// End's status and the time they were called; the exporting goroutine
// converts it when it exports. The child names its parent.
func TestEndAndFinish(t *testing.T) {
	rec := &recorder{}
	tp := withBatcher(t, rec, batchConfig{delay: time.Hour, timeout: time.Minute, queue: 100, batch: 100})
	ctx, call := Start(context.Background(), "call echo.echo")
	_, decide := Start(ctx, "policy.decide")
	t0 := time.Now()
	Finish(decide, AttrDecision.String("allow"))
	End(call, "failed", AttrTool.String("echo.echo"))
	t1 := time.Now()
	if call.IsRecording() || decide.IsRecording() {
		t.Fatal("a span still recording after End or Finish")
	}
	// What is done to a span after its end is ignored.
	call.SetAttributes(AttrStep.String("late"))
	End(call, "completed")
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := rec.all()
	if len(got) != 2 {
		t.Fatalf("%d spans exported, want 2", len(got))
	}
	for i, want := range []struct {
		name, attrs string
		status      tracepb.Status_StatusCode
	}{
		{"policy.decide", "sluice.decision=allow", tracepb.Status_STATUS_CODE_UNSET},
		{"call echo.echo", "sluice.tool=echo.echo sluice.status=failed", tracepb.Status_STATUS_CODE_ERROR},
	} {
		s := got[i]
		if s.Name != want.name || attrString(s.Attributes) != want.attrs || s.Status.Code != want.status {
			t.Errorf("span %d: %s %s, status %v; want %s %s, %v", i, s.Name, attrString(s.Attributes), s.Status.Code, want.name, want.attrs, want.status)
		}
		end := time.Unix(0, int64(s.EndTimeUnixNano))
		if end.Before(t0) || end.After(t1) {
			t.Errorf("span %s ended at %v, want between %v and %v, when End was called", s.Name, end, t0, t1)
		}
	}
	if !bytes.Equal(got[0].ParentSpanId, got[1].SpanId) || !bytes.Equal(got[0].TraceId, got[1].TraceId) || got[1].ParentSpanId != nil {
		t.Errorf("policy.decide's parent %x in trace %x, want the call's span %x in trace %x", got[0].ParentSpanId, got[0].TraceId, got[1].SpanId, got[1].TraceId)
	}
}

// attrString is attributes as key=value, in order.
func attrString(kvs []*commonpb.KeyValue) string {
	var out []string
	for _, kv := range kvs {
		v := kv.Value
		var s string
		switch {
		case v.GetStringValue() != "":
			s = v.GetStringValue()
		case v.GetArrayValue() != nil:
			s = fmt.Sprint(len(v.GetArrayValue().Values))
		default:
			s = fmt.Sprint(v.GetIntValue())
		}
		out = append(out, kv.Key+"="+s)
	}
	return strings.Join(out, " ")
}

// Spans that find the queue full are dropped and counted; once stopped,
// End still ends a span, and the stopped batcher drops it.
func TestEndShutdownAndDrops(t *testing.T) {
	rec := &recorder{}
	tp := withBatcher(t, rec, batchConfig{delay: time.Hour, timeout: time.Minute, queue: 3, batch: 10})
	for _, n := range []string{"a", "b", "c", "d"} {
		_, s := Start(context.Background(), n)
		End(s, "completed")
	}
	err := tp.Shutdown(context.Background())
	if err == nil || !strings.Contains(err.Error(), "1 spans dropped") {
		t.Fatalf("Shutdown: %v, want 1 span dropped", err)
	}
	got, stopped := rec.got()
	var names []string
	for _, g := range got {
		names = append(names, g...)
	}
	if strings.Join(names, ",") != "a,b,c" || !stopped {
		t.Fatalf("exported %v (stopped %v), want a, b, c, then stopped", names, stopped)
	}
	_, s := Start(context.Background(), "late")
	End(s, "completed")
	if s.IsRecording() {
		t.Error("a span left open by End after Shutdown")
	}
	if len(rec.all()) != 3 {
		t.Error("a span exported after Shutdown")
	}
}
