package telemetry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// sdkClient is an OTLP client for the SDK's exporter that keeps what it
// is given, as the recorder does for Sluice's batcher.
type sdkClient struct {
	mu  sync.Mutex
	res []*tracepb.ResourceSpans
}

func (c *sdkClient) Start(context.Context) error { return nil }
func (c *sdkClient) Stop(context.Context) error  { return nil }
func (c *sdkClient) UploadTraces(_ context.Context, rss []*tracepb.ResourceSpans) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.res = append(c.res, rss...)
	return nil
}

// errTest is an error of a named type, for RecordError.
type errTest struct{}

func (errTest) Error() string { return "it failed" }

// someSpans does to tr's spans what the tracing API allows, at fixed
// times: every kind of attribute, set again and invalid, every status in
// turn, events, links, a new name, an error recorded, a parent that is
// remote with a trace state, a parent that is not sampled, a new root,
// and what is done after a span's end.
func someSpans(t *testing.T, tr trace.Tracer) {
	t.Helper()
	at := func(ms int) time.Time { return time.Unix(1_700_000_000, int64(ms)*int64(time.Millisecond)) }
	ts, err := trace.ParseTraceState("vendor=value")
	if err != nil {
		t.Fatal(err)
	}
	remote := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{9, 9, 9}, SpanID: trace.SpanID{8, 8},
		TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)
	ctx, root := tr.Start(ctx, "root", trace.WithTimestamp(at(0)), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("s", "x"), attribute.Bool("b", true), attribute.Int64("i", -3),
			attribute.Float64("f", 1.5), attribute.StringSlice("ss", []string{"a", "b"}), attribute.BoolSlice("bs", []bool{true, false}),
			attribute.Int64Slice("is", []int64{1, 2}), attribute.Float64Slice("fs", []float64{0.5}), attribute.StringSlice("empty", nil)))
	root.SetAttributes(attribute.String("s", "again"), attribute.KeyValue{}, attribute.Int("later", 7))
	root.AddEvent("first", trace.WithTimestamp(at(1)), trace.WithAttributes(attribute.String("e", "v")))
	root.RecordError(errTest{}, trace.WithTimestamp(at(2)))
	root.RecordError(fmt.Errorf("wrapped: %w", errors.New("inner")), trace.WithTimestamp(at(3)))
	root.SetStatus(codes.Error, "bad")
	root.SetStatus(codes.Unset, "ignored")
	root.SetName("root renamed")

	_, child := tr.Start(ctx, "child", trace.WithTimestamp(at(4)), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithLinks(trace.Link{SpanContext: remote, Attributes: []attribute.KeyValue{attribute.String("why", "because")}}))
	child.AddLink(trace.Link{SpanContext: remote})
	child.AddLink(trace.Link{}) // invalid: not kept
	child.SetStatus(codes.Ok, "")
	child.SetStatus(codes.Error, "too late")
	child.End(trace.WithTimestamp(at(5)))
	child.SetAttributes(attribute.String("after", "end"))
	child.End(trace.WithTimestamp(at(6)))

	for _, k := range []trace.SpanKind{trace.SpanKindUnspecified, trace.SpanKindInternal, trace.SpanKindProducer, trace.SpanKindConsumer} {
		_, s := tr.Start(ctx, "kind "+k.String(), trace.WithTimestamp(at(7)), trace.WithSpanKind(k))
		s.SetStatus(codes.Error, "first")
		s.SetStatus(codes.Error, "second")
		s.End(trace.WithTimestamp(at(8)))
	}

	_, fresh := tr.Start(ctx, "new root", trace.WithNewRoot(), trace.WithTimestamp(at(9)))
	fresh.End(trace.WithTimestamp(at(10)))

	unsampled := trace.ContextWithRemoteSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{7}, SpanID: trace.SpanID{7}, Remote: true}))
	_, quiet := tr.Start(unsampled, "not sampled", trace.WithTimestamp(at(11)))
	if quiet.IsRecording() {
		t.Error("a span under a parent that is not sampled records")
	}
	if sc := quiet.SpanContext(); sc.TraceID() != (trace.TraceID{7}) || !sc.SpanID().IsValid() || sc.SpanID() == (trace.SpanID{7}) {
		t.Errorf("a span under a parent not sampled has %v, want the parent's trace and a span id of its own", sc)
	}
	quiet.End(trace.WithTimestamp(at(12)))

	root.End(trace.WithTimestamp(at(13)))
}

