package telemetry

import (
	"context"
	"fmt"
	"math"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// exporter exports spans over OTLP/HTTP through the OpenTelemetry client
// (otlptracehttp: its endpoint, headers, TLS, compression, timeout and
// retries, as configured), like the exporter otlptracehttp.New makes, and
// turns them into the protocol's messages the same way; but a batch's
// spans, their statuses, IDs, attributes and string and integer values
// each take one allocation, not one for every span, attribute and value
// (about 80 for a hop's five spans): less work on the cores the calls
// share, and less garbage.
type exporter struct {
	client otlptrace.Client
	stop   sync.Once
}

func newExporter(ctx context.Context, opts ...otlptracehttp.Option) (*exporter, error) {
	c := otlptracehttp.NewClient(opts...)
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	return &exporter{client: c}, nil
}

// ExportSpans sends spans in one request.
func (e *exporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	rs := protoSpans(spans)
	if len(rs) == 0 {
		return nil
	}
	if err := e.client.UploadTraces(ctx, rs); err != nil {
		return fmt.Errorf("traces export: %w", err)
	}
	return nil
}

// Shutdown stops the client.
func (e *exporter) Shutdown(ctx context.Context) error {
	var err error
	e.stop.Do(func() { err = e.client.Stop(ctx) })
	return err
}

// protoSpans turns spans into OTLP messages, grouped by resource, then
// by instrumentation scope, in the order each is first seen.
func protoSpans(sdl []sdktrace.ReadOnlySpan) []*tracepb.ResourceSpans {
	type scopeKey struct {
		res   attribute.Distinct
		scope instrumentation.Scope
	}
	type group struct {
		key   scopeKey
		res   *resource.Resource
		n     int // spans
		start int // the first of its spans in ptrs
	}
	var groups []group
	of := make([]int, len(sdl)) // each span's group; -1 for none
	var n, nattrs, nstr, nint int
	for i, s := range sdl {
		of[i] = -1
		if s == nil {
			continue
		}
		k := scopeKey{s.Resource().Equivalent(), s.InstrumentationScope()}
		g := 0
		for g < len(groups) && groups[g].key != k {
			g++
		}
		if g == len(groups) {
			groups = append(groups, group{key: k, res: s.Resource()})
		}
		groups[g].n++
		of[i] = g
		n++
		for _, kv := range s.Attributes() {
			nattrs++
			switch kv.Value.Type() {
			case attribute.STRING:
				nstr++
			case attribute.INT64:
				nint++
			}
		}
	}
	if n == 0 {
		return nil
	}
	for g, at := 0, 0; g < len(groups); g++ {
		groups[g].start, at = at, at+groups[g].n
	}
	a := arena{
		spans: make([]tracepb.Span, n), ptrs: make([]*tracepb.Span, n), statuses: make([]tracepb.Status, n),
		ids: make([]byte, 0, 32*n), kvs: make([]commonpb.KeyValue, nattrs), kvptrs: make([]*commonpb.KeyValue, nattrs),
		values: make([]commonpb.AnyValue, nattrs), strs: make([]commonpb.AnyValue_StringValue, 0, nstr),
		ints: make([]commonpb.AnyValue_IntValue, 0, nint),
	}
	filled := make([]int, len(groups))
	si := 0
	for i, s := range sdl {
		g := of[i]
		if g < 0 {
			continue
		}
		p := &a.spans[si]
		a.span(p, &a.statuses[si], s)
		a.ptrs[groups[g].start+filled[g]] = p
		filled[g]++
		si++
	}
	var out []*tracepb.ResourceSpans
	var outKeys []attribute.Distinct
	for _, gr := range groups {
		ss := &tracepb.ScopeSpans{
			Scope:     protoScope(gr.key.scope),
			Spans:     a.ptrs[gr.start : gr.start+gr.n : gr.start+gr.n],
			SchemaUrl: gr.key.scope.SchemaURL,
		}
		r := 0
		for r < len(outKeys) && outKeys[r] != gr.key.res {
			r++
		}
		if r == len(outKeys) {
			var res *resourcepb.Resource
			if gr.res != nil {
				res = &resourcepb.Resource{Attributes: iterValues(gr.res.Iter())}
			}
			out = append(out, &tracepb.ResourceSpans{Resource: res, SchemaUrl: gr.res.SchemaURL()})
			outKeys = append(outKeys, gr.key.res)
		}
		out[r].ScopeSpans = append(out[r].ScopeSpans, ss)
	}
	return out
}

// arena holds the messages of one batch, each kind in one slice.
type arena struct {
	spans    []tracepb.Span
	ptrs     []*tracepb.Span
	statuses []tracepb.Status
	ids      []byte
	kvs      []commonpb.KeyValue
	kvptrs   []*commonpb.KeyValue
	values   []commonpb.AnyValue
	strs     []commonpb.AnyValue_StringValue
	ints     []commonpb.AnyValue_IntValue
	nextKV   int
}

// id appends b to the arena's IDs and returns it there.
func (a *arena) id(b []byte) []byte {
	a.ids = append(a.ids, b...)
	return a.ids[len(a.ids)-len(b) : len(a.ids) : len(a.ids)]
}

func (a *arena) span(p *tracepb.Span, st *tracepb.Status, s sdktrace.ReadOnlySpan) {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	p.TraceId = a.id(tid[:])
	p.SpanId = a.id(sid[:])
	p.TraceState = sc.TraceState().String()
	status := s.Status()
	st.Code = statusCode(status.Code)
	st.Message = status.Description
	p.Status = st
	p.StartTimeUnixNano = uint64(max(0, s.StartTime().UnixNano()))
	p.EndTimeUnixNano = uint64(max(0, s.EndTime().UnixNano()))
	p.Links = protoLinks(s.Links())
	p.Kind = spanKind(s.SpanKind())
	p.Name = s.Name()
	if attrs := s.Attributes(); len(attrs) > 0 {
		at := a.nextKV
		a.nextKV += len(attrs)
		p.Attributes = a.kvptrs[at:a.nextKV:a.nextKV]
		for j, kv := range attrs {
			k := &a.kvs[at+j]
			k.Key = string(kv.Key)
			k.Value = a.value(&a.values[at+j], kv.Value)
			p.Attributes[j] = k
		}
	}
	p.Events = protoEvents(s.Events())
	p.DroppedAttributesCount = clampUint32(s.DroppedAttributes())
	p.DroppedEventsCount = clampUint32(s.DroppedEvents())
	p.DroppedLinksCount = clampUint32(s.DroppedLinks())
	parent := s.Parent()
	if psid := parent.SpanID(); psid.IsValid() {
		p.ParentSpanId = a.id(psid[:])
	}
	p.Flags = spanFlags(sc.TraceFlags(), parent)
}

// value fills av with v: a string or an integer from the arena, anything
// else as protoValue makes it.
func (a *arena) value(av *commonpb.AnyValue, v attribute.Value) *commonpb.AnyValue {
	switch v.Type() {
	case attribute.STRING:
		a.strs = append(a.strs, commonpb.AnyValue_StringValue{StringValue: v.AsString()})
		av.Value = &a.strs[len(a.strs)-1]
	case attribute.INT64:
		a.ints = append(a.ints, commonpb.AnyValue_IntValue{IntValue: v.AsInt64()})
		av.Value = &a.ints[len(a.ints)-1]
	default:
		av.Value = protoValue(v).Value
	}
	return av
}

// protoValue is an attribute's value as OTLP writes it.
func protoValue(v attribute.Value) *commonpb.AnyValue {
	av := new(commonpb.AnyValue)
	array := func(n int, at func(int) *commonpb.AnyValue) {
		vs := make([]*commonpb.AnyValue, n)
		for i := range vs {
			vs[i] = at(i)
		}
		av.Value = &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: vs}}
	}
	switch v.Type() {
	case attribute.BOOL:
		av.Value = &commonpb.AnyValue_BoolValue{BoolValue: v.AsBool()}
	case attribute.INT64:
		av.Value = &commonpb.AnyValue_IntValue{IntValue: v.AsInt64()}
	case attribute.FLOAT64:
		av.Value = &commonpb.AnyValue_DoubleValue{DoubleValue: v.AsFloat64()}
	case attribute.STRING:
		av.Value = &commonpb.AnyValue_StringValue{StringValue: v.AsString()}
	case attribute.BYTESLICE:
		av.Value = &commonpb.AnyValue_BytesValue{BytesValue: v.AsByteSlice()}
	case attribute.BOOLSLICE:
		s := v.AsBoolSlice()
		array(len(s), func(i int) *commonpb.AnyValue { return protoValue(attribute.BoolValue(s[i])) })
	case attribute.INT64SLICE:
		s := v.AsInt64Slice()
		array(len(s), func(i int) *commonpb.AnyValue { return protoValue(attribute.Int64Value(s[i])) })
	case attribute.FLOAT64SLICE:
		s := v.AsFloat64Slice()
		array(len(s), func(i int) *commonpb.AnyValue { return protoValue(attribute.Float64Value(s[i])) })
	case attribute.STRINGSLICE:
		s := v.AsStringSlice()
		array(len(s), func(i int) *commonpb.AnyValue { return protoValue(attribute.StringValue(s[i])) })
	case attribute.SLICE:
		s := v.AsSlice()
		array(len(s), func(i int) *commonpb.AnyValue { return protoValue(s[i]) })
	case attribute.MAP:
		av.Value = &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: protoKVs(v.AsMap())}}
	case attribute.EMPTY:
	default:
		av.Value = &commonpb.AnyValue_StringValue{StringValue: "INVALID"}
	}
	return av
}

