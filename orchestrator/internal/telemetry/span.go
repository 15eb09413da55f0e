package telemetry

import (
	"context"
	"math/rand/v2"
	"reflect"
	"runtime/debug"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// Spans of Sluice's own tracer.
//
// When traces are exported, a span is what OTLP sends of it and nothing
// more: its ids, name, kind, times, status and attributes, in one small
// allocation and one for its attributes. The SDK's span is made for every
// processor and exporter there is: a snapshot copied at its end, a map to
// de-duplicate its attributes, a context for its sampler; made and ended
// five times a hop, it was most of what tracing cost. Here a span's start
// is an allocation, its end the attributes set and an append to the batch
// under the batcher's lock; the conversion to OTLP's messages is the
// exporting goroutine's (otlp.go), and they are encoded and posted by the
// OTLP/HTTP client of the OpenTelemetry exporter, with its
// OTEL_EXPORTER_OTLP_* configuration. TestOTLPAsTheOpenTelemetryExporter
// holds the export to the SDK's for every call of the tracing API.
//
// It is the OpenTelemetry tracing API's span, with its rules: a span
// records when the sampler says so (OTEL_TRACES_SAMPLER; by default, when
// its parent is sampled or it has none); attributes set again keep their
// place and take the new value; an Ok status is final, an Error one
// keeps its description; a span records until it ends, and what is done
// to it after is ignored.

// maxAttributes is how many attributes a span, an event or a link keeps,
// as the SDK's default limit; more are counted as dropped.
const maxAttributes = 128

// scope is a tracer's instrumentation scope, as OTLP names it.
type scope struct{ Name, Version, SchemaURL string }

// tracerProvider makes Sluice's spans, handing the ended ones to b.
type tracerProvider struct {
	embedded.TracerProvider
	b      *batcher
	sample sampler

	mu      sync.Mutex
	tracers map[scope]*tracer
}

// newTracerProvider is a provider whose spans go to b, sampled by
// sample (nil: parentbased_always_on, the default).
func newTracerProvider(b *batcher, sample sampler) *tracerProvider {
	if sample == nil {
		sample = parentBased(alwaysOn)
	}
	return &tracerProvider{b: b, sample: sample, tracers: map[scope]*tracer{}}
}

// Tracer returns the tracer of the instrumentation scope name and opts
// say, one for each scope.
func (tp *tracerProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	c := trace.NewTracerConfig(opts...)
	sc := scope{Name: name, Version: c.InstrumentationVersion(), SchemaURL: c.SchemaURL()}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	t, ok := tp.tracers[sc]
	if !ok {
		t = &tracer{tp: tp, scope: sc}
		tp.tracers[sc] = t
	}
	return t
}

// ForceFlush exports every span ended, waiting at most until ctx is done.
func (tp *tracerProvider) ForceFlush(ctx context.Context) error { return tp.b.ForceFlush(ctx) }

// Shutdown exports every span ended and stops the exporter; spans that
// end after it are dropped.
func (tp *tracerProvider) Shutdown(ctx context.Context) error { return tp.b.Shutdown(ctx) }

type tracer struct {
	embedded.Tracer
	tp    *tracerProvider
	scope scope
}

// Start starts a span as a child of the span in ctx (or of none, with
// trace.WithNewRoot).
func (t *tracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	var c trace.SpanConfig
	if len(opts) > 0 {
		c = trace.NewSpanStartConfig(opts...)
	}
	var parent trace.SpanContext
	if !c.NewRoot() {
		parent = trace.SpanContextFromContext(ctx)
	}
	s := &span{tracer: t, name: name, kind: c.SpanKind(), parentID: parent.SpanID(), parentRemote: parent.IsRemote(), start: c.Timestamp()}
	if s.kind == trace.SpanKindUnspecified {
		s.kind = trace.SpanKindInternal
	}
	if s.start.IsZero() {
		s.start = time.Now()
	}
	sc := trace.SpanContextConfig{SpanID: newSpanID()}
	if parent.IsValid() {
		sc.TraceID, sc.TraceState = parent.TraceID(), parent.TraceState()
	} else {
		sc.TraceID = newTraceID()
	}
	if t.tp.sample(parent, sc.TraceID) {
		sc.TraceFlags = trace.FlagsSampled
	}
	s.sc = trace.NewSpanContext(sc)
	s.recording = s.sc.IsSampled()
	if s.recording {
		s.setAttributes(c.Attributes())
		for _, l := range c.Links() {
			s.addLink(l)
		}
	}
	return trace.ContextWithSpan(ctx, s), s
}

// newTraceID and newSpanID are random ids, never all zeros (invalid): the
// runtime's generator, which is fast and safe for concurrent use; trace
// and span ids need to be unlikely to repeat, not unpredictable.
func newTraceID() (id trace.TraceID) {
	for !id.IsValid() {
		hi, lo := rand.Uint64(), rand.Uint64()
		for i := range 8 {
			id[i], id[8+i] = byte(hi>>(56-8*i)), byte(lo>>(56-8*i))
		}
	}
	return id
}

func newSpanID() (id trace.SpanID) {
	for !id.IsValid() {
		v := rand.Uint64()
		for i := range 8 {
			id[i] = byte(v >> (56 - 8*i))
		}
	}
	return id
}

// span is one of Sluice's spans (see the top of this file).
type span struct {
	embedded.Span
	tracer *tracer
	sc     trace.SpanContext
	// The parent's span id, when it has one, and whether the parent
	// came from another process.
	parentID     trace.SpanID
	parentRemote bool

	mu        sync.Mutex
	recording bool // sampled, and not ended yet
	kind      trace.SpanKind
	status    codes.Code
	name      string
	start     time.Time
	end       time.Time
	attrs     []attribute.KeyValue
	dropped   int    // attributes not kept: more than maxAttributes
	desc      string // the status's description, for an Error
	more      *more  // events and links, which Sluice's spans do not have
}

// more is what a span has of events and links.
type more struct {
	events []event
	links  []link
	// events and links not kept: more than maxAttributes of each
	droppedEvents, droppedLinks int
}

// extra is s.more, made when it is first needed, with s.mu held.
func (s *span) extra() *more {
	if s.more == nil {
		s.more = &more{}
	}
	return s.more
}

// event is an event of a span, link a link of it, each with the
// attributes it keeps and how many it dropped.
type event struct {
	name    string
	at      time.Time
	attrs   []attribute.KeyValue
	dropped int
}

type link struct {
	sc      trace.SpanContext
	attrs   []attribute.KeyValue
	dropped int
}

func (s *span) SpanContext() trace.SpanContext { return s.sc }

func (s *span) IsRecording() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recording
}

