package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// uploader sends spans in OTLP's form: the OTLP/HTTP client of the
// OpenTelemetry exporter (otlptrace.Client), or a test's.
type uploader interface {
	UploadTraces(ctx context.Context, spans []*tracepb.ResourceSpans) error
	Stop(ctx context.Context) error
}

// converter turns batches of ended spans into OTLP's messages. It is the
// exporting goroutine's alone, and keeps the messages of one batch for
// the next: UploadTraces has encoded them when it returns, so a batch's
// conversion allocates almost nothing once the first is done, and
// leaves the garbage collector, which runs on the calls' cores, little
// to do.
type converter struct {
	resource *resourcepb.Resource
	rs       tracepb.ResourceSpans
	scopes   map[*tracer]*tracepb.ScopeSpans
	out      []*tracepb.ResourceSpans

	// The slabs the messages of a batch are taken from (take), emptied
	// for each batch; a message taken when its slab is full is
	// allocated.
	spans    []tracepb.Span
	statuses []tracepb.Status
	kvs      []commonpb.KeyValue
	values   []commonpb.AnyValue
	strings  []commonpb.AnyValue_StringValue
	kvPtrs   []*commonpb.KeyValue
	ids      []byte
}

func newConverter(resource []attribute.KeyValue) *converter {
	c := &converter{scopes: map[*tracer]*tracepb.ScopeSpans{}}
	// The resource's attributes are not taken from a slab: they stay.
	c.resource = &resourcepb.Resource{Attributes: c.keyValues(resource)}
	c.out = []*tracepb.ResourceSpans{&c.rs}
	return c
}

// toOTLP is batch as OTLP sends it: one resource, the spans grouped by
// their tracer's scope, in the order they ended. What it returns is good
// until the next call.
func (c *converter) toOTLP(batch []*span) []*tracepb.ResourceSpans {
	n := 0
	for _, s := range batch {
		n += len(s.attrs)
	}
	empty(&c.spans, len(batch))
	empty(&c.statuses, len(batch))
	empty(&c.kvs, n)
	empty(&c.values, n)
	empty(&c.strings, n)
	empty(&c.kvPtrs, n)
	empty(&c.ids, len(batch)*(16+8+8))
	c.rs.Reset()
	c.rs.Resource = c.resource
	for _, ss := range c.scopes {
		clear(ss.Spans)
		ss.Spans = ss.Spans[:0]
	}
	for _, s := range batch {
		ss := c.scopes[s.tracer]
		if ss == nil {
			ss = &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: s.tracer.scope.Name, Version: s.tracer.scope.Version},
				SchemaUrl: s.tracer.scope.SchemaURL}
			c.scopes[s.tracer] = ss
		}
		if len(ss.Spans) == 0 {
			c.rs.ScopeSpans = append(c.rs.ScopeSpans, ss)
		}
		ss.Spans = append(ss.Spans, c.span(s))
	}
	return c.out
}

// span is s in OTLP's form.
func (c *converter) span(s *span) *tracepb.Span {
	p := take(&c.spans)
	p.Reset()
	tid, sid := s.sc.TraceID(), s.sc.SpanID()
	p.TraceId = c.id(tid[:])
	p.SpanId = c.id(sid[:])
	if s.parentID.IsValid() {
		p.ParentSpanId = c.id(s.parentID[:])
	}
	p.TraceState = s.sc.TraceState().String()
	p.Flags = uint32(s.sc.TraceFlags()) | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)
	if s.parentRemote {
		p.Flags |= uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
	}
	p.Name = s.name
	p.Kind = tracepb.Span_SpanKind(s.kind) // the same numbers
	p.StartTimeUnixNano = unixNano(s.start.UnixNano())
	p.EndTimeUnixNano = unixNano(s.end.UnixNano())
	p.Attributes = c.keyValues(s.attrs)
	p.DroppedAttributesCount = uint32(s.dropped)
	st := take(&c.statuses)
	st.Reset()
	switch s.status {
	case codes.Error:
		st.Code, st.Message = tracepb.Status_STATUS_CODE_ERROR, s.desc
	case codes.Ok:
		st.Code = tracepb.Status_STATUS_CODE_OK
	}
	p.Status = st
	if s.more != nil {
		c.eventsAndLinks(p, s.more)
	}
	return p
}

// id is b, in the batch's slab of ids.
func (c *converter) id(b []byte) []byte {
	if len(c.ids)+len(b) > cap(c.ids) {
		return append([]byte(nil), b...)
	}
	c.ids = append(c.ids, b...)
	return c.ids[len(c.ids)-len(b) : len(c.ids) : len(c.ids)]
}