func protoKVs(attrs []attribute.KeyValue) []*commonpb.KeyValue {
	if len(attrs) == 0 {
		return nil
	}
	out := make([]*commonpb.KeyValue, len(attrs))
	for i, kv := range attrs {
		out[i] = &commonpb.KeyValue{Key: string(kv.Key), Value: protoValue(kv.Value)}
	}
	return out
}

func iterValues(it attribute.Iterator) []*commonpb.KeyValue {
	if it.Len() == 0 {
		return nil
	}
	out := make([]*commonpb.KeyValue, 0, it.Len())
	for it.Next() {
		kv := it.Attribute()
		out = append(out, &commonpb.KeyValue{Key: string(kv.Key), Value: protoValue(kv.Value)})
	}
	return out
}

func protoScope(s instrumentation.Scope) *commonpb.InstrumentationScope {
	if s == (instrumentation.Scope{}) {
		return nil
	}
	return &commonpb.InstrumentationScope{Name: s.Name, Version: s.Version, Attributes: iterValues(s.Attributes.Iter())}
}

func protoLinks(links []sdktrace.Link) []*tracepb.Span_Link {
	if len(links) == 0 {
		return nil
	}
	out := make([]*tracepb.Span_Link, len(links))
	for i, l := range links {
		tid, sid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
		out[i] = &tracepb.Span_Link{TraceId: tid[:], SpanId: sid[:],
			Attributes: protoKVs(l.Attributes), DroppedAttributesCount: clampUint32(l.DroppedAttributeCount),
			Flags: spanFlags(l.SpanContext.TraceFlags(), l.SpanContext)}
	}
	return out
}