func (s *span) TracerProvider() trace.TracerProvider { return s.tracer.tp }

// End ends the span at the time it is called (or trace.WithTimestamp's)
// and hands it to the batcher; ending it again does nothing.
func (s *span) End(opts ...trace.SpanEndOption) {
	at := time.Time{}
	if len(opts) > 0 {
		c := trace.NewSpanEndConfig(opts...)
		at = c.Timestamp()
	}
	if at.IsZero() {
		at = time.Now()
	}
	s.mu.Lock()
	if !s.recording {
		s.mu.Unlock()
		return
	}
	s.recording, s.end = false, at
	s.mu.Unlock()
	s.tracer.tp.b.add(s)
}

// endWith sets attrs, then status when it is valid, and, when failed, the
// status Error, then ends the span: End's and Finish's, under one lock.
func (s *span) endWith(attrs []attribute.KeyValue, status attribute.KeyValue, failed bool) {
	at := time.Now()
	s.mu.Lock()
	if !s.recording {
		s.mu.Unlock()
		return
	}
	if n := len(s.attrs) + len(attrs) + 1; cap(s.attrs) < n && n <= maxAttributes {
		// One allocation for all: End's are most of a span's.
		s.attrs = append(make([]attribute.KeyValue, 0, n), s.attrs...)
	}
	s.setAttributes(attrs)
	if status.Valid() {
		s.setAttributes([]attribute.KeyValue{status})
	}
	if failed {
		s.setStatus(codes.Error, "failed")
	}
	s.recording, s.end = false, at
	s.mu.Unlock()
	s.tracer.tp.b.add(s)
}

