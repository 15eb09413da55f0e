package telemetry

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// hopSpans makes the spans of one hop, with the attributes the engine
// and the gate give them: run, step, call, decision, delivery.
func hopSpans(ctx context.Context) {
	ctx, run := Start(ctx, "run hop", AttrRunID.String("01JD6Z4W8X2F3K5N7Q9R1T3V5X"), AttrFlow.String("hop"))
	sctx, step := Start(ctx, "step echo", AttrStep.String("echo"))
	cctx, call := Start(sctx, "call echo.echo")
	_, decide := Start(cctx, "policy.decide")
	decide.SetAttributes(AttrDecision.String("allow"), AttrRules.StringSlice(nil))
	decide.End()
	_, deliver := Start(cctx, "deliver echo.echo", AttrMsgID.String("01JD6Z4W8X2F3K5N7Q9R1T3V5Y"))
	End(deliver, "completed")
	call.SetAttributes(AttrTool.String("echo.echo"), AttrWorker.String("echo"), AttrDecision.String("allow"),
		AttrRules.StringSlice(nil), AttrLabel.String("trusted, from user"), AttrMsgID.String("01JD6Z4W8X2F3K5N7Q9R1T3V5Y"), AttrAttempts.Int(1))
	End(call, "completed")
	End(step, "completed")
	End(run, "completed")
}

// BenchmarkHopSpans is what the spans of one hop cost the call's path
// when traces are exported (a batch processor in front of an exporter
// that keeps nothing), and when they are not.
func BenchmarkHopSpans(b *testing.B) {
	b.Run("off", func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			hopSpans(ctx)
		}
	})
	b.Run("on", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		h := newHolder(tp)
		old := provider.Swap(h)
		defer func() { provider.Store(old); tp.Shutdown(context.Background()) }()
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			hopSpans(ctx)
		}
	})
}
