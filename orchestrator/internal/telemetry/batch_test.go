package telemetry

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// recorder is an exporter that keeps the batches it is given; while gate
// is set, an export waits for it to be closed.
type recorder struct {
	mu      sync.Mutex
	batches [][]string
	entered chan struct{} // when gate is set: an export has begun
	gate    chan struct{}
	stopped bool
}

func (r *recorder) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if r.gate != nil {
		r.entered <- struct{}{}
		<-r.gate
	}
	names := make([]string, len(spans))
	for i, s := range spans {
		names[i] = s.Name()
	}
	r.mu.Lock()
	r.batches = append(r.batches, names)
	r.mu.Unlock()
	return nil
}

func (r *recorder) Shutdown(context.Context) error {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	return nil
}

func (r *recorder) got() ([][]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches), r.stopped
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

func spans(t *testing.T, tp *sdktrace.TracerProvider, names ...string) {
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
	b := newBatcher(rec, batchConfig{delay: time.Hour, timeout: time.Minute, queue: 100, batch: 3})
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(b))
	spans(t, tp, "a", "b", "c", "d")
	waitFor(t, "the full batch a, b, c exported", func() bool { got, _ := rec.got(); return len(got) == 1 })
	if got, _ := rec.got(); strings.Join(got[0], ",") != "a,b,c" {
		t.Fatalf("first batch %v, want a, b, c", got[0])
	}
	if err := b.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := rec.got(); len(got) != 2 || strings.Join(got[1], ",") != "d" {
		t.Fatalf("after ForceFlush: %v, want [a b c] [d]", got)
	}
	spans(t, tp, "e")
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, stopped := rec.got()
	if len(got) != 3 || strings.Join(got[2], ",") != "e" || !stopped {
		t.Fatalf("after Shutdown: %v, exporter stopped %v; want [e] last, stopped", got, stopped)
	}
	// After Shutdown: nothing more is exported, and a flush is a no-op.
	b.OnEnd(recorded(t))
	if err := b.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := rec.got(); len(got) != 3 {
		t.Fatalf("a span exported after Shutdown: %v", got)
	}
}

// recorded is a sampled span that ended, made by another provider.
func recorded(t *testing.T) sdktrace.ReadOnlySpan {
	t.Helper()
	var s sdktrace.ReadOnlySpan
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(onEnd(func(r sdktrace.ReadOnlySpan) { s = r })))
	spans(t, tp, "late")
	if s == nil {
		t.Fatal("no span")
	}
	return s
}

type onEnd func(sdktrace.ReadOnlySpan)

func (onEnd) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (f onEnd) OnEnd(s sdktrace.ReadOnlySpan)                 { f(s) }
func (onEnd) Shutdown(context.Context) error                  { return nil }
func (onEnd) ForceFlush(context.Context) error                { return nil }

// What is held goes once the delay has passed, with no batch full.
func TestBatcherDelay(t *testing.T) {
	rec := &recorder{}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(
		newBatcher(rec, batchConfig{delay: 10 * time.Millisecond, timeout: time.Minute, queue: 100, batch: 50})))
	defer tp.Shutdown(context.Background())
	spans(t, tp, "a")
	waitFor(t, "span a exported after the delay", func() bool { got, _ := rec.got(); return len(got) == 1 })
}

// A span that ends while the queue is full (spans waiting while the
// exporter is busy with a batch) is dropped, and Shutdown says how many
// were.
func TestBatcherDrops(t *testing.T) {
	rec := &recorder{entered: make(chan struct{}), gate: make(chan struct{})}
	b := newBatcher(rec, batchConfig{delay: time.Hour, timeout: time.Minute, queue: 2, batch: 1})
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(b))
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

// withBatcher makes End and Finish end spans through a provider exporting
// to exp through a batcher with cfg, as Setup's does, until the test ends.
func withBatcher(t *testing.T, exp sdktrace.SpanExporter, cfg batchConfig) *sdktrace.TracerProvider {
	t.Helper()
	tp, b := newProvider(exp, cfg, resource.Empty())
	old := provider.Swap(newHolder(tp, b))
	t.Cleanup(func() { provider.Store(old); tp.Shutdown(context.Background()) })
	return tp
}

// End takes a span's end time on the call's path and leaves the rest of
// its end to the exporting goroutine: the span is still open when End
// returns, and ends, at the time End took, with End's attributes and
// status, before it is exported. Finish does the same without a status.
func TestEndLater(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := withBatcher(t, exp, batchConfig{delay: time.Hour, timeout: time.Minute, queue: 100, batch: 100})
	ctx, call := Start(context.Background(), "call echo.echo")
	_, decide := Start(ctx, "policy.decide")
	t0 := time.Now()
	Finish(decide, AttrDecision.String("allow"))
	End(call, "failed", AttrTool.String("echo.echo"))
	t1 := time.Now()
	if !call.IsRecording() || !decide.IsRecording() {
		t.Fatal("a span ended on the call's path: End and Finish should leave their ends to the exporting goroutine")
	}
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if call.IsRecording() || decide.IsRecording() {
		t.Fatal("a span not ended by the export")
	}
	got := exp.GetSpans()
	if len(got) != 2 {
		t.Fatalf("%d spans exported, want 2", len(got))
	}
	for i, want := range []struct {
		name, attrs string
		status      codes.Code
	}{
		{"policy.decide", "sluice.decision=allow", codes.Unset},
		{"call echo.echo", "sluice.tool=echo.echo sluice.status=failed", codes.Error},
	} {
		s := got[i]
		var attrs []string
		for _, a := range s.Attributes {
			attrs = append(attrs, string(a.Key)+"="+a.Value.Emit())
		}
		if s.Name != want.name || strings.Join(attrs, " ") != want.attrs || s.Status.Code != want.status {
			t.Errorf("span %d: %s %v, status %v; want %s %s, %v", i, s.Name, attrs, s.Status.Code, want.name, want.attrs, want.status)
		}
		// Ended when End was called, not when the span was exported.
		if s.EndTime.Before(t0) || s.EndTime.After(t1) {
			t.Errorf("span %s ended at %v, want between %v and %v, when End was called", s.Name, s.EndTime, t0, t1)
		}
	}
	if got[0].Parent.SpanID() != got[1].SpanContext.SpanID() {
		t.Errorf("policy.decide's parent %v, want the call's span %v", got[0].Parent.SpanID(), got[1].SpanContext.SpanID())
	}
}

// Spans whose ends End took are exported on Shutdown; those that find the
// queue full (ended and taken spans together) are dropped and counted;
// once stopped, End ends a span at once (and the stopped batcher drops
// it).
func TestEndLaterShutdownAndDrops(t *testing.T) {
	rec := &recorder{}
	tp := withBatcher(t, rec, batchConfig{delay: time.Hour, timeout: time.Minute, queue: 3, batch: 10})
	spans(t, tp, "a") // ended at once: held in the batch
	for _, n := range []string{"b", "c", "d"} {
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
}