// empty empties *slab for a batch, making room for n.
func empty[T any](slab *[]T, n int) {
	if cap(*slab) < n {
		*slab = make([]T, 0, n)
		return
	}
	*slab = (*slab)[:0]
}

// take is the next element of *slab, or a new one when it is full. A
// message taken from a slab is the last batch's: Reset it.
func take[T any](slab *[]T) *T {
	if len(*slab) == cap(*slab) {
		return new(T)
	}
	*slab = (*slab)[:len(*slab)+1]
	return &(*slab)[len(*slab)-1]
}

// eventsAndLinks sets p's events and links, m's, in OTLP's form.
func (c *converter) eventsAndLinks(p *tracepb.Span, m *more) {
	for _, e := range m.events {
		p.Events = append(p.Events, &tracepb.Span_Event{Name: e.name, TimeUnixNano: unixNano(e.at.UnixNano()),
			Attributes: c.keyValues(e.attrs), DroppedAttributesCount: uint32(e.dropped)})
	}
	p.DroppedEventsCount = uint32(m.droppedEvents)
	for _, l := range m.links {
		tid, sid := l.sc.TraceID(), l.sc.SpanID()
		// Without its trace state, as the OpenTelemetry exporter
		// sends a link.
		p.Links = append(p.Links, &tracepb.Span_Link{TraceId: tid[:], SpanId: sid[:],
			Flags:      uint32(l.sc.TraceFlags()) | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK) | remoteFlag(l.sc),
			Attributes: c.keyValues(l.attrs), DroppedAttributesCount: uint32(l.dropped)})
	}
	p.DroppedLinksCount = uint32(m.droppedLinks)
}

func remoteFlag(sc trace.SpanContext) uint32 {
	if sc.IsRemote() {
		return uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
	}
	return 0
}

// unixNano is a time's nanoseconds since 1970 as OTLP has them: none
// before.
func unixNano(ns int64) uint64 { return uint64(max(0, ns)) }

// keyValues is attrs in OTLP's form, nil for none.
func (c *converter) keyValues(attrs []attribute.KeyValue) []*commonpb.KeyValue {
	if len(attrs) == 0 {
		return nil
	}
	var out []*commonpb.KeyValue
	if n := len(c.kvPtrs); n+len(attrs) <= cap(c.kvPtrs) {
		c.kvPtrs = c.kvPtrs[:n+len(attrs)]
		out = c.kvPtrs[n : n+len(attrs) : n+len(attrs)]
	} else {
		out = make([]*commonpb.KeyValue, len(attrs))
	}
	for i, a := range attrs {
		p := take(&c.kvs)
		p.Reset()
		p.Key = string(a.Key)
		p.Value = c.value(a.Value)
		out[i] = p
	}
	return out
}

// value is v in OTLP's form, as the OpenTelemetry exporter converts it.
func (c *converter) value(v attribute.Value) *commonpb.AnyValue {
	p := take(&c.values)
	p.Reset()
	switch v.Type() {
	case attribute.STRING:
		sv := take(&c.strings)
		sv.StringValue = v.AsString()
		p.Value = sv
	case attribute.BOOL:
		p.Value = &commonpb.AnyValue_BoolValue{BoolValue: v.AsBool()}
	case attribute.INT64:
		p.Value = &commonpb.AnyValue_IntValue{IntValue: v.AsInt64()}
	case attribute.FLOAT64:
		p.Value = &commonpb.AnyValue_DoubleValue{DoubleValue: v.AsFloat64()}
	case attribute.BOOLSLICE:
		p.Value = arrayOf(v.AsBoolSlice(), func(b bool) *commonpb.AnyValue {
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: b}}
		})
	case attribute.INT64SLICE:
		p.Value = arrayOf(v.AsInt64Slice(), func(n int64) *commonpb.AnyValue {
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: n}}
		})
	case attribute.FLOAT64SLICE:
		p.Value = arrayOf(v.AsFloat64Slice(), func(f float64) *commonpb.AnyValue {
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: f}}
		})
	case attribute.STRINGSLICE:
		p.Value = arrayOf(v.AsStringSlice(), func(s string) *commonpb.AnyValue {
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
		})
	default:
		p.Value = &commonpb.AnyValue_StringValue{StringValue: "INVALID"}
	}
	return p
}

func arrayOf[T any](vs []T, one func(T) *commonpb.AnyValue) *commonpb.AnyValue_ArrayValue {
	arr := &commonpb.ArrayValue{Values: make([]*commonpb.AnyValue, len(vs))}
	for i, v := range vs {
		arr.Values[i] = one(v)
	}
	return &commonpb.AnyValue_ArrayValue{ArrayValue: arr}
}
