// Package telemetry is what the orchestrator tells the outside about what
// it does: OpenTelemetry traces, exported over OTLP only when configured,
// and Prometheus metrics, served on the local web page (/metrics).
//
// A span or a metric carries names (flow, step, tool, rule, host),
// decisions, statuses, labels and counts: never an argument's or an
// output's value, which may carry what a label keeps secret.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Attribute keys of Sluice's own span attributes.
const (
	AttrRunID    = attribute.Key("sluice.run.id")
	AttrFlow     = attribute.Key("sluice.flow")
	AttrStep     = attribute.Key("sluice.step")
	AttrTool     = attribute.Key("sluice.tool")
	AttrWorker   = attribute.Key("sluice.worker")
	AttrStatus   = attribute.Key("sluice.status")
	AttrDecision = attribute.Key("sluice.decision")
	AttrRules    = attribute.Key("sluice.rules")
	AttrLabel    = attribute.Key("sluice.label")
	AttrMsgID    = attribute.Key("sluice.msg_id")
	AttrAttempts = attribute.Key("sluice.attempts")
	AttrApproval = attribute.Key("sluice.approval.id")
	AttrApprover = attribute.Key("sluice.approval.by")
	AttrHost     = attribute.Key("server.address")
	AttrOutcome  = attribute.Key("sluice.egress.outcome")
)

// OpenTelemetry GenAI semantic conventions, for model calls.
const (
	GenAIOperation    = attribute.Key("gen_ai.operation.name")
	GenAIModel        = attribute.Key("gen_ai.request.model")
	GenAIInputTokens  = attribute.Key("gen_ai.usage.input_tokens")
	GenAIOutputTokens = attribute.Key("gen_ai.usage.output_tokens")
	GenAIToolName     = attribute.Key("gen_ai.tool.name")
	GenAIAgentName    = attribute.Key("gen_ai.agent.name")
)

// provider holds the tracer provider spans start on: a no-op one until
// Setup installs an exporting one. One process exports with the provider
// its last Setup installed.
var provider atomic.Pointer[holder]

// holder is a provider and its tracer, looked up once.
type holder struct {
	tp     trace.TracerProvider
	tracer trace.Tracer
}

func newHolder(tp trace.TracerProvider) *holder {
	return &holder{tp: tp, tracer: tp.Tracer("github.com/sluicehq/sluice")}
}

func init() { provider.Store(newHolder(noop.NewTracerProvider())) }

// Tracer is Sluice's tracer. It costs next to nothing when tracing is off.
func Tracer() trace.Tracer { return provider.Load().tracer }

// Start starts a span named name as a child of the span in ctx, with
// attrs. Attributes known by the span's end are better given to End.
func Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	ctx, s := Tracer().Start(ctx, name)
	if len(attrs) > 0 && s.IsRecording() {
		// Not trace.WithAttributes: that copies them into the start
		// options, then into the span.
		s.SetAttributes(attrs...)
	}
	return ctx, s
}

// End ends s with status and attrs, set under one lock; "failed" also
// sets the span's status to error. No error message goes with it: one
// may carry what a worker read.
func End(s trace.Span, status string, attrs ...attribute.KeyValue) {
	end(s, attrs, AttrStatus.String(status), status == "failed")
}

// Finish is End without a status: s ends with attrs.
func Finish(s trace.Span, attrs ...attribute.KeyValue) {
	end(s, attrs, attribute.KeyValue{}, false)
}

// end ends s with attrs, then status when it is valid, and, when failed,
// the status error.
func end(s trace.Span, attrs []attribute.KeyValue, status attribute.KeyValue, failed bool) {
	if own, ok := s.(*span); ok {
		own.endWith(attrs, status, failed)
		return
	}
	if s.IsRecording() {
		s.SetAttributes(attrs...)
		if status.Valid() {
			s.SetAttributes(status)
		}
		if failed {
			s.SetStatus(codes.Error, "failed")
		}
	}
	s.End()
}

