package telemetry

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// OTEL_TRACES_SAMPLER and its argument decide as the SDK's samplers of
// the same names decide, for roots and for children of sampled and
// unsampled parents, local and remote.
func TestSamplersDecideAsTheSDKs(t *testing.T) {
	for _, tc := range []struct {
		name, arg string
		sdk       sdktrace.Sampler
	}{
		{"", "", sdktrace.ParentBased(sdktrace.AlwaysSample())},
		{"parentbased_always_on", "", sdktrace.ParentBased(sdktrace.AlwaysSample())},
		{"always_on", "", sdktrace.AlwaysSample()},
		{"always_off", "", sdktrace.NeverSample()},
		{"parentbased_always_off", "", sdktrace.ParentBased(sdktrace.NeverSample())},
		{"traceidratio", "0.25", sdktrace.TraceIDRatioBased(0.25)},
		{"traceidratio", "", sdktrace.TraceIDRatioBased(1)},
		{"traceidratio", "0", sdktrace.TraceIDRatioBased(0)},
		{"parentbased_traceidratio", "0.5", sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.5))},
	} {
		t.Run(tc.name+"="+tc.arg, func(t *testing.T) {
			ours, err := readSampler(env("OTEL_TRACES_SAMPLER", tc.name, "OTEL_TRACES_SAMPLER_ARG", tc.arg))
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(1, 2))
			sampled := 0
			for i := range 4000 {
				var id trace.TraceID
				for j := range id {
					id[j] = byte(r.Uint32())
				}
				var parent trace.SpanContext
				if i%4 != 0 { // a root one time in four
					cfg := trace.SpanContextConfig{TraceID: id, SpanID: trace.SpanID{1}, Remote: i%3 == 0}
					if i%2 == 0 {
						cfg.TraceFlags = trace.FlagsSampled
					}
					parent = trace.NewSpanContext(cfg)
				}
				want := tc.sdk.ShouldSample(sdktrace.SamplingParameters{
					ParentContext: trace.ContextWithSpanContext(context.Background(), parent), TraceID: id, Name: "x"}).Decision == sdktrace.RecordAndSample
				if got := ours(parent, id); got != want {
					t.Fatalf("trace %x, parent %v: sampled %v, the SDK's %s says %v", id, parent, got, tc.sdk.Description(), want)
				}
				if want {
					sampled++
				}
			}
			t.Logf("%d of 4000 sampled", sampled)
		})
	}
}

// A sampler that is not one of OpenTelemetry's own, or a ratio that is not
// a fraction, is refused, naming the variable.
func TestReadSamplerRefuses(t *testing.T) {
	for _, tc := range []struct{ name, arg, err string }{
		{"jaeger_remote", "", "OTEL_TRACES_SAMPLER=jaeger_remote: want always_on, always_off, traceidratio"},
		{"traceidratio", "1.5", "OTEL_TRACES_SAMPLER_ARG=1.5: want a number from 0 to 1"},
		{"parentbased_traceidratio", "half", "OTEL_TRACES_SAMPLER_ARG=half: want a number from 0 to 1"},
	} {
		_, err := readSampler(env("OTEL_TRACES_SAMPLER", tc.name, "OTEL_TRACES_SAMPLER_ARG", tc.arg))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s=%s: error %v, want %q", tc.name, tc.arg, err, tc.err)
		}
	}
	if _, _, err := Setup(Config{Endpoint: "http://127.0.0.1:4318", Getenv: env("OTEL_TRACES_SAMPLER", "xray")}); err == nil ||
		!strings.Contains(err.Error(), "OTEL_TRACES_SAMPLER=xray") {
		t.Errorf("Setup with OTEL_TRACES_SAMPLER=xray: %v, want it refused", err)
	}
}

// A span the sampler leaves out records nothing and is not exported; it
// still has a span context, which its children follow by default.
func TestUnsampledSpansAreNotExported(t *testing.T) {
	rec := &recorder{}
	never := func(trace.SpanContext, trace.TraceID) bool { return false }
	tp := newTracerProvider(newBatcher(rec, batchConfig{delay: time.Hour, timeout: time.Minute, queue: 100, batch: 100}), parentBased(never))
	ctx, root := tp.Tracer("test").Start(context.Background(), "root")
	_, child := tp.Tracer("test").Start(ctx, "child")
	if root.IsRecording() || child.IsRecording() || !root.SpanContext().IsValid() || root.SpanContext().IsSampled() ||
		child.SpanContext().TraceID() != root.SpanContext().TraceID() {
		t.Fatalf("root %v (recording %v), child %v (recording %v): want both valid, in one trace, not sampled, not recording",
			root.SpanContext(), root.IsRecording(), child.SpanContext(), child.IsRecording())
	}
	child.End()
	root.End()
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := rec.all(); len(got) != 0 {
		t.Fatalf("%d unsampled spans exported", len(got))
	}
}