func protoEvents(events []sdktrace.Event) []*tracepb.Span_Event {
	if len(events) == 0 {
		return nil
	}
	out := make([]*tracepb.Span_Event, len(events))
	for i, e := range events {
		out[i] = &tracepb.Span_Event{Name: e.Name, TimeUnixNano: uint64(max(0, e.Time.UnixNano())),
			Attributes: protoKVs(e.Attributes), DroppedAttributesCount: clampUint32(e.DroppedAttributeCount)}
	}
	return out
}

// spanFlags are the W3C trace flags, and whether the parent is remote
// (with the bit that says this is known).
func spanFlags(tf trace.TraceFlags, parent trace.SpanContext) uint32 {
	flags := uint32(tf) | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)
	if parent.IsRemote() {
		flags |= uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
	}
	return flags
}

func statusCode(c codes.Code) tracepb.Status_StatusCode {
	switch c {
	case codes.Ok:
		return tracepb.Status_STATUS_CODE_OK
	case codes.Error:
		return tracepb.Status_STATUS_CODE_ERROR
	default:
		return tracepb.Status_STATUS_CODE_UNSET
	}
}

func spanKind(k trace.SpanKind) tracepb.Span_SpanKind {
	switch k {
	case trace.SpanKindInternal:
		return tracepb.Span_SPAN_KIND_INTERNAL
	case trace.SpanKindClient:
		return tracepb.Span_SPAN_KIND_CLIENT
	case trace.SpanKindServer:
		return tracepb.Span_SPAN_KIND_SERVER
	case trace.SpanKindProducer:
		return tracepb.Span_SPAN_KIND_PRODUCER
	case trace.SpanKindConsumer:
		return tracepb.Span_SPAN_KIND_CONSUMER
	default:
		return tracepb.Span_SPAN_KIND_UNSPECIFIED
	}
}

func clampUint32(v int) uint32 {
	return uint32(min(max(v, 0), math.MaxUint32))
}