// normalize makes the spans of two exports comparable: each span's ids
// become the names of the spans they are (the remote parent's its bytes),
// the spans are in name order, and the scope's name is left out.
func normalize(rss []*tracepb.ResourceSpans) []*tracepb.ResourceSpans {
	rss = slices.Clone(rss)
	names := map[string]string{}
	for _, rs := range rss {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				names[string(s.SpanId)] = s.Name
			}
		}
	}
	id := func(b []byte) []byte {
		if n, ok := names[string(b)]; ok {
			return []byte("span " + n)
		}
		return b
	}
	var out []*tracepb.ResourceSpans
	for _, rs := range rss {
		rs = proto.Clone(rs).(*tracepb.ResourceSpans)
		for _, ss := range rs.ScopeSpans {
			ss.Scope.Name = ""
			for _, s := range ss.Spans {
				s.SpanId, s.ParentSpanId = id(s.SpanId), id(s.ParentSpanId)
				if !strings.HasPrefix(string(s.TraceId), "\x09\x09\x09") {
					s.TraceId = []byte("a trace of its own")
				}
			}
			slices.SortFunc(ss.Spans, func(a, b *tracepb.Span) int { return strings.Compare(a.Name, b.Name) })
		}
		out = append(out, rs)
	}
	return out
}

// Sluice's spans are exported exactly as the OpenTelemetry SDK and its
// OTLP exporter export the same calls of the tracing API.
func TestOTLPAsTheOpenTelemetryExporter(t *testing.T) {
	service := attribute.String("service.name", "sluice")
	rec := &recorder{}
	// Batches of 3: the converter's messages are used again from one
	// batch to the next.
	ours := newTracerProvider(newBatcher(rec, batchConfig{delay: time.Hour, timeout: time.Minute, queue: 100, batch: 3}, service), nil)
	someSpans(t, ours.Tracer("test"))
	if err := ours.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	client := &sdkClient{}
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSyncer(otlptrace.NewUnstarted(client)),
		sdktrace.WithResource(resource.NewSchemaless(service)))
	someSpans(t, sdk.Tracer("test"))
	if err := sdk.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(rec.res) != 3 {
		t.Fatalf("%d batches exported, want 3", len(rec.res))
	}
	// The SDK exports each span on its own: compare the spans as one
	// batch.
	got, want := normalize(oneBatch(rec.res)), normalize(oneBatch(client.res))
	if len(got) != 1 || len(want) != 1 || !proto.Equal(got[0], want[0]) {
		t.Fatalf("Sluice's export:\n%s\nthe SDK's:\n%s", text(got), text(want))
	}
	if n := len(got[0].ScopeSpans[0].Spans); n != 7 {
		t.Fatalf("%d spans exported, want 7", n)
	}
}

// oneBatch is the spans of rss as one export, with the resource and
// scope of the first.
func oneBatch(rss []*tracepb.ResourceSpans) []*tracepb.ResourceSpans {
	var one []*tracepb.ResourceSpans
	for _, rs := range rss {
		if len(one) == 0 {
			one = append(one, proto.Clone(rs).(*tracepb.ResourceSpans))
			continue
		}
		one[0].ScopeSpans[0].Spans = append(one[0].ScopeSpans[0].Spans, rs.ScopeSpans[0].Spans...)
	}
	return one
}

func text(rss []*tracepb.ResourceSpans) string {
	var b strings.Builder
	for _, rs := range rss {
		b.WriteString(prototext.Format(rs))
	}
	return b.String()
}