func (s *span) SetAttributes(kv ...attribute.KeyValue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recording {
		s.setAttributes(kv)
	}
}

// setAttributes, with s.mu held, sets kv: an attribute already set keeps
// its place and takes the new value.
func (s *span) setAttributes(kv []attribute.KeyValue) {
	s.attrs, s.dropped = setAttributes(s.attrs, s.dropped, kv)
}

// setAttributes sets kv in attrs, of which dropped were dropped, as the
// SDK does: by key, at most maxAttributes; one without a key is dropped.
func setAttributes(attrs []attribute.KeyValue, dropped int, kv []attribute.KeyValue) ([]attribute.KeyValue, int) {
next:
	for _, a := range kv {
		if !a.Valid() {
			dropped++
			continue
		}
		for i := range attrs {
			if attrs[i].Key == a.Key {
				attrs[i] = a
				continue next
			}
		}
		if len(attrs) >= maxAttributes {
			dropped++
			continue
		}
		attrs = append(attrs, a)
	}
	return attrs, dropped
}

func (s *span) SetStatus(code codes.Code, description string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recording {
		s.setStatus(code, description)
	}
}

// setStatus, with s.mu held, sets the status as the API says: Unset
// changes nothing, Ok is final, only Error keeps its description.
func (s *span) setStatus(code codes.Code, description string) {
	switch {
	case code == codes.Unset || s.status == codes.Ok:
	case code == codes.Error:
		s.status, s.desc = code, description
	default:
		s.status, s.desc = code, ""
	}
}

func (s *span) SetName(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recording {
		s.name = name
	}
}

func (s *span) AddEvent(name string, opts ...trace.EventOption) {
	c := trace.NewEventConfig(opts...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.recording {
		return
	}
	m := s.extra()
	if len(m.events) >= maxAttributes {
		m.droppedEvents++
		return
	}
	e := event{name: name, at: c.Timestamp()}
	if e.at.IsZero() {
		e.at = time.Now()
	}
	e.attrs, e.dropped = setAttributes(nil, 0, c.Attributes())
	m.events = append(m.events, e)
}

// RecordError adds the "exception" event the OpenTelemetry semantic
// conventions name, with the error's type and message (and the stack,
// with trace.WithStackTrace), as the SDK does. Sluice's own code never
// calls it: an error's message may carry what a worker read.
func (s *span) RecordError(err error, opts ...trace.EventOption) {
	if err == nil {
		return
	}
	opts = append(opts, trace.WithAttributes(
		attribute.String("exception.type", typeName(err)),
		attribute.String("exception.message", err.Error())))
	if c := trace.NewEventConfig(opts...); c.StackTrace() {
		opts = append(opts, trace.WithAttributes(attribute.String("exception.stacktrace", string(debug.Stack()))))
	}
	s.AddEvent("exception", opts...)
}

// typeName is the name of v's type with its package's path.
func typeName(v any) string {
	t := reflect.TypeOf(v)
	if t.PkgPath() == "" && t.Name() == "" {
		return t.String() // a pointer, a slice, a built-in type
	}
	return t.PkgPath() + "." + t.Name()
}

func (s *span) AddLink(l trace.Link) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recording {
		s.addLink(l)
	}
}

func (s *span) addLink(l trace.Link) {
	if !l.SpanContext.IsValid() {
		return
	}
	m := s.extra()
	if len(m.links) >= maxAttributes {
		m.droppedLinks++
		return
	}
	k := link{sc: l.SpanContext}
	k.attrs, k.dropped = setAttributes(nil, 0, l.Attributes)
	m.links = append(m.links, k)
}