// Propagator carries the trace context (W3C traceparent and tracestate) in
// the headers of a bus message.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Config says where traces go. Endpoint empty (and no OTEL_EXPORTER_OTLP_*
// endpoint in the environment) exports nothing.
type Config struct {
	// Endpoint is the OTLP/HTTP base URL (http://host:4318); traces go to
	// Endpoint + /v1/traces.
	Endpoint string
	// Getenv reads the environment; nil reads nothing.
	Getenv func(string) string
}

// Setup installs an exporting tracer provider when traces are configured:
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the full URL),
// OTEL_EXPORTER_OTLP_ENDPOINT (a base URL) or cfg.Endpoint, in that order.
// OTEL_SDK_DISABLED=true and OTEL_TRACES_EXPORTER=none turn it off. It
// returns the function that flushes and stops the exporter (a no-op when
// nothing is exported), and whether traces are exported.
func Setup(cfg Config) (shutdown func(context.Context) error, on bool, err error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	none := func(context.Context) error { return nil }
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") || strings.EqualFold(getenv("OTEL_TRACES_EXPORTER"), "none") {
		return none, false, nil
	}
	opt, configured, err := endpoint(cfg, getenv)
	if err != nil || !configured {
		return none, false, err
	}
	bc, err := readBatchConfig(getenv)
	if err != nil {
		return none, false, err
	}
	sample, err := readSampler(getenv)
	if err != nil {
		return none, false, err
	}
	client := otlptracehttp.NewClient(opt)
	if err := client.Start(context.Background()); err != nil {
		return none, false, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	service := getenv("OTEL_SERVICE_NAME")
	if service == "" {
		service = "sluice"
	}
	tp := newTracerProvider(newBatcher(client, bc, attribute.String("service.name", service)), sample)
	h := newHolder(tp)
	provider.Store(h)
	otel.SetTracerProvider(tp)
	return func(ctx context.Context) error {
		err := tp.Shutdown(ctx)
		provider.CompareAndSwap(h, newHolder(noop.NewTracerProvider()))
		return err
	}, true, nil
}

// endpoint is where traces are exported, and whether anywhere: from the
// OTEL_EXPORTER_OTLP_* variables or cfg.Endpoint, checked, over
// OTLP/HTTP only.
func endpoint(cfg Config, getenv func(string) string) (otlptracehttp.Option, bool, error) {
	var opt otlptracehttp.Option
	switch {
	case getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "":
		u, err := checkURL("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
		if err != nil {
			return nil, false, err
		}
		opt = otlptracehttp.WithEndpointURL(u)
	case getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || cfg.Endpoint != "":
		name, base := "OTEL_EXPORTER_OTLP_ENDPOINT", getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
		if base == "" {
			name, base = "telemetry.otlp.endpoint", cfg.Endpoint
		}
		u, err := checkURL(name, base)
		if err != nil {
			return nil, false, err
		}
		opt = otlptracehttp.WithEndpointURL(strings.TrimSuffix(u, "/") + "/v1/traces")
	default:
		return nil, false, nil
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := getenv(name); p != "" && p != "http/protobuf" {
			return nil, false, fmt.Errorf("%s=%s: sluice exports traces over OTLP/HTTP only: set it to http/protobuf or unset it", name, p)
		}
	}
	return opt, true, nil
}

// checkURL checks that an endpoint is an http or https URL with a host.
func checkURL(name, raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New(name + "=" + raw + ": want an http:// or https:// URL with a host, such as http://127.0.0.1:4318")
	}
	return raw, nil
}

// HeaderCarrier carries the trace context in the headers of a bus message
// (nats.Header), with the header names as W3C spells them.
type HeaderCarrier map[string][]string

// Get returns the first value of key.
func (h HeaderCarrier) Get(key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set sets key to value.
func (h HeaderCarrier) Set(key, value string) { h[key] = []string{value} }

// Keys lists the keys set.
func (h HeaderCarrier) Keys() []string {
	out := make([]string, 0, len(h))
	for k := range h {
		out = append(out, k)
	}
	return out
}
