package telemetry

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// Traces are exported only when an endpoint is configured, and not when
// the SDK or the traces exporter is turned off; a malformed endpoint or
// another protocol is refused, naming the variable.
func TestSetup(t *testing.T) {
	// Nothing listens at the endpoints: the exports at shutdown fail,
	// and say so through OpenTelemetry's error handler.
	var failed atomic.Int32
	old := otel.GetErrorHandler()
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(error) { failed.Add(1) }))
	defer otel.SetErrorHandler(old)
	for _, tc := range []struct {
		name     string
		getenv   func(string) string
		endpoint string
		on       bool
		err      string
	}{
		{name: "nothing", getenv: env()},
		{name: "base URL", getenv: env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"), on: true},
		{name: "traces URL", getenv: env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318/v1/traces"), on: true},
		{name: "sluice.yaml", getenv: env(), endpoint: "http://127.0.0.1:4318", on: true},
		{name: "disabled", getenv: env("OTEL_SDK_DISABLED", "true", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")},
		{name: "exporter none", getenv: env("OTEL_TRACES_EXPORTER", "none"), endpoint: "http://127.0.0.1:4318"},
		{name: "no scheme", getenv: env("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4318"),
			err: "OTEL_EXPORTER_OTLP_ENDPOINT=127.0.0.1:4318: want an http:// or https:// URL"},
		{name: "bad traces URL", getenv: env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://x"), endpoint: "http://127.0.0.1:4318",
			err: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=ftp://x"},
		{name: "bad batch size", getenv: env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "-1"),
			err: "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=-1: want a whole number above 0"},
		{name: "grpc", getenv: env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
			err: "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: sluice exports traces over OTLP/HTTP only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shutdown, on, err := Setup(Config{Endpoint: tc.endpoint, Getenv: tc.getenv})
			defer shutdown(context.Background())
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || on != tc.on {
				t.Fatalf("on %v, err %v; want on %v", on, err, tc.on)
			}
			_, span := Start(context.Background(), "x")
			if span.IsRecording() != tc.on {
				t.Errorf("span recording %v, want %v", span.IsRecording(), tc.on)
			}
			span.End()
		})
	}
	if failed.Load() == 0 {
		t.Error("no export to an endpoint where nothing listens reported its failure")
	}
	// After the shutdown of the last, spans are no-ops again.
	if _, span := Start(context.Background(), "after"); span.IsRecording() {
		t.Error("a span records after shutdown")
	}
}

// The trace context goes into a bus message's headers as W3C names it, and
// comes back out.
func TestHeaderCarrier(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5}, TraceFlags: trace.FlagsSampled})
	h := HeaderCarrier{}
	Propagator.Inject(trace.ContextWithSpanContext(context.Background(), sc), h)
	if got := h.Get("traceparent"); got != "00-01020300000000000000000000000000-0405000000000000-01" {
		t.Fatalf("traceparent %q", got)
	}
	back := trace.SpanContextFromContext(Propagator.Extract(context.Background(), h))
	if back.TraceID() != sc.TraceID() || back.SpanID() != sc.SpanID() || !back.IsRemote() {
		t.Errorf("extracted %v, want %v", back, sc)
	}
}

// Start's attributes, End's and the status all reach the exported span;
// failed is also the span's status Error.
func TestStartEnd(t *testing.T) {
	rec := &recorder{}
	tp := withBatcher(t, rec, batchConfig{delay: time.Hour, timeout: time.Minute, queue: 100, batch: 100})
	_, span := Start(context.Background(), "step s", AttrFlow.String("f"))
	End(span, "failed", AttrStep.String("s"), AttrAttempts.Int(2))
	_, span = Start(context.Background(), "run r")
	End(span, "completed")
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	ended := rec.all()
	if len(ended) != 2 {
		t.Fatalf("%d spans ended, want 2", len(ended))
	}
	for i, want := range []struct {
		attrs  string
		status tracepb.Status_StatusCode
	}{
		{"sluice.flow=f sluice.step=s sluice.attempts=2 sluice.status=failed", tracepb.Status_STATUS_CODE_ERROR},
		{"sluice.status=completed", tracepb.Status_STATUS_CODE_UNSET},
	} {
		if got := attrString(ended[i].Attributes); got != want.attrs || ended[i].Status.Code != want.status {
			t.Errorf("span %s: %v, status %v; want %s, %v", ended[i].Name, got, ended[i].Status.Code, want.attrs, want.status)
		}
	}
}
