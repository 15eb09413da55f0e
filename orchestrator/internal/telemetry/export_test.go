package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"
)

// bodies is an OTLP/HTTP receiver on loopback that keeps each export.
type bodies struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []*coltrace.ExportTraceServiceRequest
}

func newBodies(t *testing.T) *bodies {
	b := &bodies{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(raw, &req)
		}
		if err != nil || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want a protobuf export on /v1/traces", http.StatusBadRequest)
			return
		}
		b.mu.Lock()
		b.reqs = append(b.reqs, &req)
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *bodies) got() []*coltrace.ExportTraceServiceRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reqs
}

// The exporter sends what the OpenTelemetry exporter (otlptracehttp.New)
// sends for the same spans, field for field: two scopes, attributes of
// every type, events, links, a remote parent, a trace state, a status
// with its description, a nil span.
func TestExportMatchesOTLPExporter(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	res := resource.NewSchemaless(attribute.String("service.name", "sluice"), attribute.Int("n", 2))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithResource(res))
	ts, err := trace.ParseTraceState("k=v")
	if err != nil {
		t.Fatal(err)
	}
	remote := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{9, 8, 7}, SpanID: trace.SpanID{6, 5},
		TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)
	a := tp.Tracer("github.com/sluicehq/sluice")
	b := tp.Tracer("other", trace.WithInstrumentationVersion("1.2"), trace.WithInstrumentationAttributes(attribute.Bool("x", true)),
		trace.WithSchemaURL("https://opentelemetry.io/schemas/1.26.0"))
	cctx, run := a.Start(ctx, "run hop", trace.WithAttributes(AttrRunID.String("01J"), AttrAttempts.Int(3)))
	_, call := b.Start(cctx, "call echo.echo", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithLinks(trace.Link{SpanContext: remote, Attributes: []attribute.KeyValue{attribute.String("l", "1")}}))
	call.SetAttributes(attribute.Bool("b", true), attribute.Float64("f", 1.5), attribute.BoolSlice("bs", []bool{true, false}),
		attribute.Int64Slice("is", []int64{1, 2}), attribute.Float64Slice("fs", []float64{0.5}), AttrRules.StringSlice([]string{"r1", "r2"}),
		attribute.ByteSlice("by", []byte{1, 2}), attribute.Slice("sl", attribute.StringValue("s"), attribute.IntValue(4)),
		attribute.Map("m", attribute.String("k", "v")), AttrRules.StringSlice(nil), AttrLabel.String("trusted"))
	call.AddEvent("ev", trace.WithAttributes(attribute.Int("e", 1)), trace.WithTimestamp(time.Unix(1, 2)))
	call.SetStatus(codes.Error, "failed")
	call.End()
	_, bare := a.Start(cctx, "bare")
	bare.End()
	End(run, "completed")
	spans := rec.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans", len(spans))
	}
	spans = append(spans[:1], append([]sdktrace.ReadOnlySpan{nil}, spans[1:]...)...)

	theirs, ours := newBodies(t), newBodies(t)
	ref, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(theirs.srv.URL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	exp, err := newExporter(context.Background(), otlptracehttp.WithEndpointURL(ours.srv.URL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []sdktrace.SpanExporter{ref, exp} {
		if err := e.ExportSpans(context.Background(), spans); err != nil {
			t.Fatal(err)
		}
		if err := e.ExportSpans(context.Background(), []sdktrace.ReadOnlySpan{nil}); err != nil {
			t.Fatal(err)
		}
		if err := e.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	want, got := theirs.got(), ours.got()
	if len(want) != 1 || len(got) != 1 {
		t.Fatalf("%d exports, want %d (one: nothing is sent for no span)", len(got), len(want))
	}
	if diff := cmp.Diff(want[0], got[0], protocmp.Transform()); diff != "" {
		t.Fatalf("export differs from otlptracehttp's (-theirs +ours):\n%s", diff)
	}
	if n := len(got[0].ResourceSpans[0].ScopeSpans); n != 2 {
		t.Fatalf("%d scopes, want 2", n)
	}
}
