package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"golang.org/x/sys/unix"
)

// hopSpans makes the spans of one hop, with the attributes the engine
// and the gate give them: run, step, call, decision, delivery.
func hopSpans(ctx context.Context) {
	ctx, run := Start(ctx, "run hop")
	sctx, step := Start(ctx, "step echo")
	cctx, call := Start(sctx, "call echo.echo")
	_, decide := Start(cctx, "policy.decide")
	if decide.IsRecording() {
		Finish(decide, AttrDecision.String("allow"), AttrRules.StringSlice(nil))
	} else {
		decide.End()
	}
	_, deliver := Tracer().Start(cctx, "deliver echo.echo", trace.WithSpanKind(trace.SpanKindClient))
	End(deliver, "completed", AttrMsgID.String("01JD6Z4W8X2F3K5N7Q9R1T3V5Y"))
	if call.IsRecording() {
		End(call, "completed", AttrTool.String("echo.echo"), AttrWorker.String("echo"), AttrDecision.String("allow"),
			AttrRules.StringSlice(nil), AttrLabel.String("trusted, from user"), AttrMsgID.String("01JD6Z4W8X2F3K5N7Q9R1T3V5Y"), AttrAttempts.Int(1))
	} else {
		call.End()
	}
	End(step, "completed", AttrStep.String("echo"))
	End(run, "completed", AttrRunID.String("01JD6Z4W8X2F3K5N7Q9R1T3V5X"), AttrFlow.String("hop"))
}

// cpuTime is the CPU time this process has used, in all its threads.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// threadCPU is the CPU time the calling thread has used.
func threadCPU(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

// BenchmarkHopSpans is what the spans of one hop cost when traces are
// exported, and when they are not. ns/op is the time on the call's path;
// path-cpu-ns/op the CPU time of the call's path alone (the thread of the
// loop, locked to it: the garbage collector's assists included, the
// exporting goroutine not), which a busy machine inflates far less than
// the time; cpu-ns/op is the CPU time of the whole process for each hop,
// the exporting goroutine and the garbage collector included, with the
// last batch exported before it is read (and no span dropped: the queue
// holds them all).
//
//   - off: tracing off (the no-op provider);
//   - on: the provider Setup makes, in front of an uploader that keeps
//     nothing (the spans are converted to OTLP, not encoded or posted);
//   - otlp: the provider Setup makes with the OTLP/HTTP client, posting
//     every span to a receiver on loopback in this process;
//   - sdk-otlp: for comparison, the OpenTelemetry SDK's provider with its
//     batch span processor and OTLP/HTTP exporter, posting to the same
//     kind of receiver: what tracing cost before Sluice's own spans.
func BenchmarkHopSpans(b *testing.B) {
	for _, bc := range []struct {
		name string
		tp   func(b *testing.B) shutdowner
	}{
		{"off", nil},
		{"on", func(b *testing.B) shutdowner {
			return newTracerProvider(newBatcher(discard{}, defaultBatch(b)), nil)
		}},
		{"otlp", func(b *testing.B) shutdowner {
			client := otlptracehttp.NewClient(otlptracehttp.WithEndpointURL(receiver(b) + "/v1/traces"))
			if err := client.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			return newTracerProvider(newBatcher(client, defaultBatch(b)), nil)
		}},
		{"sdk-otlp", func(b *testing.B) shutdowner {
			exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(receiver(b)+"/v1/traces"))
			if err != nil {
				b.Fatal(err)
			}
			return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithMaxQueueSize(benchQueue)),
				sdktrace.WithResource(resource.Empty()))
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var tp shutdowner
			if bc.tp != nil {
				tp = bc.tp(b)
				old := provider.Swap(newHolder(tp))
				defer provider.Store(old)
			}
			ctx := context.Background()
			b.ReportAllocs()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cpu0, path0 := cpuTime(b), threadCPU(b)
			for b.Loop() {
				hopSpans(ctx)
			}
			b.ReportMetric(float64(threadCPU(b)-path0)/float64(b.N), "path-cpu-ns/op")
			if tp != nil {
				if err := tp.Shutdown(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// shutdowner is a tracer provider that exports: Sluice's or the SDK's.
type shutdowner interface {
	trace.TracerProvider
	Shutdown(context.Context) error
}

// receiver is an OTLP/HTTP receiver on loopback that reads each export
// and answers 200, until the benchmark ends.
func receiver(b *testing.B) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	b.Cleanup(srv.Close)
	return srv.URL
}

// discard is an uploader that keeps nothing.
type discard struct{}

func (discard) UploadTraces(context.Context, []*tracepb.ResourceSpans) error { return nil }
func (discard) Stop(context.Context) error                                   { return nil }

// benchQueue is the queue of the benchmarks' batchers (it grows as
// needed): a loop that does nothing but make spans outruns any exporter,
// and the cost of a span that is dropped is not the cost of one that is
// exported.
const benchQueue = 1 << 22

// defaultBatch is the default batching, but for the queue.
func defaultBatch(b *testing.B) batchConfig {
	bc, err := readBatchConfig(func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	bc.queue = benchQueue
	return bc
}
