package worker

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"
)

// A worker reads the run's trace context from a call's headers, so its
// own spans join the run's trace.
func TestTraceContextFromHeaders(t *testing.T) {
	h := nats.Header{}
	h.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	sc := trace.SpanContextFromContext(traceContext.Extract(context.Background(), traceCarrier(h)))
	if sc.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" || sc.SpanID().String() != "b7ad6b7169203331" || !sc.IsSampled() {
		t.Fatalf("span context %v", sc)
	}
	if sc := trace.SpanContextFromContext(traceContext.Extract(context.Background(), traceCarrier(nats.Header{}))); sc.IsValid() {
		t.Fatalf("a call with no trace context: %v", sc)
	}
}
