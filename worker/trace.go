package worker

import (
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// traceContext reads the W3C trace context the orchestrator puts in the
// headers of each call.
var traceContext = propagation.TraceContext{}

// traceCarrier reads and writes the trace context in a bus message's
// headers, whose names are case-sensitive, as W3C spells them
// (traceparent, tracestate).
type traceCarrier nats.Header

func (h traceCarrier) Get(key string) string { return nats.Header(h).Get(key) }

func (h traceCarrier) Set(key, value string) { nats.Header(h).Set(key, value) }

func (h traceCarrier) Keys() []string {
	out := make([]string, 0, len(h))
	for k := range h {
		out = append(out, k)
	}
	return out
}
